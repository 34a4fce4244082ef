"""Reading a topic back, whole: what checks and lessons count, compare and chart."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from lab_env.api import Lab
from lab_env.checks import require


def read_all(
    lab: Lab,
    topic: str,
    timeout: float = 30.0,
    isolation_level: str = "read_committed",
    decode: bool = True,
) -> list[dict[str, Any]]:
    """Every record in ``topic``, read from the beginning of each partition to its end.

    Assigning partitions (instead of subscribing) skips the group rebalance, and a fresh group id
    means no committed offset can hide records. Each record is a dict with ``partition``,
    ``offset``, ``key``, ``value`` (str when ``decode``, else bytes), ``headers`` and
    ``timestamp`` (ms). With ``read_committed`` (librdkafka's default) records of open or
    aborted transactions are skipped and a partition ends at its last stable offset.
    """
    consumer = lab.consumer(
        lab.group(f"lab-read-{uuid.uuid4().hex[:8]}"),
        {
            "enable.auto.commit": False,
            "isolation.level": isolation_level,
            # The end of a partition is announced, not computed: the last offset is often a
            # transaction marker no consumer receives, and read_committed ends at the last
            # stable offset, below the high watermark while a transaction is open.
            "enable.partition.eof": True,
        },
    )
    try:
        metadata = lab.admin().list_topics(topic, timeout=10).topics.get(topic)
        require(
            metadata is not None and metadata.error is None,
            f"there is no topic {topic!r}: create it first.",
        )
        todo: set[int] = set()
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                todo.add(p)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        records: list[dict[str, Any]] = []
        # A consumer may be handed a record again after a leader change (its fetch position is
        # validated and reset); one log entry, (partition, offset), is counted once.
        seen: set[tuple[int, int]] = set()
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(msg.partition())
                continue
            if (msg.partition(), msg.offset()) in seen:
                continue
            seen.add((msg.partition(), msg.offset()))
            key, value = msg.key(), msg.value()
            records.append(
                {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": key.decode() if decode and key is not None else key,
                    "value": value.decode() if decode and value is not None else value,
                    "headers": dict(msg.headers() or []),
                    "timestamp": msg.timestamp()[1],
                }
            )
        require(not todo, f"could not read partitions {sorted(todo)} of {topic!r} in {timeout} s.")
        return records
    finally:
        consumer.close()
