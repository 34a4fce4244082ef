"""`lab down` stops the services of every pipeline `lab orders` left running."""

from __future__ import annotations

import time
from pathlib import Path

from lab_env.orders_cli import stop_every_pipeline
from lab_env.processes import Registry


def test_every_pipeline_under_the_home_is_stopped(tmp_path: Path) -> None:
    records = []
    for pipeline in ("default", "alice"):
        procs = Registry(tmp_path / "orders" / pipeline / "run")
        log = tmp_path / "orders" / pipeline / "logs" / "payment-1.log"
        records.append(procs.spawn("payment-1", ["sleep", "60"], log, []))
    stopped = stop_every_pipeline(tmp_path, timeout=10)
    assert stopped == ["alice/payment-1", "default/payment-1"]
    deadline = time.monotonic() + 10
    while any(r.state() != "stopped" for r in records) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.state() for r in records] == ["stopped", "stopped"]
    assert stop_every_pipeline(tmp_path) == []  # nothing left, nothing to say


def test_a_home_without_pipelines_stops_nothing(tmp_path: Path) -> None:
    assert stop_every_pipeline(tmp_path) == []
