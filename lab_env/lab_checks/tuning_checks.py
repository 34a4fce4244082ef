"""Lab 06: a tuned producer. The check re-runs the learner's producer settings through
``lab_env.tuning.produce`` on a fresh topic (the lab's fixed workload) and judges the row.

The target and the bound were measured on the lab's two-core machine while the cluster was
shared with other work (load average 2 to 12), on the workload below with acks=all and
idempotence on. The solution's settings (linger.ms 20, batch.size 1,000,000, lz4) made 21,700
to 206,000 records/s in single runs (most above 75,000), p99 110 to 810 ms; the stub (the
"careful" settings: linger.ms 0, batch.size 2048, one request in flight) made 3,800 to 5,100
records/s at the heaviest load, p99 19 to 26 s (with batch.size 4096 it made up to 14,200). A
target of 25,000 records/s is at most a third of the solution's usual runs, and a near miss is
run again; the stub stays far below it. A p99 bound of 1,000 ms clears the solution's worst run.
"""

from __future__ import annotations

from typing import Any

from lab_env import tuning
from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.steps import Steps
from lab_env.tuning import InvalidSettings, ProduceSpec

TARGET_RECORDS_S = 25_000
P99_BOUND_MS = 1_000.0
ATTEMPTS = 3  # a near miss is run again (a shared machine has slow moments); a far miss is not
NEAR = 0.5  # a run within this fraction of the target (and of the bound) counts as a near miss
WORKLOAD = ProduceSpec(
    records=100_000, payload="orders", keys="uniform", partitions=6, deadline_s=60.0
)
ORDER_BYTES = 200  # about the size of one order event's JSON


# -- pure decisions (unit-tested) ---------------------------------------------------------------


def safe_settings(settings: object) -> dict[str, Any]:
    """The learner's settings, checked by the explorer's engine and required to be safe:
    ``acks=all`` and ``enable.idempotence=true``. Anything else is a LabCheckError saying so."""
    require(
        isinstance(settings, dict),
        f"SETTINGS must be a dict of producer settings, not {type(settings).__name__}.",
    )
    assert isinstance(settings, dict)
    try:
        checked = tuning.producer_settings(settings)
    except InvalidSettings as exc:
        raise LabCheckError(f"these settings are refused: {exc}") from None
    require(
        checked["acks"] == "all",
        f"acks={checked['acks']} acknowledges a record before every in-sync replica has it: a "
        "leader that dies can lose it (module 07). The order service needs acks=all; make it "
        "fast some other way.",
    )
    require(
        checked["enable.idempotence"] is True,
        "enable.idempotence is off: a retried batch can be stored twice or out of order. Set "
        "enable.idempotence=True (it costs almost nothing; module 02 measured it).",
    )
    return checked


def meets(row: dict[str, Any], target: float, bound: float) -> bool:
    """Whether one run reached the target rate within the latency bound, every record delivered."""
    return (
        not row["failed"]
        and bool(row["complete"])
        and row["records/s"] >= target
        and row["p99 ms"] <= bound
    )


def near_miss(row: dict[str, Any], target: float, bound: float) -> bool:
    """A miss close enough that a second run may pass: both figures within NEAR of the mark."""
    return not row["failed"] and row["records/s"] >= NEAR * target and row["p99 ms"] <= bound / NEAR


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run that came closest: the highest rate among the fewest failures."""
    return max(rows, key=lambda r: (-r["failed"], r["records/s"]))


def throughput_hints(settings: dict[str, Any]) -> list[str]:
    """What in these settings holds a producer back, as advice."""
    hints = []
    if settings["max.in.flight.requests.per.connection"] == 1:
        hints.append(
            "max.in.flight.requests.per.connection=1 lets one request per broker travel at a "
            "time, each waiting a full acks=all round trip; with idempotence, up to 5 still "
            "keep every partition in order"
        )
    if settings["batch.size"] < 64 * 1024:
        per_batch = max(1, settings["batch.size"] // ORDER_BYTES)
        hints.append(
            f"batch.size={settings['batch.size']} caps a partition's batch at about "
            f"{per_batch} orders, so the producer sends many small requests: raise it "
            "(librdkafka's default is 1,000,000 bytes)"
        )
    if settings["linger.ms"] == 0:
        hints.append("linger.ms=0 sends a batch before it can fill: a few ms lets it grow")
    if settings["compression.type"] == "none":
        hints.append(
            "compression.type=none sends the JSON as it is: lz4 or zstd shrink order events "
            "several times (lesson 06 measured it)"
        )
    return hints


def latency_hints(settings: dict[str, Any]) -> list[str]:
    if settings["linger.ms"] >= P99_BOUND_MS / 4:
        return [
            f"linger.ms={settings['linger.ms']} adds to every record's wait: a few tens of ms "
            "fill batches just as well under this load"
        ]
    return [
        "records wait in the producer's queue behind slow requests: what raises throughput "
        "(larger batches, requests in flight, compression) empties the queue sooner"
    ]


def verdict(
    row: dict[str, Any],
    settings: dict[str, Any],
    target: float = TARGET_RECORDS_S,
    bound: float = P99_BOUND_MS,
    runs: int = 1,
) -> str | None:
    """None when the run passes; otherwise what is wrong and how to fix it."""
    if meets(row, target, bound):
        return None
    measured = f"best of {runs} runs" if runs > 1 else "one run"
    if row["failed"] or not row["complete"]:
        return (
            f"{row['failed']} of {row['records']:,} records were not delivered "
            f"({row['errors'] or 'deadline reached'}; {measured}): every record must arrive. "
            "Keep retries and message.timeout.ms at their defaults."
        )
    problems, hints = [], []
    if row["records/s"] < target:
        problems.append(f"{row['records/s']:,} records/s against a target of {target:,.0f}")
        hints += throughput_hints(settings)
    if row["p99 ms"] > bound:
        problems.append(f"p99 was {row['p99 ms']:,.0f} ms against a bound of {bound:,.0f} ms")
        hints += [h for h in latency_hints(settings) if h not in hints]
    advice = "; ".join(hints) or "try the settings in the explorer and compare runs"
    return f"{' and '.join(problems)} ({measured}): {advice}."


# -- the check ----------------------------------------------------------------------------------


def check_tuned_producer(lab: Lab, settings: object, spec: ProduceSpec = WORKLOAD) -> None:
    """acks=all and idempotence on, then the learner's settings on the lab's workload: at least
    TARGET_RECORDS_S records/s with p99 delivery latency at most P99_BOUND_MS, in one run.

    A near miss is run again, up to ATTEMPTS runs in all; a far miss fails at once.
    """
    checked = safe_settings(settings)
    step = Steps()
    rows: list[dict[str, Any]] = []
    while len(rows) < ATTEMPTS:
        step(
            f"producing {spec.records:,} records with your settings "
            f"(run {len(rows) + 1} of at most {ATTEMPTS})"
        )
        rows.append(tuning.produce(lab, spec, checked))
        last = rows[-1]
        if meets(last, TARGET_RECORDS_S, P99_BOUND_MS):
            passed(
                f"{last['records/s']:,} records/s with p99 {last['p99 ms']:,.0f} ms "
                f"(target {TARGET_RECORDS_S:,} records/s, bound {P99_BOUND_MS:,.0f} ms), "
                "acks=all and idempotent"
            )
            return
        if not near_miss(last, TARGET_RECORDS_S, P99_BOUND_MS):
            break
        step(f"{last['records/s']:,} records/s, p99 {last['p99 ms']:,.0f} ms: near the mark")
    message = verdict(best(rows), checked, runs=len(rows))
    raise LabCheckError(message or "the run did not pass.")
