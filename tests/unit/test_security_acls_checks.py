"""Lab 09's pure helpers: which ACL bindings are broader than a service uses, how bindings are
tabulated, and how an attempt's outcome is named."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from lab_env.lab_checks.security_acls import Outcome, acl_rows, allow, broad_grants

TOPIC, GROUP = "order.created.abc123", "shipping.abc123"
ORDERS, SHIPPING = "User:orders-abc123", "User:shipping-abc123"
ORDERS_NEEDS = {(ResourceType.TOPIC, TOPIC): {AclOperation.WRITE}}
SHIPPING_NEEDS = {
    (ResourceType.TOPIC, TOPIC): {AclOperation.READ},
    (ResourceType.GROUP, GROUP): {AclOperation.READ},
}


def test_the_minimal_grants_are_not_too_broad() -> None:
    orders = [allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.WRITE)]
    shipping = [
        allow(SHIPPING, ResourceType.TOPIC, TOPIC, AclOperation.READ),
        allow(SHIPPING, ResourceType.GROUP, GROUP, AclOperation.READ),
    ]
    assert broad_grants(orders, ORDERS_NEEDS) == []
    assert broad_grants(shipping, SHIPPING_NEEDS) == []


def test_describe_is_implied_and_deny_only_takes_away() -> None:
    bindings = [
        allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.WRITE),
        allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.DESCRIBE),
        allow(
            ORDERS,
            ResourceType.TOPIC,
            "*",
            AclOperation.ALL,
            permission=AclPermissionType.DENY,
        ),
    ]
    assert broad_grants(bindings, ORDERS_NEEDS) == []


@pytest.mark.parametrize(
    ("binding", "fragment"),
    [
        (allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.ALL), "ALL allows every"),
        (allow(ORDERS, ResourceType.TOPIC, "*", AclOperation.WRITE), "wildcard '*'"),
        (allow(ORDERS, ResourceType.GROUP, "*", AclOperation.READ), "every group"),
        (
            allow(ORDERS, ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
            "since Kafka 2.8",
        ),
        (
            allow(ORDERS, ResourceType.BROKER, "kafka-cluster", AclOperation.CREATE),
            "administers the cluster",
        ),
        (
            allow(
                ORDERS,
                ResourceType.TOPIC,
                "order.",
                AclOperation.WRITE,
                ResourcePatternType.PREFIXED,
            ),
            "PREFIXED pattern",
        ),
        (allow(ORDERS, ResourceType.TOPIC, "order.cancelled", AclOperation.WRITE), "does not use"),
        (allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.READ), "only needs WRITE"),
        (allow(ORDERS, ResourceType.TOPIC, TOPIC, AclOperation.DELETE), "only needs WRITE"),
    ],
    ids=[
        "all",
        "wildcard-topic",
        "wildcard-group",
        "idempotent-write",
        "cluster-create",
        "prefixed",
        "other-topic",
        "read-for-a-producer",
        "delete",
    ],
)
def test_broad_grants_are_named(binding: AclBinding, fragment: str) -> None:
    problems = broad_grants([binding], ORDERS_NEEDS)
    assert len(problems) == 1
    assert fragment in problems[0]
    assert ORDERS in problems[0]


def test_a_consumer_with_a_second_group_is_too_broad() -> None:
    bindings = [
        allow(SHIPPING, ResourceType.TOPIC, TOPIC, AclOperation.READ),
        allow(SHIPPING, ResourceType.GROUP, GROUP, AclOperation.READ),
        allow(SHIPPING, ResourceType.GROUP, f"{GROUP}.replay", AclOperation.READ),
    ]
    (problem,) = broad_grants(bindings, SHIPPING_NEEDS)
    assert f"{GROUP}.replay" in problem


def test_acl_rows_are_sorted_and_the_suffix_can_be_hidden() -> None:
    bindings = [
        allow(SHIPPING, ResourceType.TOPIC, TOPIC, AclOperation.READ),
        allow(ORDERS, ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
    ]
    rows = acl_rows(bindings, {"abc123": "<suffix>"})
    assert [r["principal"] for r in rows] == ["User:orders-<suffix>", "User:shipping-<suffix>"]
    assert rows[0]["resource"] == "CLUSTER"  # the Python client calls it ResourceType.BROKER
    assert rows[1] == {
        "principal": "User:shipping-<suffix>",
        "permission": "ALLOW",
        "operation": "READ",
        "resource": "TOPIC",
        "pattern": "LITERAL",
        "name": "order.created.<suffix>",
        "host": "*",
    }


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (Outcome(True), "allowed"),
        (Outcome(False, "TOPIC_AUTHORIZATION_FAILED"), "denied"),
        (Outcome(False, "GROUP_AUTHORIZATION_FAILED"), "denied"),
        (Outcome(False, "_AUTHENTICATION"), "refused"),
        (Outcome(False, "_SSL"), "refused"),
    ],
)
def test_outcome_verdicts(outcome: Outcome, verdict: str) -> None:
    assert outcome.verdict == verdict
