"""Lab 01: keys, partitions and compaction, checked by reading the learner's topics back."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from confluent_kafka.admin import ConfigResource

from lab_env import partitioning
from lab_env.api import Lab
from lab_env.checks import passed, require
from lab_env.records import read_all
from lab_env.steps import Steps

STATUSES = ("created", "paid", "packed", "shipped")
PARTITIONS = 6
REPLICATION_FACTOR = 3
# The check appends one record with this key to every partition of the compacted topic: the
# cleaner never touches a partition's active segment, and a segment closes only when a record
# arrives after segment.ms has passed.
ROLL_KEY = "lab-check-roll"


def order_events(orders: int) -> list[dict[str, str]]:
    """The lab's order events: order ``o-i`` reaches ``STATUSES[: 1 + i % 4]``.

    Orders are interleaved (every order is created before any is paid), so a consumer only sees
    each order's events in order if they share a partition: nothing orders across partitions.
    """
    events = []
    for stage, status in enumerate(STATUSES):
        for i in range(orders):
            if stage <= i % len(STATUSES):
                events.append({"order_id": f"o-{i}", "status": status})
    return events


def latest_status(events: list[dict[str, str]]) -> dict[str, str]:
    """Each order's last status in ``events``: what a compacted topic must keep."""
    return {e["order_id"]: e["status"] for e in events}


def _event(record: dict[str, Any], topic: str) -> dict[str, str]:
    where = f"{topic!r} partition {record['partition']} offset {record['offset']}"
    try:
        event = json.loads(record["value"])
    except (TypeError, ValueError):
        event = None
    require(
        isinstance(event, dict) and "order_id" in event and "status" in event,
        f"the record at {where} is not an order event ({record['value']!r}): produce each "
        "event as json.dumps(event).",
    )
    return event


def _topic_shape(lab: Lab, topic: str) -> tuple[int, set[int]]:
    metadata = lab.admin().list_topics(timeout=10).topics.get(topic)
    require(metadata is not None, f"there is no topic {topic!r}: create it first.")
    factors = {len(p.replicas) for p in metadata.partitions.values()}
    return len(metadata.partitions), factors


def check_per_order_ordering(lab: Lab, topic: str, events: list[dict[str, str]]) -> None:
    """Every order's events must reach a consumer in the order they happened.

    Kafka orders records within a partition only, so all of an order's events must be in one
    partition; keying each record by its order id is what puts them there.
    """
    partitions, factors = _topic_shape(lab, topic)
    require(
        partitions == PARTITIONS,
        f"{topic!r} has {partitions} partitions; the task asks for {PARTITIONS} "
        f"(lab.create_topic(name, partitions={PARTITIONS})).",
    )
    require(
        factors == {REPLICATION_FACTOR},
        f"{topic!r} has replication factor {sorted(factors)}; create it with "
        f"replication_factor={REPLICATION_FACTOR} so every partition survives a broker loss.",
    )
    records = read_all(lab, topic)
    require(
        len(records) == len(events),
        f"{topic!r} holds {len(records)} records, the task has {len(events)} events: produce each "
        "event once and call producer.flush() (if you ran the cell twice, make a new topic name).",
    )
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        by_order[_event(record, topic)["order_id"]].append(record)
    expected: dict[str, list[str]] = defaultdict(list)
    for event in events:
        expected[event["order_id"]].append(event["status"])
    for order, statuses in expected.items():
        seen = by_order.get(order, [])
        spread = sorted({r["partition"] for r in seen})
        require(
            len(spread) == 1,
            f"order {order}'s events are spread over partitions {spread}: a consumer can see "
            "them in any order. Key each event by its order id (key=event['order_id']).",
        )
        keys = {r["key"] for r in seen}
        require(
            keys == {order},
            f"order {order}'s events have keys {sorted(keys, key=str)}: they share a partition "
            "by luck, not by design. Key each event by its order id (key=event['order_id']).",
        )
        (partition,) = spread
        hashed = partitioning.by_key(order.encode(), partitions)
        require(
            partition in hashed.values(),
            f"order {order}'s events are all in partition {partition}, but its key hashes to "
            f"partition {hashed['consistent_random']} (librdkafka's default partitioner; "
            f"{hashed['murmur2_random']} with murmur2_random, Java's): they were placed by hand. "
            "Leave out partition=: the key alone must decide, or another producer with the same "
            "key writes the order's next event somewhere else.",
        )
        got = [_event(r, topic)["status"] for r in seen]
        require(
            got == statuses,
            f"order {order}'s events are stored as {got}, but happened as {statuses}: produce "
            "the events in the order of the list.",
        )
    passed(f"{len(expected)} orders, each in one partition, each in order")


def _topic_configs(lab: Lab, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = lab.admin().describe_configs([resource])[resource].result()
    return {name: entry.value for name, entry in configs.items()}


def check_latest_status(
    lab: Lab, topic: str, events: list[dict[str, str]], timeout: float = 90.0
) -> None:
    """After compaction, ``topic`` must hold exactly one record per order: its latest status.

    A compacted topic is a table: a new consumer rebuilds each order's current state from it
    without replaying every event. The check waits (at most ``timeout`` seconds) for the log
    cleaner, which runs every ``log.cleaner.backoff.ms`` (15 s by default).
    """
    require(_topic_shape(lab, topic)[0] > 0, f"{topic!r} has no partitions.")
    configs = _topic_configs(lab, topic)
    policy = configs["cleanup.policy"]
    require(
        "compact" in policy.split(","),
        f"{topic!r} has cleanup.policy={policy}: it deletes old records by age or size and "
        "keeps every version. Create it with config={'cleanup.policy': 'compact', ...}.",
    )
    segment_ms = int(configs["segment.ms"])
    require(
        segment_ms <= 10_000,
        f"{topic!r} has segment.ms={segment_ms}: compaction never touches the active segment, "
        "so nothing would be cleaned for that long. Set segment.ms=100 (and "
        "min.cleanable.dirty.ratio=0.01) so it compacts in seconds.",
    )
    expected = latest_status(events)
    step = Steps()
    # Close the segment holding the learner's records: wait past segment.ms, then append.
    step(f"closing the segment that holds your records (segment.ms={segment_ms})")
    time.sleep(segment_ms / 1000 + 0.5)
    producer = lab.producer({"acks": "all"})
    for partition in lab.admin().list_topics(topic, timeout=10).topics[topic].partitions:
        producer.produce(topic, key=ROLL_KEY, value="roll", partition=partition)
    require(producer.flush(30) == 0, f"could not append the roll records to {topic!r}.")

    step(f"waiting for the log cleaner to compact {topic} (up to {timeout:.0f} s)")
    deadline = time.monotonic() + timeout
    while True:
        records = read_all(lab, topic)
        _require_every_order(records, expected, topic)
        waiting = _uncompacted(records, expected)
        if waiting is None:
            break
        require(
            time.monotonic() < deadline,
            f"after {timeout:.0f} s {waiting}: check min.cleanable.dirty.ratio=0.01 and "
            "min.compaction.lag.ms=0 on the topic.",
        )
        time.sleep(2)
    passed(f"{len(expected)} orders, one record each, each with its latest status")


def _by_order(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["key"] != ROLL_KEY:
            by_key[str(record["key"])].append(record)
    return by_key


def _require_every_order(
    records: list[dict[str, Any]], expected: dict[str, str], topic: str
) -> None:
    """What compaction cannot fix: a missing order, a foreign key, a wrong last status.

    Compaction keeps the last record of each key, so the last record of every order must already
    hold its latest status, before and after the cleaner runs."""
    by_key = _by_order(records)
    missing = sorted(set(expected) - set(by_key), key=lambda k: int(k.split("-")[-1]))
    require(
        not missing,
        f"orders {missing[:5]} have no record keyed by their order id in {topic!r}: a "
        "compacted topic rejects records without a key. Key each event by its order id.",
    )
    extra = sorted(set(by_key) - set(expected))
    require(
        not extra,
        f"{topic!r} has records keyed {extra[:5]}, which are not order ids: key each event "
        "by its order id.",
    )
    for order, status in expected.items():
        last = max(by_key[order], key=lambda r: (r["partition"], r["offset"]))
        value = _event(last, topic)["status"]
        require(
            value == status,
            f"order {order}'s last record says {value!r}, but its latest status is {status!r}: "
            "produce the events in the order of the list.",
        )


def _uncompacted(records: list[dict[str, Any]], expected: dict[str, str]) -> str | None:
    """Which order still has more than one record (the cleaner has not run yet), if any."""
    by_key = _by_order(records)
    for order in expected:
        if len(by_key[order]) > 1:
            return f"order {order} still has {len(by_key[order])} records"
    return None
