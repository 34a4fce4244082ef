"""The two checks that kill a broker say what they are doing as each phase starts, in order,
above their verdict. Rehearsed here on stand-ins for the cluster: on the real lab they run in
the suite's disruptive tier (the solutions of labs 07 and 08, tests/notebooks), whose progress
lines tests/notebooks/test_notebooks.py requires too."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lab_env.lab_checks import monitoring_checks, replication
from lab_env.replication import Deliveries
from tests.helpers import progress_lines

GOOD_TOPIC = {"partitions": 3, "replication_factor": 3, "min.insync.replicas": 2}
GOOD_PRODUCER = {"acks": "all", "enable.idempotence": True}
RULE = """groups:
- name: lab08
  rules:
  - alert: BrokerDown
    expr: up{job="kafka"} == 0
    for: 5s
"""


class Faults:
    def __init__(self) -> None:
        self.killed: list[int] = []

    def kill(self, node: int) -> None:
        self.killed.append(node)


class StandIn:
    """What the checks ask of the lab, answered without a cluster."""

    def __init__(self, home: Path) -> None:
        self.faults = Faults()
        self.config = types.SimpleNamespace(home=home, backend="embedded")
        self.backend = types.SimpleNamespace(up=lambda report: None)

    def topic(self, name: str) -> str:
        return name

    def create_topic(self, *args: Any, **kwargs: Any) -> None:
        pass

    def delete_topic(self, name: str) -> None:
        pass


def test_the_broker_loss_check_says_whom_it_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = StandIn(tmp_path)

    def produce_numbered(
        lab: StandIn,
        topic: str,
        config: object,
        records: int,
        rate: int,
        fault: Callable[[], None],
        after: int,
        flush: float,
    ) -> Deliveries:
        fault()
        return Deliveries(sent=records, acked={n: (0.0, 0) for n in range(records)}, producer_id=7)

    monkeypatch.setattr(replication, "_topic_facts", lambda lab, name: ({3}, 2))
    monkeypatch.setattr(replication, "_victim", lambda lab, name: (1, 2))
    monkeypatch.setattr(replication, "produce_numbered", produce_numbered)
    monkeypatch.setattr(replication, "restart", lambda lab, node: 0.0)
    monkeypatch.setattr(replication, "read_numbers", lambda lab, name, timeout: list(range(30)))
    replication.check_survives_broker_loss(lab, GOOD_TOPIC, GOOD_PRODUCER, records=30)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert lab.faults.killed == [2]
    assert progress_lines(out) == [
        "creating a topic with TOPIC's settings: 3 partitions, RF 3",
        "producing 30 numbered records at 300/s with PRODUCER's settings; kafka-2 is killed "
        "after 10",
        "killed kafka-2, the leader of partition 1",
        "starting kafka-2 again, waiting for every replica to catch up",
        "reading every record back",
    ]
    assert out.rstrip().splitlines()[-1].startswith("PASSED: node 2 killed mid-stream")


def test_the_alert_check_says_how_long_it_waits_and_what_the_alert_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = StandIn(tmp_path)
    (tmp_path / "config" / "rules").mkdir(parents=True)
    states = iter(["inactive", "inactive", "pending", "firing"])
    monkeypatch.setattr(monitoring_checks, "promtool_check", lambda text: None)
    monkeypatch.setattr(monitoring_checks, "_evaluate", lambda *a: pd.DataFrame())
    monkeypatch.setattr(monitoring_checks.monitoring, "reload", lambda cfg: None)
    monkeypatch.setattr(monitoring_checks, "quorum_leader", lambda cfg: 3)
    monkeypatch.setattr(monitoring_checks, "_rule_state", lambda lab, path: next(states))
    monkeypatch.setattr(
        monitoring_checks,
        "eventually",
        lambda ready, timeout, interval: any(ready() for _ in range(9)),
    )
    monitoring_checks.check_broker_down_alert(lab, RULE)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert lab.faults.killed == [2]
    assert progress_lines(out) == [
        "installing your rule 'BrokerDown' in Prometheus",
        "killed kafka-2; waiting for your alert to fire (up to 45 s)",
        "your alert is inactive",
        "your alert is pending",
        "your alert is firing",
        "starting kafka-2 again",
    ]
    assert "PASSED: alert BrokerDown fired" in out
