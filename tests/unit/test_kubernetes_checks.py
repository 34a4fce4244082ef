"""Lab 10's check logic without a cluster: the KafkaUser verdicts and the scaling-rule
diagnosis."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lab_env import strimzi
from lab_env.checks import LabCheckError
from lab_env.lab_checks import kubernetes_checks as k

SERVICE, READS, GROUP, WRITES = (
    "shipping-service",
    "payment.processed",
    "shipping-service",
    "shipment.dispatched",
)


def user(*acls: dict[str, Any], name: str = SERVICE) -> dict[str, Any]:
    return strimzi.kafka_user(name, list(acls))


RIGHT = user(
    strimzi.acl("topic", READS, ["Read"]),
    strimzi.acl("group", GROUP, ["Read"]),
    strimzi.acl("topic", WRITES, ["Write"]),
)


def problems(manifest: Any) -> list[str]:
    return k.user_problems(k.as_manifest(manifest), SERVICE, READS, GROUP, WRITES)


def test_the_right_user_passes() -> None:
    assert problems(RIGHT) == []
    k.check_kafka_user(RIGHT, SERVICE, READS, GROUP, WRITES)
    k.check_kafka_user(strimzi.dump([RIGHT]), SERVICE, READS, GROUP, WRITES)  # YAML text too


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (user(strimzi.acl("topic", READS, ["Read"])), "cannot Read group 'shipping-service'"),
        (
            user(strimzi.acl("topic", "*", ["All"]), strimzi.acl("group", GROUP, ["Read"])),
            "may Write topic 'payment.processed'",
        ),
        (
            user(
                strimzi.acl("topic", "payment.", ["Read"], "prefix"),
                strimzi.acl("group", GROUP, ["Read"]),
                strimzi.acl("topic", WRITES, ["Write"]),
            ),
            "may Read topic 'payment.processed.v2'",
        ),
        (
            user(
                strimzi.acl("topic", READS, ["Read", "Write"]),
                strimzi.acl("group", GROUP, ["Read"]),
                strimzi.acl("topic", WRITES, ["Write"]),
            ),
            "may Write topic 'payment.processed'",
        ),
        (
            user(*RIGHT["spec"]["authorization"]["acls"], strimzi.acl("cluster", None, ["Alter"])),
            "may Alter cluster",
        ),
        (user(*RIGHT["spec"]["authorization"]["acls"], name="shipping"), "is named 'shipping'"),
        (
            user(
                strimzi.acl("topic", "payment.procesed", ["Read"]),
                strimzi.acl("group", GROUP, ["Read"]),
                strimzi.acl("topic", WRITES, ["Write"]),
            ),
            "names topic 'payment.procesed', which is not a KafkaTopic",
        ),
        ({"kind": "KafkaUser"}, "'apiVersion' is a required property"),
    ],
)
def test_wrong_users_are_named(manifest: dict[str, Any], fragment: str) -> None:
    found = problems(manifest)
    assert any(fragment in p for p in found), found
    with pytest.raises(LabCheckError):
        k.check_kafka_user(manifest, SERVICE, READS, GROUP, WRITES)


def test_a_describe_on_top_is_not_too_broad() -> None:
    extra = user(*RIGHT["spec"]["authorization"]["acls"], strimzi.acl("topic", READS, ["Describe"]))
    assert problems(extra) == []


def test_stub_user_fails_with_a_sentence() -> None:
    with pytest.raises(LabCheckError, match="your KafkaUser is empty"):
        k.check_kafka_user({}, SERVICE, READS, GROUP, WRITES)


def test_wrong_authentication_is_named() -> None:
    tls = {**RIGHT, "spec": {**RIGHT["spec"], "authentication": {"type": "tls"}}}
    assert any("scram-sha-512" in p for p in problems(tls))


def test_forbidden_probes_include_the_other_direction_and_administration() -> None:
    probes = k.forbidden_operations(READS, GROUP, WRITES)
    assert ("topic", READS, "Write") in probes
    assert ("topic", WRITES, "Read") in probes
    assert any(kind == "cluster" for kind, _, _ in probes)
    for kind, name, op in k.required_operations(READS, GROUP, WRITES):
        assert (kind, name, op) not in probes


def keda(lag: int, threshold: int, partitions: int) -> int:
    return 0 if lag <= 0 else min(math.ceil(lag / threshold), partitions)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (lambda lag, t, p: lag // t, "it rounds down"),
        (lambda lag, t, p: math.ceil(lag / t), "never more consumers than partitions"),
        (lambda lag, t, p: max(1, keda(lag, t, p)), "with no lag there is nothing to do"),
        (lambda lag, t, p: lag / t, "return a whole number of replicas"),
        (lambda lag, t, p: 1, "desired_replicas"),
    ],
)
def test_wrong_rules_are_diagnosed(rule: Any, fragment: str) -> None:
    found = k.rule_problems(rule)
    assert found and any(fragment in p for p in found), found


def test_the_keda_rule_passes_the_samples() -> None:
    assert k.rule_problems(keda) == []
    assert k.rule_problems(strimzi.desired_replicas) == []


def test_summary_shows_the_first_few() -> None:
    text = k.summary([f"p{i}." for i in range(7)])
    assert text.startswith("7 problem(s): p0. p1. p2. p3.")
    assert text.endswith("(and 3 more of the same kind)")
