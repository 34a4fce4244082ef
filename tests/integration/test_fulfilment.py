"""The order-fulfilment services on the real lab, each a process: every order reaches exactly one
terminal state, compensation runs for declined payments, a malformed event lands in the
dead-letter topic with its reason, and a service SIGKILLed mid-run and restarted (payment, or
inventory with its stock) leaves the run exact: no duplicate, nothing lost, no stock oversold,
and the stock changelog equal to the opening stock less what was reserved plus what was released.
OrderCreated evolves to version 2 while the services run, and both versions' orders end exactly.

Each test runs its own pipeline under a unique topic prefix; everything is bounded in time.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab_env import datasets, schemas
from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.api import Lab
from lab_env.fulfilment_analytics import ENDINGS, Analytics
from lab_env.fulfilment_pipeline import Pipeline
from lab_env.fulfilment_reconcile import Reconciliation, reconcile
from lab_env.records import read_all
from lab_env.waiting import wait_for
from tests.helpers import progress_lines, run_lab

pytestmark = pytest.mark.cluster

ORDERS = 80


def scarce(orders: list[dict[str, Any]]) -> dict[str, int]:
    """About two thirds of each SKU's demand (at least one unit per partition's share), so some
    orders are rejected for stock and the rest are paid or declined."""
    demand: dict[str, int] = {}
    for order in orders:
        for item in order["items"]:
            demand[item["sku"]] = demand.get(item["sku"], 0) + item["quantity"]
    return {sku: max(ev.PARTITIONS, units * 2 // 3) for sku, units in demand.items()}


@dataclass
class Run:
    pipeline: Pipeline
    orders: list[dict[str, Any]]

    def place(self, orders: list[dict[str, Any]]) -> None:
        assert self.pipeline.place(orders) == len(orders)

    def settle(self) -> Reconciliation:
        events = self.pipeline.settle(len(self.orders))
        return reconcile(self.orders, events, self.pipeline.stock)


@pytest.fixture
def run(lab: Lab, tmp_path: Path) -> Iterator[Run]:
    orders = list(datasets.orders(datasets.make_catalog(seed=11), count=ORDERS, seed=11))
    prefix = f"it-ful-{uuid.uuid4().hex[:6]}."
    pipeline = Pipeline(lab, scarce(orders), prefix=prefix, workdir=tmp_path)
    try:
        yield Run(pipeline, orders)
    finally:
        pipeline.close()


def test_every_order_ends_once_and_a_malformed_event_is_dead_lettered(run: Run) -> None:
    pipeline = run.pipeline
    pipeline.start_all()
    producer = pipeline.lab.producer()
    producer.produce(pipeline.prefix + ev.ORDER_CREATED, key="o-bad", value=b"not avro at all")
    assert producer.flush(30) == 0
    run.place(run.orders)
    report = run.settle()
    assert report.exact, report.summary()
    assert all(report.terminal[t] > 0 for t in ev.TERMINAL), report.summary()
    dead = read_all(pipeline.lab, pipeline.prefix + ev.DEAD_LETTER, decode=False)
    assert [r["key"] for r in dead] == [b"o-bad"]
    headers = dead[0]["headers"]
    assert headers["error.class"] == b"SerializationError", headers
    assert headers["source.topic"] == (pipeline.prefix + ev.ORDER_CREATED).encode()
    assert headers["service"] == b"inventory" and dead[0]["value"] == b"not avro at all"


def test_analytics_sees_every_order_end_the_way_reconciliation_counts_it(run: Run) -> None:
    run.pipeline.start_all()
    run.place(run.orders)
    report = run.settle()
    analytics = Analytics(run.pipeline.lab, run.pipeline.prefix)
    try:
        deadline = time.monotonic() + 60
        while analytics.unfinished([o["order_id"] for o in run.orders]) and (
            time.monotonic() < deadline
        ):
            analytics.poll(1.0)
        summary = analytics.summary()
    finally:
        analytics.stop()
    assert summary["placed"] == summary["ended"] == ORDERS and summary["in flight"] == 0
    for topic, ending in ENDINGS.items():
        assert summary[ending] == report.terminal[topic], (summary, report.summary())
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] and summary["unreadable records"] == 0
    flow = analytics.throughput()
    assert flow.loc[flow["topic"] == ev.ORDER_CREATED, "events"].sum() == ORDERS


@pytest.mark.parametrize("victim", ["payment", "inventory"])
def test_a_service_killed_mid_run_and_restarted_leaves_the_run_exact(run: Run, victim: str) -> None:
    pipeline = run.pipeline
    pipeline.start_all()
    half = len(run.orders) // 2
    run.place(run.orders[:half])
    # The pipeline is busy: the kill lands mid-run.
    wait_for(
        "a quarter of the orders to end", lambda: pipeline.ended() >= half // 2, 60, interval=0.5
    )
    pipeline.kill(victim)
    run.place(run.orders[half:])
    pipeline.start(victim)  # same instance number: fences the killed one, aborts its transaction
    report = run.settle()
    assert report.exact, report.summary()
    # The stock the changelog holds is exactly the opening stock, less what the run reserved,
    # plus what it released: a restarted inventory resumed from the right stock, and none of it
    # went negative.
    changelog = read_all(pipeline.lab, pipeline.prefix + fs.STOCK)
    latest = {r["key"]: int(r["value"]) for r in changelog}
    assert min(latest.values()) >= 0
    events = fs.read_events(pipeline.lab, pipeline.prefix)
    moved: Counter[str] = Counter()
    for topic, sign in ((ev.INVENTORY_RESERVED, -1), (ev.INVENTORY_RELEASED, +1)):
        for event in events[topic]:
            for item in event["items"]:
                moved[item["sku"]] += sign * item["quantity"]
    for sku, units in pipeline.stock.items():
        held = sum(latest.get(f"{p}:{sku}", fs.share(units, p)) for p in range(ev.PARTITIONS))
        assert held == units + moved[sku], (sku, units, moved[sku], held)


def test_order_created_evolves_mid_run_without_stopping_the_pipeline(run: Run) -> None:
    """Version 2 of OrderCreated (a new optional field with a default) is registered while the
    services run; orders of both versions end exactly, and nothing is dead-lettered. The same
    field without a default is refused by the registry under BACKWARD."""
    pipeline = run.pipeline
    pipeline.start_all()
    half = len(run.orders) // 2
    run.place(run.orders[:half])
    subject = ev.subject(pipeline.prefix + ev.ORDER_CREATED)
    required = {
        **ev.ORDER_CREATED_V2,
        "fields": [
            {k: v for k, v in f.items() if k != "default"} if f["name"] == "coupon_code" else f
            for f in ev.ORDER_CREATED_V2["fields"]
        ],
    }
    assert schemas.register(pipeline.lab, subject, required).status == 409
    evolved = fs.Codec(pipeline.lab, {**ev.SCHEMAS, ev.ORDER_CREATED: ev.ORDER_CREATED_V2})
    second = [
        dict(o, coupon_code=f"SAVE{i}" if i % 2 else None) for i, o in enumerate(run.orders[half:])
    ]
    assert fs.place_orders(pipeline.lab, second, pipeline.prefix, evolved) == len(second)
    report = run.settle()
    assert report.exact, report.summary()
    assert schemas.versions(pipeline.lab, subject).body == [1, 2]
    created = fs.read_events(pipeline.lab, pipeline.prefix)[ev.ORDER_CREATED]
    coupons = {e["order_id"]: e.get("coupon_code") for e in created}
    assert [coupons[o["order_id"]] for o in second] == [o["coupon_code"] for o in second]
    assert read_all(pipeline.lab, pipeline.prefix + ev.DEAD_LETTER, decode=False) == []


def test_lab_orders_runs_scales_kills_and_tidies_a_pipeline(lab: Lab) -> None:
    """`lab orders`: up with 2 instances, place orders, scale and kill, status, down --delete."""
    prefix = f"it-cli-{uuid.uuid4().hex[:6]}."

    def orders(*args: str) -> str:
        done = run_lab("orders", "--prefix", prefix, *args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    try:
        shown = orders("up", "--instances", "2")
        assert shown.count("[0, 1, 2]") == 4 and shown.count("[3, 4, 5]") == 4  # 4 services
        # Six seconds, so that the plain progress line of a run without a terminal shows (at 5 s).
        placing = run_lab("orders", "--prefix", prefix, "place", "--rate", "10", "--seconds", "6")
        assert placing.returncode == 0, placing.stderr[-2000:]
        assert "placed 60 orders" in placing.stdout
        progress = progress_lines(placing.stderr)
        assert progress, placing.stderr
        assert all(re.fullmatch(r"placed \d+ of 60 orders \(\d+/s\)", p) for p in progress)
        assert "[0, 1]" in orders("scale", "payment", "3")  # range: 2 partitions each
        assert "killed payment instance 3" in orders("kill", "payment", "--instance", "3")
        refused = run_lab("orders", "--prefix", prefix, "scale", "payment", "7")
        assert refused.returncode != 0 and "never has more active members" in refused.stderr

        def all_ended() -> str | None:
            shown = orders("status")
            return shown if "ended: 60 " in shown else None

        status = wait_for("`lab orders status` to show 60 ended", all_ended, 90, interval=2)
        assert "dead letters: 0" in status, status
    finally:
        down = run_lab("orders", "--prefix", prefix, "down", "--delete")
    assert down.returncode == 0, down.stderr
    assert "deleted the pipeline's topics" in down.stdout
    assert not [t for t in lab.admin().list_topics(timeout=10).topics if t.startswith(prefix)]


def test_a_pipeline_removes_the_work_directory_it_made_and_keeps_one_it_was_given(
    lab: Lab, tmp_path: Path
) -> None:
    made = Pipeline(lab, prefix=f"it-ful-{uuid.uuid4().hex[:6]}.")
    assert made.workdir.is_dir() and (made.workdir / "stock.json").is_file()
    made.close()
    assert not made.workdir.exists()
    given = Pipeline(lab, prefix=f"it-ful-{uuid.uuid4().hex[:6]}.", workdir=tmp_path / "run")
    given.close()
    assert (tmp_path / "run" / "stock.json").is_file()
