"""Strimzi resources for running the lab's cluster on Kubernetes, rendered from lab_env.config.

Like ``docker-compose.yml`` (lab_env/compose.py), the manifests are generated, not written: the
Kafka version, the durability settings (replication factor, ``min.insync.replicas``, the offsets
and transaction-state topics) and the JMX exporter rules are the ones the laptop lab runs with,
so what a learner measured locally is what the cluster is configured for.

Everything is Kafka 4.x and KRaft only (ZooKeeper was removed in Kafka 4.0): a Kafka resource
annotated for node pools and KRaft, two KafkaNodePools (controllers, brokers), KafkaTopics,
least-privilege KafkaUsers (SCRAM-SHA-512, simple authorization) and a KEDA ScaledObject that
scales a consumer Deployment on consumer lag, never beyond the topic's partition count.

Functions return plain dicts; :func:`dump` renders them as multi-document YAML. :func:`validate`
checks them against the lab's own strict schemas (lab_env/strimzi_schemas.py: written from
Strimzi's documented API, *not* Strimzi's CRDs) and cross-checks the references between them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from jsonschema import Draft202012Validator

from lab_env.config import BROKER_SETTINGS, KAFKA_VERSION, NODE_IDS, REPO
from lab_env.errors import LabError
from lab_env.security import ADMIN
from lab_env.strimzi_schemas import CLUSTER_LABEL, KEDA_API, SCHEMAS, STRIMZI_API

Manifest = dict[str, Any]

CLUSTER = "kafka-lab"
NAMESPACE = "kafka"
METRICS_KEY = "kafka-metrics-config.yml"
JMX_RULES = REPO / "lab_env" / "resources" / "kafka-jmx-rules.yaml"
PLAIN_PORT, TLS_PORT = 9092, 9093

# Broker settings that size the laptop lab, not a cluster: left to Kafka's defaults on Kubernetes.
LAPTOP_ONLY: dict[str, str] = {
    "log.cleaner.dedupe.buffer.size": "shrunk to fit three brokers in a laptop's memory",
    "group.initial.rebalance.delay.ms": "0 makes small lab groups start at once; production "
    "keeps the 3 s default so a rolling deploy joins in one rebalance",
    "offsets.topic.num.partitions": "12 keeps a laptop's first group join quick; the default 50 "
    "spreads group coordinators over many brokers",
    "transaction.state.log.num.partitions": "sized for the laptop, like the offsets topic",
    "metadata.log.max.snapshot.interval.ms": "a snapshot a minute keeps start-up replay short for "
    "a lab restarted many times a day; the hourly default suits brokers that run for weeks",
}
# Settings Strimzi manages itself and refuses in spec.kafka.config (listeners, security, storage,
# KRaft roles), after Strimzi's documented list of forbidden options.
STRIMZI_MANAGED = (
    "listeners",
    "advertised.",
    "broker.",
    "listener.",
    "host.name",
    "port",
    "inter.broker.listener.name",
    "sasl.",
    "ssl.",
    "security.",
    "password.",
    "log.dir",
    "zookeeper.",
    "authorizer.",
    "super.user",
    "node.id",
    "process.roles",
    "controller.",
    "metadata.log.dir",
)

# -- the cluster ---------------------------------------------------------------------------------


def _typed(value: str) -> int | bool | str:
    """``"3"`` -> 3, ``"false"`` -> False: the YAML a person would write."""
    if value in ("true", "false"):
        return value == "true"
    return int(value) if value.lstrip("-").isdigit() else value


def broker_config(settings: Mapping[str, str] = BROKER_SETTINGS) -> dict[str, int | bool | str]:
    """The lab's broker settings that belong on a real cluster (``LAPTOP_ONLY`` left out)."""
    return {k: _typed(v) for k, v in settings.items() if k not in LAPTOP_ONLY}


def kafka_cluster(
    name: str = CLUSTER,
    namespace: str = NAMESPACE,
    settings: Mapping[str, str] = BROKER_SETTINGS,
    version: str = KAFKA_VERSION,
    super_users: Sequence[str] = (ADMIN,),
) -> Manifest:
    """The ``Kafka`` resource: KRaft with node pools, a plain and a SCRAM-over-TLS listener,
    simple (StandardAuthorizer) authorization, the lab's durability settings, JMX metrics."""
    return {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
        },
        "spec": {
            "kafka": {
                "version": version,
                "listeners": [
                    {"name": "plain", "port": PLAIN_PORT, "type": "internal", "tls": False},
                    {
                        "name": "tls",
                        "port": TLS_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                    },
                ],
                "authorization": {"type": "simple", "superUsers": list(super_users)},
                "config": broker_config(settings),
                "metricsConfig": {
                    "type": "jmxPrometheusExporter",
                    "valueFrom": {
                        "configMapKeyRef": {"name": f"{name}-metrics", "key": METRICS_KEY}
                    },
                },
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }


def metrics_config_map(cluster: str = CLUSTER, namespace: str = NAMESPACE) -> Manifest:
    """The JMX exporter rules the laptop lab's brokers use, as the ConfigMap Kafka points to."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{cluster}-metrics", "namespace": namespace},
        "data": {METRICS_KEY: JMX_RULES.read_text()},
    }


def node_pool(
    name: str,
    roles: Sequence[str],
    replicas: int,
    sizes: Sequence[str],
    cluster: str = CLUSTER,
    namespace: str = NAMESPACE,
) -> Manifest:
    """A ``KafkaNodePool``: JBOD volumes of ``sizes``; the first also holds the KRaft metadata
    log (``kraftMetadata: shared``: every KRaft node keeps a copy, on exactly one volume)."""
    volumes = [
        {"id": i, "type": "persistent-claim", "size": size, "deleteClaim": False}
        for i, size in enumerate(sizes)
    ]
    volumes[0]["kraftMetadata"] = "shared"
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaNodePool",
        "metadata": {"name": name, "namespace": namespace, "labels": {CLUSTER_LABEL: cluster}},
        "spec": {
            "replicas": replicas,
            "roles": list(roles),
            "storage": {"type": "jbod", "volumes": volumes},
        },
    }


# -- topics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    replicas: int = int(BROKER_SETTINGS["default.replication.factor"])
    config: dict[str, Any] = field(default_factory=dict)


WEEK_MS = 7 * 24 * 3600 * 1000
CASE_STUDY_TOPICS = (
    Topic("order.created", 12, config={"retention.ms": WEEK_MS}),
    Topic("inventory.reserved", 6, config={"retention.ms": WEEK_MS}),
    Topic("payment.processed", 6, config={"retention.ms": WEEK_MS}),
    Topic("shipment.dispatched", 6, config={"retention.ms": WEEK_MS}),
)


def kafka_topic(topic: Topic, cluster: str = CLUSTER, namespace: str = NAMESPACE) -> Manifest:
    min_isr = _typed(BROKER_SETTINGS["min.insync.replicas"])
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": {
            "name": topic.name,
            "namespace": namespace,
            "labels": {CLUSTER_LABEL: cluster},
        },
        "spec": {
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": {"min.insync.replicas": min_isr, **topic.config},
        },
    }


# -- users and ACLs -----------------------------------------------------------------------------


def acl(
    resource: str,
    name: str | None,
    operations: Sequence[str],
    pattern: str = "literal",
    permission: str = "allow",
) -> dict[str, Any]:
    """One Strimzi ACL rule (``resource`` is topic, group, cluster or transactionalId)."""
    target: dict[str, Any] = {"type": resource}
    if resource != "cluster":
        target.update(name=name, patternType=pattern)
    return {"resource": target, "operations": list(operations), "type": permission}


def kafka_user(
    name: str, acls: Sequence[dict[str, Any]], cluster: str = CLUSTER, namespace: str = NAMESPACE
) -> Manifest:
    """A SCRAM-SHA-512 user (the User Operator creates its password Secret) with its ACLs."""
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {"name": name, "namespace": namespace, "labels": {CLUSTER_LABEL: cluster}},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": list(acls)},
        },
    }


def producer_user(name: str, topic: str) -> Manifest:
    """Writes ``topic`` and nothing else. WRITE implies DESCRIBE, and an idempotent producer has
    not needed IdempotentWrite on the cluster since Kafka 2.8."""
    return kafka_user(name, [acl("topic", topic, ["Write"])])


def consumer_user(name: str, topic: str, group: str) -> Manifest:
    """Reads ``topic`` as a member of ``group`` (READ on both: joining and committing)."""
    return kafka_user(name, [acl("topic", topic, ["Read"]), acl("group", group, ["Read"])])


def team_user(name: str, prefix: str) -> Manifest:
    """A team owning a namespace of topics and groups: PREFIXED patterns on ``prefix``."""
    return kafka_user(
        name,
        [
            acl("topic", prefix, ["Read", "Write", "Create", "DescribeConfigs"], "prefix"),
            acl("group", prefix, ["Read"], "prefix"),
        ],
    )


def lag_reader_user(name: str, topic: str, group: str) -> Manifest:
    """What KEDA's kafka scaler needs to compute lag: DESCRIBE on the topic (metadata, end
    offsets) and on the group (its committed offsets). It reads no record."""
    return kafka_user(name, [acl("topic", topic, ["Describe"]), acl("group", group, ["Describe"])])


IMPLIES_DESCRIBE = {"Read", "Write", "Delete", "Alter"}


def _matches(rule: Mapping[str, Any], resource: str, name: str) -> bool:
    target = rule["resource"]
    if target["type"] != resource:
        return False
    if resource == "cluster":
        return True
    if target.get("patternType", "literal") == "prefix":
        return name.startswith(target["name"])
    return target["name"] in (name, "*")


def _grants(operations: Iterable[str], operation: str) -> bool:
    ops = set(operations)
    return (
        operation in ops
        or "All" in ops
        or (operation == "Describe" and bool(ops & IMPLIES_DESCRIBE))
        or (operation == "DescribeConfigs" and "AlterConfigs" in ops)
    )


def allows(acls: Iterable[Mapping[str, Any]], resource: str, name: str, operation: str) -> bool:
    """Whether these ACL rules let their user do ``operation`` on ``resource`` ``name``, as
    Kafka's StandardAuthorizer decides: a matching DENY wins, else a matching ALLOW is needed
    (nothing is allowed by default); READ, WRITE, DELETE and ALTER imply DESCRIBE."""
    matching = [
        r
        for r in acls
        if _matches(r, resource, name) and _grants(r.get("operations", ()), operation)
    ]
    if any(r.get("type", "allow") == "deny" for r in matching):
        return False
    return bool(matching)


_RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,  # Kafka's CLUSTER resource, in the Python client
    "transactionalId": ResourceType.TRANSACTIONAL_ID,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def _operation(name: str) -> AclOperation:
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return AclOperation[snake]


def to_bindings(user: Manifest) -> list[AclBinding]:
    """A KafkaUser's ACLs as the admin API's bindings: what the User Operator creates (one per
    operation), so the lab's ACL helpers (lab_env/lab_checks/security_acls.py) apply to them."""
    principal = f"User:{user['metadata']['name']}"
    bindings = []
    for rule in user["spec"].get("authorization", {}).get("acls", []):
        target = rule["resource"]
        permission = AclPermissionType[rule.get("type", "allow").upper()]
        for op in rule["operations"]:
            bindings.append(
                AclBinding(
                    _RESOURCE_TYPES[target["type"]],
                    target.get("name", "kafka-cluster"),
                    _PATTERNS[target.get("patternType", "literal")],
                    principal,
                    rule.get("host", "*"),
                    _operation(op),
                    permission,
                )
            )
    return bindings


# -- consumer autoscaling -----------------------------------------------------------------------


def desired_replicas(
    total_lag: int,
    lag_threshold: int,
    partitions: int,
    min_replicas: int = 0,
    max_replicas: int | None = None,
) -> int:
    """KEDA's kafka scaler: ``ceil(total lag / lagThreshold)`` consumers, never more than the
    topic's partitions (a consumer beyond them owns no partition and sits idle) nor
    ``max_replicas``; ``min_replicas`` when nothing is waiting (0 lets the Deployment idle)."""
    if lag_threshold <= 0:
        raise LabError(f"lagThreshold must be a positive number of records, got {lag_threshold}.")
    if total_lag <= 0:
        return min_replicas
    cap = partitions if max_replicas is None else min(partitions, max_replicas)
    return max(min_replicas, min(math.ceil(total_lag / lag_threshold), cap))


def bootstrap_service(cluster: str = CLUSTER, namespace: str = NAMESPACE, port: int = TLS_PORT):
    """The address Strimzi's bootstrap Service answers on inside the Kubernetes cluster."""
    return f"{cluster}-kafka-bootstrap.{namespace}.svc:{port}"


def login_secret(user: str, namespace: str = NAMESPACE) -> Manifest:
    """The scaler's user name for KEDA. Strimzi's Secret for a SCRAM user (named after it) holds
    only ``password`` and ``sasl.jaas.config``; the name itself is not secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{user}-login", "namespace": namespace},
        "stringData": {"username": user},
    }


def trigger_authentication(
    name: str, user: str, cluster: str = CLUSTER, namespace: str = NAMESPACE
) -> Manifest:
    """KEDA's credentials for the lag queries: the user name (:func:`login_secret`), the password
    from the Secret the User Operator writes, the cluster CA from the Cluster Operator's."""
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretTargetRef": [
                {"parameter": "username", "name": f"{user}-login", "key": "username"},
                {"parameter": "password", "name": user, "key": "password"},
                {"parameter": "ca", "name": f"{cluster}-cluster-ca-cert", "key": "ca.crt"},
            ]
        },
    }


def scaled_object(
    deployment: str,
    topic: Topic,
    group: str,
    lag_threshold: int,
    max_replicas: int | None = None,
    min_replicas: int = 0,
    auth: str | None = None,
    cluster: str = CLUSTER,
    namespace: str = NAMESPACE,
) -> Manifest:
    """A KEDA ``ScaledObject`` scaling ``deployment`` (the consumers of ``group``) on its lag.

    ``max_replicas`` defaults to the partition count and may not exceed it: a group never has
    more active consumers than partitions, so replicas beyond them only cost pods (and every
    scale step is a rebalance that pauses the whole group)."""
    max_replicas = topic.partitions if max_replicas is None else max_replicas
    if max_replicas > topic.partitions:
        raise LabError(
            f"maxReplicaCount {max_replicas} is above the {topic.partitions} partitions of "
            f"{topic.name!r}: consumers beyond the partition count own nothing and sit idle. "
            f"Use at most {topic.partitions}, or add partitions first."
        )
    trigger: dict[str, Any] = {
        "type": "kafka",
        "metadata": {
            "bootstrapServers": bootstrap_service(cluster, namespace),
            "consumerGroup": group,
            "topic": topic.name,
            "lagThreshold": str(lag_threshold),
            # A partition the group never committed counts from its start, as the lab's
            # consumers (auto.offset.reset=earliest) would read it.
            "offsetResetPolicy": "earliest",
            "allowIdleConsumers": "false",
            "sasl": "scram_sha512",
            "tls": "enable",
        },
    }
    if auth:
        trigger["authenticationRef"] = {"name": auth}
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": {"name": deployment, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": deployment},
            "pollingInterval": 15,
            "cooldownPeriod": 120,
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max_replicas,
            "triggers": [trigger],
        },
    }


# -- the whole set -------------------------------------------------------------------------------

CONSUMER = "payment-service"  # the case study's consumer of order.created, scaled on its lag
LAG_THRESHOLD = 1000


def manifests(cluster: str = CLUSTER, namespace: str = NAMESPACE) -> list[Manifest]:
    """Everything to ``kubectl apply`` after installing the Strimzi and KEDA operators."""
    nodes = len(NODE_IDS)
    order_created = CASE_STUDY_TOPICS[0]
    return [
        metrics_config_map(cluster, namespace),
        kafka_cluster(cluster, namespace),
        node_pool("controllers", ["controller"], nodes, ["20Gi"], cluster, namespace),
        node_pool("brokers", ["broker"], nodes, ["100Gi", "100Gi"], cluster, namespace),
        *(kafka_topic(t, cluster, namespace) for t in CASE_STUDY_TOPICS),
        producer_user("order-service", order_created.name),
        consumer_user(CONSUMER, order_created.name, CONSUMER),
        team_user("team-fulfilment", "fulfilment."),
        lag_reader_user("keda-lag-reader", order_created.name, CONSUMER),
        login_secret("keda-lag-reader", namespace),
        trigger_authentication("keda-lag-reader", "keda-lag-reader", cluster, namespace),
        scaled_object(
            CONSUMER,
            order_created,
            CONSUMER,
            LAG_THRESHOLD,
            auth="keda-lag-reader",
            cluster=cluster,
            namespace=namespace,
        ),
    ]


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _str)


def dump(documents: Iterable[Manifest]) -> str:
    """Multi-document YAML, keys in the order written (as people read manifests)."""
    return yaml.dump_all(list(documents), Dumper=_Dumper, sort_keys=False, width=100)


def load(text: str) -> list[Manifest]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise LabError(f"The manifests are not valid YAML: {exc}") from None


# -- validation ----------------------------------------------------------------------------------

HINTS = {
    "'zookeeper' was unexpected": "ZooKeeper was removed in Kafka 4.0: a KRaft cluster has no "
    "zookeeper block; its controllers are a KafkaNodePool with roles [controller].",
    "'replicas' was unexpected": "with node pools, replicas and storage belong to each "
    "KafkaNodePool.",
    "'storage' was unexpected": "with node pools, replicas and storage belong to each "
    "KafkaNodePool.",
    "'replicas', 'storage' were unexpected": "with node pools, replicas and storage belong to "
    "each KafkaNodePool.",
    "'operation' was unexpected": "Strimzi v1beta2 lists operations: write operations: [Read], "
    "not operation.",
    "'roles' is a required property": "a KafkaNodePool says what its nodes are: roles "
    "[controller], [broker] or both.",
    "'strimzi.io/cluster' is a required property": "the operators only handle resources "
    "labelled with their Kafka's name.",
}


def _name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "document"
    name = (
        (doc.get("metadata") or {}).get("name", "?")
        if isinstance(doc.get("metadata"), dict)
        else "?"
    )
    return f"{doc.get('kind', '?')} {name}"


def schema_problems(doc: Any, kind: str | None = None) -> list[str]:
    """What the lab's strict schema refuses in one document, as sentences sorted by path.
    ``kind`` (a Strimzi kind) picks the schema instead of the document's own apiVersion/kind."""
    if not isinstance(doc, dict):
        return [f"a manifest must be a mapping, got {type(doc).__name__}."]
    key = (STRIMZI_API, kind) if kind else (doc.get("apiVersion"), doc.get("kind"))
    schema = SCHEMAS.get(key)
    if schema is None:
        known = ", ".join(f"{k} ({a})" for a, k in sorted(SCHEMAS))
        return [
            f"{_name(doc)}: apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r} is "
            f"not one the lab models; it knows {known}."
        ]
    problems = []
    for error in Draft202012Validator(schema).iter_errors(doc):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        hint = next((h for key, h in HINTS.items() if key in error.message), "")
        problems.append(f"{_name(doc)}: {path}: {error.message}" + (f"; {hint}" if hint else "."))
    return sorted(problems)


def _of(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d.get("kind") == kind]


def _topic_name(doc: Manifest) -> str:
    return doc["spec"].get("topicName") or doc["metadata"]["name"]


def _kafka_problems(kafka: Manifest, docs: list[Manifest]) -> list[str]:
    problems, name = [], kafka["metadata"]["name"]
    annotations = kafka["metadata"].get("annotations", {})
    for key in ("strimzi.io/node-pools", "strimzi.io/kraft"):
        if annotations.get(key) != "enabled":
            problems.append(
                f"Kafka {name}: annotation {key}: enabled is missing; Kafka 4.x runs in KRaft "
                "mode only, with its nodes defined by KafkaNodePools."
            )
    config = kafka["spec"]["kafka"].get("config", {})
    for key in sorted(config):
        if key.startswith(STRIMZI_MANAGED):
            problems.append(
                f"Kafka {name}: spec.kafka.config {key!r} is managed by Strimzi itself "
                "(listeners, security, storage and KRaft roles come from the resources)."
            )
    ref = kafka["spec"]["kafka"].get("metricsConfig", {}).get("valueFrom", {})
    ref = ref.get("configMapKeyRef")
    if ref:
        maps = {m["metadata"]["name"]: m for m in _of(docs, "ConfigMap")}
        if ref.get("key") not in maps.get(ref.get("name"), {}).get("data", {}):
            problems.append(
                f"Kafka {name}: metricsConfig names ConfigMap {ref.get('name')!r} key "
                f"{ref.get('key')!r}, which no manifest provides."
            )
    return problems


def _pool_problems(name: str, config: Mapping[str, Any], docs: list[Manifest]) -> list[str]:
    problems = []
    pools = _of(docs, "KafkaNodePool")
    for pool in pools:
        volumes = pool["spec"]["storage"].get("volumes", [])
        shared = [v["id"] for v in volumes if v.get("kraftMetadata") == "shared"]
        if len(shared) > 1:
            problems.append(
                f"KafkaNodePool {pool['metadata']['name']}: volumes {shared} are all marked "
                "kraftMetadata: shared; the metadata log lives on one volume only."
            )
    roles = {r for p in pools for r in p["spec"]["roles"]}
    for role in ("controller", "broker"):
        if role not in roles:
            problems.append(
                f"Kafka {name}: no KafkaNodePool has the role {role!r}; a KRaft cluster needs "
                "controllers (the metadata quorum) and brokers."
            )
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    rf = int(config.get("default.replication.factor", 1))
    if roles >= {"broker"} and brokers < rf:
        problems.append(
            f"Kafka {name}: {brokers} broker(s) cannot hold default.replication.factor {rf}."
        )
    min_isr = int(config.get("min.insync.replicas", 1))
    if min_isr >= rf > 1:
        problems.append(
            f"Kafka {name}: min.insync.replicas {min_isr} with replication factor {rf} refuses "
            "acks=all writes as soon as one broker is down; keep it below the RF."
        )
    return problems


def _cluster_labels(name: str, docs: list[Manifest]) -> list[str]:
    return [
        f"{d['kind']} {d['metadata']['name']}: label {CLUSTER_LABEL}="
        f"{d['metadata']['labels'][CLUSTER_LABEL]!r} names no Kafka here (the Kafka is {name!r}); "
        "the operators ignore resources of another cluster."
        for kind in ("KafkaNodePool", "KafkaTopic", "KafkaUser")
        for d in _of(docs, kind)
        if d["metadata"]["labels"][CLUSTER_LABEL] != name
    ]


def _user_problems(docs: list[Manifest], topics: dict[str, Manifest]) -> list[str]:
    problems = []
    for user in _of(docs, "KafkaUser"):
        for rule in user["spec"].get("authorization", {}).get("acls", []):
            target = rule["resource"]
            literal = target.get("patternType", "literal") == "literal"
            named = target.get("name") not in topics and target.get("name") != "*"
            if target["type"] == "topic" and literal and named:
                problems.append(
                    f"KafkaUser {user['metadata']['name']}: an ACL names topic "
                    f"{target['name']!r}, which is not a KafkaTopic here: a typo, or a topic "
                    "nobody creates (auto-creation is off)."
                )
    return problems


def _scaling_problems(docs: list[Manifest], topics: dict[str, Manifest]) -> list[str]:
    problems = []
    for scaled in _of(docs, "ScaledObject"):
        name, spec = scaled["metadata"]["name"], scaled["spec"]
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if not meta["lagThreshold"].isdigit() or int(meta["lagThreshold"]) < 1:
                problems.append(
                    f"ScaledObject {name}: lagThreshold {meta['lagThreshold']!r} must be a "
                    "positive whole number of records, written as a string."
                )
            topic = topics.get(meta["topic"])
            if topic is None:
                problems.append(
                    f"ScaledObject {name}: topic {meta['topic']!r} is not a KafkaTopic here."
                )
                continue
            partitions = topic["spec"].get("partitions")
            top = spec.get("maxReplicaCount", 100)  # KEDA's default
            if partitions is None:
                problems.append(
                    f"ScaledObject {name}: KafkaTopic {meta['topic']!r} sets no partitions, so "
                    "maxReplicaCount cannot be checked against them; set spec.partitions."
                )
            elif top > partitions:
                problems.append(
                    f"ScaledObject {name}: maxReplicaCount {top} is above the {partitions} "
                    f"partitions of {meta['topic']!r}; consumers beyond the partition count own "
                    "nothing and sit idle."
                )
    return problems


def reference_problems(docs: list[Manifest]) -> list[str]:
    """References between schema-valid documents: one Kafka; node pools, topics and users
    labelled with its name; at least a controller and a broker pool; enough brokers for the
    replication factor; ACLs naming existing topics; scaling capped at partitions."""
    kafkas = _of(docs, "Kafka")
    if len(kafkas) != 1:
        return [f"expected exactly one Kafka resource, found {len(kafkas)}."]
    kafka, name = kafkas[0], kafkas[0]["metadata"]["name"]
    topics = {_topic_name(t): t for t in _of(docs, "KafkaTopic")}
    config = kafka["spec"]["kafka"].get("config", {})
    return [
        *_kafka_problems(kafka, docs),
        *_pool_problems(name, config, docs),
        *_cluster_labels(name, docs),
        *_user_problems(docs, topics),
        *_scaling_problems(docs, topics),
    ]


def validate(docs: Iterable[Any]) -> list[str]:
    """Every problem in a set of manifests: schema first (cross-references are only checked
    when every document is schema-valid, since they rely on its shape)."""
    docs = list(docs)
    problems = [p for d in docs for p in schema_problems(d)]
    return problems or reference_problems(docs)


def require_valid(docs: Iterable[Any]) -> None:
    problems = validate(docs)
    if problems:
        raise LabError(f"{len(problems)} problem(s) in the manifests: " + " ".join(problems))


def main() -> int:
    """Print the manifests (``python -m lab_env.strimzi > kafka-lab.yaml``), validated first."""
    docs = manifests()
    try:
        require_valid(docs)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.write(dump(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
