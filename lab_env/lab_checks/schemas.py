"""Lab 05: a schema evolved through three versions, checked against the registry and the topic.

The payments schema evolves while old and new producers and consumers run side by side, upgraded
in any order, so the subject is ``FULL_TRANSITIVE``: every version must be backward and forward
compatible with every earlier one. The checks ask the registry (the subject's level, its
versions, and whether it finds each version compatible with each earlier one) and read the topic
back (each record's schema id in the wire format, and each record decoded as a v3 consumer).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from lab_env.api import SERIALIZER_CONFIG, Lab
from lab_env.checks import passed, require
from lab_env.records import read_all
from lab_env.schemas import compatibility, split_wire_format, subject_level, version, versions

LEVEL = "FULL_TRANSITIVE"
METHOD_DEFAULT = "card"
METHODS = ("card", "paypal", "sepa")
CAPTURED_BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
V3_FIELDS = ("payment_id", "amount_cents", "method", "captured_at")
TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}

PAYMENT_V1: dict[str, Any] = {
    "type": "record",
    "name": "Payment",
    "namespace": "lab05",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
}


def payment_v1() -> dict[str, Any]:
    """The given first version (a fresh copy: edit it freely)."""
    return copy.deepcopy(PAYMENT_V1)


def payment_batches(per_version: int) -> dict[int, list[dict[str, Any]]]:
    """The payments each producer version writes: ``{1: [...], 2: [...], 3: [...]}``.

    v1 payments have a currency, v2 payments add the payment method, v3 payments drop the
    currency and add when the payment was captured (epoch milliseconds, or None when unknown).
    """
    v1 = [
        {
            "payment_id": f"p1-{i:03d}",
            "amount_cents": 500 + 25 * i,
            "currency": "USD" if i % 3 == 0 else "EUR",
        }
        for i in range(per_version)
    ]
    v2 = [
        {
            "payment_id": f"p2-{i:03d}",
            "amount_cents": 700 + 25 * i,
            "currency": "EUR",
            "method": METHODS[i % len(METHODS)],
        }
        for i in range(per_version)
    ]
    v3 = [
        {
            "payment_id": f"p3-{i:03d}",
            "amount_cents": 900 + 25 * i,
            "method": METHODS[(i + 1) % len(METHODS)],
            "captured_at": None if i % 4 == 3 else CAPTURED_BASE_MS + 60_000 * i,
        }
        for i in range(per_version)
    ]
    return {1: v1, 2: v2, 3: v3}


def millis_to_datetime(millis: int | None) -> datetime | None:
    """What an Avro ``timestamp-millis`` value decodes to in Python (an aware UTC datetime)."""
    return None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC)


def expected_view(batches: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every payment as a consumer with the v3 reader schema decodes it, by payment id.

    Schema resolution fills a field the writer did not have with the reader's default (v1
    payments read ``method="card"``; v1 and v2 payments read ``captured_at=None``) and drops a
    field the reader does not have (``currency``).
    """
    view: dict[str, dict[str, Any]] = {}
    for batch in batches.values():
        for payment in batch:
            view[payment["payment_id"]] = {
                "payment_id": payment["payment_id"],
                "amount_cents": payment["amount_cents"],
                "method": payment.get("method", METHOD_DEFAULT),
                "captured_at": millis_to_datetime(payment.get("captured_at")),
            }
    return view


def writer_versions(batches: dict[int, list[dict[str, Any]]]) -> dict[str, int]:
    """Which schema version each payment must be written with, by payment id."""
    return {p["payment_id"]: version for version, batch in batches.items() for p in batch}


# -- what each version must look like (pure: unit-tested) ---------------------------------------


def _type(value: Any) -> Any:
    """``{"type": "string"}`` and ``"string"`` are the same Avro type."""
    if isinstance(value, dict) and set(value) == {"type"}:
        return value["type"]
    return value


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f.get("name"): f for f in schema.get("fields", []) if isinstance(f, dict)}


def _same_field(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _type(a.get("type")) == _type(b.get("type")) and (
        ("default" in a) == ("default" in b) and a.get("default") == b.get("default")
    )


def _field_set_problem(n: int, fields: dict[str, Any], wanted: tuple[str, ...]) -> str | None:
    missing = [name for name in wanted if name not in fields]
    extra = sorted(set(fields) - set(wanted), key=str)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {missing}")
        if extra:
            parts.append(f"has {extra} too")
        return f"version {n} {' and '.join(parts)}: the task's v{n} has exactly {list(wanted)}."
    return None


def _method_problem(n: int, field: dict[str, Any]) -> str | None:
    if _type(field.get("type")) != "string":
        return f"version {n}'s method has type {field.get('type')!r}; make it a string."
    if "default" not in field:
        return (
            f"version {n}'s method has no default. v1 payments have no method, so a reader "
            f"of version {n} could not read them (FULL_TRANSITIVE needs both directions): add "
            f'"default": "{METHOD_DEFAULT}".'
        )
    if field["default"] != METHOD_DEFAULT:
        return (
            f"version {n}'s method defaults to {field['default']!r}; payments written before "
            f'the method existed were card payments: "default": "{METHOD_DEFAULT}".'
        )
    return None


def _captured_at_problem(field: dict[str, Any]) -> str | None:
    kind = field.get("type")
    if "logicalType" in field:
        return (
            "version 3's captured_at has its logicalType beside the type, at field level, "
            "where Avro ignores it (the article's mistake): the value would decode as a plain "
            f"int. Put it inside the type: {json.dumps(TIMESTAMP)}."
        )
    branches = kind if isinstance(kind, list) else [kind]
    timestamps = [b for b in branches if isinstance(b, dict) and b.get("type") == "long"]
    if not timestamps or timestamps[0].get("logicalType") != "timestamp-millis":
        return (
            f"version 3's captured_at has type {json.dumps(kind)}; it must hold a "
            f"timestamp-millis: the type {json.dumps(TIMESTAMP)}."
        )
    if not isinstance(kind, list) or "null" not in kind or len(kind) != 2:
        return (
            "version 3's captured_at is not nullable, but v1 and v2 payments have no capture "
            f'time, and some v3 payments neither: make it a union ["null", '
            f'{json.dumps(TIMESTAMP)}] with "default": null.'
        )
    if "default" not in field or field["default"] is not None:
        return (
            "version 3's captured_at has no default null: a v3 reader could not read v1 and v2 "
            'payments, which have no captured_at. Add "default": null.'
        )
    return None


def version_problem(n: int, schema: Any) -> str | None:
    """What is wrong with ``schema`` as version ``n`` (1, 2 or 3) of the lab, or None."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return f"version {n} is not an Avro record schema: {json.dumps(schema)[:200]}"
    name = f"{schema.get('namespace', '')}.{schema.get('name')}".lstrip(".")
    if name != "lab05.Payment":
        return (
            f"version {n} is the record {name!r}; keep the name and namespace of V1 "
            "(lab05.Payment): a reader resolves records by their full name."
        )
    fields = _fields(schema)
    given = _fields(PAYMENT_V1)
    if n == 1:
        same = set(fields) == set(given) and all(_same_field(fields[k], given[k]) for k in given)
        return None if same else "version 1 is not the given V1: register V1 unchanged first."
    wanted = ("payment_id", "amount_cents", "currency", "method") if n == 2 else V3_FIELDS
    if n == 3 and "currency" in fields:
        return (
            "version 3 still has currency: the task removes it (it has a default, so "
            "FULL_TRANSITIVE allows removing it)."
        )
    problem = _field_set_problem(n, fields, wanted)
    if problem:
        return problem
    for kept in ("payment_id", "amount_cents") + (("currency",) if n == 2 else ()):
        if not _same_field(fields[kept], given[kept]):
            return f"version {n} changes the field {kept!r}; keep it exactly as in V1."
    problem = _method_problem(n, fields["method"])
    if problem or n == 2:
        return problem
    return _captured_at_problem(fields["captured_at"])


# -- the registry and the topic ------------------------------------------------------------------


def _versions(lab: Lab, subject: str) -> list[int]:
    reply = versions(lab, subject)
    if reply.status == 404:
        return []
    require(reply.status == 200, f"the registry could not list {subject!r}'s versions: {reply}")
    return sorted(reply.body)


def _version(lab: Lab, subject: str, number: int) -> dict[str, Any]:
    reply = version(lab, subject, number)
    require(reply.status == 200, f"the registry could not read {subject!r} v{number}: {reply}")
    return reply.body


def _level(lab: Lab, subject: str) -> tuple[str | None, str]:
    reply = subject_level(lab, subject)
    if reply.status == 200 and isinstance(reply.body, dict):
        return reply.body.get("compatibilityLevel"), str(reply)
    return None, str(reply)


def _level_hint(level: str | None, answer: str, subject: str) -> str:
    """Why ``level`` is not the one the task needs, without naming the answer."""
    question = (
        "Which level lets every reader version read every writer version, in both directions? "
        "Set it with registry.set_compatibility(SUBJECT, level)."
    )
    if level is None:
        return (
            f"subject {subject!r} has no compatibility level of its own (the registry answered "
            f"{answer}), so the global level applies, and that one is not yours to change on a "
            f"shared registry. {question}"
        )
    if level == "NONE":
        return (
            f"subject {subject!r} reports level NONE. Apicurio answers NONE for a subject with "
            "no level of its own (the global level then applies), and NONE set on purpose checks "
            f"nothing. {question}"
        )
    if level == "FULL":
        return (
            f"subject {subject!r} is FULL: both directions, but only against the latest "
            "version, so a v3 that FULL accepts after v2 may still break v1 readers or fail on "
            "v1 payments. Which level checks against every earlier version?"
        )
    if level.startswith("BACKWARD"):
        return (
            f"subject {subject!r} is {level}: it only guarantees that new readers read old "
            "data. Here consumers that are not upgraded yet also read payments from upgraded "
            f"producers. {question}"
        )
    if level.startswith("FORWARD"):
        return (
            f"subject {subject!r} is {level}: it only guarantees that old readers read new "
            f"data. Here upgraded consumers also read payments written with v1. {question}"
        )
    return f"subject {subject!r} has level {level!r}. {question}"


def check_subject_level(lab: Lab, subject: str) -> None:
    """The subject has its own compatibility level, FULL_TRANSITIVE (not the global one)."""
    level, answer = _level(lab, subject)
    require(level == LEVEL, _level_hint(level, answer, subject))
    passed(f"{subject} has its own compatibility level, {LEVEL}")


def check_schema_versions(lab: Lab, subject: str) -> None:
    """Exactly three versions, each what the task asks, and the registry itself finds each one
    compatible with every earlier one under the subject's level."""
    numbers = _versions(lab, subject)
    require(
        numbers,
        f"subject {subject!r} has no versions: run the cell that registers V1, V2 and V3.",
    )
    require(
        len(numbers) == 3,
        f"subject {subject!r} has {len(numbers)} version(s) {numbers}; the task needs exactly "
        "3 (V1, V2, V3). A schema identical to a registered one adds no version: is V2 or V3 "
        "still a copy? If the registry took a wrong schema, start over: forget_subject(lab, "
        "SUBJECT), set the level again, register V1, V2 and V3.",
    )
    schemas: list[str] = []
    for n, number in enumerate(numbers, 1):
        body = _version(lab, subject, number)
        kind = body.get("schemaType", "AVRO")
        require(kind == "AVRO", f"version {n} of {subject!r} is a {kind} schema, not Avro.")
        try:
            schema = json.loads(body["schema"])
        except (KeyError, ValueError):
            schema = None
        problem = version_problem(n, schema)
        require(problem is None, str(problem))
        schemas.append(body["schema"])
    level, answer = _level(lab, subject)
    require(level == LEVEL, _level_hint(level, answer, subject))
    for later in range(1, 3):
        for earlier in range(later):
            reply = compatibility(lab, subject, schemas[later], version=numbers[earlier])
            ok = reply.status == 200 and reply.body.get("is_compatible") is True
            require(
                ok,
                f"asked whether version {later + 1} is compatible with version {earlier + 1} "
                f"under {LEVEL}, the registry answered {reply}.",
            )
    passed(
        f"3 versions of {subject}, each compatible with every earlier one under {LEVEL} "
        "(the registry says so)"
    )


def _id_to_version(lab: Lab, subject: str) -> dict[int, int]:
    numbers = _versions(lab, subject)
    return {_version(lab, subject, v)["id"]: n for n, v in enumerate(numbers, 1)}


def check_topic_versions(
    lab: Lab, topic: str, subject: str, batches: dict[int, list[dict[str, Any]]]
) -> None:
    """The topic holds every payment once, each written with its own version's schema: the
    schema id in each record's wire format names that version of the subject."""
    records = read_all(lab, topic, decode=False)
    require(records, f"topic {topic!r} holds no records: produce every batch to it.")
    ids = _id_to_version(lab, subject)
    should = writer_versions(batches)
    reader = AvroDeserializer(lab.registry(), conf=SERIALIZER_CONFIG)
    ctx = SerializationContext(topic, MessageField.VALUE)
    seen: Counter[str] = Counter()
    written: Counter[int] = Counter()
    for record in records:
        where = f"{topic!r} partition {record['partition']} offset {record['offset']}"
        try:
            _, schema_id, _ = split_wire_format(record["value"])
        except ValueError as exc:
            require(False, f"the record at {where} is not in the registry's wire format: {exc}.")
        require(
            schema_id in ids,
            f"the record at {where} was written with schema id {schema_id}, which is no "
            f"version of {subject!r} (its versions have ids {sorted(ids)}): serialize with "
            "AvroSerializer on the topic's subject (conf=SERIALIZER_CONFIG).",
        )
        payment = reader(record["value"], ctx)
        pid = payment.get("payment_id") if isinstance(payment, dict) else None
        require(pid in should, f"the record at {where} is not one of the lab's payments.")
        seen[pid] += 1
        written[ids[schema_id]] += 1
        require(
            ids[schema_id] == should[pid],
            f"payment {pid} was written with schema version {ids[schema_id]}, but it belongs "
            f"to the v{should[pid]} batch: write batches[{should[pid]}] with a serializer built "
            f"on V{should[pid]}.",
        )
    twice = sorted(p for p, count in seen.items() if count > 1)
    require(
        not twice,
        f"payments {twice[:5]} are in {topic!r} more than once: produce each payment once (if "
        "you ran the cell twice, delete the topic and create it again).",
    )
    missing = sorted(set(should) - set(seen))
    require(not missing, f"payments {missing[:5]} are missing from {topic!r}: produce them all.")
    per_version = ", ".join(f"v{n}: {written[n]}" for n in sorted(written))
    passed(f"{len(records)} payments in {topic}, each written with its own version ({per_version})")


def _difference(pid: str, key: str, got: Any, want: Any) -> str:
    if key == "captured_at" and isinstance(got, int):
        return (
            f"payment {pid}'s captured_at decoded as the int {got}, not a datetime: the "
            "logicalType is not inside the type. Write V3's captured_at type as "
            f'["null", {json.dumps(TIMESTAMP)}].'
        )
    if key == "method" and got is None:
        return (
            f"payment {pid}'s method decoded as None; a v1 payment read with V3 gets the "
            f'default, "{METHOD_DEFAULT}": is V3 the reader schema, with that default?'
        )
    return f"payment {pid}'s {key} decoded as {got!r}; a v3 reader gets {want!r}."


def _compare(pid: str, got: Any, want: dict[str, Any], who: str) -> None:
    require(isinstance(got, dict), f"{who} decoded payment {pid} as {got!r}, not a dict.")
    require(
        tuple(sorted(got)) == tuple(sorted(want)),
        f"{who} decoded payment {pid} with the fields {sorted(got)}; a consumer with the V3 "
        f"reader schema gets exactly {sorted(want)} (defaults filled in, currency dropped): "
        "AvroDeserializer(registry, json.dumps(V3), conf=SERIALIZER_CONFIG).",
    )
    for key, value in want.items():
        require(got[key] == value, _difference(pid, key, got[key], value))


def check_reader_view(
    lab: Lab,
    topic: str,
    subject: str,
    decoded: Any,
    batches: dict[int, list[dict[str, Any]]],
) -> None:
    """Every payment, whichever version wrote it, read by a v3 consumer: ``decoded`` (what the
    learner's consumer returned) and the check's own decoding of the topic with the registered
    version 3 as the reader schema must both give the expected values."""
    require(
        isinstance(decoded, list),
        f"decoded must be the list of values your consumer decoded, not a "
        f"{type(decoded).__name__}.",
    )
    expected = expected_view(batches)
    require(
        len(decoded) == len(expected),
        f"decoded holds {len(decoded)} values, but the topic holds {len(expected)} payments: "
        "consume until you have them all (with a deadline) and decode every one.",
    )
    ids = Counter(d.get("payment_id") if isinstance(d, dict) else None for d in decoded)
    strays = sorted(str(p) for p in ids if p not in expected)
    require(not strays, f"decoded has values that are none of the lab's payments: {strays[:5]}.")
    twice = sorted(p for p, count in ids.items() if count > 1)
    require(not twice, f"decoded has payments {twice[:5]} more than once.")
    for value in decoded:
        _compare(value["payment_id"], value, expected[value["payment_id"]], "your consumer")

    numbers = _versions(lab, subject)
    require(len(numbers) == 3, f"subject {subject!r} has versions {numbers}, not 3.")
    v3 = _version(lab, subject, numbers[2])["schema"]
    reader = AvroDeserializer(lab.registry(), v3, conf=SERIALIZER_CONFIG)
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = read_all(lab, topic, decode=False)
    require(
        len(records) == len(expected),
        f"{topic!r} holds {len(records)} records, the lab has {len(expected)} payments.",
    )
    for record in records:
        try:
            value = reader(record["value"], ctx)
        except Exception as exc:  # any decoding failure is the learner's to see
            require(False, f"the registered version 3 cannot read a record of {topic!r}: {exc}")
        pid = value.get("payment_id") if isinstance(value, dict) else None
        require(pid in expected, f"{topic!r} holds a record that is none of the payments.")
        _compare(pid, value, expected[pid], "the registered version 3")
    passed(
        f"{len(expected)} payments written with v1, v2 and v3 all read as v3: defaults filled "
        "in, currency dropped, captured_at a datetime"
    )
