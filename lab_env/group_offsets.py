"""A consumer group's committed offsets, read the way a consumer reads its own.

Every reader of committed offsets in the lab (checks, tests, lessons, the lag exporter) comes
here, and none uses ``AdminClient.list_consumer_group_offsets``. librdkafka's admin requests to a
group coordinator can crash the whole process when the coordinator moves or dies during a
request: an assertion in ``rd_kafka_enq_once_del_source_return`` (librdkafka issue 4605, a
use-after-free when the connection drops) or a segmentation fault (issue 5040: on
NOT_COORDINATOR the admin client's response handler dereferences the consumer-group state an
admin client does not have). Both were reproduced on the lab: one admin client polling groups'
offsets while a broker was killed and restarted aborted, or segfaulted, in each of two runs. The
same loop through ``Consumer.committed()`` lived through three kill, restart and preferred-leader
election rounds.

A consumer that never subscribes does not join its group: ``committed()`` only asks the group's
coordinator (OffsetFetch), through the consumer's group code, which follows a coordinator that
moves. Asking needs DESCRIBE on the group and the topic, as the admin call does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from lab_env import waiting

TIMEOUT_S = 10.0


class Cluster(Protocol):
    """What has a client configuration: the lab's ``Lab``, or the ``lab`` a check hands over."""

    def client_config(self, config: dict[str, Any] | None = None) -> dict[str, Any]: ...


Client = Cluster | dict[str, Any]


def _reader(client: Client, group: str) -> Consumer:
    config = client if isinstance(client, dict) else client.client_config()
    return Consumer({**config, "group.id": group, "enable.auto.commit": False, "log_level": 0})


def committed(
    client: Client,
    group: str,
    partitions: Iterable[TopicPartition],
    timeout: float = TIMEOUT_S,
) -> dict[tuple[str, int], int | None]:
    """``group``'s committed offset of each of ``partitions``: ``(topic, partition) -> offset``,
    None where the group has committed nothing (or does not exist).

    ``client`` is the lab (anything with ``client_config()``) or a client configuration.
    A coordinator that is moving (``waiting.TRANSIENT``: a request already sent to the old
    coordinator comes back with NOT_COORDINATOR) is asked again until ``timeout``, then a
    LabError says so. A refusal (GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED) is
    raised at once, as a KafkaException.
    """
    wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    with _reader(client, group) as reader:
        return waiting.until_answered(
            f"group {group!r}'s committed offsets",
            lambda: _offsets(reader.committed(wanted, timeout=_left(deadline))),
            timeout,
        )


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.1)


def _offsets(answer: list[TopicPartition]) -> dict[tuple[str, int], int | None]:
    out: dict[tuple[str, int], int | None] = {}
    for tp in answer:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
    return out


def topic_partitions(
    client: Client, *topics: str, timeout: float = TIMEOUT_S
) -> list[TopicPartition]:
    """Every partition of ``topics`` (all topics but Kafka's internal ones when none is named),
    from the cluster's metadata; a topic that does not exist has none."""
    with _reader(client, "lab-metadata") as reader:
        if len(topics) == 1:
            metadata = reader.list_topics(topics[0], timeout=timeout).topics
        else:
            metadata = reader.list_topics(timeout=timeout).topics
    named = set(topics)
    return [
        TopicPartition(name, p)
        for name, topic in sorted(metadata.items())
        if topic.error is None and (name in named if named else not name.startswith("__"))
        for p in sorted(topic.partitions)
    ]


def committed_on(
    client: Client,
    group: str,
    topic: str,
    partitions: int | None = None,
    timeout: float = TIMEOUT_S,
) -> dict[int, int | None]:
    """``group``'s committed offset per partition of ``topic`` (None: nothing committed).
    ``partitions`` is the topic's partition count; when None it is read from the metadata."""
    if partitions is None:
        wanted = topic_partitions(client, topic, timeout=timeout)
    else:
        wanted = [TopicPartition(topic, p) for p in range(partitions)]
    return {p: offset for (_, p), offset in committed(client, group, wanted, timeout).items()}
