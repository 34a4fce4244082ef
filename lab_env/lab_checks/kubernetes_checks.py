"""Lab 10: a least-privilege KafkaUser for a service, and the lag-based scaling rule.

The KafkaUser is checked without a Kubernetes cluster: against the lab's strict schema for
Strimzi's v1beta2 API (lab_env/strimzi_schemas.py), against the case study's KafkaTopics, and by
evaluating its ACLs the way Kafka's StandardAuthorizer would (``strimzi.allows``): every
operation the service needs must be allowed, and a list of operations it does not need must be
refused. The scaling rule is run on sample lags, then on the live lag of a group the check sets
up on the lab's cluster, and compared with KEDA's rule (``strimzi.desired_replicas``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from confluent_kafka.admin import AclOperation, ResourceType

from lab_env import strimzi
from lab_env.api import Lab
from lab_env.checks import passed, require
from lab_env.consuming import lag, produce_numbered
from lab_env.lab_checks.security_acls import broad_grants

Probe = tuple[str, str, str]  # (resource type, name, operation)


# -- the KafkaUser ---------------------------------------------------------------------------


def as_manifest(user: Any) -> dict[str, Any]:
    """The learner's KafkaUser as a dict (YAML text is accepted too)."""
    if isinstance(user, str):
        try:
            user = yaml.safe_load(user)
        except yaml.YAMLError as exc:
            require(False, f"your KafkaUser is not valid YAML: {exc}")
    require(
        isinstance(user, dict) and user,
        "your KafkaUser is empty: write a dict (or YAML) with apiVersion, kind, metadata and "
        "spec, like strimzi.kafka_user(...) returns.",
    )
    return user


def required_operations(reads: str, group: str, writes: str) -> list[Probe]:
    return [("topic", reads, "Read"), ("group", group, "Read"), ("topic", writes, "Write")]


def forbidden_operations(reads: str, group: str, writes: str) -> list[Probe]:
    """What the service must not be able to do: the other direction on its own topics, other
    topics and groups (including names that only share a prefix), administration."""
    other = next(t.name for t in strimzi.CASE_STUDY_TOPICS if t.name not in (reads, writes))
    return [
        ("topic", reads, "Write"),
        ("topic", writes, "Read"),
        ("topic", other, "Read"),
        ("topic", other, "Write"),
        ("topic", f"{writes}.v2", "Write"),
        ("topic", f"{reads}.v2", "Read"),
        ("topic", reads, "Delete"),
        ("topic", writes, "AlterConfigs"),
        ("topic", "new-topic", "Create"),
        ("group", f"{group}-replay", "Read"),
        ("group", "payment-service", "Read"),
        ("cluster", "kafka-cluster", "Create"),
        ("cluster", "kafka-cluster", "Alter"),
        ("cluster", "kafka-cluster", "DescribeConfigs"),
        ("cluster", "kafka-cluster", "IdempotentWrite"),
    ]


def user_problems(user: Mapping[str, Any], service: str, reads: str, group: str, writes: str):
    """Every way the KafkaUser falls short, as sentences (empty when it is right)."""
    problems = strimzi.schema_problems(user, "KafkaUser")
    if problems:
        return problems
    name = user["metadata"]["name"]
    if name != service:
        problems.append(
            f"the KafkaUser is named {name!r}; the service logs in as {service!r}, and Strimzi "
            "makes the user (and its password Secret) from metadata.name."
        )
    if user["spec"]["authentication"]["type"] != "scram-sha-512":
        problems.append(
            "the cluster's tls listener authenticates with scram-sha-512: set "
            "spec.authentication.type to scram-sha-512."
        )
    if "authorization" not in user["spec"]:
        return [
            *problems,
            "the user has no spec.authorization: with simple authorization and "
            "no ACLs it can do nothing. Add authorization: {type: simple, acls: [...]}.",
        ]
    # Cross-references against the case study's cluster: label, topics that exist.
    problems += strimzi.reference_problems([*strimzi.manifests(), dict(user)])
    acls = user["spec"]["authorization"]["acls"]
    for kind, resource, op in required_operations(reads, group, writes):
        if not strimzi.allows(acls, kind, resource, op):
            problems.append(
                f"{service} cannot {op} {kind} {resource!r}, which it needs: add an ACL rule "
                f"{{resource: {{type: {kind}, name: {resource}, patternType: literal}}, "
                f"operations: [{op}]}}."
            )
    for kind, resource, op in forbidden_operations(reads, group, writes):
        if strimzi.allows(acls, kind, resource, op):
            problems.append(
                f"{service} may {op} {kind} {resource!r}, which it never does: least privilege "
                "grants only the operations a service uses, on literal names (no All, no '*', "
                "no prefix)."
            )
    needs = {
        (ResourceType.TOPIC, reads): {AclOperation.READ},
        (ResourceType.GROUP, group): {AclOperation.READ},
        (ResourceType.TOPIC, writes): {AclOperation.WRITE},
    }
    problems += broad_grants(strimzi.to_bindings(dict(user)), needs)
    return list(dict.fromkeys(problems))  # one sentence per problem, in order


def summary(problems: list[str], shown: int = 4) -> str:
    """The first few problems in full: a wall of sentences teaches less than the first four."""
    more = len(problems) - shown
    tail = f" (and {more} more of the same kind)" if more > 0 else ""
    return f"{len(problems)} problem(s): " + " ".join(problems[:shown]) + tail


def check_kafka_user(user: Any, service: str, reads: str, group: str, writes: str) -> None:
    """``user`` is a valid KafkaUser for ``service``: it reads ``reads`` in ``group`` and writes
    ``writes``, and nothing else."""
    problems = user_problems(as_manifest(user), service, reads, group, writes)
    require(not problems, summary(problems))
    passed(f"KafkaUser {service}: reads {reads!r} in group {group!r}, writes {writes!r}, no more")


# -- the scaling rule ------------------------------------------------------------------------

# (total lag, lagThreshold, partitions): each case catches one classic mistake.
CASES = [
    (0, 100, 4),  # nothing waiting
    (1, 100, 4),  # one record waiting still needs a consumer
    (100, 100, 4),  # exactly the threshold
    (101, 100, 4),  # just above it: round up
    (250, 100, 6),
    (350, 100, 4),  # ceil gives 4 = partitions
    (10_000, 100, 4),  # far above: capped at the partitions
    (10_000, 100, 12),
]


def _diagnose(got: Any, lag_: int, threshold: int, partitions: int) -> str:
    truth = strimzi.desired_replicas(lag_, threshold, partitions)
    case = f"desired_replicas({lag_}, {threshold}, {partitions}) returned {got!r}, expected {truth}"
    if not isinstance(got, int) or isinstance(got, bool):
        return f"{case}: return a whole number of replicas (int), e.g. with math.ceil."
    if lag_ == 0:
        return f"{case}: with no lag there is nothing to do (KEDA scales to minReplicaCount 0)."
    if got > partitions:
        return (
            f"{case}: never more consumers than partitions: the extra ones own no partition "
            "and sit idle. Cap the result with min(..., partitions)."
        )
    if got == lag_ // threshold:
        return f"{case}: it rounds down; a partial threshold of lag still needs a consumer (ceil)."
    return f"{case}: the rule is ceil(total lag / lagThreshold), capped at the partition count."


def rule_problems(rule: Callable[[int, int, int], Any]) -> list[str]:
    problems = []
    for lag_, threshold, partitions in CASES:
        got = rule(lag_, threshold, partitions)
        if got != strimzi.desired_replicas(lag_, threshold, partitions) or isinstance(got, bool):
            problems.append(_diagnose(got, lag_, threshold, partitions))
    return problems


def _backlog(lab: Lab, records: int, partitions: int, consumed: int) -> tuple[str, str, int]:
    """A topic with ``records`` spread over ``partitions``, and a group that committed about
    ``consumed`` of them: lag that is not the same on every partition."""
    suffix = uuid.uuid4().hex[:6]
    topic, group = lab.topic(f"lab10.check.{suffix}"), lab.group(f"lab10-check-{suffix}")
    lab.create_topic(topic, partitions=partitions, replication_factor=3)
    produce_numbered(lab, topic, records, partitions)
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    for _ in range(30):  # bounded: at most 30 one-second polls
        seen += sum(1 for m in consumer.consume(50, timeout=1) if m.error() is None)
        if seen >= consumed:
            break
    consumer.commit(asynchronous=False)
    consumer.close()
    return topic, group, seen


def check_scaling_rule(
    lab: Lab, rule: Callable[[int, int, int], Any], records: int = 600, partitions: int = 4
) -> None:
    """``rule(total_lag, lag_threshold, partitions)`` agrees with KEDA's on sample lags and on
    the live lag of a group the check sets up (and deletes afterwards)."""
    require(callable(rule), "desired_replicas must be a function of (lag, threshold, partitions).")
    require(not (problems := rule_problems(rule)), summary(problems))
    topic, group, _seen = _backlog(lab, records, partitions, consumed=records // 5)
    try:
        total = sum(row["lag"] for row in lag(lab, group, topic, partitions))
        require(total > 0, f"the check's group left no lag on {topic!r}; run the check again.")
        for threshold in (max(total // 2, 1), total, total // 10 or 1, total * 2):
            got = rule(total, threshold, partitions)
            truth = strimzi.desired_replicas(total, threshold, partitions)
            require(
                got == truth,
                f"on the live lag of {total} records ({topic!r}, {partitions} partitions, group "
                f"{group!r}) with lagThreshold {threshold}: your rule says {got!r}, KEDA's "
                f"says {truth}.",
            )
    finally:
        lab.delete_groups(group)
        lab.delete_topic(topic)
    passed(
        f"your scaling rule agrees with KEDA's, on {len(CASES)} samples and a live lag of {total}"
    )
