"""The secured listeners really enforce: every way in without valid credentials is refused, and an
authenticated principal can do exactly what its ACLs allow.

Runs against the shared lab's TLS (mutual TLS) and SASL_SSL (SCRAM-SHA-512) listeners. Each test
uses its own user names and topics; ACLs it creates are deleted afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from lab_env import security
from lab_env.api import Lab
from lab_env.lab_checks import security_acls as acls

pytestmark = pytest.mark.cluster
QUIET = {"log_level": 0, "socket.connection.setup.timeout.ms": 3000}


def refusal(config: dict[str, Any], timeout: float = 6.0) -> list[str]:
    """Try to fetch metadata with ``config``; return the errors the client reported.

    An empty list means the listener served the request."""
    errors: list[str] = []
    try:
        client = AdminClient({**config, **QUIET, "error_cb": lambda e: errors.append(e.str())})
    except KafkaException as exc:  # refused by the client itself (e.g. an empty password)
        return [exc.args[0].str()]
    try:
        client.list_topics(timeout=timeout)
    except KafkaException as exc:
        errors.append(exc.args[0].str())
        client.poll(1)  # serves error_cb: the reason (SSL, authentication) comes through it
    return errors


def produce_error(config: dict[str, Any], topic: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = Producer({**config, **QUIET, "message.timeout.ms": 8000})
    producer.produce(topic, b"payload", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert errors, "the delivery report never came"
    return errors[0]


def consume_error(config: dict[str, Any], topic: str, group: str) -> KafkaError | None:
    """The first error (None: a record arrived) of a consumer subscribed to ``topic``."""
    consumer = Consumer({**config, **QUIET, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            return msg.error()
        raise AssertionError(f"no record and no error from {topic!r} in 20 s")
    finally:
        consumer.close()


@pytest.fixture
def admin(lab: Lab) -> Iterator[AdminClient]:
    """The lab's super user, over SASL_SSL, for one test."""
    with AdminClient(
        {**security.sasl_config(lab.config, security.ADMIN, security.admin_password(lab.config))}
    ) as client:
        yield client


@pytest.fixture
def grant(lab: Lab, admin: AdminClient) -> Iterator[Callable[..., None]]:
    """Create ACL bindings, in effect on every broker on return (the metadata barrier); every
    binding for the principals used is deleted afterwards."""
    principals: set[str] = set()

    def create(principal: str, *binding: Any, **options: Any) -> None:
        principals.add(principal)
        acls.grant(admin, [acls.allow(principal, *binding, **options)])
        lab.wait_for_metadata()

    yield create
    for principal in principals:
        acls.revoke_all(admin, principal)


CREATED_USERS: list[str] = []


@pytest.fixture(autouse=True)
def _forget_users(lab: Lab) -> Iterator[None]:
    """SCRAM users a test created are deleted afterwards, whether it passed or not."""
    yield
    while CREATED_USERS:
        lab.delete_user(CREATED_USERS.pop())


def scram_user(lab: Lab) -> tuple[str, str]:
    """A new SCRAM user with a random password: every broker knows it when create_user
    returns, so it logs in at the first attempt."""
    user, password = f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    lab.create_user(user, password)
    CREATED_USERS.append(user)
    assert refusal(security.sasl_config(lab.config, user, password)) == []
    return user, password


def secured(lab: Lab, listener: str) -> str:
    ports = lab.config.ports.tls if listener == "tls" else lab.config.ports.sasl
    return ",".join(f"{lab.config.host}:{p}" for p in ports)


# --- refused before any request is served ------------------------------------------------------


def test_plaintext_client_is_refused_on_the_tls_listener(lab: Lab) -> None:
    assert refusal({"bootstrap.servers": secured(lab, "tls")})


def test_plaintext_client_is_refused_on_the_sasl_listener(lab: Lab) -> None:
    assert refusal({"bootstrap.servers": secured(lab, "sasl")})


def test_sasl_without_tls_is_refused_on_the_sasl_listener(lab: Lab) -> None:
    config = security.sasl_config(lab.config, security.ADMIN, security.admin_password(lab.config))
    assert refusal({**config, "security.protocol": "SASL_PLAINTEXT"})


def test_tls_without_a_client_certificate_is_refused(lab: Lab) -> None:
    config = security.tls_config(lab.config, "no-cert")
    del config["ssl.certificate.location"], config["ssl.key.location"]
    assert refusal(config)


def test_tls_with_a_certificate_from_another_ca_is_refused(lab: Lab, tmp_path: Path) -> None:
    other = security.make_ca(tmp_path, "Someone else's CA")
    stranger = security.issue(other, "admin", tmp_path / "admin")  # even naming the super user
    config = {
        **security.tls_config(lab.config, "placeholder"),
        "ssl.certificate.location": str(stranger.cert),
        "ssl.key.location": str(stranger.key),
    }
    assert refusal(config)


def test_tls_with_an_expired_certificate_is_refused(lab: Lab, tmp_path: Path) -> None:
    expired = security.issue(
        security.lab_ca(lab.config), "admin", tmp_path / "expired", valid_days=-1
    )
    config = {
        **security.tls_config(lab.config, "placeholder"),
        "ssl.certificate.location": str(expired.cert),
        "ssl.key.location": str(expired.key),
    }
    assert refusal(config)


def test_client_that_does_not_trust_the_lab_ca_refuses_the_broker(lab: Lab, tmp_path: Path) -> None:
    other = security.make_ca(tmp_path, "Someone else's CA")
    config = security.sasl_config(lab.config, security.ADMIN, security.admin_password(lab.config))
    errors = refusal({**config, "ssl.ca.location": str(other.cert)})
    assert any("certificate verify failed" in e for e in errors), errors


def test_hostname_verification_is_on_and_the_broker_certificate_passes_it(lab: Lab) -> None:
    config = security.sasl_config(lab.config, security.ADMIN, security.admin_password(lab.config))
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    localhost = config["bootstrap.servers"].replace(lab.config.host, "localhost")
    assert refusal({**config, "bootstrap.servers": localhost}) == []


@pytest.mark.parametrize(
    ("user", "password", "mechanism"),
    [
        (security.ADMIN, "wrong-password", security.MECHANISM),
        ("nobody", "whatever", security.MECHANISM),
        (security.ADMIN, "", security.MECHANISM),
        (security.ADMIN, None, "SCRAM-SHA-256"),  # right password, mechanism not enabled
        (security.ADMIN, None, "PLAIN"),
    ],
    ids=["wrong-password", "unknown-user", "empty-password", "scram-sha-256", "plain"],
)
def test_bad_sasl_credentials_are_refused(
    lab: Lab, user: str, password: str | None, mechanism: str
) -> None:
    secret = security.admin_password(lab.config) if password is None else password
    config = {**security.sasl_config(lab.config, user, secret), "sasl.mechanism": mechanism}
    errors = refusal(config)
    assert errors
    if password and mechanism == security.MECHANISM:
        assert any("Authentication failed" in e or "authentication" in e.lower() for e in errors)


def test_the_admin_authenticates_on_both_secured_listeners(lab: Lab) -> None:
    sasl = security.sasl_config(lab.config, security.ADMIN, security.admin_password(lab.config))
    assert refusal(sasl) == []
    assert refusal(security.tls_config(lab.config, security.ADMIN)) == []


# --- authenticated, then authorized by ACLs only ------------------------------------------------


def test_authenticated_user_without_acls_can_do_nothing(lab: Lab, topic: str) -> None:
    user, password = scram_user(lab)
    config = security.sasl_config(lab.config, user, password)
    assert refusal(config) == []  # authenticated: the connection is served...
    visible = AdminClient({**config, **QUIET}).list_topics(timeout=10).topics
    assert topic not in visible  # ...but metadata hides what it may not describe
    error = produce_error(config, topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    error = consume_error(config, topic, f"g-{user}")
    assert error is not None and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )


def test_tls_principal_is_the_certificate_common_name(
    lab: Lab, topic: str, grant: Callable[..., None]
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    config = security.tls_config(lab.config, name)
    assert produce_error(config, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(f"User:{name}", ResourceType.TOPIC, topic, AclOperation.WRITE)
    assert produce_error(config, topic) is None


def test_least_privilege_producer_and_consumer(
    lab: Lab, make_topic: Callable[..., str], grant: Callable[..., None]
) -> None:
    allowed, other = make_topic(), make_topic()
    producer_user, producer_pw = scram_user(lab)
    consumer_user, consumer_pw = scram_user(lab)
    producer = security.sasl_config(lab.config, producer_user, producer_pw)
    consumer = security.sasl_config(lab.config, consumer_user, consumer_pw)
    group = f"g-{consumer_user}"

    grant(f"User:{producer_user}", ResourceType.TOPIC, allowed, AclOperation.WRITE)
    assert produce_error(producer, allowed) is None
    assert produce_error(producer, other).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    grant(f"User:{consumer_user}", ResourceType.TOPIC, allowed, AclOperation.READ)
    # READ on the topic is not enough: a consumer group needs READ on the group too.
    error = consume_error(consumer, allowed, group)
    assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    grant(f"User:{consumer_user}", ResourceType.GROUP, group, AclOperation.READ)
    assert consume_error(consumer, allowed, group) is None
    # The consumer may not write, and the producer may not read.
    assert produce_error(consumer, allowed).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    error = consume_error(producer, allowed, f"g-{producer_user}")
    assert error is not None and error.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )


def test_prefixed_acl_covers_a_team_namespace_only(lab: Lab, grant: Callable[..., None]) -> None:
    team = f"team{uuid.uuid4().hex[:6]}."
    inside, outside = f"{team}orders", f"x{team}orders"
    for name in (inside, outside):
        lab.create_topic(name, partitions=1)
    try:
        user, password = scram_user(lab)
        config = security.sasl_config(lab.config, user, password)
        prefixed = ResourcePatternType.PREFIXED
        grant(f"User:{user}", ResourceType.TOPIC, team, AclOperation.WRITE, prefixed)
        assert produce_error(config, inside) is None
        assert produce_error(config, outside).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        for name in (inside, outside):
            lab.delete_topic(name)


def test_deny_wins_over_allow(lab: Lab, topic: str, grant: Callable[..., None]) -> None:
    user, password = scram_user(lab)
    config = security.sasl_config(lab.config, user, password)
    grant(f"User:{user}", ResourceType.TOPIC, topic, AclOperation.WRITE)
    assert produce_error(config, topic) is None
    grant(
        f"User:{user}",
        ResourceType.TOPIC,
        topic,
        AclOperation.WRITE,
        permission=AclPermissionType.DENY,
    )
    denied = produce_error(config, topic)
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_ordinary_user_cannot_create_topics_or_grant_itself_acls(lab: Lab) -> None:
    user, password = scram_user(lab)
    client = AdminClient({**security.sasl_config(lab.config, user, password), **QUIET})
    name = f"it.forbidden.{uuid.uuid4().hex[:6]}"
    with pytest.raises(KafkaException) as created:
        client.create_topics([NewTopic(name, 1, 3)], request_timeout=15)[name].result()
    assert created.value.args[0].code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    )
    binding = AclBinding(
        ResourceType.TOPIC,
        "*",
        ResourcePatternType.LITERAL,
        f"User:{user}",
        "*",
        AclOperation.ALL,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(KafkaException) as granted:
        for future in client.create_acls([binding], request_timeout=15).values():
            future.result()
    assert granted.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
