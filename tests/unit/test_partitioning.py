"""The key-hashing partitioners in Python; tests/integration/test_producers.py holds them to
the partitions the real producers pick."""

from __future__ import annotations

import pytest

from lab_env import partitioning


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # Kafka's own expectations for Utils.murmur2 (UtilsTest.testMurmur2)
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(data: bytes, expected: int) -> None:
    assert partitioning.murmur2(data) == expected


def test_each_partitioner_gives_a_partition_in_range() -> None:
    for i in range(500):
        key = f"order-{i}".encode()
        for partition in partitioning.by_key(key, 6).values():
            assert 0 <= partition < 6
    assert set(partitioning.by_key(b"x", 1).values()) == {0}
