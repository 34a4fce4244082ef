"""Lab 05's pure parts: the payments, what a v3 reader must see, what each version must look
like, and the wire format split. No cluster, no registry."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from lab_env.lab_checks.schemas import (
    CAPTURED_BASE_MS,
    LEVEL,
    METHOD_DEFAULT,
    PAYMENT_V1,
    TIMESTAMP,
    V3_FIELDS,
    _level_hint,
    expected_view,
    millis_to_datetime,
    payment_batches,
    payment_v1,
    version_problem,
    writer_versions,
)
from lab_env.schemas import HEADER, Reply, schema_payload, split_wire_format

METHOD = {"name": "method", "type": "string", "default": METHOD_DEFAULT}
CAPTURED = {"name": "captured_at", "type": ["null", TIMESTAMP], "default": None}


def v2() -> dict[str, Any]:
    schema = payment_v1()
    schema["fields"].append(dict(METHOD))
    return schema


def v3() -> dict[str, Any]:
    schema = payment_v1()
    schema["fields"] = [*schema["fields"][:2], dict(METHOD), copy.deepcopy(CAPTURED)]
    return schema


def with_field(schema: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for field in schema["fields"]:
        if field["name"] == name:
            field.update(changes)
    return schema


def without_key(schema: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for field in schema["fields"]:
        if field["name"] == name:
            field.pop(key)
    return schema


# -- the data ------------------------------------------------------------------------------------


def test_batches_have_one_payment_per_id_and_the_fields_of_their_version() -> None:
    batches = payment_batches(8)
    assert sorted(batches) == [1, 2, 3]
    ids = [p["payment_id"] for batch in batches.values() for p in batch]
    assert len(ids) == len(set(ids)) == 24
    assert {frozenset(p) for p in batches[1]} == {
        frozenset({"payment_id", "amount_cents", "currency"})
    }
    assert {frozenset(p) for p in batches[2]} == {
        frozenset({"payment_id", "amount_cents", "currency", "method"})
    }
    assert {frozenset(p) for p in batches[3]} == {frozenset(V3_FIELDS)}
    # some v3 payments have no capture time, so the null branch is exercised
    assert any(p["captured_at"] is None for p in batches[3])
    assert payment_batches(8) == batches  # deterministic


def test_given_v1_is_a_fresh_copy() -> None:
    mine = payment_v1()
    mine["fields"].append({"name": "x", "type": "int"})
    assert len(PAYMENT_V1["fields"]) == 3


def test_expected_view_fills_defaults_drops_currency_and_decodes_timestamps() -> None:
    batches = payment_batches(4)
    view = expected_view(batches)
    assert len(view) == 12
    assert all(tuple(v) == V3_FIELDS for v in view.values())
    assert view["p1-000"]["method"] == METHOD_DEFAULT
    assert view["p1-000"]["captured_at"] is None
    assert view["p2-001"]["method"] == batches[2][1]["method"]
    assert view["p2-001"]["captured_at"] is None
    assert view["p3-000"]["captured_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert view["p3-003"]["captured_at"] is None


def test_expected_view_is_what_avro_schema_resolution_gives() -> None:
    """Write each batch with its version and read it with v3, in fastavro (the library under
    confluent-kafka's AvroDeserializer): the result is expected_view."""
    batches = payment_batches(5)
    reader = parse_schema(v3())
    got = {}
    for version, schema in ((1, PAYMENT_V1), (2, v2()), (3, v3())):
        writer = parse_schema(copy.deepcopy(schema))
        for payment in batches[version]:
            buffer = io.BytesIO()
            schemaless_writer(buffer, writer, payment)
            buffer.seek(0)
            value = schemaless_reader(buffer, writer, reader)
            got[value["payment_id"]] = value
    assert got == expected_view(batches)


def test_writer_versions() -> None:
    assert writer_versions(payment_batches(2)) == {
        "p1-000": 1,
        "p1-001": 1,
        "p2-000": 2,
        "p2-001": 2,
        "p3-000": 3,
        "p3-001": 3,
    }


def test_millis_to_datetime() -> None:
    assert millis_to_datetime(None) is None
    assert millis_to_datetime(CAPTURED_BASE_MS) == datetime(2026, 1, 1, tzinfo=UTC)


# -- what each version must look like ------------------------------------------------------------


def test_the_solution_versions_pass() -> None:
    assert version_problem(1, payment_v1()) is None
    assert version_problem(2, v2()) is None
    assert version_problem(3, v3()) is None


def test_a_type_written_as_an_object_is_the_same_type() -> None:
    schema = with_field(v2(), "method", type={"type": "string"})
    assert version_problem(2, schema) is None


def test_null_may_come_second_in_the_union() -> None:
    """Avro 1.12 lets a union's default match any branch (AVRO-3649); fastavro and the registry
    accept it, so the check does too."""
    assert version_problem(3, with_field(v3(), "captured_at", type=[TIMESTAMP, "null"])) is None


@pytest.mark.parametrize(
    ("n", "schema", "fragment"),
    [
        (1, v2(), "not the given V1"),
        (2, {"type": "enum", "name": "X", "symbols": ["A"]}, "not an Avro record"),
        (2, {**v2(), "name": "Pay"}, "lab05.Payment"),
        (2, payment_v1(), "lacks ['method']"),
        (2, without_key(v2(), "method", "default"), "has no default"),
        (2, with_field(v2(), "method", default="cash"), "defaults to 'cash'"),
        (2, with_field(v2(), "method", type="int"), "make it a string"),
        (2, with_field(v2(), "amount_cents", type="int"), "changes the field 'amount_cents'"),
        (2, with_field(v2(), "currency", default="USD"), "changes the field 'currency'"),
        (2, {**v2(), "fields": [*v2()["fields"], {"name": "x", "type": "int"}]}, "has ['x'] too"),
        (3, {**v3(), "fields": [*v3()["fields"], PAYMENT_V1["fields"][2]]}, "still has currency"),
        (3, {**v3(), "fields": v3()["fields"][:3]}, "lacks ['captured_at']"),
        (3, without_key(v3(), "method", "default"), "has no default"),
        (
            3,
            with_field(v3(), "captured_at", type="long", logicalType="timestamp-millis"),
            "beside the type",
        ),
        (3, with_field(v3(), "captured_at", type=["null", "long"]), "must hold a timestamp"),
        (3, with_field(v3(), "captured_at", type=TIMESTAMP), "not nullable"),
        (3, without_key(v3(), "captured_at", "default"), "no default null"),
        (3, with_field(v3(), "captured_at", default=0), "no default null"),
    ],
)
def test_each_wrong_version_is_named(n: int, schema: Any, fragment: str) -> None:
    problem = version_problem(n, schema)
    assert problem is not None and fragment in problem, problem


def test_a_schema_that_is_not_json_is_named() -> None:
    assert "not an Avro record" in str(version_problem(3, None))


@pytest.mark.parametrize(
    ("level", "fragment"),
    [
        (None, "no compatibility level of its own"),
        ("NONE", "Apicurio answers NONE"),
        ("FULL", "only against the latest"),
        ("BACKWARD", "new readers read old data"),
        ("BACKWARD_TRANSITIVE", "new readers read old data"),
        ("FORWARD", "old readers read new data"),
        ("FORWARD_TRANSITIVE", "old readers read new data"),
    ],
)
def test_a_wrong_level_is_explained_without_giving_the_answer(
    level: str | None, fragment: str
) -> None:
    hint = _level_hint(level, "HTTP 404 {}", "lab05.payments.x-value")
    assert fragment in hint
    assert LEVEL not in hint


# -- the wire format and the registry's answers ------------------------------------------------


def test_split_wire_format() -> None:
    value = HEADER.pack(0, 258) + b"\x02a"
    assert split_wire_format(value) == (0, 258, b"\x02a")
    assert value[:5] == b"\x00\x00\x00\x01\x02"  # big-endian id


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "tombstone"),
        (b"\x00\x00", "has 2 bytes"),
        (b'{"id": 1}', "not the magic byte"),
    ],
)
def test_values_not_written_by_a_registry_serializer_are_named(
    value: bytes | None, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        split_wire_format(value)


def test_schema_payload_sends_the_schema_as_a_string() -> None:
    payload = schema_payload({"type": "string"}, "AVRO")
    assert payload == {"schema": '{"type": "string"}', "schemaType": "AVRO"}
    assert json.loads(payload["schema"]) == {"type": "string"}
    assert schema_payload('{"type": "object"}', "JSON")["schemaType"] == "JSON"


def test_reply_prints_status_and_body() -> None:
    assert str(Reply(409, {"error_code": 409})) == 'HTTP 409 {"error_code": 409}'
    assert str(Reply(500, "boom")) == "HTTP 500 boom"
