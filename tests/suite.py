"""The cluster part of ``make test``, in two tiers (tests/tiers.py):

    python -m tests.suite                 # the parallel tier on 2 workers, then the serial tier
    python -m tests.suite --workers 1     # every cluster test in one pytest run, in order
    python -m tests.suite -- -k lesson    # arguments after ``--`` go to each pytest run

It starts the lab if none is running (and stops it at the end if it did), runs the cluster tests
that are not ``serial`` on pytest-xdist workers sharing that lab, then the ``serial`` ones alone
in one process: the tests that kill, pause or restart brokers, and those that bound a time or a
rate a neighbour's load would move. Both tiers run whatever the first's outcome, so one run
reports every failure; the exit status is the worse of the two. Each tier prints its slowest
tests (``--durations``); the run ends with each tier's time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab

# pytest's exit statuses (pytest.ExitCode); a tier that selects nothing is not a failure.
OK, NO_TESTS = 0, 5


@dataclass(frozen=True)
class Tier:
    name: str
    argv: list[str]


def tiers(workers: int, extra: Sequence[str] = ()) -> list[Tier]:
    """The pytest runs for ``workers`` workers: one run of every cluster test when ``workers`` is
    1, else the parallel tier then the serial one."""
    pytest = [sys.executable, "-m", "pytest"]
    if workers < 1:
        raise ValueError(f"--workers must be 1 or more, not {workers}")
    if workers == 1:
        return [Tier("cluster", [*pytest, "-m", "cluster", *extra])]
    parallel = ["-m", "cluster and not serial", "-n", str(workers), "--dist", "loadgroup"]
    return [
        Tier(f"parallel ({workers} workers)", [*pytest, *parallel, *extra]),
        Tier("serial", [*pytest, "-m", "cluster and serial", *extra]),
    ]


def status(codes: Sequence[int]) -> int:
    """The run's exit status: the first failing tier's, else 0 (also when a tier selected no
    test, as ``-k`` can make it), else NO_TESTS when no tier selected any."""
    failing = [c for c in codes if c not in (OK, NO_TESTS)]
    if failing:
        return failing[0]
    return NO_TESTS if codes and all(c == NO_TESTS for c in codes) else OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.suite", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="passed to each pytest run (after --)")
    args = parser.parse_args(argv)
    try:
        runs = tiers(args.workers, args.pytest_args)
    except ValueError as bad:
        parser.error(str(bad))

    def say(message: str) -> None:
        print(f"suite: {message}", file=sys.stderr, flush=True)

    cfg = load_config()
    supervisor = EmbeddedLab(cfg) if cfg.backend == "embedded" else None
    started = False
    if supervisor is not None:
        started = not any(supervisor.procs.live(c) for c in supervisor.components())
        supervisor.up(lambda m: say(f"lab up: {m}"))
    codes, times = [], []
    try:
        for tier in runs:
            say(f"{tier.name} tier: {' '.join(tier.argv[1:])}")
            begun = time.monotonic()
            codes.append(subprocess.run(tier.argv, check=False).returncode)
            times.append(time.monotonic() - begun)
    finally:
        if started and supervisor is not None:
            say("lab down (this run started it)")
            supervisor.down()
    for tier, code, spent in zip(runs, codes, times, strict=True):
        say(f"{tier.name} tier: {spent:,.0f} s, pytest exit status {code}")
    return status(codes)


if __name__ == "__main__":
    sys.exit(main())
