"""Lab 08's pure helpers: every malformed answer gets a sentence that names the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from lab_env.checks import LabCheckError
from lab_env.lab_checks.monitoring_checks import (
    duration_seconds,
    parse_alert_rule,
    promtool_check,
    single_value,
)

GOOD = """
groups:
  - name: g
    rules:
      - alert: BrokerDown
        expr: up{job="kafka"} == 0
        for: 10s
"""


def test_single_value_wants_exactly_one_series() -> None:
    assert single_value(pd.DataFrame([{"value": 3.0}]), "q") == 3.0
    with pytest.raises(LabCheckError, match="no series"):
        single_value(pd.DataFrame(columns=["value"]), "q")
    per_node = pd.DataFrame([{"node": "1", "value": 1.0}, {"node": "2", "value": 2.0}])
    with pytest.raises(LabCheckError, match=r"2 series .*sum"):
        single_value(per_node, "q")


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("2m", 120)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["10", "ten seconds", "5x", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(LabCheckError):
        duration_seconds(text)


def test_a_good_rule_parses() -> None:
    assert parse_alert_rule(GOOD)["alert"] == "BrokerDown"
    promtool_check(GOOD)  # passes, or is skipped where promtool is not installed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: [", "not valid YAML"),
        ("alert: x", "`groups:`"),
        ("groups: [{name: g, rules: []}]", "exactly one alerting rule"),
        ("groups: [{name: g, rules: [{record: r, expr: up}]}]", "no `alert:` name"),
        ("groups: [{name: g, rules: [{alert: A, expr: ''}]}]", "empty `expr`"),
        ("groups: [{name: g, rules: [{alert: A, expr: up == 0, for: 5m}]}]", "30s or less"),
    ],
)
def test_bad_rules_say_why(text: str, message: str) -> None:
    with pytest.raises(LabCheckError, match=message):
        parse_alert_rule(text)


def test_promtool_rejects_bad_promql() -> None:
    import shutil

    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    with pytest.raises(LabCheckError, match="promtool"):
        promtool_check("groups: [{name: g, rules: [{alert: A, expr: 'sum('}]}]")
