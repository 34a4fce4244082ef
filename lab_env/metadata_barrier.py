"""The metadata barrier: wait until every live broker has applied what the controller committed.

A KRaft controller answers a metadata change (CreateTopics, DeleteTopics, IncrementalAlterConfigs,
CreateAcls, AlterUserScramCredentials, ...) once the change is committed to the
``__cluster_metadata`` log. Each broker applies that log on its own thread a moment later; until
it has, it answers as if the change had not happened: a new topic is UNKNOWN_TOPIC_OR_PART, a new
ACL still denies, a new SCRAM user cannot log in. A client picks the broker it asks, so a
program that makes a change and then uses it fails now and then, more often on a busy machine.

Kafka's own test harness waits for this (``TestUtils.ensureConsistentKRaftMetadata``: every
broker's last applied metadata offset at least the controller's last committed one), and so does
the lab: after every metadata change it makes, and wherever ``lab.wait_for_metadata()`` is called
after a change made some other way (a learner's own admin client).

The offsets are read from each node's JMX exporter, scraped in parallel:
``kafka_server_raft_metrics_high_watermark`` (the quorum's committed offset, plus one) and
``kafka_server_broker_metadata_metrics_last_applied_record_offset``, which the broker's metadata
loader sets only after every publisher (metadata cache, ACLs, SCRAM credentials, quotas) has
taken the change. Why this source: see docs/RELIABILITY.md, which gives the measurements.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient

from lab_env import monitoring
from lab_env.config import LabConfig
from lab_env.waiting import NotYet, wait_for

HIGH_WATERMARK = "kafka_server_raft_metrics_high_watermark"
APPLIED = "kafka_server_broker_metadata_metrics_last_applied_record_offset"
SCRAPE_TIMEOUT_S = 5.0
TIMEOUT_S = 30.0
# Probes start 20 ms apart (most waits end within a tenth of a second) and back off to half a
# second: every scrape makes a broker's exporter collect all its JMX beans, and a barrier polled
# every 20 ms while a node starts (the starting node has the whole log to apply) kept two cores
# busy with the other brokers' collections. Measured on 2 cores: `lab start 2`, when this barrier
# was its only real wait, 14.2 -> 8.7 s.
FIRST_PAUSE_S, MAX_PAUSE_S = 0.02, 0.5


@dataclass(frozen=True)
class NodeOffsets:
    high_watermark: int  # the next offset to commit, as this node knows it (-1: unknown)
    applied: int  # the offset of the last metadata record this node's broker has applied


@dataclass(frozen=True)
class Applied:
    """What the barrier waited for: the committed offset, each broker's applied offset when the
    wait ended, and how long it took."""

    committed: int
    applied: dict[int, int]
    seconds: float


def read_node(cfg: LabConfig, node: int, timeout: float = SCRAPE_TIMEOUT_S) -> NodeOffsets | None:
    """One node's offsets from its exporter (None: it does not answer)."""
    samples = monitoring.node_samples(cfg, node, (HIGH_WATERMARK, APPLIED), timeout)
    if samples is None or HIGH_WATERMARK not in samples or APPLIED not in samples:
        return None  # still starting: the metrics appear once the node has joined the quorum
    return NodeOffsets(int(samples[HIGH_WATERMARK]), int(samples[APPLIED]))


def read(cfg: LabConfig, nodes: Iterable[int]) -> dict[int, NodeOffsets | None]:
    """Every node's offsets, scraped in parallel."""
    nodes = tuple(nodes)
    if not nodes:
        return {}
    with ThreadPoolExecutor(len(nodes)) as pool:
        return dict(zip(nodes, pool.map(lambda n: read_node(cfg, n), nodes), strict=True))


def committed_offset(views: dict[int, NodeOffsets | None]) -> int | None:
    """The offset of the last committed metadata record: the highest high watermark any node
    reports, less one. No node's high watermark passes the leader's, and the leader's covers
    every change the controller has answered."""
    marks = [v.high_watermark for v in views.values() if v is not None and v.high_watermark > 0]
    return max(marks) - 1 if marks else None


def wait_applied(cfg: LabConfig, nodes: Iterable[int], timeout: float = TIMEOUT_S) -> Applied:
    """Until each of ``nodes`` (the live brokers) has applied every metadata record committed
    when this was called. A node whose exporter does not answer is waited for, and named if the
    time runs out."""
    nodes = tuple(nodes)
    start = time.monotonic()
    if not nodes:
        return Applied(-1, {}, 0.0)
    target: int | None = None
    last: dict[int, NodeOffsets | None] = {}

    def applied() -> bool | NotYet:
        nonlocal target, last
        last = read(cfg, nodes)
        if target is None:
            target = committed_offset(last)
            if target is None:
                return NotYet("no node reports the quorum's high watermark")
        behind = [
            f"kafka-{n} does not answer" if v is None else f"kafka-{n} at {v.applied}"
            for n, v in last.items()
            if v is None or v.applied < target
        ]
        if behind:
            return NotYet(f"committed offset {target}; {', '.join(behind)}")
        return True

    wait_for(
        "every live broker to apply the cluster metadata",
        applied,
        timeout,
        interval=FIRST_PAUSE_S,
        max_interval=MAX_PAUSE_S,
        hint="See `lab status`.",
    )
    assert target is not None
    return Applied(
        target,
        {n: v.applied for n, v in last.items() if v is not None},
        time.monotonic() - start,
    )


def wait_topic_on_every_broker(
    config: dict[str, Any], topic: str, present: bool, timeout: float = TIMEOUT_S
) -> float:
    """For a cluster whose offsets the lab cannot read (the external backend): until every
    broker, asked on its own, shows ``topic`` with a leader for each partition (``present``) or
    does not know it. A client bootstrapped to one broker sends its first request there, so each
    answer is that broker's own. Only a topic can be checked this way; seconds taken."""
    start = time.monotonic()
    quiet = {**config, "socket.connection.setup.timeout.ms": 2000, "log_level": 0}
    with AdminClient(quiet) as admin:
        brokers = sorted(admin.list_topics(timeout=10).brokers.values(), key=lambda b: b.id)

    def shown(address: str) -> bool:
        with AdminClient({**quiet, "bootstrap.servers": address}) as client:
            entry = client.list_topics(topic, timeout=5).topics.get(topic)
        return bool(
            entry is not None
            and entry.error is None
            and entry.partitions
            and all(p.leader >= 0 for p in entry.partitions.values())
        )

    def everywhere() -> bool | NotYet:
        behind = [b.id for b in brokers if shown(f"{b.host}:{b.port}") != present]
        if behind:
            state = "without" if present else "still with"
            return NotYet(f"broker(s) {', '.join(map(str, behind))} {state} {topic!r}")
        return True

    wait_for(f"every broker to {'know' if present else 'forget'} {topic!r}", everywhere, timeout)
    return time.monotonic() - start
