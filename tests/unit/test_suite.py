"""tests/suite.py's tiers and exit status, and the marks that put tests in them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab_env.config import load_config
from tests.notebooks.catalog import (
    CONFINED_LABS,
    DISRUPTIVE,
    HEAVY,
    LESSONS,
    REPO,
    SERIAL,
    SOLUTIONS,
)
from tests.suite import NO_TESTS, OK, OWN_LAB_PORT_OFFSET, own_lab_env, phases, status


def test_two_workers_run_the_shared_and_disruptive_tiers_at_once_then_the_serial_one() -> None:
    (shared, disruptive), (serial,) = phases(2, ["-k", "lesson"])
    assert shared.argv[:3] == [sys.executable, "-m", "pytest"]
    assert shared.argv[3:] == [
        "-m", "cluster and not serial and not disruptive", "-n", "2", "--dist", "loadgroup",
        "-k", "lesson",
    ]  # fmt: skip
    assert not shared.own_lab and disruptive.own_lab and not serial.own_lab
    assert disruptive.argv[3:] == [
        "-m", "cluster and disruptive and not serial", "-p", "no:cacheprovider", "-k", "lesson",
    ]  # fmt: skip
    assert serial.argv[3:] == ["-m", "cluster and serial", "-k", "lesson"]


def test_without_a_second_lab_the_disruptive_tests_run_in_the_serial_tier() -> None:
    (shared,), (serial,) = phases(2, own_lab=False)
    assert shared.argv[4] == "cluster and not serial and not disruptive"
    assert serial.argv[3:] == ["-m", "cluster and (serial or disruptive)"]
    assert not serial.own_lab


def test_one_worker_is_one_run_of_every_cluster_test() -> None:
    ((only,),) = phases(1)
    assert only.argv[3:] == ["-m", "cluster"]


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        phases(0)


def test_the_own_lab_is_the_lab_moved_to_its_own_home_and_ports(tmp_path: Path) -> None:
    cfg = load_config({"KAFKA_LAB_HOME": str(tmp_path / "lab")})
    env = own_lab_env(cfg, tmp_path / "own")
    own = load_config(env)
    assert own.home == tmp_path / "own" and own.cache == cfg.cache
    assert own.ports.brokers == tuple(p + OWN_LAB_PORT_OFFSET for p in cfg.ports.brokers)
    mine, theirs = set(cfg.ports.named().values()), set(own.ports.named().values())
    assert len(theirs) == len(mine) and not mine & theirs
    assert max(theirs) < 32768, "below Linux's ephemeral ports"


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


def test_the_marks_put_disruptive_and_timing_tests_in_their_tiers() -> None:
    files = ["tests/integration/test_faults.py", "tests/integration/test_consumers.py"]
    lessons = "tests/notebooks/test_notebooks.py"
    disruptive = collected("-m", "disruptive", *files, lessons)
    serial = collected("-m", "serial", *files, lessons)
    everything = collected(*files, lessons)
    faults = {n for n in everything if n.startswith(files[0])}
    assert faults and faults <= disruptive and not faults & serial  # the last file: all of it
    marked_by_hand = {n for n in everything if "at_least_once_workers_pass" in n}
    assert marked_by_hand and marked_by_hand <= serial and not marked_by_hand & disruptive
    shared = everything - serial - disruptive
    assert any(n.startswith(files[1]) for n in shared), "test_consumers.py has shared tests too"
    assert any("01-core-concepts" in n for n in shared)
    assert any("07-replication-and-failure" in n for n in disruptive - serial)
    assert any("03-consumer-groups" in n for n in serial - disruptive)
    assert any("labs/02-reliable-fast-producer" in n for n in serial & disruptive)  # rate, pause
