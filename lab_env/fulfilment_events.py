"""The order-fulfilment case study's events (module 11): topics, keys, partitions and Avro schemas.

Topics are named ``<domain>.<action>`` as the source article proposes, one per event type, every
record keyed by its order id, so all of an order's events land in the same partition number of
each topic and each service sees an order's events in order.

Partitions: ``PARTITIONS`` (6) per topic. The rule: at least the most instances any one service
runs (the module scales a service to 3; a group never uses more members than partitions, so a 4th
instance would idle), and a multiple of every instance count it runs (1, 2, 3), so each
instance gets the same share. 6 is the smallest number that is both.

Every event carries ``order_id`` and ``created_at_ms`` (when the order was created), so any stage
can measure latency from order to itself, and the terminal events give end-to-end latency.

The schemas are Avro, registered under ``<topic>-value`` with BACKWARD compatibility.
``ORDER_CREATED_V2`` is the evolution the module applies mid-run: an optional field with a default,
which BACKWARD accepts (consumers on v2 read v1 records; the default fills the gap). Timestamps use
the ``timestamp-millis`` logical type on the ``long`` type itself, not beside it on the field (the
source article's placement, which Avro ignores).
"""

from __future__ import annotations

import copy
from typing import Any

PARTITIONS = 6

ORDER_CREATED = "order.created"
INVENTORY_RESERVED = "inventory.reserved"
INVENTORY_REJECTED = "inventory.rejected"
INVENTORY_RELEASED = "inventory.released"
PAYMENT_COMPLETED = "payment.completed"
PAYMENT_FAILED = "payment.failed"
SHIPPING_SCHEDULED = "shipping.scheduled"
ORDER_CANCELED = "order.canceled"
DEAD_LETTER = "fulfilment.dead-letter"  # anything a service could not process, error in headers

EVENT_TOPICS = (
    ORDER_CREATED,
    INVENTORY_RESERVED,
    INVENTORY_REJECTED,
    INVENTORY_RELEASED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    SHIPPING_SCHEDULED,
    ORDER_CANCELED,
)
# Every order ends in exactly one of these: shipped, out of stock, or payment declined (after
# its reservation was released).
TERMINAL = (SHIPPING_SCHEDULED, INVENTORY_REJECTED, ORDER_CANCELED)

NAMESPACE = "lab.fulfilment"
TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}

_ITEM = {
    "type": "record",
    "name": "Item",
    "fields": [
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "unit_price_cents", "type": "long"},
    ],
}


Field = tuple[str, Any]  # (name, Avro type)


def _event(name: str, doc: str, *fields: Field, at: str | None = None) -> dict[str, Any]:
    """An event record: ``order_id``, ``fields``, the moment ``at`` (if named) and the order's
    ``created_at_ms``."""
    stamped = [*fields, (at, TIMESTAMP)] if at else list(fields)
    return {
        "type": "record",
        "name": name,
        "namespace": NAMESPACE,
        "doc": doc,
        "fields": [
            {"name": "order_id", "type": "string"},
            *({"name": n, "type": copy.deepcopy(t)} for n, t in stamped),
            {"name": "created_at_ms", "type": TIMESTAMP, "doc": "when the order was created"},
        ],
    }


ITEMS: Field = ("items", {"type": "array", "items": _ITEM})

ORDER_CREATED_V1 = _event(
    "OrderCreated",
    "A customer placed an order.",
    ("customer_id", "string"),
    ("region", "string"),
    ("payment_method", "string"),
    ITEMS,
    ("amount_cents", "long"),
    ("currency", "string"),
    ("risk_score", "double"),
)

ORDER_CREATED_V2 = copy.deepcopy(ORDER_CREATED_V1)
ORDER_CREATED_V2["fields"].insert(
    -1,
    {
        "name": "coupon_code",
        "type": ["null", "string"],
        "default": None,
        "doc": "added mid-run: optional, with a default, so BACKWARD compatible",
    },
)

SCHEMAS: dict[str, dict[str, Any]] = {
    ORDER_CREATED: ORDER_CREATED_V1,
    INVENTORY_RESERVED: _event(
        "InventoryReserved",
        "Stock for every line is held. Carries what payment decides on, so it needs no join.",
        ITEMS,
        ("amount_cents", "long"),
        ("risk_score", "double"),
        at="reserved_at_ms",
    ),
    INVENTORY_REJECTED: _event(
        "InventoryRejected",
        "Terminal: not enough stock for at least one line; nothing is held.",
        ("missing_skus", {"type": "array", "items": "string"}),
        at="rejected_at_ms",
    ),
    INVENTORY_RELEASED: _event(
        "InventoryReleased",
        "Compensation: the order's held stock is back, because its payment failed.",
        ITEMS,
        at="released_at_ms",
    ),
    PAYMENT_COMPLETED: _event(
        "PaymentCompleted", "The customer was charged.", ("amount_cents", "long"), at="paid_at_ms"
    ),
    PAYMENT_FAILED: _event(
        "PaymentFailed",
        "The charge was declined; the reservation (its items) must be released.",
        ITEMS,
        ("reason", "string"),
        at="failed_at_ms",
    ),
    SHIPPING_SCHEDULED: _event(
        "ShippingScheduled",
        "Terminal: paid and reserved, handed to a carrier.",
        ("carrier", "string"),
        at="scheduled_at_ms",
    ),
    ORDER_CANCELED: _event(
        "OrderCanceled",
        "Terminal: the order will not ship (its payment failed; its stock was released).",
        ("reason", "string"),
        at="canceled_at_ms",
    ),
}


def subject(topic: str) -> str:
    """The registry subject of a topic's values (the default TopicNameStrategy)."""
    return f"{topic}-value"
