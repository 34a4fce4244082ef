"""The cluster part of ``make test``, in three tiers (tests/tiers.py):

    python -m tests.suite                 # the shared and disruptive tiers at once, then serial
    python -m tests.suite --workers 1     # every cluster test in one pytest run, in order
    python -m tests.suite -- -k lesson    # arguments after ``--`` go to each pytest run

It starts the lab if none is running (and stops it at the end if it did). Then two tiers run at
the same time: the **shared** one, every cluster test that neither disrupts a cluster nor bounds
a time, on pytest-xdist workers sharing that lab; and the **disruptive** one, the tests that
kill, pause or restart brokers or stop the lab, in one process on a second lab of their own. That
lab lives in a temporary home on the lab's ports plus OWN_LAB_PORT_OFFSET; the disruptive tier's
pytest session starts it and stops it, and this run removes its home. Last, alone on the machine
and on the lab, the **serial** tier: the tests that bound a time or a rate a neighbour's load
would move. Every tier runs whatever the others' outcome, so one run reports every failure; the
exit status is the first failing tier's. Each tier prints its slowest tests (``--durations``;
the disruptive tier's output is printed when it ends, not interleaved); the run ends with each
tier's time.

With a backend other than the embedded one there is no second lab to start: the disruptive tests
then run in the serial tier, on the one cluster, after the shared tier.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab_env.config import LabConfig, load_config
from lab_env.embedded import EmbeddedLab

# pytest's exit statuses (pytest.ExitCode); a tier that selects nothing is not a failure.
OK, NO_TESTS = 0, 5
# The second lab's ports: the lab's own plus this, which keeps the defaults (7071 to 20094) below
# Linux's ephemeral range (32768 and up), where a client's outgoing connection could take one.
OWN_LAB_PORT_OFFSET = 1000


@dataclass(frozen=True)
class Tier:
    name: str
    argv: list[str]
    own_lab: bool = False  # on a second lab of its own, started for it


def phases(workers: int, extra: Sequence[str] = (), own_lab: bool = True) -> list[list[Tier]]:
    """The pytest runs for ``workers`` workers, as phases whose tiers run at the same time: one
    run of every cluster test when ``workers`` is 1; else the shared tier beside the disruptive
    one (on a lab of its own when ``own_lab``), then the serial tier."""
    pytest = [sys.executable, "-m", "pytest"]
    if workers < 1:
        raise ValueError(f"--workers must be 1 or more, not {workers}")
    if workers == 1:
        return [[Tier("cluster", [*pytest, "-m", "cluster", *extra])]]
    xdist = ["-n", str(workers), "--dist", "loadgroup"]
    shared = Tier(
        f"shared ({workers} workers)",
        [*pytest, "-m", "cluster and not serial and not disruptive", *xdist, *extra],
    )
    if not own_lab:
        serial = ["-m", "cluster and (serial or disruptive)"]
        return [[shared], [Tier("serial", [*pytest, *serial, *extra])]]
    # Its own pytest cache would race the shared tier's for .pytest_cache: it keeps none.
    disruptive = ["-m", "cluster and disruptive and not serial", "-p", "no:cacheprovider"]
    return [
        [shared, Tier("disruptive (own lab)", [*pytest, *disruptive, *extra], own_lab=True)],
        [Tier("serial", [*pytest, "-m", "cluster and serial", *extra])],
    ]


def own_lab_env(cfg: LabConfig, home: Path) -> dict[str, str]:
    """The environment of a second embedded lab in ``home``, on ``cfg``'s ports plus
    OWN_LAB_PORT_OFFSET, sharing ``cfg``'s download cache."""

    def moved(*ports: int) -> str:
        return ",".join(str(port + OWN_LAB_PORT_OFFSET) for port in ports)

    p = cfg.ports
    return {
        "KAFKA_LAB_BACKEND": "embedded",
        "KAFKA_LAB_HOME": str(home),
        "KAFKA_LAB_CACHE": str(cfg.cache),
        "KAFKA_LAB_BROKER_PORTS": moved(*p.brokers),
        "KAFKA_LAB_CONTROLLER_PORTS": moved(*p.controllers),
        "KAFKA_LAB_EXPORTER_PORTS": moved(*p.exporters),
        "KAFKA_LAB_TLS_PORTS": moved(*p.tls),
        "KAFKA_LAB_SASL_PORTS": moved(*p.sasl),
        "KAFKA_LAB_REGISTRY_PORT": moved(p.registry),
        "KAFKA_LAB_REGISTRY_MANAGEMENT_PORT": moved(p.registry_management),
        "KAFKA_LAB_PROMETHEUS_PORT": moved(p.prometheus),
        "KAFKA_LAB_LAG_EXPORTER_PORT": moved(p.lag_exporter),
        "KAFKA_LAB_JUPYTER_PORT": moved(p.jupyter),
    }


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
    cfg = load_config()
    embedded = cfg.backend == "embedded"
    try:
        runs = phases(args.workers, args.pytest_args, own_lab=embedded)
    except ValueError as bad:
        parser.error(str(bad))

    def say(message: str) -> None:
        print(f"suite: {message}", file=sys.stderr, flush=True)

    supervisor = EmbeddedLab(cfg) if embedded else None
    started = False
    if supervisor is not None:
        started = not any(supervisor.procs.live(c) for c in supervisor.components())
        supervisor.up(lambda m: say(f"lab up: {m}"))
    results: list[tuple[Tier, int, float]] = []
    own_home = Path(tempfile.mkdtemp(prefix="kafka-lab-own-")) if embedded else None
    own_env = {**os.environ, **own_lab_env(cfg, own_home)} if own_home else None
    try:
        for phase in runs:
            results += run_phase(phase, own_home, own_env, say)
    finally:
        if own_home is not None and own_env is not None:
            EmbeddedLab(load_config(own_env)).down()  # if its pytest session did not
            shutil.rmtree(own_home, ignore_errors=True)
        if started and supervisor is not None:
            say("lab down (this run started it)")
            supervisor.down()
    for tier, code, spent in results:
        say(f"{tier.name} tier: {spent:,.0f} s, pytest exit status {code}")
    return status([code for _, code, _ in results])


def run_phase(
    phase: list[Tier],
    own_home: Path | None,
    own_env: dict[str, str] | None,
    say: Callable[[str], None],
) -> list[tuple[Tier, int, float]]:
    """Start every tier of ``phase`` at once and wait for all. A tier on a lab of its own writes
    to a log, printed when it ends, so two tiers' lines never interleave. Whatever ends this
    early (an interrupt) stops the tiers still running."""
    begun = time.monotonic()
    running: list[tuple[Tier, subprocess.Popen[bytes], Path | None]] = []
    ended: dict[int, tuple[int, float]] = {}
    try:
        for tier in phase:
            log = None
            if tier.own_lab:
                assert own_home and own_env, "a tier on a lab of its own needs that lab's home"
                log = own_home.with_name(own_home.name + ".log")
                where = f"on a lab of its own in {own_home} (ports +{OWN_LAB_PORT_OFFSET})"
                say(f"{tier.name} tier, {where}, output at its end: {' '.join(tier.argv[1:])}")
                with log.open("wb") as out:
                    proc = subprocess.Popen(tier.argv, env=own_env, stdout=out, stderr=out)
            else:
                say(f"{tier.name} tier: {' '.join(tier.argv[1:])}")
                proc = subprocess.Popen(tier.argv)
            running.append((tier, proc, log))
        while len(ended) < len(running):
            for i, (tier, proc, log) in enumerate(running):
                if i in ended or proc.poll() is None:
                    continue
                ended[i] = (proc.returncode, time.monotonic() - begun)
                if log is not None:
                    say(f"{tier.name} tier ended after {ended[i][1]:,.0f} s; its output:")
                    sys.stdout.write(log.read_text(errors="replace"))
                    sys.stdout.flush()
                    log.unlink()
            time.sleep(0.5)
    finally:
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
    return [(tier, *ended[i]) for i, (tier, _, _) in enumerate(running)]


if __name__ == "__main__":
    sys.exit(main())
