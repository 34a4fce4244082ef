"""The schema registry's REST API as it answers, and the wire format records carry.

confluent-kafka's ``SchemaRegistryClient`` turns the registry's answers into Python values: a
compatibility test becomes ``True``/``False`` and an error becomes an exception. Lessons want to
show what the registry itself said, so these helpers return the HTTP status and the JSON body of
the Confluent-compatible API (``lab.registry_url``) unchanged:

    reply = compatibility(lab, "orders-value", new_schema)
    reply.status, reply.body          # 200, {"is_compatible": False}

Every record a registry serializer writes starts with a 5-byte header, the Confluent wire format:
magic byte 0, then the schema id as a 4-byte big-endian integer, then the encoded value.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from lab_env.api import REGISTRY_TIMEOUT_S, Lab

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAGIC_BYTE = 0
HEADER = struct.Struct(">BI")  # magic byte, schema id (big-endian, 4 bytes)


@dataclass(frozen=True)
class Reply:
    """One answer of the registry: the HTTP status and the body (parsed JSON, else text)."""

    status: int
    body: Any

    def __str__(self) -> str:
        body = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return f"HTTP {self.status} {body}"


def call(
    lab: Lab,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Reply:
    """``method`` on ``lab.registry_url + path``; a status >= 400 is returned, not raised."""
    response = requests.request(
        method,
        f"{lab.registry_url}{path}",
        json=payload,
        params=params,
        headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        timeout=REGISTRY_TIMEOUT_S,
    )
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Reply(response.status_code, body)


def _subject(subject: str) -> str:
    return quote(subject, safe="")


def schema_payload(schema: str | dict[str, Any], schema_type: str = "AVRO") -> dict[str, Any]:
    """The request body the API expects: the schema as a string, and its type."""
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return {"schema": text, "schemaType": schema_type}


def compatibility(
    lab: Lab,
    subject: str,
    schema: str | dict[str, Any],
    schema_type: str = "AVRO",
    version: int | str | None = "latest",
    verbose: bool = False,
) -> Reply:
    """Would ``schema`` be accepted into ``subject``, under the subject's compatibility level?

    ``version`` names the one version to test against (``"latest"`` or a number). ``None``
    tests against every version the level covers (all of them for a ``*_TRANSITIVE`` level),
    which is what registering the schema would do. ``verbose`` asks for the reasons of a
    refusal (Confluent's registry lists them; Apicurio 3.3.3 does not).
    """
    path = f"/compatibility/subjects/{_subject(subject)}/versions"
    if version is not None:
        path += f"/{version}"
    params = {"verbose": "true"} if verbose else None
    return call(lab, "POST", path, schema_payload(schema, schema_type), params)


def register(
    lab: Lab, subject: str, schema: str | dict[str, Any], schema_type: str = "AVRO"
) -> Reply:
    """Register ``schema`` under ``subject``: 200 with its id, or the registry's refusal."""
    path = f"/subjects/{_subject(subject)}/versions"
    return call(lab, "POST", path, schema_payload(schema, schema_type))


def versions(lab: Lab, subject: str) -> Reply:
    """GET /subjects/{subject}/versions: the subject's version numbers (404 when none)."""
    return call(lab, "GET", f"/subjects/{_subject(subject)}/versions")


def version(lab: Lab, subject: str, number: int | str) -> Reply:
    """GET /subjects/{subject}/versions/{number}: its schema id and schema (a string)."""
    return call(lab, "GET", f"/subjects/{_subject(subject)}/versions/{number}")


def subject_level(lab: Lab, subject: str, default_to_global: bool = False) -> Reply:
    """GET /config/{subject}: the subject's own compatibility level."""
    params = {"defaultToGlobal": "true"} if default_to_global else None
    return call(lab, "GET", f"/config/{_subject(subject)}", params=params)


def set_subject_level(lab: Lab, subject: str, level: str) -> Reply:
    """PUT /config/{subject}: give one subject its own level (the global one stays as it is)."""
    return call(lab, "PUT", f"/config/{_subject(subject)}", {"compatibility": level})


def forget_subject(lab: Lab, subject: str) -> list[int]:
    """Delete ``subject`` for good: soft delete, then permanent delete (the registry refuses a
    permanent delete of versions that were not soft-deleted first). Returns the versions
    deleted; an absent subject is fine."""
    soft = call(lab, "DELETE", f"/subjects/{_subject(subject)}")
    hard = call(lab, "DELETE", f"/subjects/{_subject(subject)}", params={"permanent": "true"})
    for reply in (soft, hard):
        if reply.status not in (200, 404):
            raise RuntimeError(f"deleting subject {subject!r} failed: {reply}")
    deleted = hard.body if hard.status == 200 else soft.body if soft.status == 200 else []
    return list(deleted)


def split_wire_format(value: bytes | None) -> tuple[int, int, bytes]:
    """``(magic byte, schema id, encoded value)`` of one record value.

    Raises ValueError with a sentence when the value was not written by a registry serializer.
    """
    if value is None:
        raise ValueError("the record has no value (a tombstone), so no schema id either")
    if len(value) < HEADER.size:
        raise ValueError(
            f"the value has {len(value)} bytes; a registry serializer writes at least "
            f"{HEADER.size} (magic byte and schema id)"
        )
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC_BYTE:
        raise ValueError(
            f"the value starts with byte {magic}, not the magic byte {MAGIC_BYTE}: it was not "
            "written by a registry serializer"
        )
    return magic, schema_id, bytes(value[HEADER.size :])
