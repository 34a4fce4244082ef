"""One interface over the three places a lab can run: embedded, docker, external.

Notebooks and the CLI never ask which backend is active; they call these methods. What a backend
cannot do (stop an external cluster, kill one of its brokers) is a sentence, not a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any, Protocol

import requests
from confluent_kafka.admin import AdminClient

from lab_env import health, monitoring, security
from lab_env.compose import PROJECT
from lab_env.config import NODE_IDS, REPO, LabConfig, node_id
from lab_env.embedded import EmbeddedLab, Report
from lab_env.errors import LabError
from lab_env.registry import answering


class Backend(Protocol):
    name: str
    cfg: LabConfig

    def up(self, report: Report, timeout: float = 120.0) -> dict[str, Any]: ...
    def down(self, report: Report) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    def kill(self, node: str | int) -> object: ...
    def start(self, node: str | int) -> object: ...
    def pause(self, node: str | int) -> object: ...
    def resume(self, node: str | int) -> object: ...
    def live_nodes(self) -> tuple[int, ...] | None:
        """The nodes that should be applying the cluster's metadata now: running, not paused
        (what the metadata barrier waits for). None: the lab cannot read this cluster's
        metadata offsets."""
        ...


def reachability(cfg: LabConfig, name: str, quorum_leader: int | None = None) -> dict[str, Any]:
    """What a lab whose processes are not ours looks like from outside: brokers, registry,
    Prometheus (and the quorum leader, where the caller could read it)."""
    view = health.cluster_view(cfg, timeout=5.0)
    registry = "answering" if answering(cfg, timeout=3) else "down"
    try:
        prometheus = "up" if requests.get(f"{cfg.prometheus()}/-/ready", timeout=3).ok else "down"
    except requests.RequestException:
        prometheus = "down"
    return {
        "backend": name,
        "bootstrap": cfg.bootstrap(),
        "components": [],
        "quorum_leader": quorum_leader,
        "brokers": view.brokers if view else [],
        "under_replicated_partitions": view.under_replicated if view else None,
        "registry": registry,
        "prometheus": prometheus,
        "total_rss_mib": None,
    }


class EmbeddedBackend(EmbeddedLab):
    name = "embedded"


class DockerBackend:
    """The compose stack: started and stopped with `docker compose`, faults via the Docker SDK."""

    name = "docker"

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg

    def _compose(self, *args: str) -> None:
        docker = shutil.which("docker")
        if docker is None:
            raise LabError(
                "The docker backend needs Docker with the compose plugin, and no `docker` is on "
                "PATH. Install Docker, or use the embedded backend (unset KAFKA_LAB_BACKEND)."
            )
        proc = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"), *args])
        if proc.returncode != 0:
            raise LabError(
                f"`docker compose {' '.join(args)}` failed (exit {proc.returncode}); "
                "see its output above."
            )

    def up(self, report: Report, timeout: float = 300.0) -> dict[str, Any]:
        security.share_with_containers(self.cfg)
        monitoring.rules_dir(self.cfg).mkdir(parents=True, exist_ok=True)  # yours, not root's
        self._compose("up", "-d", "--wait", "--wait-timeout", str(int(timeout)))
        with AdminClient(health.admin_config(self.cfg)) as admin:
            security.ensure_admin_user(self.cfg, admin)
        return self.status()

    def down(self, report: Report) -> list[str]:
        self._compose("down")
        return ["docker compose stack"]

    def status(self) -> dict[str, Any]:
        """The stack from the host: its brokers' exporters are published, so the quorum leader
        is read the embedded backend's way (the leader a majority of the nodes report)."""
        return reachability(self.cfg, self.name, health.quorum_leader(self.cfg))

    def reset(self) -> None:
        self._compose("down", "--volumes")

    def _engine(self) -> Any:
        """A client of the Docker engine (the Docker SDK asks the engine for its version here,
        so an engine that cannot be reached is known at once)."""
        try:
            import docker

            return docker.from_env()
        except Exception as exc:
            raise LabError(
                f"Cannot reach the Docker engine ({exc}), and stopping or pausing a broker needs "
                "it. Inside the lab's JupyterLab container this is deliberate: a notebook server "
                "holding the Docker socket would control the whole machine. Run this notebook from "
                "the host instead (KAFKA_LAB_BACKEND=docker; see docker/README.md)."
            ) from None

    def _container(self, node: str | int, engine: Any = None) -> Any:
        key = node_id(node)
        engine = engine or self._engine()
        try:
            found = engine.containers.list(
                all=True,
                filters={
                    "label": [
                        f"com.docker.compose.project={PROJECT}",
                        f"com.docker.compose.service=kafka-{key}",
                    ]
                },
            )
        except Exception as exc:
            raise LabError(f"The Docker engine did not list the lab's containers: {exc}.") from None
        if not found:
            raise LabError(f"No container for kafka-{key}; is the compose stack up (`lab up`)?")
        return found[0]

    def kill(self, node: str | int) -> object:
        return self._container(node).kill()

    def start(self, node: str | int) -> object:
        return self._container(node).start()

    def pause(self, node: str | int) -> object:
        return self._container(node).pause()

    def resume(self, node: str | int) -> object:
        return self._container(node).unpause()

    def live_nodes(self) -> tuple[int, ...]:
        """Nodes whose container is running (not paused, not stopped). Where the engine cannot
        be asked (the lab's JupyterLab container is not given its socket), the nodes whose
        broker says it is RUNNING on its published exporter: the metadata barrier still waits
        for every broker that serves, never for none."""
        try:
            engine = self._engine()
        except LabError:
            return tuple(n for n in NODE_IDS if health.broker_running(self.cfg, n))
        live = []
        for node in NODE_IDS:
            try:
                if self._container(node, engine).status == "running":
                    live.append(node)
            except LabError:
                continue
        return tuple(live)


class ExternalBackend:
    """A cluster someone else runs: connect only; nothing here starts, stops or breaks it."""

    name = "external"

    def __init__(self, cfg: LabConfig) -> None:
        if not cfg.bootstrap_servers:
            raise LabError(
                "The external backend needs the cluster's address: set KAFKA_LAB_BOOTSTRAP "
                "(and KAFKA_LAB_REGISTRY_URL, KAFKA_LAB_PROMETHEUS_URL, security settings in "
                "KAFKA_LAB_CLIENT_PROPERTIES or the [client] table of lab.toml)."
            )
        self.cfg = cfg

    def _refuse(self, what: str) -> LabError:
        return LabError(f"The external backend cannot {what}: the lab does not run that cluster.")

    def up(self, report: Report, timeout: float = 120.0) -> dict[str, Any]:
        status = self.status()
        if not status["brokers"]:
            raise LabError(
                f"No broker answers at {self.cfg.bootstrap()}; "
                "check KAFKA_LAB_BOOTSTRAP and the security settings."
            )
        return status

    def down(self, report: Report) -> list[str]:
        raise self._refuse("stop the cluster")

    def status(self) -> dict[str, Any]:
        return reachability(self.cfg, self.name)

    def reset(self) -> None:
        raise self._refuse("wipe the cluster")

    def kill(self, node: str | int) -> object:
        raise self._refuse(f"kill node {node}")

    def start(self, node: str | int) -> object:
        raise self._refuse(f"start node {node}")

    def pause(self, node: str | int) -> object:
        raise self._refuse(f"pause node {node}")

    def resume(self, node: str | int) -> object:
        raise self._refuse(f"resume node {node}")

    def live_nodes(self) -> tuple[int, ...] | None:
        """None: another cluster's brokers expose no offsets the lab can read (their JMX
        exporters, if any, are not the lab's), so the metadata barrier cannot wait there; the
        lab's own topic changes are waited for broker by broker instead."""
        return None


def backend(cfg: LabConfig) -> Backend:
    if cfg.backend == "docker":
        return DockerBackend(cfg)
    if cfg.backend == "external":
        return ExternalBackend(cfg)
    return EmbeddedBackend(cfg)
