"""The real lab for every test that needs one: the session starts it (or reuses a running one)
and stops it at the end if it started it.

Tests marked ``disruptive`` kill, pause or restart lab processes; they run after all others.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator

import pytest

from lab_env.api import Lab
from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab


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
