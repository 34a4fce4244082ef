"""The real lab for every test that needs one: the session starts it (or reuses a running one)
and stops it at the end if it started it.

Tiers: every test that needs a running cluster or a Java process is marked ``cluster`` here, so
``pytest -m "not cluster"`` (``make check``) runs the rest in minutes and never starts a lab.
The cluster tests run in this order: the other cluster tests, then the notebooks
(tests/notebooks/), then the ``disruptive`` ones (they kill, pause or restart brokers, or stop
the lab), with tests/integration/test_faults.py and test_reliability.py at the very end.
``make test`` (tests/suite.py) runs the disruptive ones on a lab of their own, beside the shared
tier, and the ``serial`` ones (a time or a rate to bound) alone at the end (tests/tiers.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab_env.api import Lab
from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab
from lab_env.filelock import exclusive
from lab_env.processes import PAUSED
from lab_env.producing import wait_in_sync

TESTS = Path(__file__).resolve().parent
# `isolated` (tests/integration/conftest.py) starts a second lab on free ports.
CLUSTER_FIXTURES = frozenset({"lab", "embedded", "isolated"})
CLUSTER_DIRS = (TESTS / "integration", TESTS / "browser")
NOTEBOOKS = TESTS / "notebooks"
# Whole-cluster faults (two of three nodes down, every node SIGKILLed, leaders killed): last.
LAST = frozenset(TESTS / "integration" / name for name in ("test_faults.py", "test_reliability.py"))
# The course site's browser test reads the site `make site` builds after the suite: it runs only
# when asked for (`pytest --site tests/site`), never in `make check` or the suite's tiers.
SITE_TESTS = TESTS / "site"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--site", action="store_true", help="run tests/site on build/site")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == SITE_TESTS and not config.getoption("site"):
        return True
    return None


@functools.cache
def _file(path: Path) -> Path:
    return path.resolve()


def needs_cluster(item: pytest.Item) -> bool:
    return (
        item.get_closest_marker("cluster") is not None
        or not CLUSTER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        or any(_file(item.path).is_relative_to(folder) for folder in CLUSTER_DIRS)
    )


def in_cpu_group(item: pytest.Item) -> bool:
    return any(m.args == ("cpu",) for m in item.iter_markers("xdist_group"))


def run_order(item: pytest.Item) -> int:
    """0: no cluster; 1: cluster; 2: notebooks; 3: disruptive; 4: test_faults, test_reliability."""
    if item.get_closest_marker("cluster") is None:
        return 0
    if _file(item.path) in LAST:
        return 4
    if item.get_closest_marker("disruptive") is not None:
        return 3
    return 2 if _file(item.path).is_relative_to(NOTEBOOKS) else 1


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("cluster") is None and needs_cluster(item):
            item.add_marker(pytest.mark.cluster)
    # Stable: collection order within each tier. The "cpu" group first, so that on the
    # shared tier one worker starts on it while the other takes everything else.
    items.sort(key=lambda item: (run_order(item), not in_cpu_group(item)))


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    cfg = load_config()
    if cfg.backend != "embedded":
        yield Lab(cfg)
        return
    supervisor = EmbeddedLab(cfg)
    # Two pytest-xdist workers start their sessions at once: one brings the lab up, the other
    # then finds it running. Under xdist no worker stops it (the other may still be using it):
    # tests/suite.py, which started the workers, does.
    with exclusive(cfg.home / "pytest-session.lock"):
        # Stopped afterwards only if the session started it from nothing: a lab someone was
        # using (even with a node down or paused) is theirs, and `up` has just made it healthy.
        was_running = any(supervisor.procs.live(c) for c in supervisor.components())
        supervisor.up(lambda m: print(f"lab up: {m}", file=sys.stderr))
    yield Lab(cfg)
    if not was_running and "PYTEST_XDIST_WORKER" not in os.environ:
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
