"""The external backend: the same cluster, addressed only through configuration."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from lab_env.api import Lab
from lab_env.backends import DockerBackend
from lab_env.config import load_config
from lab_env.errors import LabError
from tests.helpers import assert_sentence, run_lab

pytestmark = pytest.mark.cluster


@pytest.fixture
def external_env(lab: Lab) -> dict[str, str]:
    return {
        "KAFKA_LAB_BACKEND": "external",
        "KAFKA_LAB_BOOTSTRAP": lab.bootstrap_servers,
        "KAFKA_LAB_REGISTRY_URL": lab.registry_url,
        "KAFKA_LAB_PROMETHEUS_URL": lab.prometheus_url,
    }


def test_status_of_an_external_cluster(external_env: dict[str, str]) -> None:
    proc = run_lab("status", "--json", env=external_env)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["backend"] == "external"
    assert status["brokers"] == [1, 2, 3]
    assert status["registry"] == "answering"
    assert status["components"] == []  # the lab runs nothing of an external cluster


def test_clients_of_an_external_cluster(external_env: dict[str, str], topic: str) -> None:
    external = Lab(load_config(external_env))
    assert external.backend.name == "external"
    producer = external.producer({"acks": "all"})
    producer.produce(topic, value=b"through the external backend")
    assert producer.flush(10) == 0
    consumer = external.consumer(f"it-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    msg = None
    for _ in range(40):
        msg = consumer.poll(0.5)
        if msg is not None:
            break
    consumer.close()
    assert msg is not None and msg.value() == b"through the external backend"
    assert external.registry().get_compatibility() == "BACKWARD"


@pytest.mark.parametrize("verb", ["down", "reset --yes", "kill 1", "pause 2"])
def test_the_lab_never_touches_an_external_cluster(external_env: dict[str, str], verb: str) -> None:
    assert_sentence(run_lab(*verb.split(), env=external_env), "external backend cannot")


def test_unreachable_external_cluster(external_env: dict[str, str]) -> None:
    env = {**external_env, "KAFKA_LAB_BOOTSTRAP": "127.0.0.1:1"}
    assert_sentence(run_lab("up", env=env, timeout=60), "No broker answers at 127.0.0.1:1")


def test_the_docker_backends_status_names_the_quorum_leader(lab: Lab) -> None:
    """The docker backend runs nothing the lab supervises, but its brokers' exporters are
    published on the same host ports: its status reads the quorum leader from them, as the
    embedded backend does (here from the lab's own brokers, the same exporters)."""
    status = DockerBackend(replace(lab.config, backend="docker")).status()
    assert status["backend"] == "docker"
    assert status["quorum_leader"] in (1, 2, 3)
    assert status["quorum_leader"] == lab.status()["quorum_leader"]
    assert status["brokers"] == [1, 2, 3]


def test_without_the_docker_engine_the_live_nodes_come_from_the_brokers(lab: Lab) -> None:
    """In the lab's JupyterLab container the engine cannot be asked which containers run; the
    metadata barrier must still wait for every broker that serves (an empty answer would make
    it wait for none, the race it exists to close). There is no engine here either."""
    docker = DockerBackend(replace(lab.config, backend="docker"))
    with pytest.raises(LabError, match="Cannot reach the Docker engine"):
        docker.kill(2)
    assert docker.live_nodes() == (1, 2, 3)
