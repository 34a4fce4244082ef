"""The Strimzi manifests: generated from the lab's settings, valid, and every deliberate defect
refused with a sentence that names it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from lab_env import strimzi
from lab_env.config import BROKER_SETTINGS, KAFKA_VERSION
from lab_env.errors import LabError

Docs = list[dict[str, Any]]


def of(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    )


def test_generated_manifests_validate() -> None:
    docs = strimzi.manifests()
    assert strimzi.validate(docs) == []
    assert strimzi.validate(strimzi.load(strimzi.dump(docs))) == []  # the YAML round-trips


def test_kafka_resource_is_kraft_with_the_labs_settings() -> None:
    kafka = of(strimzi.manifests(), "Kafka")
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert "zookeeper" not in kafka["spec"]
    spec = kafka["spec"]["kafka"]
    assert spec["version"] == KAFKA_VERSION
    config = spec["config"]
    for key in ("min.insync.replicas", "default.replication.factor"):
        assert config[key] == int(BROKER_SETTINGS[key])
    assert config["transaction.state.log.min.isr"] == int(
        BROKER_SETTINGS["transaction.state.log.min.isr"]
    )
    assert config["auto.create.topics.enable"] is False
    assert not set(config) & set(strimzi.LAPTOP_ONLY)
    tls = next(item for item in spec["listeners"] if item["name"] == "tls")
    assert tls == {
        "name": "tls",
        "port": 9093,
        "type": "internal",
        "tls": True,
        "authentication": {"type": "scram-sha-512"},
    }
    assert spec["authorization"]["type"] == "simple"


def test_node_pools_split_the_roles() -> None:
    docs = strimzi.manifests()
    pools = {p["metadata"]["name"]: p["spec"] for p in docs if p["kind"] == "KafkaNodePool"}
    assert pools["controllers"]["roles"] == ["controller"]
    assert pools["brokers"]["roles"] == ["broker"]
    for spec in pools.values():
        shared = [v for v in spec["storage"]["volumes"] if v.get("kraftMetadata") == "shared"]
        assert len(shared) == 1


def test_metrics_config_map_holds_the_labs_rules() -> None:
    docs = strimzi.manifests()
    ref = of(docs, "Kafka")["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
    rules = of(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
    assert rules == strimzi.JMX_RULES.read_text()


def test_least_privilege_users() -> None:
    docs = strimzi.manifests()
    producer = of(docs, "KafkaUser", "order-service")["spec"]["authorization"]["acls"]
    consumer = of(docs, "KafkaUser", "payment-service")["spec"]["authorization"]["acls"]
    team = of(docs, "KafkaUser", "team-fulfilment")["spec"]["authorization"]["acls"]
    assert strimzi.allows(producer, "topic", "order.created", "Write")
    assert strimzi.allows(producer, "topic", "order.created", "Describe")  # implied by WRITE
    assert not strimzi.allows(producer, "topic", "order.created", "Read")
    assert not strimzi.allows(producer, "topic", "payment.processed", "Write")
    assert strimzi.allows(consumer, "topic", "order.created", "Read")
    assert strimzi.allows(consumer, "group", "payment-service", "Read")
    assert not strimzi.allows(consumer, "group", "other", "Read")
    assert strimzi.allows(team, "topic", "fulfilment.picking", "Write")
    assert not strimzi.allows(team, "topic", "order.created", "Read")


def test_acl_evaluation_deny_wins_and_all_covers_everything() -> None:
    acls = [
        strimzi.acl("topic", "orders.", ["All"], "prefix"),
        strimzi.acl("topic", "orders.secret", ["Read"], permission="deny"),
    ]
    assert strimzi.allows(acls, "topic", "orders.eu", "Delete")
    assert not strimzi.allows(acls, "topic", "orders.secret", "Read")
    assert strimzi.allows(acls, "topic", "orders.secret", "Write")
    assert not strimzi.allows([], "topic", "orders.eu", "Describe")  # nothing by default
    wildcard = [strimzi.acl("group", "*", ["Read"])]
    assert strimzi.allows(wildcard, "group", "any-group", "Read")


def test_bindings_are_one_per_operation() -> None:
    team = strimzi.team_user("team-x", "x.")
    bindings = strimzi.to_bindings(team)
    assert {b.operation.name for b in bindings} == {"READ", "WRITE", "CREATE", "DESCRIBE_CONFIGS"}
    assert {b.principal for b in bindings} == {"User:team-x"}
    assert {b.resource_pattern_type.name for b in bindings} == {"PREFIXED"}


@pytest.mark.parametrize(
    ("lag", "threshold", "partitions", "expected"),
    [(0, 100, 4, 0), (1, 100, 4, 1), (100, 100, 4, 1), (101, 100, 4, 2), (10_000, 100, 4, 4)],
)
def test_desired_replicas(lag: int, threshold: int, partitions: int, expected: int) -> None:
    assert strimzi.desired_replicas(lag, threshold, partitions) == expected


def test_desired_replicas_bounds() -> None:
    assert strimzi.desired_replicas(0, 100, 4, min_replicas=1) == 1
    assert strimzi.desired_replicas(10_000, 100, 12, max_replicas=5) == 5
    with pytest.raises(LabError, match="positive"):
        strimzi.desired_replicas(10, 0, 4)


def test_generator_refuses_more_replicas_than_partitions() -> None:
    topic = strimzi.Topic("t", partitions=6)
    assert strimzi.scaled_object("c", topic, "g", 100)["spec"]["maxReplicaCount"] == 6
    with pytest.raises(LabError, match=r"maxReplicaCount 7 is above the 6 partitions of 't'"):
        strimzi.scaled_object("c", topic, "g", 100, max_replicas=7)


# -- deliberate defects --------------------------------------------------------------------------


def zookeeper_block(docs: Docs) -> None:
    of(docs, "Kafka")["spec"]["zookeeper"] = {"replicas": 3, "storage": {"type": "ephemeral"}}


def pool_without_roles(docs: Docs) -> None:
    del of(docs, "KafkaNodePool", "brokers")["spec"]["roles"]


def unknown_field(docs: Docs) -> None:
    of(docs, "KafkaTopic")["spec"]["partitons"] = 3


def acl_on_missing_topic(docs: Docs) -> None:
    docs.append(strimzi.producer_user("rogue", "order.craeted"))


def too_many_replicas(docs: Docs) -> None:
    of(docs, "ScaledObject")["spec"]["maxReplicaCount"] = 50


def no_controllers(docs: Docs) -> None:
    docs.remove(of(docs, "KafkaNodePool", "controllers"))


def missing_annotations(docs: Docs) -> None:
    del of(docs, "Kafka")["metadata"]["annotations"]


def wrong_cluster_label(docs: Docs) -> None:
    of(docs, "KafkaTopic")["metadata"]["labels"]["strimzi.io/cluster"] = "other"


def managed_setting(docs: Docs) -> None:
    of(docs, "Kafka")["spec"]["kafka"]["config"]["zookeeper.connect"] = "zk:2181"


def two_metadata_volumes(docs: Docs) -> None:
    of(docs, "KafkaNodePool", "brokers")["spec"]["storage"]["volumes"][1]["kraftMetadata"] = (
        "shared"
    )


def bad_operation(docs: Docs) -> None:
    acls = of(docs, "KafkaUser", "order-service")["spec"]["authorization"]["acls"]
    acls[0]["operation"] = acls[0].pop("operations")[0]


def lag_threshold_number(docs: Docs) -> None:
    of(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (zookeeper_block, "'zookeeper' was unexpected); ZooKeeper was removed in Kafka 4.0"),
        (pool_without_roles, "KafkaNodePool brokers: spec: 'roles' is a required property"),
        (unknown_field, "KafkaTopic order.created: spec: Additional properties are not allowed "),
        (acl_on_missing_topic, "names topic 'order.craeted', which is not a KafkaTopic here"),
        (too_many_replicas, "maxReplicaCount 50 is above the 12 partitions of 'order.created'"),
        (no_controllers, "no KafkaNodePool has the role 'controller'"),
        (missing_annotations, "annotation strimzi.io/kraft: enabled is missing"),
        (wrong_cluster_label, "label strimzi.io/cluster='other' names no Kafka here"),
        (managed_setting, "'zookeeper.connect' is managed by Strimzi itself"),
        (two_metadata_volumes, "volumes [0, 1] are all marked kraftMetadata: shared"),
        (bad_operation, "Strimzi v1beta2 lists operations"),
        (lag_threshold_number, "lagThreshold: 100 is not of type 'string'"),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_defects_are_refused(defect: Callable[[Docs], None], message: str) -> None:
    docs = copy.deepcopy(strimzi.manifests())
    defect(docs)
    problems = strimzi.validate(docs)
    assert any(message in p for p in problems), problems
    with pytest.raises(LabError, match="problem"):
        strimzi.require_valid(docs)


def test_unknown_kind_is_named() -> None:
    problems = strimzi.validate([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}])
    assert problems and "is not one the lab models" in problems[0]


def test_the_articles_zookeeper_manifest_is_refused() -> None:
    article = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "Kafka",
        "metadata": {"name": "kafka-lab"},
        "spec": {
            "kafka": {
                "replicas": 3,
                "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}],
                "storage": {"type": "ephemeral"},
            },
            "zookeeper": {"replicas": 3, "storage": {"type": "ephemeral"}},
        },
    }
    problems = strimzi.validate([article])
    assert any("ZooKeeper was removed in Kafka 4.0" in p for p in problems)
    assert any("replicas and storage belong to each KafkaNodePool" in p for p in problems)
