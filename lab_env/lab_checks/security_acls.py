"""Lab 09: least-privilege ACLs, checked by acting as the learner's SCRAM users.

Every check connects to the SASL_SSL listener as the service's own user and attempts what the
service must be able to do AND what it must not: a grant is only right if both hold. The last
check reads the ACLs back (describe_acls) for grants that are broader than the behaviour shows.

The probes (``connect``, ``produce``, ``read``, ``consume``, ``describe_group``,
``create_topic``, ``init_transactions``) are what the lesson uses too: each returns an
``Outcome`` instead of raising, so allowed and refused attempts can sit side by side in a table.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from lab_env.api import Lab
from lab_env.checks import passed, require
from lab_env.group_offsets import committed_on
from lab_env.records import read_all

# Refusals should be quick: a client that cannot connect gives up on a broker after 3 s.
QUIET: dict[str, Any] = {"socket.connection.setup.timeout.ms": 3000}
ALLOWED = "-"


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: served, or the error that stopped it (name and text)."""

    allowed: bool
    code: str = ALLOWED
    detail: str = ""

    @property
    def verdict(self) -> str:
        """``allowed``; ``denied`` (authenticated, but an ACL said no); ``refused`` (the
        connection itself failed: TLS, authentication)."""
        if self.allowed:
            return "allowed"
        return "denied" if self.code.endswith("AUTHORIZATION_FAILED") else "refused"


def _error(error: KafkaError, detail: str | None = None) -> Outcome:
    return Outcome(False, error.name(), detail or error.str())


class _Collector(logging.Handler):
    """Collects librdkafka's connection failures (log facility FAIL), which say why a broker
    closed the connection when error_cb only reports that all brokers are down."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("FAIL "):
            self.failures.append(message.split("]: ", 2)[-1])


def _logger() -> tuple[logging.Logger, _Collector]:
    collector = _Collector()
    logger = logging.getLogger(f"lab09.{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.handlers = [collector]
    logger.setLevel(logging.DEBUG)
    return logger, collector


def connect(config: dict[str, Any], timeout: float = 6.0) -> Outcome:
    """Ask for cluster metadata with ``config``: served, or the reason it was refused.

    The reason (TLS handshake, SASL authentication) arrives through ``error_cb``, which
    ``poll()`` serves; ``list_topics`` alone only says "transport failure"."""
    errors: list[KafkaError] = []
    logger, collector = _logger()
    try:
        client = AdminClient({**config, **QUIET, "logger": logger, "error_cb": errors.append})
    except KafkaException as exc:  # refused by the client itself (e.g. a bad setting)
        return _error(exc.args[0])
    deadline = time.monotonic() + timeout
    with client:
        while time.monotonic() < deadline:
            try:
                client.list_topics(timeout=0.5)
                return Outcome(True)
            except KafkaException:
                client.poll(0.1)
            specific = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            if specific:
                return _error(specific[0])
            if errors and collector.failures:
                return _error(errors[0], collector.failures[0])
    if errors:
        return _error(errors[0])
    return Outcome(False, "_TIMED_OUT", f"no metadata within {timeout:.0f} s")


def visible_topics(config: dict[str, Any], timeout: float = 10.0) -> set[str]:
    """The topics the metadata shows this principal (those it may DESCRIBE)."""
    with AdminClient({**config, **QUIET}) as client:
        return set(client.list_topics(timeout=timeout).topics)


def produce(
    config: dict[str, Any], topic: str, values: Iterable[str] = ("probe",), timeout: float = 10.0
) -> Outcome:
    """Produce ``values`` to ``topic``; allowed when every delivery report is a success.

    A fatal producer error (an idempotent producer refused a producer id) is raised from
    ``poll``/``flush``; it is reported like a failed delivery."""
    reports: list[KafkaError | None] = []
    try:
        producer = Producer({**config, **QUIET, "message.timeout.ms": int(timeout * 1000)})
        for value in values:
            producer.produce(topic, value=value, on_delivery=lambda err, _m: reports.append(err))
            producer.poll(0)
        left = producer.flush(timeout + 5)
    except KafkaException as exc:
        return _error(exc.args[0])
    failures = [e for e in reports if e is not None]
    if failures:
        return _error(failures[0])
    if left:
        return Outcome(False, "_MSG_TIMED_OUT", f"{left} records not delivered")
    return Outcome(True)


def read(config: dict[str, Any], topic: str, timeout: float = 8.0) -> Outcome:
    """Read ``topic`` without a consumer group (assigned partitions, explicit offsets): what
    READ on the topic alone allows. Allowed when a record arrives (the topic must hold one)."""
    with AdminClient({**config, **QUIET}) as client:
        metadata = client.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        # Without DESCRIBE the metadata hides the topic (same answer whether it exists or not).
        return _error(metadata.error) if metadata else Outcome(False, "UNKNOWN_TOPIC_OR_PART")
    consumer = Consumer(
        {
            **config,
            **QUIET,
            # The Python client insists on a group id; with assign() the group is never joined,
            # and its authorization errors are skipped below.
            "group.id": f"lab09-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None:
                continue
            error = msg.error()
            if error is None:
                return Outcome(True)
            if error.code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
                return _error(error)
        return Outcome(False, "_TIMED_OUT", f"no record from {topic!r} within {timeout:.0f} s")
    finally:
        consumer.close()


def consume(
    config: dict[str, Any],
    topic: str,
    group: str,
    wanted: Callable[[bytes | None], bool] = lambda _v: True,
    count: int = 1,
    timeout: float = 10.0,
) -> Outcome:
    """Consume ``topic`` as a member of ``group`` (subscribe, from the earliest offset or the
    group's committed one) until ``count`` records satisfying ``wanted`` arrived and every
    assigned partition is read to its end, then commit: allowed when all of that worked."""
    consumer = Consumer(
        {
            **config,
            **QUIET,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,  # announces the end of each partition
        }
    )
    try:
        consumer.subscribe([topic])
        seen, at_end = 0, set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    return _error(msg.error())
                at_end.add(msg.partition())
            else:
                seen += wanted(msg.value())
                at_end.discard(msg.partition())
            assigned = {tp.partition for tp in consumer.assignment()}
            if seen >= count and assigned and assigned <= at_end:
                # Commit every position, also of partitions that delivered nothing this time
                # (commit() alone would store only the offsets of delivered records).
                positions = consumer.position(list(consumer.assignment()))
                known = [tp for tp in positions if tp.offset >= 0]
                consumer.commit(offsets=known, asynchronous=False)
                return Outcome(True)
        return Outcome(False, "_TIMED_OUT", f"{seen} of {count} records in {timeout:.0f} s")
    except KafkaException as exc:
        return _error(exc.args[0])
    finally:
        consumer.close()


def _admin_call(config: dict[str, Any], call: Callable[[AdminClient], Any]) -> Outcome:
    try:
        with AdminClient({**config, **QUIET}) as client:
            call(client)
        return Outcome(True)
    except KafkaException as exc:
        return _error(exc.args[0])


def describe_group(config: dict[str, Any], group: str) -> Outcome:
    """DescribeGroups needs DESCRIBE on the group (implied by READ): a probe of group access
    that joins nothing."""
    return _admin_call(
        config, lambda a: a.describe_consumer_groups([group], request_timeout=10)[group].result()
    )


def create_topic(config: dict[str, Any], name: str) -> Outcome:
    """CreateTopics with ``validate_only``: the broker authorizes it like a real creation, and
    creates nothing."""
    return _admin_call(
        config,
        lambda a: a.create_topics([NewTopic(name, 1, 3)], validate_only=True, request_timeout=10)[
            name
        ].result(),
    )


def describe_broker(config: dict[str, Any], broker: str = "1") -> Outcome:
    """DescribeConfigs of a broker needs DESCRIBE_CONFIGS on the cluster: a super user has it,
    a service should not. (DescribeAcls is no such probe: a principal that may not describe
    the cluster gets an empty list, not an error.)"""
    resource = ConfigResource(ConfigResource.Type.BROKER, broker)
    return _admin_call(
        config, lambda a: a.describe_configs([resource], request_timeout=10)[resource].result()
    )


def init_transactions(config: dict[str, Any], transactional_id: str) -> Outcome:
    try:
        Producer({**config, **QUIET, "transactional.id": transactional_id}).init_transactions(15)
        return Outcome(True)
    except KafkaException as exc:
        return _error(exc.args[0])


def idempotent_producer_id(config: dict[str, Any], timeout: float = 10.0) -> tuple[Outcome, int]:
    """Start an idempotent producer and wait until the broker gives it a producer id
    (InitProducerId), as librdkafka's statistics report it (``eos.producer_id``), or refuses.

    A refusal is fatal for an idempotent producer: librdkafka raises it from ``poll()``."""
    ids: list[int] = []
    errors: list[KafkaError] = []
    producer = Producer(
        {
            **config,
            **QUIET,
            "enable.idempotence": True,
            "statistics.interval.ms": 100,
            "stats_cb": lambda stats: ids.append(json.loads(stats)["eos"]["producer_id"]),
            "error_cb": errors.append,
        }
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            producer.poll(0.1)
        except KafkaException as exc:
            return _error(exc.args[0]), -1
        fatal = [e for e in errors if e.fatal()]
        if fatal:
            return _error(fatal[0]), -1
        if ids and ids[-1] >= 0:
            return Outcome(True), ids[-1]
    return Outcome(False, "_TIMED_OUT", f"no producer id within {timeout:.0f} s"), -1


# -- ACLs ----------------------------------------------------------------------------------------


def allow(
    principal: str,
    resource: ResourceType,
    name: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
    permission: AclPermissionType = AclPermissionType.ALLOW,
) -> AclBinding:
    """One ACL binding, from any host."""
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


def grant(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


def everything(principal: str | None = None) -> AclBindingFilter:
    """A filter matching every binding (of ``principal``, if given)."""
    return AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        principal,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def bindings_of(admin: AdminClient, principal: str) -> list[AclBinding]:
    return list(admin.describe_acls(everything(principal), request_timeout=30).result())


def revoke_all(admin: AdminClient, principal: str) -> int:
    """Delete every ACL binding of ``principal``; returns how many were deleted."""
    deleted = 0
    for future in admin.delete_acls([everything(principal)], request_timeout=30).values():
        deleted += len(future.result())
    return deleted


def acl_rows(bindings: Iterable[AclBinding], replace: dict[str, str] | None = None) -> list[dict]:
    """Bindings as table rows, sorted; ``replace`` rewrites substrings (e.g. a run's suffix) so
    the listing is the same on every run."""

    def clean(text: str) -> str:
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        return text

    rows = [
        {
            "principal": clean(b.principal),
            "permission": b.permission_type.name,
            "operation": b.operation.name,
            # The Cluster resource is ResourceType.BROKER in the Python client (Kafka's CLUSTER).
            "resource": "CLUSTER" if b.restype == ResourceType.BROKER else b.restype.name,
            "pattern": b.resource_pattern_type.name,
            "name": clean(b.name),
            "host": b.host,
        }
        for b in bindings
    ]
    return sorted(rows, key=lambda r: tuple(r.values()))


# -- what least privilege means for the lab's two services ---------------------------------------

IMPLIED_BY_ANY = {AclOperation.DESCRIBE}  # READ, WRITE, DELETE and ALTER imply DESCRIBE


def broad_grants(
    bindings: Iterable[AclBinding], needs: dict[tuple[ResourceType, str], set[AclOperation]]
) -> list[str]:
    """Every ALLOW binding that grants more than ``needs`` (resource type and literal name ->
    the operations the service uses), as a sentence saying what is wrong. DENY bindings only
    take rights away and are never too broad."""
    problems = []
    for b in bindings:
        if b.permission_type != AclPermissionType.ALLOW:
            continue
        kind = "CLUSTER" if b.restype == ResourceType.BROKER else b.restype.name
        what = f"{b.operation.name} on {kind} {b.name!r} ({b.resource_pattern_type.name})"
        if b.operation == AclOperation.ALL:
            problems.append(
                f"{b.principal} has {what}: ALL allows every operation, including DELETE and "
                "ALTER_CONFIGS. Grant the single operation the service uses."
            )
        elif b.name == "*":
            problems.append(
                f"{b.principal} has {what}: the wildcard '*' matches every {kind.lower()}, "
                "today's and tomorrow's. Name the resource."
            )
        elif b.restype == ResourceType.BROKER:  # the Cluster resource (ResourceType.BROKER)
            hint = (
                "an idempotent producer has not needed IDEMPOTENT_WRITE since Kafka 2.8: WRITE on "
                "a topic is enough"
                if b.operation == AclOperation.IDEMPOTENT_WRITE
                else "neither service administers the cluster"
            )
            problems.append(f"{b.principal} has {what}: {hint}.")
        elif b.resource_pattern_type != ResourcePatternType.LITERAL:
            problems.append(
                f"{b.principal} has {what}: a {b.resource_pattern_type.name} pattern covers every "
                f"name starting with {b.name!r}, and the service uses one. Use LITERAL."
            )
        elif (b.restype, b.name) not in needs:
            problems.append(f"{b.principal} has {what}: the service does not use that resource.")
        elif b.operation not in needs[(b.restype, b.name)] | IMPLIED_BY_ANY:
            used = ", ".join(sorted(op.name for op in needs[(b.restype, b.name)]))
            problems.append(f"{b.principal} has {what}: the service only needs {used} there.")
    return problems


# -- the checks ----------------------------------------------------------------------------------


def _authenticated(lab: Lab, user: str, password: str) -> dict[str, Any]:
    """``user``'s client settings, once it can log in. The learner's users and grants may have
    been made with a client of their own: every broker has applied them after the barrier, so
    each attempt below is judged once, on any broker."""
    lab.wait_for_metadata()
    config = lab.sasl_config(user, password)
    outcome = connect(config)
    require(
        outcome.allowed,
        f"User {user!r} cannot connect to the SASL_SSL listener ({outcome.code}: "
        f"{outcome.detail}). Create it first: lab.create_user({user!r}, <its password>).",
    )
    return config


def _denied(outcome: Outcome, sentence: str) -> None:
    require(
        not outcome.allowed,
        f"{sentence} Least privilege: grant each service only the operations it uses "
        "(no ALL, no '*', literal names).",
    )


def check_orders_service(
    lab: Lab, user: str, password: str, topic: str, other_topic: str, group: str
) -> None:
    """``user`` (the orders service) writes ``topic`` with an idempotent producer, and can do
    nothing else: not read it, not touch ``other_topic``, not create topics, not use a group
    (``group`` is the shipping service's)."""
    config = _authenticated(lab, user, password)
    marker = f"lab09-orders-{uuid.uuid4().hex[:8]}"
    values = [f"{marker}-{i}" for i in range(5)]
    idempotent = {**config, "enable.idempotence": True, "acks": "all"}
    written = produce(idempotent, topic, values)
    require(
        written.allowed,
        f"{user} could not write {topic!r} with an idempotent producer ({written.code}: "
        f"{written.detail}). It needs WRITE on the topic {topic!r} (LITERAL).",
    )
    stored = [r for r in read_all(lab, topic) if str(r["value"]).startswith(marker)]
    require(
        len(stored) == len(values),
        f"{len(stored)} of the {len(values)} records {user} wrote are on {topic!r}: an "
        "idempotent producer stores each record exactly once.",
    )
    _denied(read(config, topic), f"{user} could read {topic!r}: the orders service only writes it.")
    _denied(
        produce(config, other_topic),
        f"{user} could write {other_topic!r}: it writes only {topic!r}.",
    )
    _denied(read(config, other_topic), f"{user} could read {other_topic!r}.")
    _denied(
        create_topic(config, f"lab09.rogue.{uuid.uuid4().hex[:6]}"),
        f"{user} could create topics (CREATE on the cluster or on topic names): topics are "
        "created by an administrator, not by services.",
    )
    for other in (group, f"orders.{uuid.uuid4().hex[:6]}"):
        _denied(
            describe_group(config, other),
            f"{user} may use consumer group {other!r}: a producer needs no group.",
        )
    _denied(
        describe_broker(config),
        f"{user} can read the brokers' configuration (DESCRIBE_CONFIGS on the cluster): is it "
        "a super user, or does it hold a cluster grant?",
    )
    passed(f"{user} writes {topic!r} idempotently, and nothing else")


def check_shipping_service(
    lab: Lab, user: str, password: str, topic: str, group: str, other_topic: str
) -> None:
    """``user`` (the shipping service) reads ``topic`` in consumer group ``group`` and commits
    its offsets, and can do nothing else: not write, not touch ``other_topic``, not create
    topics, not use another group."""
    config = _authenticated(lab, user, password)
    marker = f"lab09-shipping-{uuid.uuid4().hex[:8]}".encode()
    producer = lab.producer({"acks": "all"})  # the lab's own client writes the test records
    for i in range(3):
        producer.produce(topic, value=marker + f"-{i}".encode())
    require(producer.flush(30) == 0, f"could not write test records to {topic!r}.")
    consumed = consume(config, topic, group, lambda v: bool(v and v.startswith(marker)), 3)
    if consumed.code == "GROUP_AUTHORIZATION_FAILED" and read(config, topic).allowed:
        require(
            False,
            f"{user} may read the topic but not use its consumer group {group!r} "
            f"(GROUP_AUTHORIZATION_FAILED): a group member needs READ on the GROUP {group!r} too.",
        )
    require(
        consumed.allowed,
        f"{user} could not consume {topic!r} in group {group!r} ({consumed.code}: "
        f"{consumed.detail}). It needs READ on the topic {topic!r} and READ on the group "
        f"{group!r}.",
    )
    committed = committed_on(lab, group, topic, timeout=30)
    ends = _end_offsets(lab, topic)
    behind = {  # None means nothing committed: fine for an empty partition
        p: ends[p] - (offset or 0) for p, offset in committed.items() if (offset or 0) < ends[p]
    }
    require(
        not behind,
        f"group {group!r} has not committed to the end of {topic!r} (partitions behind: "
        f"{behind}): committing offsets needs READ on the group.",
    )
    _denied(produce(config, topic), f"{user} could write {topic!r}: shipping only reads it.")
    _denied(read(config, other_topic), f"{user} could read {other_topic!r}.")
    _denied(produce(config, other_topic), f"{user} could write {other_topic!r}.")
    _denied(
        create_topic(config, f"lab09.rogue.{uuid.uuid4().hex[:6]}"),
        f"{user} could create topics: topics are created by an administrator.",
    )
    for other in (f"{group}.replay", f"billing.{uuid.uuid4().hex[:6]}"):
        _denied(
            describe_group(config, other),
            f"{user} may use consumer group {other!r}: it needs only {group!r}.",
        )
    _denied(
        describe_broker(config),
        f"{user} can read the brokers' configuration (DESCRIBE_CONFIGS on the cluster): is it "
        "a super user, or does it hold a cluster grant?",
    )
    passed(f"{user} consumes {topic!r} in group {group!r}, and nothing else")


def _end_offsets(lab: Lab, topic: str) -> dict[int, int]:
    with lab.consumer(f"lab09-ends-{uuid.uuid4().hex[:8]}") as consumer:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }


def check_least_privilege(
    lab: Lab, orders_user: str, shipping_user: str, topic: str, group: str
) -> None:
    """The ACLs of both users, read back with describe_acls: nothing broader than the services
    use (no ALL, no '*', no PREFIXED, no cluster grants), and no grant to every user."""
    needs = {
        orders_user: {(ResourceType.TOPIC, topic): {AclOperation.WRITE}},
        shipping_user: {
            (ResourceType.TOPIC, topic): {AclOperation.READ},
            (ResourceType.GROUP, group): {AclOperation.READ},
        },
    }
    with lab.admin() as admin:
        for user, need in needs.items():
            bindings = bindings_of(admin, f"User:{user}")
            require(
                bindings,
                f"User:{user} has no ACLs at all: create its grants with create_acls.",
            )
            problems = broad_grants(bindings, need)
            require(not problems, f"{len(problems)} too broad: " + " ".join(problems))
        for resource, name in ((ResourceType.TOPIC, topic), (ResourceType.GROUP, group)):
            matching = AclBindingFilter(
                resource,
                name,
                ResourcePatternType.MATCH,
                "User:*",
                None,
                AclOperation.ANY,
                AclPermissionType.ALLOW,
            )
            everyone = admin.describe_acls(matching, request_timeout=30).result()
            require(
                not everyone,
                f"{len(everyone)} ACLs grant User:* (every authenticated user) access to "
                f"{resource.name} {name!r}: grant the two services by name.",
            )
    passed(f"User:{orders_user} and User:{shipping_user} hold exactly what they use")
