"""The notebooks and how the suite runs each: CI sizes, which ones break brokers, which labs a
workshop learner confined to their namespace runs. Shared by the tests, the expected-outputs
generator (``python -m tests.notebooks.expected``) and the soak (``python -m tests.soak``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import papermill
import pytest

from lab_env.display import CHARTS_ENV
from lab_env.kernel import KERNEL_NAME
from tests.tiers import CPU
from tests.tiers import SERIAL as SERIAL_MARK

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "notebooks"
LESSONS = sorted((REPO / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))
LABS = sorted((REPO / "labs").glob("*.ipynb"))
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
CELL_TIMEOUT_S = 300  # papermill's bound on each cell
# One nbval run per lesson, each bounded on its own: a run over all twelve came near the suite's
# 600 s per-test limit here and passed it on a slower CI machine.
NBVAL_TIMEOUT_S = 900
# The executed lessons and solutions are the course site's pages (coursesite/): their kernels draw
# charts as SVG images, which a static page shows, instead of widgets, which it cannot.
STATIC_CHARTS = {CHARTS_ENV: "static"}


@contextlib.contextmanager
def static_charts() -> Iterator[None]:
    """Kernels started inside draw static charts (papermill starts them from this process)."""
    before = os.environ.get(CHARTS_ENV)
    os.environ.update(STATIC_CHARTS)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CHARTS_ENV, None)
        else:
            os.environ[CHARTS_ENV] = before


# Notebooks that kill, pause or restart brokers (or stop the lab): they run in the disruptive tier,
# on a lab of their own (tests/tiers.py). A stem names a lesson, or a lab in both solutions/ and
# labs/. Killing a client or a service process is not a broker fault: lessons 03 and 04 SIGKILL
# consumer and transactional workers, lesson 11 and lab 11 kill or freeze a service instance,
# lesson 10's
# `external.faults.kill(1)` is refused by the external backend; none of them is here.
DISRUPTIVE = frozenset(
    {
        # paused_follower() SIGSTOPs an in-sync follower for PAUSE_S s (twice).
        "02-producers",
        # SIGKILLs a partition leader mid-stream, SIGSTOPs followers, kills a leader whose
        # followers are frozen, restarts brokers.
        "07-replication-and-failure",
        # kills a broker to watch the alerts fire, then brings it back (lab.backend.up).
        "08-monitoring",
        # check_no_duplicates_under_retries pauses a follower for 3 s; the unsolved copy gets
        # there too. (The solution runs as a confined learner, whose external backend pauses
        # nothing: tests/integration/test_workshop.py.)
        "02-reliable-fast-producer",
        # check_survives_broker_loss kills a partition leader and restarts it; the unsolved
        # copy's TOPIC passes the check's shape test, so it gets there too.
        "07-surviving-a-broker-loss",
        # check_broker_down_alert kills a broker (the unsolved copy's empty `expr` is refused
        # before the kill, but its last cell restarts whatever is down: `lab.backend.up`).
        "08-promql-and-alerts",
    }
)

# Notebooks that must have the machine to themselves (tests/tiers.py: they run in the serial tier,
# after the shared and disruptive ones). Each bounds a time it does not control the load for: a
# test sharing two cores with them could fail them, which says nothing about the notebook. One
# that is disruptive too (02-reliable-fast-producer) runs there, on the lab, alone.
SERIAL = frozenset(
    {
        # sleeps 7.5 s against a 6 s max.poll.interval.ms (+0.5 s), and 0.7 s against a 200 ms
        # auto-commit interval, to show each one's effect.
        "03-consumer-groups",
        # a transactional worker's consumer stops after idle_exit_s=1 s without records.
        "04-exactly-once",
        # check_fast_and_complete: the idempotent producer at least 8 times the baseline's rate,
        # both measured in the check (once measured 4 % below the bar with a test beside it).
        "02-reliable-fast-producer",
        # check_rebalances stalls a worker 8 s against max.poll.interval.ms = 6 s.
        "03-at-least-once-group",
        # check_tuned_producer: at least 25,000 records/s with p99 at most 1,000 ms.
        "06-tuned-producer",
    }
)

# Notebooks that keep both cores busy for minutes (producer throughput runs): on the shared
# tier they share one worker (xdist group "cpu") with the other such tests, so two of them never
# compete for the machine.
HEAVY = frozenset({"06-performance-tuning"})

# Labs a workshop learner runs with only their own namespace's grants, and the checks each must
# pass. Each runs once, as that learner (tests/integration/test_workshop.py), which proves both
# that the solution passes and that a confined learner can do it. Labs 07 and 08 kill brokers (a
# learner's external backend cannot) and lab 09 configures users and ACLs (an administrator's
# work); they and lab 11 run as the lab's own user (tests/notebooks/test_notebooks.py).
CONFINED_LABS: dict[str, frozenset[str]] = {
    "00-lab-tour": frozenset({"check_cluster_facts"}),
    "01-keys-and-compaction": frozenset({"check_per_order_ordering", "check_latest_status"}),
    "02-reliable-fast-producer": frozenset(
        {
            "check_fast_and_complete",
            "check_idempotent_producer",
            "check_no_duplicates_under_retries",
            "check_failures_surfaced",
        }
    ),
    "03-at-least-once-group": frozenset({"check_commits_follow_processing", "check_rebalances"}),
    "04-transactional-worker": frozenset({"check_abort_path", "check_crash_recovery"}),
    "05-schema-evolution": frozenset(
        {
            "check_subject_level",
            "check_schema_versions",
            "check_topic_versions",
            "check_reader_view",
        }
    ),
    "06-tuned-producer": frozenset({"check_tuned_producer"}),
    "10-manifests-for-a-team": frozenset({"check_kafka_user", "check_scaling_rule"}),
}


def marks(stem: str) -> list[pytest.MarkDecorator]:
    """How the suite schedules a run of the notebook ``stem`` (tests/tiers.py)."""
    found = [pytest.mark.disruptive] if stem in DISRUPTIVE else []
    if stem in SERIAL:
        found.append(SERIAL_MARK)
    if stem in HEAVY:
        found.append(CPU)
    return found


def label(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def lessons_named(names: list[str]) -> list[Path]:
    """Lessons named by file name, path, stem or number (``02``); every lesson for none."""
    if not names:
        return list(LESSONS)
    chosen = []
    for name in names:
        stem = Path(name).stem
        matches = [p for p in LESSONS if p.stem == stem or p.stem.startswith(f"{stem}-")]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in LESSONS)
            raise SystemExit(f"{name!r} names no single lesson; the lessons are: {known}")
        chosen.append(matches[0])
    return chosen


def ci_parameters(path: Path) -> dict[str, object]:
    """``CI=True`` plus the small sizes a notebook asks for in its metadata
    (``"kafka_lab": {"ci_parameters": {...}}``), so each notebook owns its CI sizes."""
    notebook = nbformat.read(path, as_version=4)
    return {"CI": True, **notebook.metadata.get("kafka_lab", {}).get("ci_parameters", {})}


def marked_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells whose output nbval compares: deterministic facts."""
    return [c for c in notebook.cells if c.cell_type == "code" and NBVAL_MARK in c.source]


def run_nbval(copy: Path, timeout: float = NBVAL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``pytest --nbval-lax`` over ``copy`` in a process of its own, on the lab's kernel; the
    executed notebook is written over ``copy`` when it ends (tests/notebooks/nbval_keep.py).
    Raises subprocess.TimeoutExpired after ``timeout`` s."""
    command = [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-kernel-name={KERNEL_NAME}"]
    command += ["-p", "tests.notebooks.nbval_keep", "-p", "no:cacheprovider", "-q"]
    command += ["-o", "addopts="]  # no per-cell durations ahead of nbval's report
    return subprocess.run(
        [*command, str(copy)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **STATIC_CHARTS},
    )


def run_papermill(path: Path, out: Path) -> Path:
    """Execute ``path`` headless into ``out``: CI parameters, the lab's kernel, the repository as
    the working directory. Raises papermill's PapermillExecutionError at the first failing cell
    (``out`` then holds the notebook up to that cell)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with static_charts():
        papermill.execute_notebook(
            str(path),
            str(out),
            parameters=ci_parameters(path),
            kernel_name=KERNEL_NAME,
            cwd=str(REPO),
            progress_bar=False,
            execution_timeout=CELL_TIMEOUT_S,
        )
    return out
