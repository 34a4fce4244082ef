"""Every broker's JMX exporter serves Kafka metrics, and Prometheus scrapes them."""

from __future__ import annotations

import json

import pytest
import requests

from lab_env import monitoring
from lab_env.api import Lab
from lab_env.config import NODE_IDS
from lab_env.waiting import wait_for
from tests.helpers import run_lab

pytestmark = pytest.mark.cluster


def query(lab: Lab, promql: str) -> list[dict]:
    reply = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]["result"]


@pytest.mark.parametrize("node", NODE_IDS)
def test_exporter_serves_broker_metrics(lab: Lab, node: int) -> None:
    samples = monitoring.scrape(monitoring.exporter_url(lab.config, node))
    assert samples["kafka_server_raft_metrics_current_leader"] in (1.0, 2.0, 3.0)
    assert samples["kafka_server_raft_metrics_number_of_voters"] == 3.0
    assert samples["kafka_server_replicamanager_underreplicatedpartitions"] == 0.0
    assert "kafka_controller_kafkacontroller_activecontrollercount" in samples
    assert any(k.startswith("kafka_network_requestmetrics_total_time_ms{") for k in samples)
    assert any(k.startswith("jvm_memory_used_bytes") for k in samples)


def test_prometheus_scrapes_every_broker(lab: Lab) -> None:
    if lab.status()["prometheus"] == "not installed":
        pytest.skip("no Prometheus binary on this machine (the exporters are tested above)")
    up = query(lab, 'up{job="kafka"}')
    assert sorted(r["metric"]["node"] for r in up) == ["1", "2", "3"]
    assert all(r["value"][1] == "1" for r in up)
    leaders = query(lab, "kafka_server_raft_metrics_current_leader")
    assert len({r["value"][1] for r in leaders}) == 1  # every node names the same leader
    controllers = query(lab, "sum(kafka_controller_kafkacontroller_activecontrollercount)")
    assert controllers[0]["value"][1] == "1"


def test_prometheus_sees_messages_arrive(lab: Lab, topic: str) -> None:
    if lab.status()["prometheus"] == "not installed":
        pytest.skip("no Prometheus binary on this machine")
    producer = lab.producer()
    for i in range(500):
        producer.produce(topic, value=str(i))
    producer.flush(10)
    promql = f'sum(kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}})'

    def counted() -> float:
        result = query(lab, promql)
        return float(result[0]["value"][1]) if result else 0.0

    # Prometheus scrapes every 5 s; leaders count each record once, so the sum stops at 500.
    wait_for("Prometheus to count 500 messages in", lambda: counted() >= 500, 30, interval=1)
    assert counted() == 500


def test_status_json(lab: Lab) -> None:
    proc = run_lab("status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["brokers"] == [1, 2, 3]
    assert status["quorum_leader"] in (1, 2, 3)
    assert status["under_replicated_partitions"] == 0
    assert status["registry"] == "answering"
    names = {c["name"]: c for c in status["components"]}
    assert set(names) == {"kafka-1", "kafka-2", "kafka-3", "registry", "lag-exporter", "prometheus"}
    for node in NODE_IDS:
        comp = names[f"kafka-{node}"]
        assert comp["state"] == "running" and comp["pid"] > 0
        assert comp["address"] == f"127.0.0.1:{lab.config.ports.brokers[node - 1]}"
