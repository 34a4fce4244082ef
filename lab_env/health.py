"""Real health: what the cluster, the registry and Prometheus say about themselves."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import requests
from confluent_kafka.admin import AdminClient

from lab_env import monitoring
from lab_env.config import NODE_IDS, LabConfig
from lab_env.errors import LabError

T = TypeVar("T")
LEADER_METRIC = "kafka_server_raft_metrics_current_leader"


def _leader_view(cfg: LabConfig, node: int) -> int | None:
    try:
        value = monitoring.scrape(monitoring.exporter_url(cfg, node), timeout=3.0).get(
            LEADER_METRIC
        )
    except requests.RequestException:
        return None
    return int(value) if value is not None else None


def quorum_leaders(cfg: LabConfig, nodes: tuple[int, ...] = NODE_IDS) -> dict[int, int | None]:
    """Each node's own view of the KRaft quorum leader (from its JMX exporter); -1: no leader.

    The exporters are scraped in parallel: a scrape costs a broker a few hundred milliseconds.
    """
    if not nodes:
        return {}
    with ThreadPoolExecutor(len(nodes)) as pool:
        return dict(zip(nodes, pool.map(lambda n: _leader_view(cfg, n), nodes), strict=True))


def quorum_leader(cfg: LabConfig, nodes: tuple[int, ...] = NODE_IDS) -> int | None:
    """The leader a majority of the voters report (Raft's own definition of elected), if any."""
    views = [v for v in quorum_leaders(cfg, nodes).values() if v is not None and v >= 0]
    for leader in set(views):
        if views.count(leader) > len(NODE_IDS) // 2:
            return leader
    return None


def admin(cfg: LabConfig) -> AdminClient:
    """An admin client for probing: short timeouts, and silent (a probe expects refusals)."""
    return AdminClient(
        {**cfg.client_config(), "socket.connection.setup.timeout.ms": 2000, "log_level": 0}
    )


@dataclass
class ClusterView:
    brokers: list[int]
    under_replicated: int
    topics: int


def cluster_view(
    cfg: LabConfig, timeout: float = 3.0, client: AdminClient | None = None
) -> ClusterView | None:
    """Registered brokers and under-replicated partitions, from metadata (None: no answer)."""
    try:
        md = (client or admin(cfg)).list_topics(timeout=timeout)
    except Exception:  # KafkaException or a timeout: the cluster does not answer
        return None
    urp = sum(
        1
        for topic in md.topics.values()
        for p in topic.partitions.values()
        if len(p.isrs) < len(p.replicas)
    )
    return ClusterView(brokers=sorted(md.brokers), under_replicated=urp, topics=len(md.topics))


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    fail: Callable[[], str | None] = lambda: None,
    interval: float = 0.5,
) -> T:
    """Poll ``probe`` until it returns something truthy; ``fail`` may abort early with a reason."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        reason = fail()
        if reason:
            raise LabError(reason)
        if time.monotonic() > deadline:
            raise LabError(
                f"Timed out after {timeout:.0f} s waiting for {what}. "
                "See `lab logs` and `lab status`."
            )
        time.sleep(interval)
