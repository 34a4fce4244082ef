"""Workshops on the live lab: check attempts recorded to the progress topic, recording that never
breaks a check, learners isolated in their own namespaces, the solved labs run by a learner
confined to their namespace, `lab progress` and the instructor's notebook.

Every test records to a topic of its own (``KAFKA_LAB_PROGRESS_TOPIC``), deleted afterwards, so
the real ``lab.progress`` only holds what learners (and the notebook tests) did; the confined
learner's labs share one, granted when the learner is added.

ACLs and SCRAM users are granted through the lab (``lab workshop add-learner``, in another
process); ``lab.wait_for_metadata()`` then returns once every broker has applied them, so each
attempt after it is made once and its outcome is the answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from lab_env import progress, workshop
from lab_env.api import Lab
from lab_env.checks import LabCheckError
from lab_env.config import load_config
from lab_env.errors import LabError
from lab_env.lab_checks.replication import check_settings
from lab_env.lab_checks.security_acls import (
    bindings_of,
    consume,
    create_topic,
    describe_group,
    produce,
    read,
)
from lab_env.lab_checks.tour import check_cluster_facts, truth
from lab_env.waiting import NotYet, wait_for
from tests.helpers import free_ports, run_lab
from tests.notebooks.catalog import CONFINED_LABS, marks
from tests.notebooks.test_notebooks import execute, require_progress
from tests.tiers import SERIAL

pytestmark = [pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
GOOD_TOPIC = {"partitions": 3, "replication_factor": 3, "min.insync.replicas": 2}
GOOD_PRODUCER = {"acks": "all", "enable.idempotence": True}
BOUND_S = progress.TIMEOUT_S + 1.0  # what a check may cost beyond its own work, with slack


@pytest.fixture
def progress_topic(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"it.progress.{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KAFKA_LAB_PROGRESS_TOPIC", name)
    monkeypatch.setenv("KAFKA_LAB_PROGRESS", "on")
    yield name
    with contextlib.suppress(Exception):
        lab.delete_topic(name)


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """An IPython shell in this process, watched as a notebook's kernel is."""
    ipython = InteractiveShell.instance()
    assert progress.watch_notebook(ipython)
    yield ipython
    InteractiveShell.clear_instance()


def learner_lab(lab: Lab, name: str) -> Lab:
    return Lab(replace(lab.config, learner=name))


def attempts_of(
    lab: Lab,
    learner: str,
    count: int,
    timeout: float = 15.0,
    besides: frozenset[progress.Attempt] = frozenset(),
) -> list[progress.Attempt]:
    """The learner's attempts on the progress topic (those in ``besides`` left out), oldest first,
    once there are at least ``count``."""

    def recorded() -> tuple[list[progress.Attempt]] | NotYet:
        mine = [a for a in progress.read_attempts(lab) if a.learner == learner]
        new = sorted((a for a in mine if a not in besides), key=lambda a: a.time)
        if len(new) >= count:
            return (new,)
        return NotYet(f"{len(new)} so far: {[(a.lab, a.check, a.passed) for a in new]}")

    what = f"{count} check attempt(s) recorded for learner {learner}"
    return wait_for(what, recorded, timeout, interval=0.5)[0]


def test_real_checks_record_passes_and_failures(
    lab: Lab, progress_topic: str, shell: InteractiveShell
) -> None:
    name = f"it-{uuid.uuid4().hex[:8]}"
    mine = learner_lab(lab, name)
    check_cluster_facts(mine, truth(mine))  # passes; passed() records
    shell.user_ns.update(lab=mine, check_cluster_facts=check_cluster_facts)
    result = shell.run_cell("check_cluster_facts(lab, {})")  # fails, as in a notebook cell
    assert isinstance(result.error_in_exec, LabCheckError)
    start = time.monotonic()
    for _ in range(10):
        check_settings(GOOD_TOPIC, GOOD_PRODUCER)  # a check without a lab: the configured one
    print(f"recording overhead: {(time.monotonic() - start) * 100:.1f} ms per check")

    attempts = attempts_of(lab, name, 2)
    assert [(a.lab, a.check, a.passed) for a in attempts] == [
        ("00-lab-tour", "check_cluster_facts", True),
        ("00-lab-tour", "check_cluster_facts", False),
    ]
    assert attempts[0].message == "all 6 facts match the cluster"
    assert attempts[1].message.startswith("answers has no ")
    assert attempts[0].time <= attempts[1].time
    records = progress.read_attempts(lab)
    assert all(a.learner in (name, lab.config.learner) for a in records)
    assert sum(a.check == "check_settings" for a in records) == 10


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


# Bounds how long a check waits for a recording that cannot be made (3 s).
@SERIAL
@pytest.mark.parametrize("where", ["closed", "silent"])
def test_recording_never_breaks_a_check(
    where: str,
    progress_topic: str,
    shell: InteractiveShell,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ports = contextlib.ExitStack()
    port = free_ports(1)[0] if where == "closed" else ports.enter_context(silent_port())
    with ports:
        monkeypatch.setenv("KAFKA_LAB_BOOTSTRAP", f"127.0.0.1:{port}")
        caplog.set_level(logging.WARNING, logger="lab_env.progress")
        start = time.monotonic()
        check_settings(GOOD_TOPIC, GOOD_PRODUCER)
        passing = time.monotonic() - start
        assert "PASSED" in capsys.readouterr().out
        progress._recorders.clear()  # no resting: the failure must try again
        shell.user_ns.update(check_settings=check_settings)
        start = time.monotonic()
        result = shell.run_cell("check_settings({'partitions': 3}, {'acks': '1'})")
        failing = time.monotonic() - start
    assert isinstance(result.error_in_exec, LabCheckError)
    assert "acks" in str(result.error_in_exec)
    warnings = [r.getMessage() for r in caplog.records if r.name == "lab_env.progress"]
    assert len(warnings) == 2 and all("Progress not recorded" in w for w in warnings), warnings
    print(f"{where}: gave up after {passing:.2f} s (pass), {failing:.2f} s (failure)")
    assert passing < BOUND_S and failing < BOUND_S


# -- shared-cluster mode: two learners in their own namespaces ------------------------------------


def add_learner(lab: Lab, name: str, tmp_path: Path) -> Lab:
    """A learner added by `lab workshop add-learner` (another process): their SCRAM user and ACLs
    applied on every broker on return."""
    proc = run_lab("workshop", "add-learner", name, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lab.wait_for_metadata()
    toml = tmp_path / f"{name}.toml"
    toml.write_text(proc.stdout)
    cfg = load_config({"KAFKA_LAB_CONFIG": str(toml)})
    assert (cfg.learner, cfg.prefix, cfg.backend) == (name, f"{name}.", "external")
    assert cfg.client["sasl.username"] == name
    assert cfg.bootstrap() == ",".join(f"{lab.config.host}:{p}" for p in lab.config.ports.sasl)
    return Lab(cfg)


def create_own_topic(lab: Lab, learner: Lab, name: str) -> str:
    """Create a topic as the learner (their CREATE grant); every broker knows it on return.

    The learner's Lab addresses the cluster as an external one, where the metadata barrier does
    not wait (``ExternalBackend.live_nodes``), so the lab's own Lab waits for it."""
    topic = learner.topic(name)
    learner.create_topic(topic, partitions=1)
    lab.wait_for_metadata()
    return topic


@pytest.fixture
def learners(lab: Lab, tmp_path: Path) -> Iterator[list[Lab]]:
    names = [f"it{uuid.uuid4().hex[:6]}{side}" for side in "ab"]
    try:
        yield [add_learner(lab, name, tmp_path) for name in names]
    finally:
        for name in names:
            run_lab("workshop", "reset-learner", name, timeout=120)
            run_lab("workshop", "remove-learner", name, timeout=120)
        admin = lab.admin()
        for name in names:
            assert bindings_of(admin, f"User:{name}") == [], f"{name}'s ACLs are left"
            assert not workshop.user_exists(admin, name), f"{name}'s user is left"


def test_learners_are_isolated_in_their_namespaces(lab: Lab, learners: list[Lab]) -> None:
    alice, bob = learners
    topics = [create_own_topic(lab, learner, "orders") for learner in learners]
    groups = [learner.group("shipping") for learner in learners]
    assert topics[0] == f"{alice.config.prefix}orders" and groups[1].startswith(bob.config.prefix)
    for learner, topic, group in zip(learners, topics, groups, strict=True):
        config = learner.client_config()
        written = produce(config, topic, ["a", "b"])
        assert written.allowed, written
        assert consume(config, topic, group, count=2).allowed
    for me, (their_topic, their_group, my_topic) in (
        (alice, (topics[1], groups[1], topics[0])),
        (bob, (topics[0], groups[0], topics[1])),
    ):
        config = me.client_config()
        assert produce(config, their_topic).code == "TOPIC_AUTHORIZATION_FAILED"
        denied = read(config, their_topic)
        assert denied.code == "TOPIC_AUTHORIZATION_FAILED", denied
        assert describe_group(config, their_group).code == "GROUP_AUTHORIZATION_FAILED"
        assert consume(config, my_topic, their_group).code == "GROUP_AUTHORIZATION_FAILED"
        outside = create_topic(config, f"elsewhere.{uuid.uuid4().hex[:6]}")
        assert outside.code == "TOPIC_AUTHORIZATION_FAILED"


@dataclass(frozen=True)
class ConfinedLearner:
    name: str
    config_file: Path  # their lab.toml, as `lab workshop add-learner` printed it
    progress_topic: str  # the one their WRITE grant names


@pytest.fixture(scope="module")
def confined_learner(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfinedLearner]:
    """One workshop learner for every confined lab: SASL_SSL as their SCRAM user, with ACLs on
    their prefix only; removed (user, ACLs, topics, groups) when the module ends."""
    name = f"it{uuid.uuid4().hex[:6]}"
    topic = f"it.progress.{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("learner")
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("KAFKA_LAB_PROGRESS_TOPIC", topic)  # granted and created by add-learner
            add_learner(lab, name, folder)
        yield ConfinedLearner(name, folder / f"{name}.toml", topic)
    finally:
        run_lab("workshop", "reset-learner", name, timeout=120)
        run_lab("workshop", "remove-learner", name, timeout=120)
        with contextlib.suppress(Exception):
            lab.delete_topic(topic)


@pytest.mark.parametrize(
    "notebook", [pytest.param(n, marks=marks(n)) for n in sorted(CONFINED_LABS)]
)
def test_lab_passes_for_a_learner_confined_to_their_namespace(
    lab: Lab, confined_learner: ConfinedLearner, notebook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The solved lab, executed once (this is its run in the suite), as a workshop learner.
    Every topic and group the lab and its checks create is named through lab.topic()/lab.group(),
    or the broker refuses it; exactly the lab's checks pass, recorded under the learner's name,
    and the lab leaves nothing in the learner's namespace."""
    learner = confined_learner
    monkeypatch.setenv("KAFKA_LAB_CONFIG", str(learner.config_file))  # the kernel's lab
    monkeypatch.setenv("KAFKA_LAB_PROGRESS_TOPIC", learner.progress_topic)
    monkeypatch.setenv("KAFKA_LAB_PROGRESS", "on")
    earlier = frozenset(a for a in progress.read_attempts(lab) if a.learner == learner.name)
    require_progress(execute(REPO / "solutions" / f"{notebook}.ipynb"))
    checks = CONFINED_LABS[notebook]
    attempts = attempts_of(lab, learner.name, len(checks), besides=earlier)
    assert [a for a in attempts if not a.passed] == []
    assert {(a.lab, a.check) for a in attempts} == {(notebook, c) for c in checks}
    assert workshop.learner_topics(lab, learner.name) == []  # the lab cleaned up after itself


def test_workshop_commands_answer_bad_names_in_sentences() -> None:
    for args in (
        ("add-learner", "a.b"),
        ("remove-learner", "9lives"),
        ("reset-learner", f"nobody{uuid.uuid4().hex[:6]}"),
        ("remove-learner", f"nobody{uuid.uuid4().hex[:6]}"),
    ):
        proc = run_lab("workshop", *args, timeout=120)
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr and "learner" in proc.stderr, proc.stderr


def test_lab_progress_json_shows_the_attempts(lab: Lab, progress_topic: str) -> None:
    names = [f"it-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name, passed in ((names[0], True), (names[1], False), (names[1], False)):
        attempt = progress.Attempt(name, "00-lab-tour", "check_cluster_facts", passed, "m", "")
        assert progress.record(replace(attempt, time=progress.now()), lab.config)
    proc = run_lab("progress", "--json", env={"KAFKA_LAB_PROGRESS_TOPIC": progress_topic})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["topic"] == progress_topic and data["attempts"] == 3
    assert sorted(data["learners"]) == sorted(names)
    latest = {row["learner"]: (row["passed"], row["attempts"]) for row in data["latest"]}
    assert latest == {names[0]: (True, 1), names[1]: (False, 2)}
    assert data["most_failed"][0]["check"] == "check_cluster_facts"
    assert data["most_failed"][0]["failing"] == 1
    table = run_lab("progress", env={"KAFKA_LAB_PROGRESS_TOPIC": progress_topic})
    assert table.returncode == 0 and names[1] in table.stdout and "stuck" in table.stdout
    bad = run_lab("progress", "--watch", "0")
    assert bad.returncode == 1 and "--watch" in bad.stderr


def test_the_instructor_notebook_runs(lab: Lab, progress_topic: str) -> None:
    attempt = progress.Attempt("it-notebook", "00-lab-tour", "check_x", False, "m", "")
    assert progress.record(replace(attempt, time=progress.now()), lab.config)
    out = execute(REPO / "instructor" / "progress.ipynb")
    assert "it-notebook" in out.read_text()


def test_reading_a_cluster_that_is_down_is_a_sentence(lab: Lab) -> None:
    down = Lab(replace(lab.config, bootstrap_servers=f"127.0.0.1:{free_ports(1)[0]}"))
    with pytest.raises(LabError, match="Is the lab up"):
        progress.read_attempts(down)
    del down  # its admin client would go on retrying (and logging) until the session ends
