"""Losing a quorum, and losing everything: counted, not claimed.

- Two of three brokers down: an acks=all producer gets a clear error (nothing is acknowledged that
  the cluster could not keep), and everything flows again after the restart.
- A whole-lab crash (every node SIGKILLed at once) and restart: every acknowledged record of a
  replicated topic is still readable and the group's committed offsets are intact. A SIGKILL ends
  the processes, not the machine: written data sits in the page cache and survives, as it does
  when a broker process crashes in production. (A power loss would need replicas on other
  machines: that is why Kafka relies on replication rather than fsync.)
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition

from lab_env import tools
from lab_env.api import Lab
from lab_env.embedded import EmbeddedLab
from lab_env.producing import wait_in_sync
from lab_env.records import read_all
from lab_env.waiting import wait_for
from tests.helpers import run_lab
from tests.integration.test_faults import Tally, leader_of

pytestmark = [pytest.mark.cluster, pytest.mark.disruptive]

BEFORE, DURING, AFTER = 2_000, 200, 2_000
WITNESSED = 12_000  # at 1000/s: the leader dies about a third of the way through


def produce(lab: Lab, topic: str, numbers: range, tally: Tally, timeout_ms: int) -> None:
    producer = lab.producer(
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": timeout_ms,
        }
    )
    for i in numbers:
        producer.produce(topic, key=str(i % 12), value=str(i), on_delivery=tally.on_delivery)
        producer.poll(0)
    producer.flush(timeout_ms / 1000 + 30)


def values(lab: Lab, topic: str) -> list[int]:
    return [int(r["value"]) for r in read_all(lab, topic, timeout=60)]


def test_two_of_three_brokers_down_refuses_writes_and_loses_nothing(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=6)
    tally = Tally()
    produce(lab, topic, range(BEFORE), tally, 30_000)
    assert tally.failed == [] and len(tally.acked) == BEFORE

    try:
        for node in ("2", "3"):
            assert run_lab("kill", node).returncode == 0
        stalled = Tally()
        produce(lab, topic, range(BEFORE, BEFORE + DURING), stalled, 8_000)
    finally:
        # `lab up` starts every missing node at once and waits for real health: brokers
        # registered, a quorum leader, the registry answering, Prometheus scraping.
        restarted = run_lab("up")
    assert restarted.returncode == 0, restarted.stderr

    # With one node of three, the KRaft quorum has no majority and no partition has two in-sync
    # replicas: acks=all cannot be satisfied, and the producer says so for every record.
    codes = {e.code() for e in stalled.failed}
    assert stalled.acked == set(), f"{len(stalled.acked)} writes acknowledged by one broker alone"
    assert len(stalled.failed) == DURING
    assert codes <= {
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.REQUEST_TIMED_OUT,
    }, codes

    after = Tally()
    produce(lab, topic, range(BEFORE + DURING, BEFORE + DURING + AFTER), after, 60_000)
    assert after.failed == [] and len(after.acked) == AFTER  # everything flows again

    read = values(lab, topic)
    acked = tally.acked | after.acked
    lost = acked - set(read)
    duplicated = len(read) - len(set(read))
    # A record that timed out may still have reached the log (the broker wrote it, the ack never
    # came): "maybe" records, allowed to be present, never twice.
    maybe = set(read) & set(range(BEFORE, BEFORE + DURING))
    print(
        f"\ntwo of three down: produced={BEFORE + DURING + AFTER} acknowledged={len(acked)} "
        f"refused={len(stalled.failed)} ({sorted(KafkaError(c).name() for c in codes)}) "
        f"read={len(read)} lost={len(lost)} duplicated={duplicated} timed-out-but-present="
        f"{len(maybe)}"
    )
    assert lost == set()
    assert duplicated == 0
    wait_in_sync(lab)


def test_whole_lab_crash_keeps_acknowledged_records_and_committed_offsets(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=6)
    tally = Tally()
    produce(lab, topic, range(BEFORE), tally, 30_000)
    assert tally.failed == []

    group = f"it-crash-{uuid.uuid4().hex[:6]}"
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.subscribe([topic])
    consumed = 0
    deadline = time.monotonic() + 60
    while consumed < BEFORE // 2 and time.monotonic() < deadline:
        consumed += sum(
            1 for m in consumer.consume(num_messages=100, timeout=1) if m.error() is None
        )
    consumer.commit(asynchronous=False)
    committed = {
        tp.partition: tp.offset
        for tp in consumer.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    }
    consumer.close()
    assert sum(max(o, 0) for o in committed.values()) == consumed

    for node in ("1", "2", "3"):
        assert run_lab("kill", node).returncode == 0
    # One node alone has no quorum majority: all three start together.
    restarted = run_lab("up")
    assert restarted.returncode == 0, restarted.stderr

    read = values(lab, topic)
    lost = tally.acked - set(read)
    after = lab.consumer(group, {"enable.auto.commit": False})
    try:
        recovered = {
            tp.partition: tp.offset
            for tp in after.committed([TopicPartition(topic, p) for p in range(6)], timeout=30)
        }
    finally:
        after.close()
    print(
        f"\nwhole-lab crash: acknowledged={len(tally.acked)} read={len(read)} lost={len(lost)} "
        f"duplicated={len(read) - len(set(read))} committed offsets kept="
        f"{recovered == committed} ({sum(max(o, 0) for o in recovered.values())} records)"
    )
    assert lost == set()
    assert len(read) == len(set(read)) == BEFORE
    assert recovered == committed
    wait_in_sync(lab)


def verifiable(lab: Lab, tool: str, args: list[str], timeout: float) -> list[dict]:
    """Run one of Kafka's verifiable clients to completion; its JSON events, one per line."""
    proc = subprocess.run(
        tools.argv(lab.config, tool, args), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_kafka_verifiable_clients_witness_a_leader_kill(
    lab: Lab, embedded: EmbeddedLab, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Kafka's own verifiable producer and consumer, beside the Python reader, as independent
    witnesses: the Java producer (acks=all, idempotent) writes numbered records while the
    partition leader is SIGKILLed; every record it saw acknowledged is read back exactly once
    by both the Java consumer and the Python one, and the two agree record for record."""
    topic = make_topic(partitions=1)
    victim = leader_of(lab, topic)
    config = tmp_path / "producer.properties"
    # The verifiable producer sets retries=0 unless told otherwise; idempotence needs retries.
    config.write_text(
        "acks=all\nenable.idempotence=true\nretries=2147483647\ndelivery.timeout.ms=120000\n"
    )
    errors = tmp_path / "producer.err"
    with errors.open("w") as stderr:
        producer = subprocess.Popen(
            tools.argv(
                lab.config,
                "verifiable-producer",
                ["--topic", topic, "--max-messages", str(WITNESSED), "--throughput", "1000"],
                config,
            ),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    # Its stdout is read as it writes (one JSON line per acknowledgement): a pipe nobody reads
    # fills after a few hundred lines and blocks the producer, which then was not writing at all
    # when the leader died.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(producer.stdout), daemon=True)
    reader.start()
    try:
        wait_for(  # a third of the stream acknowledged before the kill
            "the verifiable producer to have a third of its records acknowledged",
            lambda: producer.poll() is not None or len(lines) >= WITNESSED // 3,
            timeout=60,
            interval=0.05,
        )
        assert producer.poll() is None, "the verifiable producer ended before the kill"
        assert run_lab("kill", str(victim)).returncode == 0
        producer.wait(timeout=180)
        reader.join(30)
    finally:
        if producer.poll() is None:
            producer.kill()
        restarted = run_lab("up")
    assert restarted.returncode == 0, restarted.stderr
    assert producer.returncode == 0, errors.read_text()[-2000:]
    out = "".join(lines)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    acked = [int(e["value"]) for e in events if e.get("name") == "producer_send_success"]
    failed = [e for e in events if e.get("name") == "producer_send_error"]

    consumed = verifiable(
        lab,
        "verifiable-consumer",
        [
            "--topic",
            topic,
            "--group-id",
            f"it-witness-{uuid.uuid4().hex[:6]}",
            "--max-messages",
            str(len(acked)),
            "--reset-policy",
            "earliest",
            "--verbose",
        ],
        timeout=180,
    )
    java = [int(e["value"]) for e in consumed if e.get("name") == "record_data"]
    python = values(lab, topic)
    print(
        f"\nverifiable witness: sent={WITNESSED} acknowledged={len(acked)} failed={len(failed)} "
        f"java-read={len(java)} python-read={len(python)} "
        f"lost={len(set(acked) - set(python))} duplicated={len(python) - len(set(python))}"
    )
    assert len(acked) == len(set(acked)) and failed == []
    assert set(acked) <= set(python) and len(python) == len(set(python))
    assert sorted(java) == sorted(python)
    wait_in_sync(lab)
