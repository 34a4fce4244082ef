"""The schema registry, through confluent-kafka's own client and serializers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from lab_env.api import SERIALIZER_CONFIG, Lab
from tests.conftest import forget_subjects

pytestmark = pytest.mark.cluster

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "lab.orders",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# BACKWARD-compatible: a new optional field with a default.
ORDER_V2 = {
    **ORDER_V1,
    "fields": [
        *ORDER_V1["fields"],
        {"name": "coupon", "type": ["null", "string"], "default": None},
    ],
}
# Not BACKWARD-compatible: a new required field without a default.
ORDER_BAD = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "warehouse", "type": "string"}]}


def avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


@pytest.fixture
def subject(lab: Lab) -> Iterator[str]:
    name = f"it-{uuid.uuid4().hex[:8]}-value"
    yield name
    forget_subjects(lab, name)


def test_default_compatibility_is_backward(lab: Lab) -> None:
    assert lab.registry().get_compatibility() == "BACKWARD"


def test_register_lookup_versions(lab: Lab, subject: str) -> None:
    client = lab.registry()
    first = client.register_schema(subject, avro(ORDER_V1))
    assert client.register_schema(subject, avro(ORDER_V1)) == first  # idempotent
    second = client.register_schema(subject, avro(ORDER_V2))
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    assert client.lookup_schema(subject, avro(ORDER_V1)).version == 1
    latest = client.get_latest_version(subject)
    assert latest.version == 2
    assert latest.schema_id == second
    assert json.loads(client.get_schema(first).schema_str)["name"] == "Order"
    assert subject in client.get_subjects()


def test_incompatible_schema_is_rejected_with_409(lab: Lab, subject: str) -> None:
    client = lab.registry()
    client.register_schema(subject, avro(ORDER_V1))
    assert client.test_compatibility(subject, avro(ORDER_V2)) is True
    assert client.test_compatibility(subject, avro(ORDER_BAD)) is False
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, avro(ORDER_BAD))
    assert caught.value.http_status_code == 409
    assert client.get_versions(subject) == [1]


def test_subject_compatibility_can_be_changed(lab: Lab, subject: str) -> None:
    client = lab.registry()
    client.register_schema(subject, avro(ORDER_V1))
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    client.register_schema(subject, avro(ORDER_BAD))  # accepted now
    assert client.get_versions(subject) == [1, 2]


def test_avro_serializers_round_trip_through_kafka(lab: Lab, topic: str) -> None:
    client = lab.registry()
    serializer = AvroSerializer(client, json.dumps(ORDER_V1), conf=SERIALIZER_CONFIG)
    deserializer = AvroDeserializer(client)
    order = {"id": "o-1", "amount_cents": 1999, "created_at": 1_700_000_000_000}
    producer = lab.producer({"acks": "all"})
    value = serializer(order, SerializationContext(topic, MessageField.VALUE))
    assert value[0] == 0  # Confluent wire format: magic byte, then the schema id
    producer.produce(topic, key="o-1", value=value)
    assert producer.flush(10) == 0

    consumer = lab.consumer(f"it-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    deadline = time.monotonic() + 20
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
    consumer.close()
    assert msg is not None and msg.error() is None
    decoded = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
    # timestamp-millis inside the type: the logical type is honoured (a datetime comes back)
    assert decoded["id"] == "o-1"
    assert decoded["amount_cents"] == 1999
    assert decoded["created_at"].timestamp() == 1_700_000_000


def test_old_reader_reads_new_data(lab: Lab, topic: str) -> None:
    client = lab.registry()
    subject = f"{topic}-value"
    v2 = AvroSerializer(client, json.dumps(ORDER_V2), conf=SERIALIZER_CONFIG)
    v1_reader = AvroDeserializer(client, json.dumps(ORDER_V1))
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = v2({"id": "o-2", "amount_cents": 5, "created_at": 0, "coupon": "SAVE"}, ctx)
    decoded = v1_reader(data, ctx)
    assert decoded["id"] == "o-2"
    assert "coupon" not in decoded
    assert client.get_latest_version(subject).version == 1


def test_json_schema_round_trip(lab: Lab, topic: str) -> None:
    client = lab.registry()
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Payment",
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["order_id", "ok"],
    }
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = JSONSerializer(json.dumps(schema), client, conf=SERIALIZER_CONFIG)(
        {"order_id": "o-3", "ok": True}, ctx
    )
    assert JSONDeserializer(json.dumps(schema), schema_registry_client=client)(data, ctx) == {
        "order_id": "o-3",
        "ok": True,
    }
    versions = client.get_versions(f"{topic}-value")
    assert versions == [1]
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "JSON"
