"""Pure parts of lab 06 and of the explorer: which settings are safe, whether a run meets the
target, what the failure says, and the explorer's labels and chart tables."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from lab_env import tuning
from lab_env.checks import LabCheckError
from lab_env.explorer import (
    check_batch,
    check_perf_tool,
    latency_frame,
    run_label,
    throughput_frame,
)
from lab_env.lab_checks.tuning_checks import (
    P99_BOUND_MS,
    TARGET_RECORDS_S,
    best,
    meets,
    near_miss,
    safe_settings,
    verdict,
)
from lab_env.tuning import InvalidSettings, ProduceSpec

SOLUTION = {"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4"}
STUB = {
    "max.in.flight.requests.per.connection": 1,
    "linger.ms": 0,
    "batch.size": 2048,
    "compression.type": "none",
}


def row(rate: int, p99: float, failed: int = 0, complete: bool = True) -> dict[str, Any]:
    return {
        "records": 100_000,
        "failed": failed,
        "errors": "MSG_TIMED_OUT x3" if failed else "",
        "complete": complete,
        "records/s": rate,
        "p99 ms": p99,
    }


# -- safety -----------------------------------------------------------------------------------


def test_safe_settings_fill_the_defaults() -> None:
    checked = safe_settings(SOLUTION)
    assert checked["acks"] == "all" and checked["enable.idempotence"] is True
    assert checked["linger.ms"] == 20


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"acks": "1", "enable.idempotence": False}, "needs acks=all"),
        ({"acks": "0", "enable.idempotence": False}, "acks=0 acknowledges"),
        ({"enable.idempotence": False}, "enable.idempotence is off"),
        ({"acks": "1"}, "refused: enable.idempotence=true needs acks=all"),
        ({"max.in.flight.requests.per.connection": 6}, "at most 5 requests"),
        ({"linger.ms": -5}, "linger.ms must be a number"),
        ([("acks", "all")], "must be a dict"),
    ],
)
def test_unsafe_or_refused_settings_fail_with_a_sentence(settings: object, fragment: str) -> None:
    with pytest.raises(LabCheckError, match=re.escape(fragment)):
        safe_settings(settings)


def test_acks_one_without_idempotence_names_durability() -> None:
    with pytest.raises(LabCheckError, match="acks=1 acknowledges a record before"):
        safe_settings({"acks": "1", "enable.idempotence": False})


# -- judging a run ----------------------------------------------------------------------------


def test_a_fast_run_within_the_bound_passes() -> None:
    assert meets(row(TARGET_RECORDS_S, P99_BOUND_MS), TARGET_RECORDS_S, P99_BOUND_MS)
    assert verdict(row(100_000, 150.0), safe_settings(SOLUTION)) is None


@pytest.mark.parametrize(
    "run",
    [
        row(TARGET_RECORDS_S - 1, 100.0),
        row(100_000, P99_BOUND_MS + 1),
        row(100_000, 100.0, failed=3),
        row(100_000, 100.0, complete=False),
    ],
)
def test_slow_late_or_lossy_runs_fail(run: dict[str, Any]) -> None:
    assert not meets(run, TARGET_RECORDS_S, P99_BOUND_MS)


def test_the_stub_fails_on_both_counts_with_hints() -> None:
    message = verdict(row(11_000, 8_400.0), safe_settings(STUB))
    assert message is not None
    assert "11,000 records/s against a target of 25,000" in message
    assert "p99 was 8,400 ms against a bound of 1,000 ms" in message
    for hint in ("max.in.flight.requests.per.connection=1", "batch.size=2048", "linger.ms=0"):
        assert hint in message
    assert "lz4 or zstd" in message


def test_a_long_linger_is_named_when_p99_is_over_the_bound() -> None:
    settings = safe_settings({**SOLUTION, "linger.ms": 2000, "batch.size": 10_000_000})
    message = verdict(row(90_000, 2_400.0), settings)
    assert message is not None
    assert message.startswith("p99 was 2,400 ms against a bound of 1,000 ms")
    assert "linger.ms=2000 adds to every record's wait" in message
    assert "records/s against" not in message


def test_failed_deliveries_are_reported_before_speed() -> None:
    message = verdict(row(90_000, 100.0, failed=3), safe_settings(SOLUTION), runs=2)
    assert message is not None and message.startswith("3 of 100,000 records were not delivered")
    assert "MSG_TIMED_OUT" in message and "best of 2 runs" in message


def test_near_misses_are_retried_and_far_misses_are_not() -> None:
    assert near_miss(row(15_000, 900.0), TARGET_RECORDS_S, P99_BOUND_MS)
    assert near_miss(row(40_000, 1_500.0), TARGET_RECORDS_S, P99_BOUND_MS)
    assert not near_miss(row(11_000, 900.0), TARGET_RECORDS_S, P99_BOUND_MS)
    assert not near_miss(row(40_000, 8_000.0), TARGET_RECORDS_S, P99_BOUND_MS)
    assert not near_miss(row(40_000, 100.0, failed=1), TARGET_RECORDS_S, P99_BOUND_MS)


def test_best_prefers_complete_runs_then_speed() -> None:
    runs = [row(50_000, 10.0, failed=2), row(20_000, 10.0), row(25_000, 10.0)]
    assert best(runs)["records/s"] == 25_000


# -- the explorer's pure parts ------------------------------------------------------------------


def test_perf_tool_needs_unkeyed_random_records() -> None:
    check_perf_tool(ProduceSpec())
    with pytest.raises(InvalidSettings, match="keys=uniform, payload=random"):
        check_perf_tool(ProduceSpec(keys="uniform"))
    with pytest.raises(InvalidSettings, match="payload=orders"):
        check_perf_tool(ProduceSpec(payload="orders"))


@pytest.mark.parametrize("batch", [0, -1, 2_000_000, 1.5, True, "500"])
def test_consume_batch_out_of_range_is_a_sentence(batch: object) -> None:
    with pytest.raises(InvalidSettings, match=r"consume\(num_messages\) must be a number"):
        check_batch(batch)
    assert check_batch(500) == 500


def test_run_labels_name_what_differs_from_the_defaults() -> None:
    produce = {
        "mode": "produce",
        "engine": "python",
        **tuning.PRODUCER_DEFAULTS,
        "linger.ms": 20,
        "compression.type": "lz4",
        "partitions": 6,
        "payload": "random",
        "keys": "none",
        "processes": 2,
    }
    assert run_label(3, produce) == (
        "#3 produce python: 6p, random, linger.ms=20, compression.type=lz4, 2 processes"
    )
    consume = {
        "mode": "consume",
        "engine": "java",
        **tuning.CONSUMER_DEFAULTS,
        "fetch.min.bytes": 1000,
        "batch": None,
        "partitions": 3,
        "payload": "orders",
        "keys": "skewed",
    }
    assert run_label(4, consume) == "#4 consume java: 3p, orders, keys=skewed, fetch.min.bytes=1000"


def test_chart_tables_have_one_row_per_run_and_figure() -> None:
    results = pd.DataFrame(
        [
            {"run": 1, "label": "a", "engine": "python", "records/s": 10, "MB/s": 1.0,
             "p50 ms": 1.0, "p95 ms": 2.0, "p99 ms": 3.0},
            {"run": 2, "label": "b", "engine": "python", "records/s": 20, "MB/s": 2.0,
             "p50 ms": None, "p95 ms": None, "p99 ms": None},
        ]
    )  # fmt: skip
    rates = throughput_frame(results)
    assert len(rates) == 4 and set(rates["measure"]) == {"records/s", "MB/s"}
    latencies = latency_frame(results)
    assert list(latencies["label"]) == ["a"] * 3  # the consume run has no latency
    assert list(latencies["ms"]) == [1.0, 2.0, 3.0]
    assert throughput_frame(pd.DataFrame()).empty and latency_frame(pd.DataFrame()).empty
