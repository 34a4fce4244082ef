"""The case study benchmark's pure parts: the steady ending rate, the transaction profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_env.benchmarks.orders import profile, steady_rate


def test_steady_rate_is_the_offered_rate_when_the_pipeline_keeps_up() -> None:
    ends = [1_000 + i * 10 for i in range(1_000)]  # 100 per second, one every 10 ms
    ends += [50_000, 90_000]  # two stragglers do not drag the rate down
    assert steady_rate(ends) == pytest.approx(100, rel=0.01)


def test_steady_rate_of_too_few_endings_is_zero() -> None:
    assert steady_rate([]) == 0.0
    assert steady_rate([5.0] * 50) == 0.0  # all at once: no interval to divide by


def test_profile_reads_each_instance_s_last_stop(tmp_path: Path) -> None:
    def stopped(transactions: int, events: int, commit_ms: float) -> str:
        return json.dumps(
            {
                "service": "payment",
                "event": "stopped",
                "transactions": transactions,
                "events_in": events,
                "process_ms": 2.0,
                "send_offsets_ms": 40.0,
                "commit_ms": commit_ms,
            }
        )

    first_run = stopped(1, 5, 999.0)
    (tmp_path / "payment-1.log").write_text(f"{first_run}\n---\n{stopped(10, 250, 30.5)}\n")
    (tmp_path / "shipping-1.log").write_text('{"service": "shipping", "event": "ready"}\n')
    assert profile(tmp_path) == [
        {
            "instance": "payment-1",
            "transactions": 10,
            "avg batch": 25,
            "process_ms": 2.0,
            "send_offsets_ms": 40.0,
            "commit_ms": 30.5,
        }
    ]  # an instance that never committed (killed, or idle) has no row
