"""The order-fulfilment services on the real lab, each a process: every order reaches exactly one
terminal state, compensation runs for declined payments, a malformed event lands in the
dead-letter topic with its reason, and a service SIGKILLed mid-run and restarted (payment, or
inventory with its stock) leaves the run exact: no duplicate, nothing lost, no stock oversold.

Each test runs its own pipeline under a unique topic prefix; everything is bounded in time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab_env import datasets
from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.api import Lab
from lab_env.fulfilment_reconcile import Reconciliation, reconcile
from lab_env.records import read_all
from tests.conftest import forget_subjects

pytestmark = pytest.mark.cluster

ORDERS = 80
SERVICES = ("inventory", "payment", "shipping", "order")


def scarce(orders: list[dict[str, Any]]) -> dict[str, int]:
    """About two thirds of each SKU's demand (at least one unit per partition's share), so some
    orders are rejected for stock and the rest are paid or declined."""
    demand: dict[str, int] = {}
    for order in orders:
        for item in order["items"]:
            demand[item["sku"]] = demand.get(item["sku"], 0) + item["quantity"]
    return {sku: max(ev.PARTITIONS, units * 2 // 3) for sku, units in demand.items()}


class Pipeline:
    def __init__(self, lab: Lab, tmp_path: Path, orders: list[dict[str, Any]]) -> None:
        self.lab, self.orders = lab, orders
        self.prefix = f"it-ful-{uuid.uuid4().hex[:6]}."
        self.stock = scarce(orders)
        self.stock_file = tmp_path / "stock.json"
        self.stock_file.write_text(json.dumps(self.stock))
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.codec = fs.Codec(lab)
        fs.ensure_topics(lab, self.prefix)

    def start(self, service: str, instance: str = "1") -> None:
        command = [sys.executable, "-m", "lab_env.fulfilment_services", service]
        command += ["--instance", instance, "--prefix", self.prefix]
        command += ["--stock", str(self.stock_file)]
        self.procs[service] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def kill(self, service: str) -> None:
        proc = self.procs.pop(service)
        proc.kill()
        assert proc.wait(10) == -9

    def place(self, orders: list[dict[str, Any]]) -> None:
        assert fs.place_orders(self.lab, orders, self.prefix, self.codec) == len(orders)

    def terminal(self) -> int:
        return sum(len(read_all(self.lab, self.prefix + t, decode=False)) for t in ev.TERMINAL)

    def settle(self, timeout: float = 120) -> Reconciliation:
        """Wait (bounded) until every order has a terminal event, then reconcile."""
        deadline = time.monotonic() + timeout
        while self.terminal() < len(self.orders) and time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, (
                    f"{name} died: {proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(1)
        events = fs.read_events(self.lab, self.prefix, self.codec)
        return reconcile(self.orders, events, self.stock)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        topics = [self.prefix + t for t in (*ev.EVENT_TOPICS, ev.DEAD_LETTER, fs.STOCK)]
        for topic in topics:
            self.lab.delete_topic(topic)
        forget_subjects(self.lab, *(f"{t}-value" for t in topics))
        groups = [f"{self.prefix}fulfilment-{s}" for s in SERVICES]
        self.lab.delete_groups(*groups, timeout=60)


@pytest.fixture
def pipeline(lab: Lab, tmp_path: Path) -> Iterator[Pipeline]:
    orders = list(datasets.orders(datasets.make_catalog(seed=11), count=ORDERS, seed=11))
    p = Pipeline(lab, tmp_path, orders)
    try:
        yield p
    finally:
        p.close()


def test_every_order_ends_once_and_a_malformed_event_is_dead_lettered(
    pipeline: Pipeline,
) -> None:
    for service in SERVICES:
        pipeline.start(service)
    producer = pipeline.lab.producer()
    producer.produce(pipeline.prefix + ev.ORDER_CREATED, key="o-bad", value=b"not avro at all")
    assert producer.flush(30) == 0
    pipeline.place(pipeline.orders)
    report = pipeline.settle()
    assert report.exact, report.summary()
    assert all(report.terminal[t] > 0 for t in ev.TERMINAL), report.summary()
    dead = read_all(pipeline.lab, pipeline.prefix + ev.DEAD_LETTER, decode=False)
    assert [r["key"] for r in dead] == [b"o-bad"]
    headers = dead[0]["headers"]
    assert headers["error.class"] == b"SerializationError", headers
    assert headers["source.topic"] == (pipeline.prefix + ev.ORDER_CREATED).encode()
    assert headers["service"] == b"inventory" and dead[0]["value"] == b"not avro at all"


@pytest.mark.parametrize("victim", ["payment", "inventory"])
def test_a_service_killed_mid_run_and_restarted_leaves_the_run_exact(
    pipeline: Pipeline, victim: str
) -> None:
    for service in SERVICES:
        pipeline.start(service)
    half = len(pipeline.orders) // 2
    pipeline.place(pipeline.orders[:half])
    deadline = time.monotonic() + 60
    while pipeline.terminal() < half // 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # the pipeline is busy: the kill lands mid-run
    pipeline.kill(victim)
    pipeline.place(pipeline.orders[half:])
    pipeline.start(victim)  # same instance number: fences the killed one, aborts its transaction
    report = pipeline.settle()
    assert report.exact, report.summary()
    # Stock never went negative: what is held equals what the run reserved and did not release.
    changelog = read_all(pipeline.lab, pipeline.prefix + fs.STOCK)
    latest = {r["key"]: int(r["value"]) for r in changelog}
    assert min(latest.values()) >= 0
