"""Static checks of the docker backend: no Docker engine, no network.

The compose file is the one part of the lab CI cannot run here, so everything that can be proven
from the text is proven: it is current, pinned, wired to the same ports and broker settings as the
embedded backend, and every file it mounts exists.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab_env import broker_config, compose, monitoring, security
from lab_env.config import BROKER_SETTINGS, IMAGES, NODE_IDS, LabConfig, Ports
from lab_env.errors import LabError
from lab_env.kafka_nodes import Node

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
KAFKA = [f"kafka-{n}" for n in NODE_IDS]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["services"]


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {name: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def published(service: dict[str, Any]) -> dict[int, int]:
    """{container port: host port} of a service."""
    return {int(p["target"]): int(p["published"]) for p in service.get("ports", [])}


def agent(service: dict[str, Any]) -> tuple[str, int, str]:
    """(jar, port, rules) of the ``-javaagent:<jar>=<port>:<rules>`` the broker is started with."""
    (opts,) = [a for a in service["command"] if a.startswith("KAFKA_OPTS=")]
    (arg,) = [o for o in opts.removeprefix("KAFKA_OPTS=").split() if o.startswith("-javaagent:")]
    jar, _, options = arg.removeprefix("-javaagent:").partition("=")
    port, _, rules = options.partition(":")
    return jar, int(port), rules


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{container path: (source, mode)} for short-syntax volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def image_setting(variable: str) -> str:
    """The broker setting the apache/kafka image makes of a ``KAFKA_*`` variable (its own
    conversion, in kafka.docker.KafkaDockerWrapper)."""
    key = variable.removeprefix("KAFKA_").lower().replace("_", ".")
    return key.replace("...", "-").replace("..", "_")


def final_settings(service: dict[str, Any]) -> dict[str, str]:
    """What a node's broker ends with: the mounted server.properties, then every KAFKA_* variable
    appended (the image's configuration step; the last value wins)."""
    source, _ = mounts(service)[compose.MOUNTED_CONFIG]
    settings = broker_config.parse_properties((ROOT / source / "server.properties").read_text())
    for variable, value in service["environment"].items():
        if variable.startswith("KAFKA_"):
            settings[image_setting(variable)] = value.replace("$$", "$")
    return settings


@pytest.mark.parametrize("relative", sorted(compose.files()))
def test_committed_files_are_current(relative: str) -> None:
    assert (ROOT / relative).read_text() == compose.files()[relative], (
        f"{relative} is out of date with the lab's configuration; regenerate the docker "
        "backend's files with `python -m lab_env.compose` (no KAFKA_LAB_* overrides set)."
    )


def test_headers_say_generated() -> None:
    for relative in compose.files():
        head = (ROOT / relative).read_text().splitlines()[:2]
        assert "python -m lab_env.compose" in " ".join(head), relative


def test_every_node_ends_with_the_generators_settings(services: dict[str, Any]) -> None:
    """One generator for every backend: the file and the environment together are exactly
    lab_env/broker_config.py's settings, and nothing the image would default is left to it."""
    for node, name in zip(NODE_IDS, KAFKA, strict=True):
        assert final_settings(services[name]) == compose.node_settings(LabConfig(), node)
        env = services[name]["environment"]
        for setting in compose.IMAGE_DEFAULTS:
            assert env.get(compose.kafka_env_name(setting)), (
                f"{name}: the image would set {setting}"
            )
        assert compose.entrypoint_refusal(env) is None


def test_the_embedded_and_docker_nodes_differ_only_in_addresses_paths_and_quorum() -> None:
    cfg = LabConfig()
    for node in NODE_IDS:
        docker = compose.node_settings(cfg, node)
        embedded = Node(cfg, node).properties()
        different = {k for k in docker.keys() | embedded.keys() if docker.get(k) != embedded.get(k)}
        assert different <= {
            "listeners",
            "advertised.listeners",
            "listener.security.protocol.map",
            "inter.broker.listener.name",
            "log.dirs",
            "controller.quorum.voters",
            "controller.quorum.bootstrap.servers",
            "ssl.keystore.location",
            "ssl.truststore.location",
        }
        for key in ("listener.name.tls.ssl.client.auth", "super.users", "min.insync.replicas"):
            assert docker[key] == embedded[key]


def test_parses_with_expected_services(doc: dict[str, Any]) -> None:
    assert doc["name"] == compose.PROJECT
    expected = {"jmx-exporter-fetch", *KAFKA, "schema-registry", "lag-exporter", "prometheus"}
    expected |= {"jupyter", "lab-network"}
    assert set(doc["services"]) == expected


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
    used = {s["image"] for s in services.values() if "image" in s}
    assert {IMAGES["kafka"], IMAGES["schema-registry"], IMAGES["prometheus"]} <= used
    assert compose.CURL_IMAGE in used


def test_jupyter_image_is_built_from_the_pinned_base(services: dict[str, Any]) -> None:
    build = services["jupyter"]["build"]
    assert build["args"]["BASE_IMAGE"] == IMAGES["jupyter"]
    dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text()
    assert f"ARG BASE_IMAGE={IMAGES['jupyter']}\n" in dockerfile, (
        "docker/jupyter.Dockerfile's default BASE_IMAGE must equal IMAGES['jupyter']"
    )
    assert "FROM ${BASE_IMAGE}" in dockerfile


def test_host_ports_match_config(services: dict[str, Any]) -> None:
    ports = Ports()
    for i, name in enumerate(KAFKA):
        assert published(services[name]) == {
            compose.EXTERNAL_PORT: ports.brokers[i],
            compose.EXPORTER_PORT: ports.exporters[i],
            compose.TLS_PORT: ports.tls[i],
            compose.SASL_PORT: ports.sasl[i],
        }, name
    assert published(services["schema-registry"]) == {compose.REGISTRY_PORT: ports.registry}
    assert published(services["prometheus"]) == {compose.PROMETHEUS_PORT: ports.prometheus}
    assert published(services["jupyter"]) == {compose.JUPYTER_PORT: ports.jupyter}
    assert "ports" not in services["jmx-exporter-fetch"]


def test_published_on_loopback_by_default(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_broker_settings_reach_every_node(services: dict[str, Any]) -> None:
    for name in KAFKA:
        settings = final_settings(services[name])
        for setting, value in BROKER_SETTINGS.items():
            assert settings.get(setting) == value, f"{name}: {setting} should be {value!r}"
        assert settings["min.insync.replicas"] == "2"


def test_env_names_follow_the_image_convention() -> None:
    assert compose.kafka_env_name("min.insync.replicas") == "KAFKA_MIN_INSYNC_REPLICAS"
    assert compose.kafka_env_name("a_b-c.d") == "KAFKA_A__B___C_D"
    for setting in [*BROKER_SETTINGS, *compose.IMAGE_DEFAULTS]:
        assert image_setting(compose.kafka_env_name(setting)) == setting


def test_kraft_quorum(services: dict[str, Any]) -> None:
    ids = [services[name]["environment"]["KAFKA_NODE_ID"] for name in KAFKA]
    assert ids == [str(n) for n in NODE_IDS]
    for name in KAFKA:
        env = services[name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["CLUSTER_ID"] == compose.CLUSTER_ID
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {str(n): f"kafka-{n}:{compose.CONTROLLER_PORT}" for n in NODE_IDS}
        bound = listeners(env["KAFKA_LISTENERS"])
        assert bound["CONTROLLER"][1] == compose.CONTROLLER_PORT
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"


def test_cluster_id_is_a_kafka_uuid() -> None:
    assert len(compose.CLUSTER_ID) == 22 and not compose.CLUSTER_ID.startswith("-")
    assert len(base64.urlsafe_b64decode(compose.CLUSTER_ID + "==")) == 16


def test_listeners(services: dict[str, Any]) -> None:
    for i, name in enumerate(KAFKA):
        env = services[name]["environment"]
        bound = listeners(env["KAFKA_LISTENERS"])
        advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        protocols = dict(
            p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        assert set(protocols) == set(bound)
        assert set(bound) == {"INTERNAL", "CONTROLLER", "EXTERNAL", "TLS", "SASL"}
        assert protocols["TLS"] == "SSL" and protocols["SASL"] == "SASL_SSL"
        for secured, port in (("TLS", Ports().tls[i]), ("SASL", Ports().sasl[i])):
            assert advertised[secured] == (LabConfig().host, port)
            assert published(services[name])[bound[secured][1]] == port
        assert advertised["CONTROLLER"] == (name, compose.CONTROLLER_PORT)
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        assert advertised["INTERNAL"] == (name, bound["INTERNAL"][1])
        # A host client is redirected to the advertised address, which must be the published one.
        host, port = advertised["EXTERNAL"]
        assert (host, port) == (LabConfig().host, Ports().brokers[i])
        assert published(services[name])[bound["EXTERNAL"][1]] == port
        assert bound["INTERNAL"][1] not in published(services[name])
        assert bound["CONTROLLER"][1] not in published(services[name])


def test_clients_in_the_network_use_internal_listeners(services: dict[str, Any]) -> None:
    internal = [
        "{}:{}".format(
            *listeners(services[n]["environment"]["KAFKA_ADVERTISED_LISTENERS"])["INTERNAL"]
        )
        for n in KAFKA
    ]
    registry = services["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == ",".join(
        f"PLAINTEXT://{a}" for a in internal
    )
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"] == "3"
    jupyter = services["jupyter"]["environment"]
    assert jupyter["KAFKA_LAB_BACKEND"] == "docker"
    assert jupyter["KAFKA_LAB_BOOTSTRAP"] == ",".join(internal)
    assert jupyter["KAFKA_LAB_REGISTRY_URL"] == f"http://schema-registry:{compose.REGISTRY_PORT}"
    assert jupyter["KAFKA_LAB_PROMETHEUS_URL"] == f"http://prometheus:{compose.PROMETHEUS_PORT}"


def test_jmx_exporter_wiring(services: dict[str, Any]) -> None:
    fetch = services["jmx-exporter-fetch"]
    script = fetch["command"][0]
    assert compose.jmx_agent_url() in script and f"{compose.jmx_agent_url()}.sha1" in script
    assert "sha1sum -c" in script
    (volume_dir,) = [t for t, (src, _) in mounts(fetch).items() if src == "jmx-exporter"]
    for name in KAFKA:
        service = services[name]
        assert service["depends_on"]["jmx-exporter-fetch"] == {
            "condition": "service_completed_successfully"
        }
        assert "KAFKA_OPTS" not in service["environment"], "would reach every CLI tool's JVM"
        jar, port, rules = agent(service)
        assert port == compose.EXPORTER_PORT
        assert jar == f"{volume_dir}/{compose.jmx_agent_jar()}"
        vols = mounts(service)
        assert vols[volume_dir] == ("jmx-exporter", "ro")
        assert vols[rules] == ("./lab_env/resources/kafka-jmx-rules.yaml", "ro")


def test_data_survives_down_and_up(doc: dict[str, Any], services: dict[str, Any]) -> None:
    for name in KAFKA:
        env = services[name]["environment"]
        source, mode = mounts(services[name])[env["KAFKA_LOG_DIRS"]]
        assert source == f"{name}-data" and mode == "rw"
        assert source in doc["volumes"]


def test_named_volumes_are_declared_and_bind_sources_exist(
    doc: dict[str, Any], services: dict[str, Any]
) -> None:
    for name, service in services.items():
        for source, _ in mounts(service).values():
            if source in (compose.SECURITY_SOURCE, f"./{monitoring.DOCKER_RULES}"):
                continue  # written by `lab up` (docker backend) before the stack starts
            if source.startswith((".", "/")):
                assert not source.startswith("/"), f"{name}: {source} is machine-specific"
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} is not declared"
    build = services["jupyter"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_healthchecks(services: dict[str, Any]) -> None:
    for name in [*KAFKA, "schema-registry", "prometheus"]:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name
    for name in KAFKA:
        assert services[name]["healthcheck"]["test"][-1] == f"localhost:{compose.INTERNAL_PORT}"
        assert services["schema-registry"]["depends_on"][name] == {"condition": "service_healthy"}
    for name in ["schema-registry", "prometheus"]:
        assert services["jupyter"]["depends_on"][name] == {"condition": "service_healthy"}


def test_no_stray_interpolation() -> None:
    """Compose expands ``$VAR`` in the file; a shell ``$`` must be written ``$$``."""
    text = re.sub(r"\$\$", "", COMPOSE_FILE.read_text())
    assert "$" not in text


def test_prometheus_scrapes_every_exporter(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    source, _ = mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / source).read_text())
    assert config["global"]["scrape_interval"] == "5s"
    alerts, learners = config["rule_files"]
    assert mounts(prometheus)[alerts] == ("./lab_env/resources/lab-alerts.yml", "ro")
    folder, pattern = learners.rsplit("/", 1)
    assert pattern == "*.yml"
    # Lab 08's check writes the learner's rule where the lab's rules folder is, then reloads.
    assert mounts(prometheus)[folder][0] == f"./{monitoring.DOCKER_RULES}"
    assert (
        monitoring.rules_dir(replace(LabConfig(), backend="docker"))
        == ROOT / monitoring.DOCKER_RULES
    )
    assert "--web.enable-lifecycle" in prometheus["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(monitoring.JOBS)  # the embedded backend's jobs
    lag = services["lag-exporter"]
    assert jobs["consumer-lag"]["static_configs"][0]["targets"] == [
        f"lag-exporter:{compose.LAG_EXPORTER_PORT}"
    ]
    assert lag["command"][-1] == str(compose.LAG_EXPORTER_PORT)
    assert lag["environment"]["KAFKA_LAB_BOOTSTRAP"] == compose.internal_bootstrap()
    assert published(lag) == {compose.LAG_EXPORTER_PORT: Ports().lag_exporter}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == [
        f"localhost:{compose.PROMETHEUS_PORT}"
    ]
    targets = {
        target: group.get("labels", {}).get("node")
        for group in jobs["kafka"]["static_configs"]
        for target in group["targets"]
    }
    expected = {}
    for n, name in zip(NODE_IDS, KAFKA, strict=True):
        expected[f"{name}:{agent(services[name])[1]}"] = str(n)
    assert targets == expected


def test_custom_ports_flow_through() -> None:
    ports = Ports(brokers=(19192, 19193, 19194), exporters=(17071, 17072, 17073), jupyter=18888)
    doc = compose.render(LabConfig(host="lab.example", ports=ports))
    for i, name in enumerate(KAFKA):
        service = doc["services"][name]
        advertised = listeners(service["environment"]["KAFKA_ADVERTISED_LISTENERS"])
        assert advertised["EXTERNAL"] == ("lab.example", ports.brokers[i])
        assert published(service) == {
            compose.EXTERNAL_PORT: ports.brokers[i],
            compose.EXPORTER_PORT: ports.exporters[i],
            compose.TLS_PORT: ports.tls[i],
            compose.SASL_PORT: ports.sasl[i],
        }
        assert all("host_ip" not in p for p in service["ports"])
    assert published(doc["services"]["jupyter"]) == {compose.JUPYTER_PORT: 18888}


def test_clashing_ports_are_refused() -> None:
    with pytest.raises(LabError, match="8081"):
        compose.render(LabConfig(ports=Ports(jupyter=8081)))


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI installed")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin (`docker compose version` failed)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, f"docker compose config rejected the file:\n{result.stderr}"


def test_secured_listeners_use_the_mounted_lab_ca_and_keystore(services: dict[str, Any]) -> None:
    for name in KAFKA:
        settings = final_settings(services[name])
        assert mounts(services[name])[compose.SECURITY_DIR] == (compose.SECURITY_SOURCE, "ro")
        assert settings["ssl.keystore.location"] == f"{compose.SECURITY_DIR}/broker.pem"
        assert settings["ssl.truststore.location"] == f"{compose.SECURITY_DIR}/ca.pem"
        assert settings["listener.name.tls.ssl.client.auth"] == "required"
        assert settings["authorizer.class.name"].endswith("StandardAuthorizer")
        assert settings["super.users"] == "User:ANONYMOUS;User:admin"
        assert settings["ssl.principal.mapping.rules"] == "RULE:^CN.([^,]+),.*$/$1/,DEFAULT"
        assert f"./{security.DOCKER_FOLDER}" == compose.SECURITY_SOURCE
    docker = replace(LabConfig(), backend="docker")
    assert security.folder(docker) == ROOT / security.DOCKER_FOLDER  # the container's too


def test_the_heap_and_agent_reach_the_brokers_process_only(services: dict[str, Any]) -> None:
    for name in KAFKA:
        command = services[name]["command"]
        assert command[0] == "env" and command[-1] == compose.ENTRYPOINT
        assert any(arg.startswith("KAFKA_HEAP_OPTS=-Xms") for arg in command)
        env = services[name]["environment"]
        assert "KAFKA_HEAP_OPTS" not in env and "KAFKA_OPTS" not in env
