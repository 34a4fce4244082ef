"""The case study's event contract (topics, partitions, Avro schemas and their evolution) and its
reconciliation, which must catch every way a run can go wrong. Pure functions: no cluster."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from lab_env import datasets
from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.errors import LabError
from lab_env.fulfilment_reconcile import reconcile

THRESHOLD = 0.25  # the payment service's risk threshold in these runs


def roundtrip(record: dict[str, Any], writer: dict[str, Any], reader: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), record)
    buffer.seek(0)
    return fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    )


def sample_orders(count: int = 60) -> list[dict[str, Any]]:
    return list(datasets.orders(datasets.make_catalog(seed=3), count=count, seed=3))


def test_topics_are_domain_action_and_partitions_fit_every_instance_count() -> None:
    assert all(t.count(".") == 1 and t == t.lower() for t in ev.EVENT_TOPICS)
    assert set(ev.TERMINAL) <= set(ev.EVENT_TOPICS)
    assert set(ev.SCHEMAS) == set(ev.EVENT_TOPICS)
    assert all(ev.PARTITIONS % n == 0 for n in (1, 2, 3)) and ev.PARTITIONS >= 3
    assert ev.subject(ev.ORDER_CREATED) == "order.created-value"


@pytest.mark.parametrize("topic", ev.EVENT_TOPICS)
def test_every_schema_parses_and_puts_logical_types_inside_the_type(topic: str) -> None:
    schema = ev.SCHEMAS[topic]
    fastavro.parse_schema(copy.deepcopy(schema))
    names = [f["name"] for f in schema["fields"]]
    assert names[0] == "order_id" and names[-1] == "created_at_ms"
    for f in schema["fields"]:
        assert "logicalType" not in f, f"{topic}.{f['name']}: logicalType beside the type"
        if f["name"].endswith("_at_ms"):
            assert f["type"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_generated_orders_are_valid_order_created_events() -> None:
    for order in sample_orders(20):
        record = {k: v for k, v in order.items() if k != "offset_s"}
        assert fastavro.validation.validate(record, fastavro.parse_schema(ev.ORDER_CREATED_V1))


def test_the_mid_run_evolution_is_backward_compatible() -> None:
    order = {k: v for k, v in sample_orders(1)[0].items() if k != "offset_s"}
    read = roundtrip(order, ev.ORDER_CREATED_V1, ev.ORDER_CREATED_V2)  # v2 reader, v1 data
    assert read["coupon_code"] is None and read["order_id"] == order["order_id"]
    # The same change without a default is not: a v2 reader cannot read v1 data.
    required = copy.deepcopy(ev.ORDER_CREATED_V2)
    coupon = next(f for f in required["fields"] if f["name"] == "coupon_code")
    del coupon["default"]
    with pytest.raises(SchemaResolutionError):
        roundtrip(order, ev.ORDER_CREATED_V1, required)


# -- reconciliation --------------------------------------------------------------------------------


def simulate(
    orders: list[dict[str, Any]], stock: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """The events a correct pipeline writes (one global stock; payments declined above
    THRESHOLD, with compensation)."""
    events: dict[str, list[dict[str, Any]]] = {t: [] for t in ev.EVENT_TOPICS}
    left = dict(stock)
    for order in orders:
        base = {"order_id": order["order_id"], "created_at_ms": order["created_at_ms"]}
        events[ev.ORDER_CREATED].append({**base, "items": order["items"]})
        short = [i["sku"] for i in order["items"] if left.get(i["sku"], 0) < i["quantity"]]
        if short:
            events[ev.INVENTORY_REJECTED].append({**base, "missing_skus": short})
            continue
        for item in order["items"]:
            left[item["sku"]] -= item["quantity"]
        events[ev.INVENTORY_RESERVED].append({**base, "items": order["items"]})
        if order["risk_score"] > THRESHOLD:
            events[ev.PAYMENT_FAILED].append({**base, "reason": "declined"})
            for item in order["items"]:
                left[item["sku"]] += item["quantity"]
            events[ev.INVENTORY_RELEASED].append({**base, "items": order["items"]})
            events[ev.ORDER_CANCELED].append({**base, "reason": "payment declined"})
        else:
            events[ev.PAYMENT_COMPLETED].append({**base, "amount_cents": order["amount_cents"]})
            events[ev.SHIPPING_SCHEDULED].append({**base, "carrier": "lab-post"})
    return events


def scarce_stock(orders: list[dict[str, Any]]) -> dict[str, int]:
    """Stock for about two thirds of the demand on every SKU, so some orders are rejected."""
    demand: dict[str, int] = {}
    for order in orders:
        for item in order["items"]:
            demand[item["sku"]] = demand.get(item["sku"], 0) + item["quantity"]
    return {sku: max(1, units * 2 // 3) for sku, units in demand.items()}


def test_a_correct_run_is_exact_and_reaches_all_three_endings() -> None:
    orders = sample_orders()
    stock = scarce_stock(orders)
    report = reconcile(orders, simulate(orders, stock), stock)
    assert report.exact, report.summary()
    assert sum(report.terminal.values()) == len(orders)
    assert all(report.terminal[t] > 0 for t in ev.TERMINAL), report.terminal
    assert "lost 0, conflicting 0, duplicated 0" in report.summary()


def first(events: dict[str, list[dict[str, Any]]], topic: str) -> dict[str, Any]:
    return events[topic][0]


Mutation = Callable[[dict[str, list[dict[str, Any]]]], str]


def drop_terminal(events: dict[str, list[dict[str, Any]]]) -> str:
    return events[ev.SHIPPING_SCHEDULED].pop()["order_id"]


def duplicate_payment(events: dict[str, list[dict[str, Any]]]) -> str:
    events[ev.PAYMENT_COMPLETED].append(dict(first(events, ev.PAYMENT_COMPLETED)))
    return first(events, ev.PAYMENT_COMPLETED)["order_id"]


def cancel_a_shipped_order(events: dict[str, list[dict[str, Any]]]) -> str:
    shipped = first(events, ev.SHIPPING_SCHEDULED)
    events[ev.ORDER_CANCELED].append({**shipped, "reason": "twice"})
    return shipped["order_id"]


def forget_compensation(events: dict[str, list[dict[str, Any]]]) -> str:
    order = first(events, ev.PAYMENT_FAILED)["order_id"]
    events[ev.INVENTORY_RELEASED] = [
        e for e in events[ev.INVENTORY_RELEASED] if e["order_id"] != order
    ]
    return order


def oversell(events: dict[str, list[dict[str, Any]]]) -> str:
    rejected = first(events, ev.INVENTORY_REJECTED)
    order = rejected["order_id"]
    created = next(e for e in events[ev.ORDER_CREATED] if e["order_id"] == order)
    events[ev.INVENTORY_REJECTED].remove(rejected)
    events[ev.INVENTORY_RESERVED].append(created)  # reserved what was not there
    events[ev.PAYMENT_COMPLETED].append({"order_id": order, "created_at_ms": 0})
    events[ev.SHIPPING_SCHEDULED].append({"order_id": order, "created_at_ms": 0})
    return rejected["missing_skus"][0]


def stranger(events: dict[str, list[dict[str, Any]]]) -> str:
    events[ev.PAYMENT_FAILED].append({"order_id": "o-nobody", "created_at_ms": 0})
    return "o-nobody"


@pytest.mark.parametrize(
    ("mutate", "finding"),
    [
        (drop_terminal, lambda r, x: r.lost == [x]),
        (duplicate_payment, lambda r, x: r.duplicated == {(ev.PAYMENT_COMPLETED, x): 1}),
        (cancel_a_shipped_order, lambda r, x: list(r.conflicting) == [x]),
        (forget_compensation, lambda r, x: any(x in b for b in r.broken_chains)),
        (oversell, lambda r, x: x in r.oversold),
        (stranger, lambda r, x: r.strangers == [x]),
    ],
    ids=["lost", "duplicated", "conflicting", "no-compensation", "oversold", "stranger"],
)
def test_reconciliation_catches_each_defect(
    mutate: Mutation, finding: Callable[[Any, str], bool]
) -> None:
    orders = sample_orders()
    stock = scarce_stock(orders)
    events = simulate(orders, stock)
    culprit = mutate(events)
    report = reconcile(orders, events, stock)
    assert not report.exact
    assert finding(report, culprit), report


# -- the services' logic, without the loop ---------------------------------------------------------


def test_stock_shares_sum_to_the_units() -> None:
    for units in (0, 1, 5, 6, 7, 100, 101):
        shares = [fs.share(units, p) for p in range(ev.PARTITIONS)]
        assert sum(shares) == units and max(shares) - min(shares) <= 1


def test_inventory_reserves_rejects_and_releases_within_its_partitions_share() -> None:
    inventory = fs.Inventory({"sku-a": 12})
    inventory.stock = {(p, "sku-a"): fs.share(12, p) for p in range(ev.PARTITIONS)}  # 2 each
    order = {
        "order_id": "o1",
        "created_at_ms": 1,
        "items": [{"sku": "sku-a", "quantity": 2, "unit_price_cents": 100}],
        "amount_cents": 200,
        "risk_score": 0.1,
    }
    [(topic, reserved)] = inventory.handle(ev.ORDER_CREATED, 3, order)
    assert topic == ev.INVENTORY_RESERVED and reserved["risk_score"] == 0.1
    assert inventory.changes() == [("3:sku-a", "0")] and inventory.changes() == []
    [(topic, rejected)] = inventory.handle(ev.ORDER_CREATED, 3, {**order, "order_id": "o2"})
    assert topic == ev.INVENTORY_REJECTED and rejected["missing_skus"] == ["sku-a"]
    assert inventory.stock[(4, "sku-a")] == 2  # another partition's share is untouched
    failed = {"order_id": "o1", "created_at_ms": 1, "items": order["items"]}
    [(topic, _)] = inventory.handle(ev.PAYMENT_FAILED, 3, failed)
    assert topic == ev.INVENTORY_RELEASED and inventory.changes() == [("3:sku-a", "2")]
    [(topic, _)] = inventory.handle(ev.ORDER_CREATED, 3, {**order, "items": []})
    assert topic == ev.INVENTORY_RESERVED  # nothing to hold


def test_payment_declines_above_the_threshold_with_the_items_to_release() -> None:
    reserved = {"order_id": "o1", "created_at_ms": 1, "items": [], "amount_cents": 5}
    [(topic, paid)] = fs.Payment(0.25).handle(
        ev.INVENTORY_RESERVED, 0, {**reserved, "risk_score": 0.25}
    )
    assert topic == ev.PAYMENT_COMPLETED and paid["amount_cents"] == 5
    [(topic, failed)] = fs.Payment(0.25).handle(
        ev.INVENTORY_RESERVED, 0, {**reserved, "risk_score": 0.3}
    )
    assert topic == ev.PAYMENT_FAILED and failed["items"] == [] and "0.30" in failed["reason"]
    with pytest.raises(LabError, match="No service 'billing'"):
        fs.make_service("billing")
