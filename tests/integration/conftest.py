"""Integration tests talk to the real lab: the session starts it (or reuses a running one).

Tests marked ``disruptive`` kill, pause or restart lab processes; they run after all others.
Bad-input tests run the CLI against an isolated lab home on free ports, never the shared lab.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab_env.api import Lab
from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab
from tests.helpers import free_ports


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    cfg = load_config()
    if cfg.backend != "embedded":
        yield Lab(cfg)
        return
    supervisor = EmbeddedLab(cfg)
    was_running = all(supervisor.procs.live(c) for c in supervisor.components())
    supervisor.up(lambda m: print(f"lab up: {m}", file=sys.stderr))
    yield Lab(cfg)
    if not was_running:
        supervisor.down()


@pytest.fixture
def embedded(lab: Lab) -> EmbeddedLab:
    if not isinstance(lab.backend, EmbeddedLab):
        pytest.skip("needs the embedded backend")
    return lab.backend


@pytest.fixture
def topic(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic (3 partitions, RF 3) named after the test; deleted afterwards."""
    name = f"it.{re.sub(r'[^A-Za-z0-9]+', '-', request.node.name)[:60]}.{uuid.uuid4().hex[:6]}"
    lab.create_topic(name)
    yield name
    lab.delete_topic(name)


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """Environment for a second, empty lab home on free ports (the shared cache is reused)."""
    p = free_ports(13)
    return {
        "KAFKA_LAB_HOME": str(tmp_path / "home"),
        "KAFKA_LAB_BROKER_PORTS": ",".join(map(str, p[0:3])),
        "KAFKA_LAB_CONTROLLER_PORTS": ",".join(map(str, p[3:6])),
        "KAFKA_LAB_EXPORTER_PORTS": ",".join(map(str, p[6:9])),
        "KAFKA_LAB_REGISTRY_PORT": str(p[9]),
        "KAFKA_LAB_REGISTRY_MANAGEMENT_PORT": str(p[10]),
        "KAFKA_LAB_PROMETHEUS_PORT": str(p[11]),
        "KAFKA_LAB_JUPYTER_PORT": str(p[12]),
    }
