"""Faults on the live cluster, counted: nothing acknowledged is lost, nothing is duplicated
(but for librdkafka's epoch bump, issue 4953, which only a transaction rules out)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError

from lab_env.api import Lab
from lab_env.embedded import EmbeddedLab
from lab_env.errors import LabError
from lab_env.producing import wait_in_sync
from lab_env.replication import count, produce_numbered
from lab_env.waiting import wait_for
from tests.helpers import run_lab

pytestmark = [pytest.mark.cluster, pytest.mark.disruptive]

RECORDS = 30_000  # bounded stream ...
RATE = 3_000  # ... at about this many records per second (10 s in all)
KILL_AT = RECORDS // 3


@dataclass
class Tally:
    acked: set[int] = field(default_factory=set)
    failed: list[KafkaError] = field(default_factory=list)

    def on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.failed.append(err)
        else:
            self.acked.add(int(msg.value()))  # type: ignore[attr-defined]


def leader_of(lab: Lab, topic: str, partition: int = 0, not_on: int | None = None) -> int:
    """The partition's leader; with ``not_on``, waited for until it is another broker (the
    controller elects a new leader once it has fenced the old one)."""

    def ask() -> int | None:
        with lab.admin() as admin:
            leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader
        return leader if leader >= 0 and leader != not_on else None

    what = f"a leader for {topic}[{partition}]" + (f" other than {not_on}" if not_on else "")
    return wait_for(what, ask, timeout=60, interval=0.2)


def read_values(lab: Lab, topic: str, expected: int, timeout: float = 60) -> list[int]:
    consumer = lab.consumer(f"it-{uuid.uuid4().hex[:8]}", {"isolation.level": "read_committed"})
    consumer.subscribe([topic])
    values: list[int] = []
    idle_until = time.monotonic() + timeout
    while time.monotonic() < idle_until:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        values += [int(m.value()) for m in batch if m.error() is None]
        if len(values) >= expected and not batch:
            break
    consumer.close()
    return values


def test_killing_the_leader_loses_nothing_acknowledged(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    """acks=all and idempotence, the leader SIGKILLed (by `lab kill`) a third of the way in:
    every record acknowledged, every one read back. A duplicate is allowed only in the form of
    librdkafka issue 4953 (an epoch bump, never a record acknowledged before the kill)."""
    topic = make_topic(partitions=1)
    victim = leader_of(lab, topic)
    kills = []
    run = produce_numbered(
        lab,
        topic,
        {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "delivery.timeout.ms": 120_000},
        RECORDS,
        RATE,
        fault=lambda: kills.append(run_lab("kill", str(victim))),
        fault_after=KILL_AT,
        flush_timeout=120,
    )
    assert kills[0].returncode == 0, kills[0].stderr
    new_leader = leader_of(lab, topic, not_on=victim)
    restarted = run_lab("start", str(victim))
    assert restarted.returncode == 0, restarted.stderr

    values = read_values(lab, topic, len(run.acked))
    tally = count(run.sent, run.acked, run.failed, values)
    print(
        f"\nleader kill: {tally.row()} producer epoch={run.producer_epoch} "
        f"leader {victim} -> {new_leader}"
    )
    assert new_leader != victim
    assert tally.lost == 0, f"acknowledged records are missing, e.g. {tally.lost_examples}"
    assert run.failed == {}  # two of three replicas stayed in sync: every write succeeded
    assert set(values) == set(range(RECORDS))
    assert run.epoch_bump_explains(values), (tally.duplicated, run.producer_epoch)
    wait_in_sync(lab)


def state(embedded: EmbeddedLab, name: str) -> str:
    return next(c["state"] for c in embedded.status()["components"] if c["name"] == name)


def test_pause_and_resume_a_node(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=1)
    producer = lab.producer({"acks": "all", "message.timeout.ms": 60_000})
    errors: list[KafkaError] = []
    try:
        assert run_lab("pause", "3").returncode == 0
        assert state(embedded, "kafka-3") == "paused"
        # The cluster keeps serving with one node frozen: its partitions move to live leaders.
        for i in range(100):
            producer.produce(topic, value=str(i), on_delivery=lambda e, m: e and errors.append(e))
        producer.poll(1)
    finally:
        assert run_lab("resume", "3").returncode == 0
    assert producer.flush(90) == 0
    assert errors == []
    assert state(embedded, "kafka-3") == "running"
    wait_in_sync(lab)


def test_up_resumes_a_paused_node(lab: Lab, embedded: EmbeddedLab) -> None:
    try:
        assert run_lab("pause", "2").returncode == 0
        up = run_lab("up", timeout=180)
    finally:
        run_lab("resume", "2")
    assert up.returncode == 0, up.stderr
    assert "resumed kafka-2" in up.stderr
    assert state(embedded, "kafka-2") == "running"


def committed_group(lab: Lab, topic: str) -> str:
    """A group with one committed offset and no members."""
    group = f"it-{uuid.uuid4().hex[:8]}"
    producer = lab.producer()
    producer.produce(topic, value=b"x")
    assert producer.flush(10) == 0
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and message.error() is None:
            consumer.commit(message, asynchronous=False)
            break
    consumer.close()
    return group


def coordinator_of(lab: Lab, group: str) -> int:
    with lab.admin() as admin:
        return admin.describe_consumer_groups([group])[group].result().coordinator.id


def groups_listed(lab: Lab) -> set[str]:
    return {g.group_id for g in lab.admin().list_consumer_groups(request_timeout=10).result().valid}


def test_delete_groups_after_the_coordinator_moved(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=1)
    group = committed_group(lab, topic)
    coordinator = coordinator_of(lab, group)
    assert run_lab("kill", str(coordinator)).returncode == 0
    wait_for(
        f"the group's coordinator to move from kafka-{coordinator}",
        lambda: coordinator_of(lab, group) != coordinator,
        timeout=60,
        interval=0.5,
    )
    assert run_lab("start", str(coordinator), timeout=180).returncode == 0
    wait_in_sync(lab)
    lab.delete_groups(group, timeout=60)
    assert group not in groups_listed(lab)
    lab.delete_groups(group, timeout=5)  # already gone: fine


def test_delete_groups_refuses_a_group_with_members_in_a_sentence(
    lab: Lab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=1)
    group = committed_group(lab, topic)
    member = lab.consumer(group)
    member.subscribe([topic])
    try:
        wait_for(
            "the member to join",
            lambda: bool(member.poll(0.5) or member.assignment()),
            timeout=30,
        )
        with pytest.raises(LabError, match=r"NON_EMPTY_GROUP.*consumers closed first"):
            lab.delete_groups(group, timeout=3)
    finally:
        member.close()
    lab.delete_groups(group, timeout=30)
    assert group not in groups_listed(lab)
