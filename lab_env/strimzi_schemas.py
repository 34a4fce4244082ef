"""Strict JSON Schemas for the Strimzi (and KEDA) fields the lab generates.

These are the lab's OWN schemas, written from Strimzi's documented ``kafka.strimzi.io/v1beta2``
API reference (and KEDA's ``keda.sh/v1alpha1`` ScaledObject documentation); they are **not**
Strimzi's CustomResourceDefinitions, which cannot be fetched offline. They are stricter than
the CRDs on purpose: every object the lab models has ``additionalProperties: false``, so a field
the lab does not know (a ``zookeeper:`` block, a typo, a field from an older API) is refused
instead of being silently ignored by the operator. Required fields follow the CRDs: a Kafka
needs ``spec.kafka.listeners`` (each with ``name``, ``port``, ``type``, ``tls``), a
KafkaNodePool ``replicas``, ``roles`` and ``storage``, KafkaTopics and KafkaUsers the
``strimzi.io/cluster`` label, and ACL rules a ``resource`` and ``operations``.
"""

from __future__ import annotations

from typing import Any

STRIMZI_API = "kafka.strimzi.io/v1beta2"
KEDA_API = "keda.sh/v1alpha1"
CLUSTER_LABEL = "strimzi.io/cluster"

Schema = dict[str, Any]


def obj(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties: anything else is refused."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def string_map(values: Schema | None = None) -> Schema:
    return {"type": "object", "additionalProperties": values or {"type": "string"}}


STRING: Schema = {"type": "string", "minLength": 1}
BOOLEAN: Schema = {"type": "boolean"}
# A Kubernetes object name (DNS subdomain): lowercase alphanumerics, '-' and '.'.
K8S_NAME: Schema = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
QUANTITY: Schema = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi)?$"}


def metadata(required_labels: tuple[str, ...] = ()) -> Schema:
    labels: Schema = string_map()
    required: tuple[str, ...] = ("name",)
    if required_labels:
        labels = {**labels, "required": list(required_labels)}
        required = ("name", "labels")
    return obj(
        {"name": K8S_NAME, "namespace": K8S_NAME, "labels": labels, "annotations": string_map()},
        required,
    )


def resource(api: str, kind: str, spec: Schema, meta: Schema | None = None) -> Schema:
    return obj(
        {
            "apiVersion": {"const": api},
            "kind": {"const": kind},
            "metadata": meta or metadata(),
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


# -- Kafka ---------------------------------------------------------------------------------------

LISTENER = obj(
    {
        # Strimzi: lowercase letters and digits, at most 11 characters; ports from 9092 up,
        # except 9404 (metrics) and 9999 (JMX), which Strimzi reserves.
        "name": {"type": "string", "pattern": r"^[a-z0-9]{1,11}$"},
        "port": {
            "type": "integer",
            "minimum": 9092,
            "maximum": 65535,
            "not": {"enum": [9404, 9999]},
        },
        "type": {
            "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
        },
        "tls": BOOLEAN,
        "authentication": obj(
            {"type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}}, ("type",)
        ),
    },
    ("name", "port", "type", "tls"),
)

KAFKA_SPEC = obj(
    {
        "kafka": obj(
            {
                "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
                "metadataVersion": STRING,
                "listeners": {"type": "array", "minItems": 1, "items": LISTENER},
                "authorization": obj(
                    {
                        "type": {"enum": ["simple", "opa", "keycloak", "custom"]},
                        "superUsers": {"type": "array", "items": STRING},
                    },
                    ("type",),
                ),
                "config": string_map({"type": ["string", "integer", "number", "boolean"]}),
                "metricsConfig": obj(
                    {
                        "type": {"const": "jmxPrometheusExporter"},
                        "valueFrom": obj(
                            {"configMapKeyRef": obj({"name": K8S_NAME, "key": STRING}, ("key",))},
                            ("configMapKeyRef",),
                        ),
                    },
                    ("type", "valueFrom"),
                ),
            },
            ("listeners",),
        ),
        "entityOperator": obj(
            {
                "topicOperator": obj({"reconciliationIntervalMs": {"type": "integer"}}),
                "userOperator": obj({"reconciliationIntervalMs": {"type": "integer"}}),
            }
        ),
    },
    ("kafka",),
)

# -- KafkaNodePool -------------------------------------------------------------------------------

_VOLUME_FIELDS: dict[str, Schema] = {
    "type": {"enum": ["persistent-claim", "ephemeral"]},
    "size": QUANTITY,
    "class": STRING,
    "deleteClaim": BOOLEAN,
    # The volume that also holds the KRaft metadata log (at most one per node).
    "kraftMetadata": {"const": "shared"},
}
VOLUME = obj({"id": {"type": "integer", "minimum": 0}, **_VOLUME_FIELDS}, ("id", "type"))
STORAGE: Schema = {
    **obj(
        {
            **_VOLUME_FIELDS,
            "type": {"enum": ["jbod", "persistent-claim", "ephemeral"]},
            "volumes": {"type": "array", "minItems": 1, "items": VOLUME},
        },
        ("type",),
    ),
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "jbod"}}},
            "then": {"required": ["volumes"]},
            "else": {"not": {"required": ["volumes"]}},
        },
        {
            "if": {"properties": {"type": {"const": "persistent-claim"}}},
            "then": {"required": ["size"]},
        },
    ],
}
NODE_POOL_SPEC = obj(
    {
        "replicas": {"type": "integer", "minimum": 0},
        "roles": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": ["controller", "broker"]},
        },
        "storage": STORAGE,
    },
    ("replicas", "roles", "storage"),
)

# -- KafkaTopic ----------------------------------------------------------------------------------

TOPIC_SPEC = obj(
    {
        "topicName": STRING,  # when the Kafka name is not a valid Kubernetes name
        "partitions": {"type": "integer", "minimum": 1},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
        "config": string_map({"type": ["string", "integer", "number", "boolean"]}),
    }
)

# -- KafkaUser -----------------------------------------------------------------------------------

OPERATIONS = [
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "ClusterAction",
    "AlterConfigs",
    "DescribeConfigs",
    "IdempotentWrite",
    "All",
]
ACL_RESOURCE: Schema = {
    **obj(
        {
            "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
            "name": STRING,
            "patternType": {"enum": ["literal", "prefix"]},
        },
        ("type",),
    ),
    # Every resource but the cluster is named.
    "if": {"properties": {"type": {"not": {"const": "cluster"}}}},
    "then": {"required": ["name"]},
}
ACL_RULE = obj(
    {
        "type": {"enum": ["allow", "deny"]},
        "resource": ACL_RESOURCE,
        "host": STRING,
        "operations": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": OPERATIONS},
        },
    },
    ("resource", "operations"),
)
USER_SPEC = obj(
    {
        "authentication": obj(
            {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}, ("type",)
        ),
        "authorization": obj(
            {"type": {"const": "simple"}, "acls": {"type": "array", "items": ACL_RULE}},
            ("type", "acls"),
        ),
    },
    ("authentication",),
)

# -- KEDA ----------------------------------------------------------------------------------------

# KEDA reads every trigger setting as a string ('100', not 100).
KAFKA_TRIGGER_METADATA = {
    **string_map(),
    "required": ["bootstrapServers", "consumerGroup", "topic", "lagThreshold"],
}
SCALED_OBJECT_SPEC = obj(
    {
        "scaleTargetRef": obj({"apiVersion": STRING, "kind": STRING, "name": K8S_NAME}, ("name",)),
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "triggers": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "type": {"const": "kafka"},
                    "metadata": KAFKA_TRIGGER_METADATA,
                    "authenticationRef": obj({"name": K8S_NAME}, ("name",)),
                },
                ("type", "metadata"),
            ),
        },
    },
    ("scaleTargetRef", "triggers"),
)
TRIGGER_AUTH_SPEC = obj(
    {
        "secretTargetRef": {
            "type": "array",
            "items": obj(
                {"parameter": STRING, "name": K8S_NAME, "key": STRING},
                ("parameter", "name", "key"),
            ),
        }
    },
    ("secretTargetRef",),
)


def core(kind: str, field: str) -> Schema:
    """A core v1 object holding string data under ``field`` (ConfigMap ``data``, Secret
    ``stringData``)."""
    return obj(
        {
            "apiVersion": {"const": "v1"},
            "kind": {"const": kind},
            "metadata": metadata(),
            field: string_map(),
        },
        ("apiVersion", "kind", "metadata", field),
    )


SCHEMAS: dict[tuple[str, str], Schema] = {
    (STRIMZI_API, "Kafka"): resource(STRIMZI_API, "Kafka", KAFKA_SPEC),
    (STRIMZI_API, "KafkaNodePool"): resource(
        STRIMZI_API, "KafkaNodePool", NODE_POOL_SPEC, metadata((CLUSTER_LABEL,))
    ),
    (STRIMZI_API, "KafkaTopic"): resource(
        STRIMZI_API, "KafkaTopic", TOPIC_SPEC, metadata((CLUSTER_LABEL,))
    ),
    (STRIMZI_API, "KafkaUser"): resource(
        STRIMZI_API, "KafkaUser", USER_SPEC, metadata((CLUSTER_LABEL,))
    ),
    (KEDA_API, "ScaledObject"): resource(KEDA_API, "ScaledObject", SCALED_OBJECT_SPEC),
    (KEDA_API, "TriggerAuthentication"): resource(
        KEDA_API, "TriggerAuthentication", TRIGGER_AUTH_SPEC
    ),
    ("v1", "ConfigMap"): core("ConfigMap", "data"),
    ("v1", "Secret"): core("Secret", "stringData"),
}
