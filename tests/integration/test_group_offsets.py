"""Committed offsets read as a consumer reads them (lab_env.group_offsets), on the real cluster:
what a group committed, nothing for a group that committed nothing, and reads that keep working
while the group's coordinator is killed and restarted (the admin API's reads crash the process
there; see the module's docstring)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException, TopicPartition

from lab_env import group_offsets, waiting
from lab_env.api import Lab
from lab_env.embedded import EmbeddedLab
from lab_env.errors import LabError
from lab_env.producing import wait_in_sync
from lab_env.waiting import wait_for
from tests.helpers import run_lab

pytestmark = pytest.mark.cluster


def coordinators_of(lab: Lab, groups: list[str]) -> dict[str, int]:
    """Each group's coordinator, as the cluster says now."""
    with lab.admin() as admin:
        described = admin.describe_consumer_groups(groups, request_timeout=10)
        return {g: d.result().coordinator.id for g, d in described.items()}


def commit(lab: Lab, group: str, topic: str, offsets: dict[int, int]) -> None:
    member = lab.consumer(group, {"enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
        member.commit(offsets=tps, asynchronous=False)
    finally:
        member.close()


def test_committed_offsets_are_what_the_group_committed(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    group = f"it-offsets-{uuid.uuid4().hex[:8]}"
    commit(lab, group, topic, {0: 7, 2: 3})
    try:
        assert group_offsets.committed_on(lab, group, topic) == {0: 7, 1: None, 2: 3}
        assert group_offsets.committed_on(lab.client_config(), group, topic, 2) == {0: 7, 1: None}
        assert group_offsets.committed_on(lab, f"{group}-never", topic) == {
            0: None,
            1: None,
            2: None,
        }
        assert group_offsets.committed_on(lab, group, "it.no.such.topic") == {}
        everything = group_offsets.topic_partitions(lab)
        assert {TopicPartition(topic, p) for p in range(3)} <= set(everything)
        assert not any(tp.topic.startswith("__") for tp in everything)
    finally:
        lab.delete_groups(group, timeout=10)


@pytest.mark.disruptive
def test_reading_offsets_survives_the_coordinator_dying(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    groups = [f"it-offsets-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    for n, group in enumerate(groups):
        commit(lab, group, topic, {p: n + p for p in range(3)})
    coordinators = coordinators_of(lab, groups)
    victim = max(set(coordinators.values()), key=list(coordinators.values()).count)
    stop = threading.Event()
    reads = {"answers": 0, "errors": 0}
    moving: list[str] = []  # coordinator-moving errors that reached the caller

    def poll() -> None:  # bounded: until stop, which the test sets within about a minute
        while not stop.is_set():
            for group in groups:
                try:
                    group_offsets.committed_on(lab, group, topic, 3, timeout=5)
                    reads["answers"] += 1
                except LabError:
                    reads["errors"] += 1  # a dead coordinator does not answer in time: expected
                except KafkaException as e:
                    reads["errors"] += 1
                    if waiting.is_transient(e):
                        moving.append(e.args[0].name())

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        wait_for("the first reads", lambda: reads["answers"] >= len(groups), timeout=30)
        assert run_lab("kill", str(victim)).returncode == 0
        wait_for(
            f"the coordinators on kafka-{victim} to move to the other brokers",
            lambda: victim not in coordinators_of(lab, groups).values(),
            timeout=60,
            interval=0.5,
        )
        answered = reads["answers"]
        wait_for("reads from the new coordinators", lambda: reads["answers"] > answered, 30)
        assert run_lab("start", str(victim), timeout=180).returncode == 0
        wait_in_sync(lab)
        election = run_lab(
            "kafka", "leader-election", "--election-type", "PREFERRED", "--all-topic-partitions"
        )
        assert election.returncode in (0, 1), election.stderr  # 1: nothing left to elect
        wait_for(
            f"the coordinators to move back to kafka-{victim}",
            lambda: victim in coordinators_of(lab, groups).values(),
            timeout=60,
            interval=0.5,
        )
        answered = reads["answers"]
        wait_for("reads from the coordinators moved back", lambda: reads["answers"] > answered, 30)
    finally:
        stop.set()
        reader.join(30)
    assert not reader.is_alive()
    assert reads["answers"] > 0
    assert not moving, f"committed() handed over a moving coordinator's error: {moving}"
    for n, group in enumerate(groups):
        assert group_offsets.committed_on(lab, group, topic, 3) == {p: n + p for p in range(3)}
    lab.delete_groups(*groups, timeout=30)
