"""lab_env.producing on the real cluster: the benchmark counts what it sends, Kafka's tools report
stored bytes and producer state, and a paused follower forces retries (and is always resumed)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from lab_env import partitioning
from lab_env.api import Lab
from lab_env.embedded import EmbeddedLab
from lab_env.errors import LabError
from lab_env.producing import (
    WARM_UP_KEY,
    Stats,
    benchmark,
    order_values,
    paused_follower,
    producer_state,
    records_resent,
    stored_bytes,
    warm_partitions,
    warm_up,
)
from lab_env.records import read_all

pytestmark = pytest.mark.cluster


def test_benchmark_delivers_every_record_and_compression_shrinks_the_log(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    values = order_values(2000)
    plain, packed = make_topic(), make_topic()
    runs = {
        topic: benchmark(lab, topic, {"linger.ms": 20, "compression.type": codec}, values)
        for topic, codec in ((plain, "none"), (packed, "zstd"))
    }
    for run in runs.values():
        assert (run.records, run.delivered, run.failed, run.complete) == (2000, 2000, 0, True)
        assert run.row()["records/s"] > 0 and run.row()["p99 ms"] >= run.row()["p50 ms"]
    sizes = stored_bytes(lab, [plain, packed])
    assert sizes[plain] > sum(map(len, values))  # the records, plus batch headers
    assert 0 < sizes[packed] < sizes[plain] / 2


def test_the_broker_tracks_only_idempotent_producers(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    tracked, untracked = make_topic(partitions=1), make_topic(partitions=1)
    for topic, idempotence in ((tracked, True), (untracked, False)):
        producer = lab.producer({"enable.idempotence": idempotence})
        for i in range(10):
            producer.produce(topic, value=str(i))
        assert producer.flush(30) == 0
    [state] = producer_state(lab, tracked)
    assert state["last_sequence"] == 9 and state["producer_id"] >= 0
    assert producer_state(lab, untracked) == []


def run_with_paused_follower(
    lab: Lab, embedded: EmbeddedLab, topic: str, idempotence: bool
) -> tuple[int, int]:
    """Duplicates stored and records resent while a follower is paused for 2 s."""
    stats = Stats()
    producer = lab.producer(
        {"enable.idempotence": idempotence, "request.timeout.ms": 300, **stats.config()}
    )
    warm_up(producer, topic, stats)
    with paused_follower(lab, topic, seconds=2.0) as victim:
        for i in range(500):
            producer.produce(topic, value=str(i))
            producer.poll(0)
        assert producer.flush(60) == 0
    record = embedded.procs.live(f"kafka-{victim}")
    assert record is not None and record.state() == "running"  # resumed, whatever happened
    copies = Counter(r["value"] for r in read_all(lab, topic))
    assert set(copies) == {str(i) for i in range(500)}
    return sum(copies.values()) - len(copies), records_resent(stats.wait_next(producer))


@pytest.mark.disruptive
def test_a_paused_follower_forces_retries_that_only_idempotence_absorbs(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    duplicates, resent = run_with_paused_follower(lab, embedded, make_topic(partitions=1), False)
    assert duplicates > 0 and resent >= duplicates
    duplicates, resent = run_with_paused_follower(lab, embedded, make_topic(partitions=1), True)
    assert duplicates == 0 and resent > 0


def test_warm_partitions_writes_one_record_per_partition(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    assert warm_partitions(lab, topic) == 3
    records = read_all(lab, topic)
    assert sorted(r["partition"] for r in records) == [0, 1, 2]
    assert {r["key"] for r in records} == {WARM_UP_KEY}


def test_warm_partitions_names_the_error_of_a_refused_partition(lab: Lab) -> None:
    topic = lab.topic(f"it.warm-refused.{uuid.uuid4().hex[:6]}")
    lab.create_topic(topic, 1, config={"max.message.bytes": "16"})  # the record is larger
    try:
        with pytest.raises(LabError, match="partition 0: MSG_SIZE_TOO_LARGE"):
            warm_partitions(lab, topic, timeout=3)
        assert read_all(lab, topic) == []
    finally:
        lab.delete_topic(topic)


@pytest.mark.parametrize("partitioner", ["consistent_random", "murmur2_random"])
def test_the_key_hashes_are_the_producers_own(lab: Lab, topic: str, partitioner: str) -> None:
    """lab_env.partitioning picks, for every key, the partition the real producer picks."""
    partitions = len(lab.admin().list_topics(topic, timeout=10).topics[topic].partitions)
    placed: dict[str, int] = {}
    producer = lab.producer({"partitioner": partitioner})
    for i in range(200):
        key = f"order-{i:04d}"
        producer.produce(
            topic,
            key=key,
            value=b"x",
            on_delivery=lambda e, m: placed.__setitem__(m.key().decode(), m.partition()),
        )
    assert producer.flush(30) == 0 and len(placed) == 200
    computed = {k: partitioning.by_key(k.encode(), partitions)[partitioner] for k in placed}
    assert placed == computed
    assert len(set(placed.values())) == partitions  # every partition used: a real spread
