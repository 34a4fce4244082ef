"""`lab up` / `lab down`: idempotent, nothing left behind, and the data survives."""

from __future__ import annotations

import json
import time
import uuid

import psutil
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.schema_registry import Schema

from lab_env import ports
from lab_env.api import Lab
from lab_env.embedded import EmbeddedLab
from lab_env.group_offsets import committed_on
from lab_env.registry import GROUP_PREFIX
from tests.helpers import run_lab

pytestmark = [pytest.mark.cluster, pytest.mark.disruptive]


def test_up_twice_is_harmless_and_deletes_the_groups_the_registry_left(
    lab: Lab, embedded: EmbeddedLab, topic: str
) -> None:
    # The registry reads its journal and snapshots in new consumer groups at each start, and a
    # stopped registry's groups stay (with their offsets). One such group, left empty:
    stale = f"{GROUP_PREFIX}{uuid.uuid4()}"
    consumer = lab.consumer(stale, {"enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    consumer.close()
    live = registry_groups(lab)
    assert stale in live and len(live) > 1, "the running registry reads in groups of its own"
    pids = {c["name"]: c["pid"] for c in embedded.status()["components"]}
    proc = run_lab("up")
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stderr
    assert {c["name"]: c["pid"] for c in embedded.status()["components"]} == pids
    left = registry_groups(lab)
    # (A group whose member has not yet timed out, from a registry stopped moments ago, may go
    # or stay: only the empty one is certain to go, and the running registry keeps its own.)
    assert stale not in left and left, proc.stderr


def test_data_survives_down_and_up_and_nothing_is_left_running(
    lab: Lab, embedded: EmbeddedLab, topic: str
) -> None:
    producer = lab.producer({"acks": "all"})
    for i in range(500):
        producer.produce(topic, key=str(i), value=str(i))
    assert producer.flush(30) == 0
    subject = f"{topic}-value"
    schema = Schema(
        json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}),
        "AVRO",
    )
    schema_id = lab.registry().register_schema(subject, schema)
    group = f"it-{uuid.uuid4().hex[:8]}"
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 200 and time.monotonic() < deadline:
        seen += len([m for m in consumer.consume(200 - seen, timeout=1) if not m.error()])
    consumer.commit(asynchronous=False)
    consumer.close()

    pids = [c["pid"] for c in embedded.status()["components"] if c["pid"]]
    down = run_lab("down")
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for what, port in embedded.cfg.ports.named().items():
        assert ports.is_free(embedded.cfg.host, port), (
            f"{what} port {port} still bound after `lab down`"
        )
    assert embedded.procs.all() == []

    up = run_lab("up")
    assert up.returncode == 0, up.stderr
    # Nodes start one after another, so the first one up led most partitions (41 of 60 here);
    # left so, Kafka's periodic election moved them, and the group coordinators, five minutes
    # later, mid-lesson. `lab up` hands them back to their preferred replicas before it returns.
    assert not_led_by_preferred_replica(lab) == [], up.stderr
    consumer = lab.consumer(f"it-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    values: set[int] = set()
    deadline = time.monotonic() + 60
    while len(values) < 500 and time.monotonic() < deadline:
        values |= {int(m.value()) for m in consumer.consume(500, timeout=1) if not m.error()}
    consumer.close()
    assert values == set(range(500))
    assert lab.registry().get_latest_version(subject).schema_id == schema_id
    committed = committed_on(lab, group, topic, 3, timeout=30)
    assert sum(offset or 0 for offset in committed.values()) == seen


def registry_groups(lab: Lab) -> list[str]:
    with lab.admin() as admin:
        listing = admin.list_consumer_groups(request_timeout=10).result()
    return sorted(g.group_id for g in listing.valid if g.group_id.startswith(GROUP_PREFIX))


def not_led_by_preferred_replica(lab: Lab) -> list[str]:
    with lab.admin() as admin:
        topics = admin.list_topics(timeout=10).topics
    return [
        f"{name}[{p.id}] led by {p.leader}, preferred {p.replicas[0]}"
        for name, meta in topics.items()
        for p in meta.partitions.values()
        if p.leader != p.replicas[0]
    ]
