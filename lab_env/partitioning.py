"""Which partition a key-hashing partitioner picks for a key: librdkafka's default and Java's.

- ``consistent_random`` (librdkafka's default, so confluent-kafka's): the CRC-32 of the key's
  bytes, modulo the partition count (a missing or empty key: a random partition).
- ``murmur2_random`` (the Java producer's default hash): Kafka's 32-bit murmur2 of the key's
  bytes, made positive (``& 0x7fffffff``), modulo the partition count.

Lesson 01 shows both on the cluster; lab 01's check uses them to tell a record placed by its key
from one placed by hand. tests/integration/test_producers.py holds these functions to the
partitions the real producers pick.
"""

from __future__ import annotations

import zlib

_M, _MASK = 0x5BD1E995, 0xFFFFFFFF
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def by_key(key: bytes, partitions: int) -> dict[str, int]:
    """The partition each key-hashing partitioner picks for ``key``, by librdkafka's name."""
    return {
        "consistent_random": crc32_partition(key, partitions),
        "murmur2_random": murmur2_partition(key, partitions),
    }
