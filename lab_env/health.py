"""Real health: what the cluster, the registry and Prometheus say about themselves."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from lab_env import monitoring
from lab_env.config import NODE_IDS, LabConfig

LEADER_METRIC = "kafka_server_raft_metrics_current_leader"


ACTIVE_METRIC = "kafka_controller_kafkacontroller_activecontrollercount"
# Kafka's BrokerState: 1 STARTING, 2 RECOVERY (catching up with the metadata log), 3 RUNNING
# (registered and unfenced: the controller gives it leaderships and clients may use it).
STATE_METRIC = "kafka_server_kafkaserver_brokerstate"
RUNNING = 3


@dataclass(frozen=True)
class NodeView:
    """What one node says of the KRaft quorum: the leader it follows (-1: none) and whether its
    own controller is the active one."""

    leader: int
    active: bool


def _node_view(cfg: LabConfig, node: int) -> NodeView | None:
    samples = monitoring.node_samples(cfg, node, (LEADER_METRIC, ACTIVE_METRIC), timeout=3.0)
    if samples is None or LEADER_METRIC not in samples:
        return None
    return NodeView(int(samples[LEADER_METRIC]), samples.get(ACTIVE_METRIC, 0.0) >= 1)


def broker_running(cfg: LabConfig, node: int) -> bool:
    """Whether ``node``'s broker says it is RUNNING (unfenced), from its own exporter. The
    cluster's metadata is no witness for a node that has just been restarted: it still lists the
    node's previous registration until that one's session times out."""
    samples = monitoring.node_samples(cfg, node, (STATE_METRIC,), timeout=3.0)
    return samples is not None and samples.get(STATE_METRIC) == RUNNING


def node_views(cfg: LabConfig, nodes: tuple[int, ...] = NODE_IDS) -> dict[int, NodeView | None]:
    """Each node's own view of the quorum (from its JMX exporter; None: it does not answer).

    The exporters are scraped in parallel: a scrape costs a broker a few hundred milliseconds.
    """
    if not nodes:
        return {}
    with ThreadPoolExecutor(len(nodes)) as pool:
        return dict(zip(nodes, pool.map(lambda n: _node_view(cfg, n), nodes), strict=True))


def majority_leader(views: dict[int, NodeView | None]) -> int | None:
    leaders = [v.leader for v in views.values() if v is not None and v.leader >= 0]
    for leader in set(leaders):
        if leaders.count(leader) > len(NODE_IDS) // 2:
            return leader
    return None


def quorum_leaders(cfg: LabConfig, nodes: tuple[int, ...] = NODE_IDS) -> dict[int, int | None]:
    """Each node's own view of the KRaft quorum leader; -1: no leader, None: no answer."""
    return {n: (v.leader if v else None) for n, v in node_views(cfg, nodes).items()}


def quorum_leader(cfg: LabConfig, nodes: tuple[int, ...] = NODE_IDS) -> int | None:
    """The leader a majority of the voters report (Raft's own definition of elected), if any."""
    return majority_leader(node_views(cfg, nodes))


def stuck_controller(views: dict[int, NodeView | None]) -> int | None:
    """The node a majority elected quorum leader whose controller is nonetheless not active
    (None: no such node). Such a node refuses every metadata change with "The active
    controller appears to be node N", naming itself; seen here after `lab down` and `lab up`,
    for minutes, until the node was restarted. A moment after an election this is normal:
    call it again before concluding."""
    leader = majority_leader(views)
    view = views.get(leader) if leader is not None else None
    return leader if view is not None and not view.active else None


def admin_config(cfg: LabConfig) -> dict[str, Any]:
    """Settings for a probe's admin client: short timeouts, and silent (a probe expects
    refusals)."""
    return {**cfg.client_config(), "socket.connection.setup.timeout.ms": 2000, "log_level": 0}


@dataclass
class ClusterView:
    brokers: list[int]
    under_replicated: int
    topics: int


def cluster_view(cfg: LabConfig, timeout: float = 3.0) -> ClusterView | None:
    """Registered brokers and under-replicated partitions, from metadata (None: no answer)."""
    try:
        with AdminClient(admin_config(cfg)) as client:
            md = client.list_topics(timeout=timeout)
    except Exception:  # KafkaException or a timeout: the cluster does not answer
        return None
    urp = sum(
        1
        for topic in md.topics.values()
        for p in topic.partitions.values()
        if len(p.isrs) < len(p.replicas)
    )
    return ClusterView(brokers=sorted(md.brokers), under_replicated=urp, topics=len(md.topics))


def preferred_election(
    admin: AdminClient, partitions: list[TopicPartition] | None = None, timeout: float | None = None
) -> dict[TopicPartition, str]:
    """Ask the controller to move each partition's leadership to its preferred replica (every
    partition of the cluster when ``partitions`` is None). Each partition's outcome:
    ``"elected"``, or the error's name (ELECTION_NOT_NEEDED when the preferred replica already
    leads, PREFERRED_LEADER_NOT_AVAILABLE while it is not in sync)."""
    # (confluent-kafka 2.16's elect_leaders rejects keyword arguments such as request_timeout)
    outcome = {}
    for tp, error in (
        admin.elect_leaders(ElectionType.PREFERRED, partitions).result(timeout).items()
    ):
        if isinstance(error, KafkaException):
            error = error.args[0]
        outcome[tp] = "elected" if error is None else error.name()
    return outcome


def elect_preferred_leaders(cfg: LabConfig, timeout: float = 10.0) -> tuple[int, int]:
    """One preferred leader election over every partition of the cluster: (partitions whose
    leadership moved to their preferred replica, partitions whose preferred replica cannot lead
    yet because it is not in sync)."""
    with AdminClient(admin_config(cfg)) as admin:
        outcome = Counter(preferred_election(admin, None, timeout).values())
    moved = outcome.pop("elected", 0)
    outcome.pop("ELECTION_NOT_NEEDED", None)
    return moved, sum(outcome.values())
