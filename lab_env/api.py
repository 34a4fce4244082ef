"""What a notebook imports: clients with the lab's connection settings, faults, the cluster.

    from lab_env import lab
    producer = lab.producer({"acks": "all", "enable.idempotence": True})
    lab.create_topic("orders", partitions=6)
    lab.faults.kill(2)

Helpers remove boilerplate; they do not hide Kafka: every client is the real confluent-kafka
object, configured with the settings Kafka documents (passed as the usual dict).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from lab_env import health, security
from lab_env.backends import Backend, backend
from lab_env.config import LabConfig, load_config
from lab_env.errors import LabError

REGISTRY_TIMEOUT_S = 30
# Errors after which deleting a group is worth another try: the coordinator moved or is loading,
# a member has not left yet, or a request did not come back.
_GROUP_RETRIABLE = {
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "NON_EMPTY_GROUP",
    "_TIMED_OUT",
    "_TRANSPORT",
}
# confluent-kafka 2.16 serializers first ask the registry for subjects "associated" with a topic;
# Apicurio has no such API (404 on every new topic). Naming the strategy skips the lookup.
SERIALIZER_CONFIG = {"subject.name.strategy.type": "TOPIC"}


def with_prefix(prefix: str, name: str) -> str:
    """``prefix + name``, unless ``name`` already carries the prefix."""
    return name if name.startswith(prefix) else prefix + name


@dataclass
class BrokerInfo:
    id: int
    host: str
    port: int


class Lab:
    """The lab as notebooks see it, whichever backend is active."""

    def __init__(self, cfg: LabConfig | None = None) -> None:
        self.config = cfg or load_config()
        self.backend: Backend = backend(self.config)
        self._admin: AdminClient | None = None
        self._per_broker: list[AdminClient] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.config.bootstrap()

    @property
    def registry_url(self) -> str:
        return self.config.registry()

    @property
    def prometheus_url(self) -> str:
        return self.config.prometheus()

    @property
    def faults(self) -> Backend:
        """``kill``/``start``/``pause``/``resume`` a node (1, 2, 3 or "kafka-1"...)."""
        return self.backend

    # -- shared-cluster workshops (lab_env/workshop.py): each learner's own namespace -----------

    def topic(self, name: str) -> str:
        """``name`` in this learner's namespace (``alice.orders`` with prefix ``alice.``), where
        a workshop learner's ACLs allow it; ``name`` itself in single-user mode."""
        return with_prefix(self.config.prefix, name)

    def group(self, name: str) -> str:
        """A consumer group id in this learner's namespace (see ``topic``)."""
        return with_prefix(self.config.prefix, name)

    def client_config(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The lab's connection (and security) settings, overlaid with ``config``."""
        return {**self.config.client_config(), **(config or {})}

    def admin(self, config: dict[str, Any] | None = None) -> AdminClient:
        """The lab's admin client, one instance reused for the lab's lifetime.

        Reuse is not only cheaper: a client that is garbage-collected cancels its pending
        futures, so ``lab.admin().describe_configs(...)[r].result()`` would fail on a fresh,
        unreferenced client. With ``config`` overrides a new client is returned.
        """
        if config:
            return AdminClient(self.client_config(config))
        if self._admin is None:
            self._admin = AdminClient(self.client_config())
        return self._admin

    def reset_clients(self) -> None:
        """Forget the cached admin clients; the next call makes new ones. After the whole lab
        has restarted, a librdkafka client that lived through it can stay stuck "waiting for
        controller" while the cluster is healthy (seen in CI after `lab down` and `lab up`)."""
        self._admin = None
        self._per_broker = None

    def producer(self, config: dict[str, Any] | None = None) -> Producer:
        return Producer(self.client_config(config))

    def consumer(self, group_id: str, config: dict[str, Any] | None = None) -> Consumer:
        """A consumer in ``group_id``; starts from the earliest offset unless told otherwise."""
        return Consumer(
            self.client_config(
                {"group.id": group_id, "auto.offset.reset": "earliest", **(config or {})}
            )
        )

    # -- the secured listeners (module 09; see lab_env/security.py) ------------------------------

    def tls_config(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings for the mutual-TLS listener as principal ``User:<name>``: the
        lab's CA issues ``name`` a client certificate on first use."""
        return {**security.tls_config(self.config, name), **(config or {})}

    def sasl_config(
        self, user: str, password: str, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """librdkafka settings for the SASL_SSL listener as SCRAM-SHA-512 user ``user``."""
        return {**security.sasl_config(self.config, user, password), **(config or {})}

    def create_user(self, user: str, password: str) -> None:
        """Create (or reset the password of) SCRAM user ``user``."""
        security.upsert_user(self.admin(), user, password)

    def delete_user(self, user: str) -> None:
        """Delete SCRAM user ``user`` (fine if it does not exist)."""
        security.delete_user(self.admin(), user)

    def admin_sasl_config(self) -> dict[str, Any]:
        """The super user ``admin`` on the SASL_SSL listener (its password is generated by the
        lab and kept in the lab's home)."""
        return self.sasl_config(security.ADMIN, security.admin_password(self.config))

    def registry(self) -> SchemaRegistryClient:
        """confluent-kafka's registry client, with a timeout: it has none by default, and a
        request the server never answers would otherwise block a notebook forever."""
        return SchemaRegistryClient({"url": self.registry_url, "timeout": REGISTRY_TIMEOUT_S})

    # -- the cluster ----------------------------------------------------------------------------

    def brokers(self, timeout: float = 10.0) -> list[BrokerInfo]:
        md = self.admin().list_topics(timeout=timeout)
        return [
            BrokerInfo(b.id, b.host, b.port)
            for b in sorted(md.brokers.values(), key=lambda b: b.id)
        ]

    def describe(self) -> dict[str, Any]:
        """Cluster id, brokers, quorum leader, registry and Prometheus state, as plain data."""
        cluster = self.admin().describe_cluster(request_timeout=10).result()
        status = self.backend.status()
        return {
            "backend": self.backend.name,
            "cluster_id": cluster.cluster_id,
            "brokers": [{"id": n.id, "host": n.host, "port": n.port} for n in cluster.nodes],
            "quorum_leader": status["quorum_leader"],
            "under_replicated_partitions": status["under_replicated_partitions"],
            "registry": status["registry"],
            "registry_url": self.registry_url,
            "prometheus": status["prometheus"],
            "prometheus_url": self.prometheus_url,
        }

    def status(self) -> dict[str, Any]:
        return self.backend.status()

    def create_topic(
        self,
        name: str,
        partitions: int = 3,
        replication_factor: int = 3,
        config: dict[str, str] | None = None,
        exist_ok: bool = False,
    ) -> None:
        """Create a topic and wait until the lab's clients see a leader for every partition
        (``wait_for_topic``)."""
        topic = NewTopic(name, partitions, replication_factor, config=config or {})
        for attempt in (1, 2):
            try:
                self.admin().create_topics([topic], request_timeout=30)[name].result()
                break
            except KafkaException as exc:
                error = exc.args[0]
            if error.name() == "TOPIC_ALREADY_EXISTS":
                if exist_ok:
                    return
                if attempt == 2:
                    break  # the first attempt created it, then timed out waiting for the reply
            elif attempt == 1 and error.code() == KafkaError._TIMED_OUT:
                # "Failed while waiting for controller": a long-lived client can stay stuck
                # after the whole lab restarts, while a new one finds the controller at once.
                self.reset_clients()
                continue
            raise LabError(f"Creating topic {name!r} failed: {error.str()}") from None
        self.wait_for_topic(name, partitions)

    def wait_for_topic(self, name: str, partitions: int, timeout: float = 30.0) -> None:
        """Wait until ``lab.admin()`` and one client bootstrapped to each broker all show a
        leader for each of ``partitions`` partitions of ``name``.

        CreateTopics returns once the controller has committed the topic; each broker applies
        it a moment later, and until then answers a metadata request for it with
        UNKNOWN_TOPIC_OR_PART. librdkafka sends a client's metadata requests to a broker it
        already talks to, so ``lab.admin()`` may ask a broker the other clients did not (seen
        after `lab up`: lesson 02's warm-up then found no partition to write to). Producers
        and consumers wait for a topic's metadata themselves; code reading
        ``list_topics(...).partitions`` does not, hence ``lab.admin()`` is waited for too.
        """
        health.wait_for(
            f"topic {name!r} to appear in the metadata",
            lambda: all(
                self._has_leaders(c, name, partitions)
                for c in (self.admin(), *self._broker_admins())
            ),
            timeout=timeout,
            interval=0.1,
        )

    def _broker_admins(self) -> list[AdminClient]:
        """One admin client per broker, bootstrapped to that broker alone. Each keeps asking
        the broker it first settled on, which is not always its bootstrap broker (measured:
        three of them asked brokers 2, 2 and 3), so they widen the check, not complete it."""
        if self._per_broker is None:
            self._per_broker = [
                AdminClient(self.client_config({"bootstrap.servers": f"{b.host}:{b.port}"}))
                for b in self.brokers()
            ]
        return self._per_broker

    @staticmethod
    def _has_leaders(client: AdminClient, name: str, partitions: int) -> bool:
        topic = client.list_topics(name, timeout=10).topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) < partitions:
            return False
        return all(p.leader >= 0 for p in topic.partitions.values())

    def delete_groups(self, *groups: str, timeout: float = 60.0) -> None:
        """Delete consumer groups (their committed offsets); a group already gone is fine.

        Each attempt uses a new admin client. librdkafka caches a group's coordinator, and every
        request refreshes the entry, so after a broker restart moves the coordinator a client that
        keeps retrying keeps asking the old one and gets NOT_COORDINATOR for as long as it tries
        (measured: 15 of 15 attempts over 30 s; a new client succeeded at once).
        """
        left = sorted(set(groups))
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while left:
            client = AdminClient(self.client_config())  # referenced until its futures finish
            futures = client.delete_consumer_groups(left, request_timeout=10)
            for group, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.name() not in _GROUP_RETRIABLE | {"GROUP_ID_NOT_FOUND"}:
                        raise LabError(f"Deleting group {group!r} failed: {error.str()}") from None
                    if error.name() != "GROUP_ID_NOT_FOUND":
                        last[group] = error.name()
                        continue
                left.remove(group)
                last.pop(group, None)
            if left and time.monotonic() > deadline:
                reasons = ", ".join(f"{g} ({last[g]})" for g in left)
                raise LabError(
                    f"Could not delete group(s) {reasons} within {timeout:.0f} s. A group with "
                    "live members (NON_EMPTY_GROUP) must have its consumers closed first."
                )
            if left:
                time.sleep(0.5)

    def delete_topic(self, name: str) -> None:
        future = self.admin().delete_topics([name], request_timeout=30)[name]
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise LabError(f"Deleting topic {name!r} failed: {exc.args[0].str()}") from None
