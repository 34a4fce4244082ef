"""The real lab for every test that needs one: the session starts it (or reuses a running one)
and stops it at the end if it started it.

Tests marked ``disruptive`` kill, pause or restart lab processes; they run after all others.
"""

from __future__ import annotations

import contextlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException

from lab_env.api import Lab
from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab
from lab_env.errors import LabError
from lab_env.processes import PAUSED
from lab_env.producing import wait_in_sync


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    cfg = load_config()
    if cfg.backend != "embedded":
        yield Lab(cfg)
        return
    supervisor = EmbeddedLab(cfg)
    # Stopped afterwards only if the session started it from nothing: a lab someone was using
    # (even with a node down or paused) is theirs, and `up` has just made it healthy.
    was_running = any(supervisor.procs.live(c) for c in supervisor.components())
    supervisor.up(lambda m: print(f"lab up: {m}", file=sys.stderr))
    yield Lab(cfg)
    if not was_running:
        supervisor.down()


def unhealthy(supervisor: EmbeddedLab) -> list[str]:
    """Lab processes that are not running, or are paused."""
    return [
        name
        for name in supervisor.components()
        if (record := supervisor.procs.live(name)) is None or record.state() == PAUSED
    ]


@pytest.fixture(autouse=True)
def leave_the_lab_healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the lab, bring back any node it left killed or paused.

    A test that fails between its fault and its repair (a notebook whose assertion fails before
    the cell that restarts the broker) would otherwise fail every test after it too.
    """
    yield
    if "lab" not in request.fixturenames:
        return
    lab = request.getfixturevalue("lab")
    supervisor = lab.backend
    if not isinstance(supervisor, EmbeddedLab):
        return
    if left := unhealthy(supervisor):
        print(f"\n{request.node.nodeid} left {', '.join(left)} down; lab up", file=sys.stderr)
        supervisor.up(lambda m: print(f"lab up: {m}", file=sys.stderr))
        wait_in_sync(lab)
    if "embedded" not in request.fixturenames:
        return
    # After a test that stopped or restarted nodes, the session's admin clients may be the stuck
    # ones (two CI runs: after `lab down` and `lab up` every topic creation timed out "waiting
    # for controller", and restarting the lab did not help, while the controller was active).
    # New clients; and if the controller still does not answer them, restart the lab.
    lab.reset_clients()
    if not controller_answers(lab):
        print(f"\n{request.node.nodeid}: the controller does not answer; restarting the lab")
        supervisor.down()
        supervisor.up(lambda m: print(f"lab up: {m}", file=sys.stderr))
        lab.reset_clients()
        wait_in_sync(lab)


def controller_answers(lab: Lab) -> bool:
    """Whether the cluster can create (and delete) a topic: the controller is at work."""
    topic = f"it.controller-probe.{uuid.uuid4().hex[:6]}"
    try:
        lab.create_topic(topic, 1, 3)
    except (LabError, KafkaException):
        return False
    with contextlib.suppress(LabError, KafkaException):
        lab.delete_topic(topic)
    return True


@pytest.fixture
def embedded(lab: Lab) -> EmbeddedLab:
    if not isinstance(lab.backend, EmbeddedLab):
        pytest.skip("needs the embedded backend")
    return lab.backend


def forget_subjects(lab: Lab, *subjects: str) -> None:
    """Delete registry subjects a test created (soft, then permanently); absent ones are fine."""
    registry = lab.registry()
    for subject in subjects:
        for permanent in (False, True):
            with contextlib.suppress(Exception):
                registry.delete_subject(subject, permanent=permanent)


@pytest.fixture
def make_topic(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Create topics named after the test; each is deleted (with its subjects) afterwards,
    whether the test passed or not, so a shared lab does not fill up with leftovers."""
    created: list[str] = []

    def make(partitions: int = 3, replication_factor: int = 3) -> str:
        base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60]
        name = f"it.{base}.{uuid.uuid4().hex[:6]}"
        lab.create_topic(name, partitions, replication_factor)
        created.append(name)
        return name

    yield make
    for name in created:
        with contextlib.suppress(Exception):
            lab.delete_topic(name)
        forget_subjects(lab, f"{name}-key", f"{name}-value")


@pytest.fixture
def topic(make_topic: Callable[..., str]) -> str:
    """A fresh topic (3 partitions, RF 3) named after the test; deleted afterwards."""
    return make_topic()
