"""The consumer-lag exporter agrees with the group's committed offsets, Prometheus scrapes it, it
comes back when its serving process crashes, and the lab's alert rules go pending, fire during a
broker fault and resolve after it."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests
from confluent_kafka import TopicPartition

from lab_env import monitoring
from lab_env.api import Lab
from lab_env.embedded import LAG_EXPORTER, EmbeddedLab
from lab_env.group_offsets import committed_on
from lab_env.producing import wait_in_sync
from lab_env.waiting import wait_for
from tests.helpers import run_lab

pytestmark = pytest.mark.cluster


def exporter(lab: Lab) -> dict[str, float]:
    return monitoring.scrape(
        f"http://{lab.config.host}:{lab.config.ports.lag_exporter}/metrics", timeout=10
    )


def promql(lab: Lab, query: str) -> list[dict]:
    reply = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]["result"]


def alert_states(lab: Lab) -> dict[str, str]:
    reply = requests.get(f"{lab.prometheus_url}/api/v1/alerts", timeout=10)
    reply.raise_for_status()
    return {a["labels"]["alertname"]: a["state"] for a in reply.json()["data"]["alerts"]}


def test_lag_exporter_matches_the_admin_api(lab: Lab, make_topic: Callable[..., str]) -> None:
    topic = make_topic(partitions=3)
    producer = lab.producer({"acks": "all"})
    for i in range(300):
        producer.produce(topic, key=str(i), value=str(i))
    assert producer.flush(30) == 0
    group = f"it-lag-{uuid.uuid4().hex[:6]}"
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 100 and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(num_messages=20, timeout=1) if m.error() is None)
    consumer.commit(asynchronous=False)
    consumer.close()

    committed = {p: o for p, o in committed_on(lab, group, topic).items() if o is not None}
    reader = lab.consumer(f"it-lag-read-{uuid.uuid4().hex[:6]}")
    ends = {
        p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)
    }
    reader.close()
    # A closed group's lag covers the partitions it committed (a live member's assignment
    # counts too, from the partition's start); both views must agree on those.
    expected = {p: ends[p] - offset for p, offset in committed.items()}

    samples = exporter(lab)
    for p in expected:
        key = f'kafka_consumergroup_lag{{group="{group}",partition="{p}",topic="{topic}"}}'
        assert samples.get(key) == expected[p], (key, samples.get(key), expected[p])
    total = f'kafka_consumergroup_lag_sum{{group="{group}",topic="{topic}"}}'
    assert samples[total] == sum(expected.values())

    # Prometheus has it too, within a couple of scrape intervals.
    query = f'kafka_consumergroup_lag_sum{{group="{group}"}}'
    wait_for(
        "Prometheus to scrape the group's lag",
        lambda: (r := promql(lab, query)) and float(r[0]["value"][1]) == sum(expected.values()),
        timeout=30,
        interval=1,
    )


def test_the_lab_loads_its_alert_rules(lab: Lab) -> None:
    states = alert_states(lab)
    reply = requests.get(f"{lab.prometheus_url}/api/v1/rules", timeout=10).json()
    names = {r["name"] for g in reply["data"]["groups"] for r in g["rules"]}
    assert {"KafkaBrokerDown", "KafkaUnderReplicatedPartitions", "KafkaNoActiveController"} <= names
    assert "KafkaBrokerDown" not in states  # a healthy lab fires nothing about brokers


@pytest.mark.disruptive
def test_alerts_fire_during_a_broker_fault_and_resolve(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    make_topic(partitions=3)  # some partitions for the victim to lead and follow
    timeline: list[tuple[float, dict[str, str]]] = []
    start = time.monotonic()

    def watch(done: Callable[[dict[str, str]], bool]) -> Callable[[], bool]:
        def probe() -> bool:
            states = alert_states(lab)
            if not timeline or timeline[-1][1] != states:
                timeline.append((round(time.monotonic() - start, 1), states))
            return done(states)

        return probe

    wait_for(
        "a quiet start: no broker alert pending or firing",
        watch(lambda s: "KafkaBrokerDown" not in s and "KafkaUnderReplicatedPartitions" not in s),
        timeout=90,
        interval=1,
    )
    timeline.clear()
    start = time.monotonic()
    assert run_lab("kill", "3").returncode == 0
    try:
        wait_for(
            "KafkaBrokerDown and KafkaUnderReplicatedPartitions to fire",
            watch(
                lambda s: (
                    s.get("KafkaBrokerDown") == "firing"
                    and s.get("KafkaUnderReplicatedPartitions") == "firing"
                )
            ),
            timeout=90,
            interval=1,
        )
    finally:
        restarted = run_lab("up")
    assert restarted.returncode == 0, restarted.stderr
    wait_in_sync(lab)
    wait_for(
        "the alerts to resolve",
        watch(lambda s: "KafkaBrokerDown" not in s and "KafkaUnderReplicatedPartitions" not in s),
        timeout=90,
        interval=1,
    )
    print("\nalert timeline (s since the kill: states):")
    for at, states in timeline:
        print(f"  {at:6.1f}  {states}")
    seen = [states.get("KafkaBrokerDown") for _, states in timeline]
    assert "pending" in seen and "firing" in seen  # for: 10s means pending first


@pytest.mark.disruptive
def test_the_exporter_comes_back_when_its_serving_process_crashes(
    lab: Lab, embedded: EmbeddedLab
) -> None:
    record = embedded.procs.live(LAG_EXPORTER)
    assert record is not None
    supervisor = record.process()
    assert supervisor is not None

    def serving() -> list[psutil.Process]:
        return supervisor.children()

    wait_for("the exporter's serving process", lambda: len(serving()) == 1, timeout=30)
    crashed = serving()[0]
    crashed.send_signal(signal.SIGSEGV)  # what a librdkafka crash does to it
    crashed.wait(10)
    wait_for(
        "a new serving process",
        lambda: [p.pid for p in serving()] not in ([], [crashed.pid]),
        timeout=30,
    )

    def answers() -> bool:
        try:
            return "kafka_lag_exporter_up" in exporter(lab)
        except OSError:  # not listening yet
            return False

    wait_for("the exporter to answer again", answers, timeout=30)
    assert supervisor.is_running()
    assert "died of SIGSEGV; starting it again" in Path(record.log).read_text()
