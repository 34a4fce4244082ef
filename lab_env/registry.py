"""The embedded backend's schema registry: Apicurio Registry with its Confluent-compatible API.

Apicurio 3 ships a runnable Quarkus distribution on Maven Central. With ``kafkasql`` storage it
keeps every change in a Kafka topic (``kafkasql-journal``) of the lab's own cluster and rebuilds
its state from that topic at start, so schemas survive ``lab down`` / ``lab up`` and are wiped by
``lab reset`` together with the cluster. Clients use the Confluent API at ``/apis/ccompat/v7``.
"""

from __future__ import annotations

import requests
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from lab_env import artifacts
from lab_env.config import LabConfig
from lab_env.java import Java

# Confluent Schema Registry's default; Apicurio's is to check nothing.
DEFAULT_COMPATIBILITY = "BACKWARD"
# Each registry start reads its snapshots and journal from the beginning in consumer groups of its
# own, named this prefix and a random UUID (Apicurio's default prefix is "apicurio-"), and
# commits offsets there. The groups outlive the process: forget_old_groups deletes them.
GROUP_PREFIX = "kafka-lab-registry-"


def jvm_argv(cfg: LabConfig, java: Java) -> list[str]:
    return [
        java.path,
        "-Xms64m",
        f"-Xmx{cfg.heaps.registry}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # a registry serves few requests; start fast, stay small
        f"-Dquarkus.http.host={cfg.host}",
        f"-Dquarkus.http.port={cfg.ports.registry}",
        # Quarkus' management interface (health, metrics) would listen on 0.0.0.0:9000.
        f"-Dquarkus.management.host={cfg.host}",
        f"-Dquarkus.management.port={cfg.ports.registry_management}",
        "-Dapicurio.storage.kind=kafkasql",
        # At start-up the storage polls the snapshots topic twice with this timeout (5 s by
        # default) before it serves; on a local cluster 0.5 s is plenty.
        "-Dapicurio.kafkasql.consumer.poll.timeout=500",
        f"-Dapicurio.kafkasql.consumer.group-prefix={GROUP_PREFIX}",
        f"-Dapicurio.kafkasql.bootstrap.servers={cfg.bootstrap()}",
        "-Dquarkus.log.console.format=%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
        "-jar",
        str(artifacts.registry_jar(cfg)),
    ]


def answering(cfg: LabConfig, timeout: float = 2.0) -> bool:
    try:
        return requests.get(f"{cfg.registry()}/subjects", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def replayed(cfg: LabConfig, timeout: float = 2.0) -> bool:
    """Whether the registry has rebuilt its state from the journal, not only opened its port.

    Apicurio serves HTTP several seconds (4.5 to 11 s measured here) before its kafkasql
    storage has read the journal back: in that window ``/subjects`` answers 200 although the
    state from before ``lab down`` is not rebuilt yet. Its readiness check (``/health/ready`` on
    the management port) turns UP only once the storage has read its own bootstrap marker,
    written after everything already in the journal.
    """
    return _ready(cfg, timeout) and answering(cfg, timeout)


def _ready(cfg: LabConfig, timeout: float = 2.0) -> bool:
    url = f"http://{cfg.host}:{cfg.ports.registry_management}/health/ready"
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def state(cfg: LabConfig) -> str:
    """``answering``, ``reading back its journal`` (port open, state not rebuilt yet) or
    ``down``."""
    if not answering(cfg):
        return "down"
    return "answering" if _ready(cfg) else "reading back its journal"


def ensure_default_compatibility(cfg: LabConfig) -> str:
    """Give the registry Confluent's default (BACKWARD) unless a global level was chosen already."""
    url = f"{cfg.registry()}/config"
    current = requests.get(url, timeout=10)
    level = current.json().get("compatibilityLevel") if current.ok else None
    if level in (None, "NONE") and not _global_rule_set(cfg):
        requests.put(
            url, json={"compatibility": DEFAULT_COMPATIBILITY}, timeout=10
        ).raise_for_status()
        return DEFAULT_COMPATIBILITY
    return str(level)


def _global_rule_set(cfg: LabConfig) -> bool:
    """Whether someone set a global compatibility rule on purpose (even NONE)."""
    base = cfg.registry().rsplit("/apis/", 1)[0]
    try:
        rules = requests.get(f"{base}/apis/registry/v3/admin/rules", timeout=10)
    except requests.RequestException:
        return False
    return rules.ok and "COMPATIBILITY" in rules.json()


def forget_old_groups(admin: AdminClient, timeout: float = 10.0) -> list[str]:
    """Delete the registry's consumer groups that have no member left (GROUP_PREFIX): those of
    earlier registry processes, and any the running one has finished with. A group with a member
    (the running registry's journal reader) is kept. Returns those deleted.

    Left alone they pile up, two per registry start, each listed by ``kafka-consumer-groups``,
    exported by the lag exporter and so read by it on every scrape."""
    listing = admin.list_consumer_groups(request_timeout=timeout).result()
    mine = [g.group_id for g in listing.valid if g.group_id.startswith(GROUP_PREFIX)]
    if not mine:
        return []
    described = admin.describe_consumer_groups(mine, request_timeout=timeout)
    old = [g for g, f in described.items() if f.result().state == ConsumerGroupState.EMPTY]
    if not old:
        return []
    deleted = []
    for group, future in admin.delete_consumer_groups(old, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException:  # a member joined meanwhile, or it is gone: not ours to wait for
            continue
        deleted.append(group)
    return sorted(deleted)
