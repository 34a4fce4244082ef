"""Lab 08: PromQL answers compared with the truth, and an alert rule that must fire during a
broker fault the check injects itself."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from confluent_kafka import TopicPartition

from lab_env import monitoring
from lab_env import prometheus_queries as pq
from lab_env.api import Lab
from lab_env.checks import passed, require
from lab_env.group_offsets import committed_on
from lab_env.health import quorum_leader
from lab_env.steps import Steps
from lab_env.waiting import eventually

RATE_WINDOW = "1m"
FIRING_BOUND = 45.0  # seconds from the kill for the learner's alert to fire
MAX_FOR = 30.0  # a `for:` longer than this cannot fire within the bound
URP_REFERENCE = "sum(kafka_server_replicamanager_underreplicatedpartitions)"


# ---- pure helpers ------------------------------------------------------------------------------


def single_value(frame: pd.DataFrame, what: str) -> float:
    """The one number a question asks for; a clear sentence when the answer has another shape."""
    require(
        len(frame) > 0,
        f"your {what} query returns no series: check the metric name and label values (an "
        "empty result is what a misspelt name or label gives, Prometheus does not complain).",
    )
    labels = [c for c in frame.columns if c != "value"]
    require(
        len(frame) == 1,
        f"your {what} query returns {len(frame)} series (labels {labels}); the question asks "
        "for one number: aggregate them, e.g. sum(...) or sum by () (...).",
    )
    return float(frame["value"].iloc[0])


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def duration_seconds(text: str) -> float:
    """A Prometheus duration (``10s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, number, rest = 0.0, "", str(text).strip()
    require(rest != "", "an empty `for:` duration: write e.g. `for: 10s`.")
    i = 0
    while i < len(rest):
        if rest[i].isdigit():
            number += rest[i]
            i += 1
            continue
        unit = "ms" if rest.startswith("ms", i) else rest[i]
        require(
            number != "" and unit in units,
            f"`for: {text}` is not a Prometheus duration: write e.g. `for: 10s` or `for: 1m`.",
        )
        total += int(number) * units[unit]
        number, i = "", i + len(unit)
    require(number == "", f"`for: {text}` has no unit: write e.g. `for: 10s`.")
    return total


def parse_alert_rule(text: str) -> dict[str, Any]:
    """The one alerting rule in a rule file's YAML, validated as far as possible without
    Prometheus: it parses, has one group with one rule, an ``alert`` name and an ``expr``, and a
    ``for:`` short enough to fire within the check's bound."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        require(False, f"your rule is not valid YAML: {exc}")
    groups = doc.get("groups") if isinstance(doc, dict) else None
    require(
        isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict),
        "a rule file is a mapping with `groups:`, a list of exactly one group here "
        "(`groups: [{name: ..., rules: [...]}]`).",
    )
    rules = groups[0].get("rules")
    require(
        isinstance(rules, list) and len(rules) == 1 and isinstance(rules[0], dict),
        "the group needs `rules:`, a list of exactly one alerting rule.",
    )
    rule = rules[0]
    require(
        isinstance(rule.get("alert"), str) and rule["alert"].strip() != "",
        "the rule has no `alert:` name: an alerting rule is named by `alert:` (a recording "
        "rule uses `record:` and never fires).",
    )
    expr = rule.get("expr")
    require(
        isinstance(expr, (str, int, float)) and str(expr).strip() != "",
        f"alert {rule['alert']!r} has an empty `expr`: write the PromQL condition that is true "
        "while a broker is down, e.g. on the scrape target's `up` series.",
    )
    waits = duration_seconds(rule.get("for", "0s"))
    require(
        waits <= MAX_FOR,
        f"alert {rule['alert']!r} waits `for: {rule.get('for')}` before firing; the check gives "
        f"it {FIRING_BOUND:.0f} s from the kill, so keep `for:` at {MAX_FOR:.0f}s or less.",
    )
    return rule


def promtool_check(text: str) -> None:
    """``promtool check rules`` on the text, when promtool is installed; its complaint verbatim."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rule.yml"
        path.write_text(text)
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
        )
    message = (result.stderr or result.stdout).replace(str(path), "rule.yml").strip()
    require(result.returncode == 0, f"promtool check rules refuses your rule: {message}")


# ---- cluster helpers ------------------------------------------------------------------------


def _evaluate(lab: Lab, query: str, what: str, at: float | None = None) -> pd.DataFrame:
    require(
        isinstance(query, str) and query.strip() != "",
        f"your {what} query is empty: write it as a PromQL string.",
    )
    try:
        return pq.instant(lab.prometheus_url, query, at)
    except pq.PromQLError as exc:
        require(False, f"Prometheus refuses your {what} query {query!r}: {exc}")
    raise AssertionError("unreachable")


def group_lag(lab: Lab, group: str, topic: str) -> int:
    """The group's total lag on ``topic``: log end minus committed offset, over the partitions
    the group has committed."""
    committed = {p: o for p, o in committed_on(lab, group, topic).items() if o is not None}
    require(
        committed, f"group {group!r} has committed no offset on {topic!r}: run the set-up cell."
    )
    reader = lab.consumer(lab.group(f"lab08-ends-{uuid.uuid4().hex[:6]}"))
    try:
        ends = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in committed
        }
    finally:
        reader.close()
    return sum(ends[p] - offset for p, offset in committed.items())


def under_replicated_partitions(lab: Lab) -> int:
    """Partitions whose ISR is smaller than their replica set, from the cluster's metadata."""
    topics = lab.admin().list_topics(timeout=10).topics
    return sum(
        1 for t in topics.values() for p in t.partitions.values() if len(p.isrs) < len(p.replicas)
    )


# ---- checks ---------------------------------------------------------------------------------


def check_messages_in_rate(lab: Lab, query: str, topic: str, records: int = 300) -> None:
    """Messages in per second on ``topic``, summed over brokers, over the last minute.

    The check produces ``records`` itself so the rate is not zero, waits for a scrape, then
    evaluates the learner's query and the reference at the same instant."""
    reference = (
        f'sum(rate(kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}}'
        f"[{RATE_WINDOW}]))"
    )
    _evaluate(lab, query, "messages-in rate")  # syntax first, before producing anything
    step = Steps()
    url = lab.prometheus_url
    counter = f'sum(kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}})'
    # A counter's first sample is its baseline: rate() sees only increases after it, so the
    # check waits until Prometheus has the topic's counter before producing more.
    step(f"waiting for Prometheus to scrape the messages-in counter of {topic} (up to 30 s)")
    require(
        eventually(lambda: len(pq.instant(url, counter)) > 0, 30, 0.5),
        f"Prometheus has no messages-in counter for {topic!r} after 30 s: produce to it first "
        "(the set-up cell).",
    )
    start = float(pq.instant(url, counter)["value"].iloc[0])
    step(f"producing {records:,} records to {topic}")
    producer = lab.producer({"acks": "all", "linger.ms": 20})
    for i in range(records):
        producer.produce(topic, key=str(i), value=f"rate-check-{i}")
    require(producer.flush(30) == 0, f"the check could not produce to {topic!r}.")

    seen: dict[str, float] = {}
    step("waiting for Prometheus to scrape them and compute the rate (up to 40 s)")

    def scraped() -> bool:
        got = pq.instant(url, counter)
        seen["counter"] = float(got["value"].iloc[0]) if len(got) else 0.0
        if seen["counter"] < start + records:
            return False
        rate = pq.instant(url, reference)  # a rate needs two samples in its window
        seen["rate"] = float(rate["value"].iloc[0]) if len(rate) else float("nan")
        return seen["rate"] > 0

    require(
        eventually(scraped, 40, 1.0),
        f"Prometheus did not show the check's records within 40 s (counter {seen}, expected "
        f"at least {start + records:g}): is every broker's exporter up (`lab status`)?",
    )
    at = time.time()
    truth = single_value(pq.instant(url, reference, at), "reference")
    got = single_value(_evaluate(lab, query, "messages-in rate", at), "messages-in rate")
    require(truth > 0, f"the reference rate on {topic!r} is 0: is the topic name right?")
    require(
        close(got, truth),
        f"your query gives {got:.3f} messages/s, the reference gives {truth:.3f}: use "
        f"rate(...[{RATE_WINDOW}]) over the counter kafka_server_brokertopicmetrics_messagesin_"
        f'total{{topic="{topic}"}}, summed over brokers (each broker counts the records it '
        "leads).",
    )
    passed(f"{got:.2f} messages/s into {topic} over the last {RATE_WINDOW}, as the reference")


def check_under_replicated(lab: Lab, query: str) -> None:
    """Under-replicated partitions in the whole cluster, compared with the cluster's metadata."""
    frame = _evaluate(lab, query, "under-replicated partitions")
    require(
        "kafka_server_replicamanager_underreplicatedpartitions" in query,
        "answer from the brokers' own gauge, kafka_server_replicamanager_underreplicated"
        "partitions (a constant such as vector(0) is right only until a broker fails).",
    )
    got = single_value(frame, "under-replicated partitions")
    truth = under_replicated_partitions(lab)
    require(
        got == truth,
        f"your query says {got:g} under-replicated partitions, the cluster's metadata says "
        f"{truth}: each broker reports the partitions it leads, so sum over brokers.",
    )
    reference = single_value(
        pq.instant(lab.prometheus_url, URP_REFERENCE),
        "reference",
    )
    require(close(got, reference), f"your query gives {got:g}, the brokers' sum {reference:g}.")
    passed(f"{got:g} under-replicated partitions, as the cluster's metadata says")


def check_group_lag(lab: Lab, query: str, group: str, topic: str) -> None:
    """The group's total lag on the topic, compared with the admin API's offsets."""
    _evaluate(lab, query, "group lag")
    truth = group_lag(lab, group, topic)
    reference = f'sum(kafka_consumergroup_lag_sum{{group="{group}",topic="{topic}"}})'

    def exported() -> bool:
        got = pq.instant(lab.prometheus_url, reference)
        return len(got) == 1 and got["value"].iloc[0] == truth

    require(
        eventually(exported, 30, 1.0),
        f"Prometheus has not seen lag {truth} for {group!r} within 30 s: is the lag exporter up "
        "(`lab status`)?",
    )
    got = single_value(_evaluate(lab, query, "group lag"), "group lag")
    require(
        got == truth,
        f"your query gives a lag of {got:g}, the admin API gives {truth} (log end offset minus "
        f"committed offset, summed over partitions): filter kafka_consumergroup_lag_sum or "
        f'kafka_consumergroup_lag on group="{group}" and sum.',
    )
    passed(f"group {group} lags {truth} records behind on {topic}, as the admin API says")


def _rule_state(lab: Lab, path: Path) -> str | None:
    for group in pq.rule_groups(lab.prometheus_url):
        if Path(group.get("file", "")).name == path.name:
            rules = group.get("rules", [])
            return rules[0].get("state", "inactive") if rules else None
    return None


def check_broker_down_alert(lab: Lab, rule_text: str, within: float = FIRING_BOUND) -> None:
    """Install the rule, kill a broker, require the alert to fire within ``within`` seconds.

    The rule is validated statically first (YAML, shape, promtool), so a broken rule fails
    in a second. The broker is restarted and the rule file removed whatever happens."""
    require(isinstance(rule_text, str), "ALERT_RULE must be the rule file's YAML text.")
    rule = parse_alert_rule(rule_text)
    promtool_check(rule_text)
    healthy = _evaluate(lab, str(rule["expr"]), f"alert {rule['alert']!r} expr")
    require(
        len(healthy) == 0,
        f"alert {rule['alert']!r}'s expr already returns {len(healthy)} series on a healthy "
        'cluster: it would fire all the time. Compare, e.g. `up{job="kafka"} == 0`.',
    )
    step = Steps()
    path = monitoring.rules_dir(lab.config) / f"lab08-{uuid.uuid4().hex[:8]}.yml"
    step(f"installing your rule {rule['alert']!r} in Prometheus")
    path.write_text(rule_text)
    timeline: list[tuple[float, str]] = []
    try:
        monitoring.reload(lab.config)
        require(
            eventually(lambda: _rule_state(lab, path) is not None, 20, 1.0),
            "Prometheus did not load your rule file within 20 s.",
        )
        leader = quorum_leader(lab.config)
        victim = next(n for n in (3, 2, 1) if n != leader)
        start = time.monotonic()
        lab.faults.kill(victim)
        step(f"killed kafka-{victim}; waiting for your alert to fire (up to {within:.0f} s)")
        try:

            def fired() -> bool:
                state = _rule_state(lab, path) or "gone"
                if not timeline or timeline[-1][1] != state:
                    timeline.append((round(time.monotonic() - start, 1), state))
                    step(f"your alert is {state}")
                return state == "firing"

            ok = eventually(fired, within, 1.0)
        finally:
            step(f"starting kafka-{victim} again")
            lab.backend.up(lambda m: None)
        steps = ", ".join(f"{state} at {at:.0f} s" for at, state in timeline)
        require(
            ok,
            f"alert {rule['alert']!r} did not fire within {within:.0f} s of killing node "
            f"{victim} ({steps}): its expr must become true when a broker's exporter stops "
            'answering (up{job="kafka"} == 0), for no longer than its `for:`.',
        )
    finally:
        path.unlink(missing_ok=True)
        monitoring.reload(lab.config)
    passed(f"alert {rule['alert']} fired {timeline[-1][0]:.0f} s after node {victim} was killed")
