"""`make bench-produce` and `make bench-startup` say on stderr what they are doing as each
config, round and phase starts and ends, and print the same figures on stdout as before.

Their clients, tools and the lab are stand-ins here: bench-startup stops and starts the lab,
which no test may do to the shared one, and bench-produce runs minutes of Java and Python
producers. (bench-orders and `lab bench` show theirs on the live lab: tests/integration/
test_bench.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from lab_env import tuning
from lab_env.benchmarks import produce, startup
from tests.helpers import phases, progress_lines


def no_cluster(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    monkeypatch.setattr(module, "load_config", lambda: None)
    monkeypatch.setattr(module, "Lab", lambda cfg: None)
    monkeypatch.setattr(module, "describe", lambda cfg: ["machine: a stand-in"])


def test_bench_produce_says_each_config_and_round(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_cluster(monkeypatch, produce)
    python = {"records/s": 100_000, "failed": 0, "complete": True, "p99 ms": 5.0, "CPU s": 1.0}
    monkeypatch.setattr(tuning, "produce", lambda lab, spec, settings: python)
    monkeypatch.setattr(tuning, "java_produce", lambda *a: {"records/s": 50_000, "p99 ms": 7.0})
    assert produce.main(["--rounds", "2", "--scale", "0.001"]) == 0
    captured = capsys.readouterr()
    assert progress_lines(captured.out) == []  # stdout keeps the figures only
    lines = progress_lines(captured.err)
    assert lines[:5] == [
        "config 1 of 4, 100B_acks1",
        "100B_acks1 round 1 of 2, python",
        "100B_acks1 round 1 of 2, python: done in 0.0 s, 100,000 records/s",
        "100B_acks1 round 1 of 2, java",
        "100B_acks1 round 1 of 2, java: done in 0.0 s, 50,000 records/s",
    ]
    assert len(lines) == 4 * (1 + 2 * 2 * 2)  # per config: its line, 2 rounds x 2 engines x 2
    assert "config 4 of 4, 1KiB_all_idem" in lines
    result = captured.out.splitlines()[-1]
    assert result == (
        "RESULT min_ratio=2.00 100B_acks1_py=100000 100B_acks1_java=50000 "
        "100B_all_idem_py=100000 100B_all_idem_java=50000 1KiB_acks1_py=100000 "
        "1KiB_acks1_java=50000 1KiB_all_idem_py=100000 1KiB_all_idem_java=50000"
    )


class Supervisor:
    """The embedded lab's supervisor, as bench-startup uses it: running, 500 MiB."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.procs = self

    def live(self, component: str) -> bool:
        return True

    def components(self) -> list[str]:
        return ["kafka-1"]

    def up(self) -> None:
        self.calls.append("up")

    def down(self) -> None:
        self.calls.append("down")

    def status(self) -> dict[str, Any]:
        return {"components": [{"name": "kafka-1", "rss_mib": 500.0}]}


def test_bench_startup_says_each_phase_and_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_cluster(monkeypatch, startup)
    supervisor = Supervisor()
    monkeypatch.setattr(startup, "EmbeddedLab", lambda cfg: supervisor)
    monkeypatch.setattr(startup, "timed_up", lambda: 17.5)
    monkeypatch.setattr(startup, "load", lambda lab, records: 3.0)
    assert startup.main(["--runs", "2", "--records", "1000"]) == 0
    captured = capsys.readouterr()
    assert progress_lines(captured.out) == []
    assert phases(captured.err) == [
        "warming up with `lab up` (not timed)",
        "warming up with `lab up` (not timed)",
        "run 1 of 2, stopping the lab",
        "run 1 of 2, stopping the lab",
        "run 1 of 2, timing `lab up`",
        "run 1 of 2, timing `lab up`",
        "run 2 of 2, stopping the lab",
        "run 2 of 2, stopping the lab",
        "run 2 of 2, timing `lab up`",
        "run 2 of 2, timing `lab up`",
        "load, 1,000 records of 1 KiB produced and consumed",
        "load, 1,000 records of 1 KiB produced and consumed",
    ]  # each phase's start, then its end
    assert supervisor.calls == ["up", "down", "down"]  # it was running: left running
    assert "run 2: lab up -> healthy in 17.5 s" in captured.out
    assert captured.out.splitlines()[-1] == "RESULT startup_s=17.5 rss_mib=500"
