"""lab_env.schemas against the live registry, and lab 05's checks on a solved and a wrongly solved
lab: the registry's answers are what the lesson prints, and each check fails for its reason."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from lab_env.api import SERIALIZER_CONFIG, Lab
from lab_env.checks import LabCheckError
from lab_env.lab_checks import schemas as lab05
from lab_env.schemas import (
    compatibility,
    forget_subject,
    register,
    set_subject_level,
    subject_level,
    versions,
)
from tests.conftest import forget_subjects

pytestmark = pytest.mark.cluster

V1 = lab05.payment_v1()
METHOD = {"name": "method", "type": "string", "default": "card"}
CAPTURED = {
    "name": "captured_at",
    "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
    "default": None,
}
V2 = {**V1, "fields": [*V1["fields"], METHOD]}
V3 = {**V1, "fields": [*V1["fields"][:2], METHOD, CAPTURED]}
REQUIRED_ADDED = {**V1, "fields": [*V1["fields"], {"name": "warehouse", "type": "string"}]}


@pytest.fixture
def subject(lab: Lab) -> Iterator[str]:
    name = f"it-schemas-{uuid.uuid4().hex[:8]}-value"
    yield name
    forget_subjects(lab, name)


def test_a_refused_schema_gets_409_and_a_test_says_why_not(lab: Lab, subject: str) -> None:
    assert register(lab, subject, V1).status == 200
    test = compatibility(lab, subject, REQUIRED_ADDED, verbose=True)
    assert test.status == 200 and test.body["is_compatible"] is False
    refused = register(lab, subject, REQUIRED_ADDED)
    assert refused.status == 409 and refused.body["error_code"] == 409
    assert "warehouse" in refused.body["message"]
    assert versions(lab, subject).body == [1]


def test_a_subject_level_is_set_read_and_applied(lab: Lab, subject: str) -> None:
    assert set_subject_level(lab, subject, "FORWARD").status == 200
    assert subject_level(lab, subject).body == {"compatibilityLevel": "FORWARD"}
    assert register(lab, subject, V1).status == 200
    assert register(lab, subject, REQUIRED_ADDED).status == 200  # FORWARD allows it
    removed = {**V1, "fields": V1["fields"][:1]}  # amount_cents has no default
    assert register(lab, subject, removed).status == 409
    assert set_subject_level(lab, subject, "NO_SUCH_LEVEL").status == 422


def test_transitive_levels_are_tested_against_every_version(lab: Lab, subject: str) -> None:
    set_subject_level(lab, subject, "FULL_TRANSITIVE")
    register(lab, subject, {**V1, "fields": V1["fields"][:2]})  # no currency
    register(lab, subject, V1)  # currency, with a default
    no_default = copy.deepcopy(V1)
    del no_default["fields"][2]["default"]
    assert compatibility(lab, subject, no_default).body == {"is_compatible": True}
    assert compatibility(lab, subject, no_default, version=1).body == {"is_compatible": False}
    assert compatibility(lab, subject, no_default, version=None).body == {"is_compatible": False}


def test_forget_subject_deletes_softly_then_for_good(lab: Lab, subject: str) -> None:
    register(lab, subject, V1)
    assert forget_subject(lab, subject) == [1]
    assert versions(lab, subject).status == 404
    assert forget_subject(lab, subject) == []  # absent is fine


def solve(lab: Lab, topic: str, v3: dict[str, Any], per_version: int = 3) -> list[dict]:
    """The lab, solved (with ``v3`` as version 3); returns what a v3 consumer decoded."""
    registry = lab.registry()
    subject = f"{topic}-value"
    registry.set_compatibility(subject, lab05.LEVEL)
    for schema in (V1, V2, v3):
        registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    batches = lab05.payment_batches(per_version)
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = lab.producer({"acks": "all"})
    for version, schema in ((1, V1), (2, V2), (3, v3)):
        serializer = AvroSerializer(registry, json.dumps(schema), conf=SERIALIZER_CONFIG)
        for payment in batches[version]:
            producer.produce(topic, key=payment["payment_id"], value=serializer(payment, ctx))
    assert producer.flush(30) == 0
    reader = AvroDeserializer(registry, json.dumps(v3), conf=SERIALIZER_CONFIG)
    consumer = lab.consumer(f"it-lab05-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    decoded: list[dict] = []
    deadline = time.monotonic() + 30
    while len(decoded) < 3 * per_version and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=100, timeout=1.0):
            if msg.error() is None:
                decoded.append(reader(msg.value(), ctx))
    consumer.close()
    return decoded


def test_the_solved_lab_passes_every_check(lab: Lab, make_topic: Callable[..., str]) -> None:
    topic = make_topic()
    subject = f"{topic}-value"
    decoded = solve(lab, topic, V3)
    batches = lab05.payment_batches(3)
    lab05.check_subject_level(lab, subject)
    lab05.check_schema_versions(lab, subject)
    lab05.check_topic_versions(lab, topic, subject, batches)
    lab05.check_reader_view(lab, topic, subject, decoded, batches)


def test_the_articles_logical_type_fails_the_checks(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    """A v3 with the logicalType beside the type: the registry accepts it (same bytes), the
    checks do not, and a v3 consumer sees ints."""
    topic = make_topic()
    subject = f"{topic}-value"
    misplaced = {
        "name": "captured_at",
        "type": ["null", "long"],
        "logicalType": "timestamp-millis",
        "default": None,
    }
    decoded = solve(lab, topic, {**V1, "fields": [*V1["fields"][:2], METHOD, misplaced]})
    with pytest.raises(LabCheckError, match="beside the type"):
        lab05.check_schema_versions(lab, subject)
    with pytest.raises(LabCheckError, match="decoded as the int"):
        lab05.check_reader_view(lab, topic, subject, decoded, lab05.payment_batches(3))
