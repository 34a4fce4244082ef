"""tests/suite.py's tiers and exit status, and the marks that put tests in them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.notebooks.catalog import (
    CONFINED_LABS,
    DISRUPTIVE,
    HEAVY,
    LESSONS,
    REPO,
    SERIAL,
    SOLUTIONS,
)
from tests.suite import NO_TESTS, OK, status, tiers


def test_two_workers_run_the_parallel_tier_then_the_serial_one() -> None:
    parallel, serial = tiers(2, ["-k", "lesson"])
    assert parallel.argv[:3] == [sys.executable, "-m", "pytest"]
    assert parallel.argv[3:] == [
        "-m", "cluster and not serial", "-n", "2", "--dist", "loadgroup", "-k", "lesson",
    ]  # fmt: skip
    assert serial.argv[3:] == ["-m", "cluster and serial", "-k", "lesson"]


def test_one_worker_is_one_run_of_every_cluster_test() -> None:
    (only,) = tiers(1)
    assert only.argv[3:] == ["-m", "cluster"]


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        tiers(0)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([OK, OK], OK),
        ([1, OK], 1),
        ([OK, 2], 2),
        ([1, 2], 1),
        ([NO_TESTS, OK], OK),
        ([NO_TESTS, NO_TESTS], NO_TESTS),
        ([NO_TESTS, 1], 1),
    ],
)
def test_the_status_is_the_first_failing_tier(codes: list[int], expected: int) -> None:
    assert status(codes) == expected


def test_the_tier_lists_name_real_notebooks() -> None:
    stems = {p.stem for p in LESSONS + SOLUTIONS}
    assert stems >= SERIAL | HEAVY, sorted((SERIAL | HEAVY) - stems)
    assert not SERIAL & HEAVY, "a serial notebook runs alone anyway: leave it out of HEAVY"
    assert not DISRUPTIVE & HEAVY, "a disruptive notebook runs alone anyway: leave it out of HEAVY"
    assert SERIAL & set(CONFINED_LABS), "the confined labs' rate checks are serial"


def collected(*args: str) -> set[str]:
    """Node ids pytest collects for ``args`` (collection only: no cluster is touched)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == OK, done.stdout[-2000:] + done.stderr[-2000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_conftest_puts_disruptive_and_last_tests_in_the_serial_tier() -> None:
    files = ["tests/integration/test_faults.py", "tests/integration/test_consumers.py"]
    serial = collected("-m", "serial", *files)
    everything = collected(*files)
    faults = {n for n in everything if n.startswith(files[0])}
    assert faults and faults <= serial  # the last file: every test in it
    marked_by_hand = {n for n in everything if "at_least_once_workers_pass" in n}
    assert marked_by_hand and marked_by_hand <= serial
    assert everything - serial, "test_consumers.py has tests for the parallel tier too"
    lessons = collected("-m", "serial", "tests/notebooks/test_notebooks.py")
    assert any("07-replication-and-failure" in n for n in lessons)  # disruptive
    assert any("03-consumer-groups" in n for n in lessons)  # SERIAL
    assert not any("01-core-concepts" in n for n in lessons)
