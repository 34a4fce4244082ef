"""What a notebook imports: clients with the lab's connection settings, faults, the cluster.

    from lab_env import lab
    producer = lab.producer({"acks": "all", "enable.idempotence": True})
    lab.create_topic("orders", partitions=6)
    lab.faults.kill(2)

Helpers remove boilerplate; they do not hide Kafka: every client is the real confluent-kafka
object, configured with the settings Kafka documents (passed as the usual dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from lab_env import clients, metadata_barrier, security, waiting
from lab_env.backends import Backend, backend
from lab_env.clients import AdminClient
from lab_env.config import LabConfig, load_config
from lab_env.errors import LabError
from lab_env.metadata_barrier import Applied

REGISTRY_TIMEOUT_S = 30
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
        """A new admin client with the lab's connection settings (overlaid with ``config``).

        Each call makes a new client: one that lived through broker restarts, or `lab down` and
        `lab up`, kept a stale view of the cluster. Its futures keep it alive until they are
        done, so ``lab.admin().describe_configs(...)[r].result()`` works; ``with lab.admin() as
        admin:`` closes it at the end of the block.
        """
        return clients.admin(self.client_config(config))

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
        """Create (or reset the password of) SCRAM user ``user``; it can log in on every broker
        when this returns."""
        with self.admin() as admin:
            security.upsert_user(admin, user, password)
        self.wait_for_metadata()

    def delete_user(self, user: str) -> None:
        """Delete SCRAM user ``user`` (fine if it does not exist), on every broker."""
        with self.admin() as admin:
            security.delete_user(admin, user)
        self.wait_for_metadata()

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
        with self.admin() as admin:
            md = admin.list_topics(timeout=timeout)
        return [
            BrokerInfo(b.id, b.host, b.port)
            for b in sorted(md.brokers.values(), key=lambda b: b.id)
        ]

    def describe(self) -> dict[str, Any]:
        """Cluster id, brokers, quorum leader, registry and Prometheus state, as plain data."""
        with self.admin() as admin:
            cluster = admin.describe_cluster(request_timeout=10).result()
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

    def wait_for_metadata(self, timeout: float = metadata_barrier.TIMEOUT_S) -> Applied:
        """Wait until every live broker has applied every metadata change committed so far
        (topics, configs, ACLs, SCRAM users), and say what was waited for.

        The lab does this after each change it makes; call it after a change made with a client
        of your own (``create_acls``, ``create_partitions``, ``incremental_alter_configs``): the
        controller answers once the change is committed, and each broker applies it a moment
        later. See ``lab_env.metadata_barrier``. On the external backend the lab cannot read
        the brokers' offsets, and this returns at once (``committed`` -1).
        """
        nodes = self.backend.live_nodes()
        if nodes is None:
            return Applied(-1, {}, 0.0)
        return metadata_barrier.wait_applied(self.config, nodes, timeout)

    def _topic_settled(self, name: str, present: bool) -> None:
        """After the lab created or deleted ``name``: every live broker has applied it."""
        if self.backend.live_nodes() is None:
            metadata_barrier.wait_topic_on_every_broker(self.client_config(), name, present)
        else:
            self.wait_for_metadata()

    def create_topic(
        self,
        name: str,
        partitions: int = 3,
        replication_factor: int = 3,
        config: dict[str, str] | None = None,
        exist_ok: bool = False,
    ) -> None:
        """Create a topic; every live broker knows it, with a leader for each partition, when
        this returns (``wait_for_metadata``)."""
        topic = NewTopic(name, partitions, replication_factor, config=config or {})
        with self.admin() as admin:
            try:
                admin.create_topics([topic], request_timeout=30)[name].result()
            except KafkaException as exc:
                error = exc.args[0]
                if not (exist_ok and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                    raise LabError(f"Creating topic {name!r} failed: {error.str()}") from None
        self._topic_settled(name, present=True)

    def delete_groups(self, *groups: str, timeout: float = 60.0) -> None:
        """Delete consumer groups (their committed offsets); a group already gone is fine.

        A group whose coordinator is moving, or whose last member is still leaving
        (NON_EMPTY_GROUP), is asked again until ``timeout``; a group with live members must have
        its consumers closed first.
        """
        left = sorted(set(groups))

        def deleted() -> bool | waiting.NotYet:
            busy = []
            with self.admin() as admin:  # a new client each time: it finds a moved coordinator
                for group, future in admin.delete_consumer_groups(left, request_timeout=10).items():
                    try:
                        future.result()
                    except KafkaException as exc:
                        code = waiting.error_code(exc)
                        if code == KafkaError.NON_EMPTY_GROUP:
                            busy.append(group)
                            continue
                        if code != KafkaError.GROUP_ID_NOT_FOUND:
                            raise
                    left.remove(group)
            if busy:
                return waiting.NotYet(f"{', '.join(busy)} still has members (NON_EMPTY_GROUP)")
            return True

        what = f"group(s) {', '.join(left)} to be deleted"
        hint = "A group with live members must have its consumers closed first."
        try:
            waiting.wait_for(what, deleted, timeout, interval=0.5, hint=hint)
        except KafkaException as exc:
            why = waiting.describe(exc)
            raise LabError(f"Deleting group(s) {', '.join(left)} failed: {why}") from None

    def delete_topic(self, name: str) -> None:
        """Delete a topic (fine if it does not exist); gone from every live broker on return."""
        with self.admin() as admin:
            try:
                admin.delete_topics([name], request_timeout=30)[name].result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise LabError(f"Deleting topic {name!r} failed: {exc.args[0].str()}") from None
        self._topic_settled(name, present=False)
