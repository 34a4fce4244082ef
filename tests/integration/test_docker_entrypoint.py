"""The docker backend's broker configuration, run through the apache/kafka image's own steps.

There is no Docker engine here, and the image cannot be pulled; but the step of its entrypoint that
turns the mounted ``server.properties`` and the ``KAFKA_*`` environment into the broker's final
configuration, and formats the storage, is ``kafka.docker.KafkaDockerWrapper setup``, which ships
in the Kafka jar the lab already has. So this test replays the entrypoint outside a container:

1. ``configureDefaults``: the image sets its single-node defaults for unset variables
   (``compose.IMAGE_DEFAULTS``); the compose environment must leave none of them unset.
2. ``configure``: it refuses listeners it would want JKS or JAAS files for
   (``compose.entrypoint_refusal``).
3. ``launch``: the real KafkaDockerWrapper over the generated file and the compose environment.

Then three real brokers start from the final configurations (the compose network's nodes moved
onto loopback addresses, since three containers' fixed ports cannot share one address here), and
a record goes through them at acks=all.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from lab_env import artifacts, broker_config, compose, kafka_nodes, security
from lab_env.config import NODE_IDS, LabConfig, load_config
from lab_env.java import find_java
from lab_env.waiting import wait_for
from tests.tiers import CPU

# Three brokers starting keep both cores busy: one worker runs this module, in turn with the
# other CPU-heavy tests (tests/tiers.py).
pytestmark = CPU

# The compose network's three nodes, moved onto loopback addresses of their own.
PEERS = {node: f"127.0.2.{node}" for node in NODE_IDS}


class Node(NamedTuple):
    settings: dict[str, str]  # what the generator says
    final: Path  # the server.properties the image's configuration step wrote


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> LabConfig:
    """The lab's cache (for the jars), a home of its own (for the CA and keystore)."""
    base = load_config()
    cfg = replace(base, home=tmp_path_factory.mktemp("docker-home"), backend="embedded")
    artifacts.fetch(cfg, "broker")
    security.ensure_files(cfg)
    return cfg


def image_environment(cfg: LabConfig, node: int, settings: dict[str, str]) -> dict[str, str]:
    """The container's environment once the image's defaults step has run."""
    env_settings, _ = compose.split_settings(settings)
    env = {"CLUSTER_ID": compose.CLUSTER_ID, **env_settings}
    for key, default in compose.IMAGE_DEFAULTS.items():
        variable = compose.kafka_env_name(key)
        assert env.get(variable), f"kafka-{node}: the image would set {variable}={default}"
    assert compose.entrypoint_refusal(env) is None
    return env


def run_wrapper(cfg: LabConfig, node: int, settings: dict[str, str], root: Path) -> Path:
    """The image's configuration step for ``node``; returns the final server.properties."""
    mounted, final, defaults = root / "mounted", root / "final", root / "defaults"
    for folder in (mounted, final, defaults):
        folder.mkdir(parents=True)
    _, file_settings = compose.split_settings(settings)
    (mounted / "server.properties").write_text(
        broker_config.properties_text(file_settings, "mounted")
    )
    java = find_java(cfg).path
    env = {"PATH": os.environ["PATH"], **image_environment(cfg, node, settings)}
    argv = [
        java,
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={kafka_nodes.resource('log4j2-tools.xml')}",
        "-cp",
        artifacts.classpath(cfg, "broker"),
        "kafka.docker.KafkaDockerWrapper",
        "setup",
        "--default-configs-dir",
        str(defaults),
        "--mounted-configs-dir",
        str(mounted),
        "--final-configs-dir",
        str(final),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kafka-{node}: KafkaDockerWrapper setup failed:\n{done.stderr}"
    return final / "server.properties"


@pytest.fixture(scope="module")
def nodes(cfg: LabConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Node]:
    root = tmp_path_factory.mktemp("docker-nodes")
    out = {}
    for node in NODE_IDS:
        settings = settings_on_loopback(cfg, node, root)
        out[node] = Node(settings, run_wrapper(cfg, node, settings, root / f"kafka-{node}"))
    return out


def settings_on_loopback(cfg: LabConfig, node: int, root: Path) -> dict[str, str]:
    return compose.node_settings(
        cfg,
        node,
        peers=PEERS,
        bind=PEERS[node],
        data_dir=str(root / f"data-{node}"),
        security_files=str(security.folder(cfg)),
    )


def test_the_image_ends_with_exactly_the_generated_configuration(nodes: dict[int, Node]) -> None:
    for node, (settings, final) in nodes.items():
        assert broker_config.parse_properties(final.read_text()) == settings, (
            f"kafka-{node}: the image's final server.properties differs from the generator's"
        )
        meta = Path(settings["log.dirs"]) / "meta.properties"
        assert f"cluster.id={compose.CLUSTER_ID}" in meta.read_text()


def test_the_generated_environment_would_be_refused_with_the_old_listener_names() -> None:
    """The check in step 2 can fail: the listener names the compose file had before."""
    env = {"KAFKA_ADVERTISED_LISTENERS": "INTERNAL://kafka-1:29092,SSL://127.0.0.1:9192"}
    assert "JKS" in (compose.entrypoint_refusal(env) or "")
    env = {"KAFKA_ADVERTISED_LISTENERS": "INTERNAL://kafka-1:29092,SASL_SSL://127.0.0.1:9292"}
    assert compose.entrypoint_refusal(env)


@pytest.fixture(scope="module")
def brokers(cfg: LabConfig, nodes: dict[int, Node]) -> Iterator[str]:
    """Three brokers started from the image's final configurations; yields their bootstrap."""
    java = find_java(cfg).path
    procs = []
    try:
        for _, final in nodes.values():
            log = (final.parent / "broker.log").open("w")
            argv = [
                java,
                "-Xms128m",
                "-Xmx384m",
                "-XX:CompileThresholdScaling=4",
                f"-Dlog4j2.configurationFile={kafka_nodes.resource('log4j2-tools.xml')}",
                "-cp",
                artifacts.classpath(cfg, "broker"),
                "kafka.Kafka",
                str(final),
            ]
            procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log))
        bootstrap = ",".join(f"{PEERS[n]}:{compose.INTERNAL_PORT}" for n in NODE_IDS)
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def all_registered() -> bool:
            for proc, _ in procs:
                assert proc.poll() is None, "a broker exited; see its broker.log"
            return len(admin.list_topics(timeout=5).brokers) == len(NODE_IDS)

        wait_for("three brokers started from the image's configuration", all_registered, 120)
        yield bootstrap
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def test_a_record_goes_through_brokers_configured_by_the_image(brokers: str) -> None:
    topic = f"docker-entrypoint-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(timeout=60)
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    delivered = []
    producer.produce(
        topic, b"through the image's configuration", on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(60) == 0 and delivered == [None]
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        message = wait_for("the record back", lambda: consumer.poll(1.0), 60)
        assert message.error() is None and message.value() == b"through the image's configuration"
    finally:
        consumer.close()
