"""The cluster does what the lab promises: 3 brokers, RF 3, min ISR 2, KIP-848, transactions."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource

from lab_env.api import Lab
from tests.helpers import run_lab

pytestmark = pytest.mark.cluster


def consume_all(
    lab: Lab, topic: str, expected: int, config: dict | None = None, timeout: float = 30
) -> list:
    """Read ``expected`` records (or stop at ``timeout``) with a fresh group."""
    consumer = lab.consumer(f"it-{uuid.uuid4().hex[:8]}", config)
    consumer.subscribe([topic])
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                records.append(msg)
    finally:
        consumer.close()
    return records


def test_three_brokers_and_a_quorum_leader(lab: Lab) -> None:
    description = lab.describe()
    assert [b["id"] for b in sorted(description["brokers"], key=lambda b: b["id"])] == [1, 2, 3]
    assert description["quorum_leader"] in (1, 2, 3)
    assert description["registry"] == "answering"


def test_topic_defaults_are_durable(lab: Lab, topic: str) -> None:
    admin = lab.admin()
    md = admin.list_topics(topic, timeout=10).topics[topic]
    assert len(md.partitions) == 3
    for partition in md.partitions.values():
        assert sorted(partition.replicas) == [1, 2, 3]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result()
    assert config["min.insync.replicas"].value == "2"
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker_config = admin.describe_configs([broker])[broker].result()
    assert broker_config["auto.create.topics.enable"].value == "false"
    assert broker_config["transaction.state.log.replication.factor"].value == "3"
    assert broker_config["transaction.state.log.min.isr"].value == "2"


def test_produce_and_consume_with_acks_all(lab: Lab, topic: str) -> None:
    producer = lab.producer({"acks": "all", "enable.idempotence": True})
    errors: list[KafkaError] = []
    for i in range(1000):
        producer.produce(
            topic, key=str(i % 10), value=str(i), on_delivery=lambda e, m: e and errors.append(e)
        )
    assert producer.flush(30) == 0
    assert errors == []
    records = consume_all(lab, topic, 1000)
    assert sorted(int(m.value()) for m in records) == list(range(1000))
    # same key, same partition
    by_key: dict[bytes, set[int]] = {}
    for m in records:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(parts) == 1 for parts in by_key.values())


def test_auto_topic_creation_is_off(lab: Lab) -> None:
    name = f"it.never-created.{uuid.uuid4().hex[:6]}"
    producer = lab.producer({"message.timeout.ms": 3000})
    errors: list[KafkaError] = []
    producer.produce(name, value=b"x", on_delivery=lambda e, m: errors.append(e))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    assert name not in lab.admin().list_topics(timeout=10).topics


def test_kip848_consumer_group_protocol(lab: Lab, topic: str) -> None:
    producer = lab.producer()
    for i in range(30):
        producer.produce(topic, value=str(i))
    producer.flush(10)
    records = consume_all(lab, topic, 30, {"group.protocol": "consumer"})
    assert len(records) == 30


def test_transactions_commit_and_abort(lab: Lab, topic: str) -> None:
    producer = lab.producer({"transactional.id": f"it-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"committed-{i}")
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"aborted-{i}")
    # Without this flush librdkafka's abort purges the still-queued records, and they never
    # reach the log; flushed first, they are written and then marked aborted.
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value="committed-last")
    producer.commit_transaction(30)

    committed = consume_all(lab, topic, 11, {"isolation.level": "read_committed"}, timeout=20)
    values = sorted(m.value().decode() for m in committed)
    assert values == sorted([f"committed-{i}" for i in range(10)] + ["committed-last"])
    uncommitted = consume_all(lab, topic, 21, {"isolation.level": "read_uncommitted"}, timeout=20)
    assert sum(m.value().startswith(b"aborted") for m in uncommitted) == 10


def test_committed_offsets_are_readable(lab: Lab, topic: str) -> None:
    producer = lab.producer()
    for i in range(5):
        producer.produce(topic, value=str(i), partition=0)
    producer.flush(10)
    group = f"it-{uuid.uuid4().hex[:8]}"
    consumer = lab.consumer(group, {"enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    while got < 5:
        got += len([m for m in consumer.consume(5, timeout=1) if not m.error()])
    consumer.commit(asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0]
    consumer.close()
    assert committed.offset == 5


def test_kafka_cli_tools(lab: Lab, topic: str) -> None:
    topics = run_lab("kafka", "topics", "--describe", "--topic", topic)
    assert topics.returncode == 0, topics.stderr
    assert "ReplicationFactor: 3" in topics.stdout
    assert "min.insync.replicas=2" in topics.stdout
    quorum = run_lab("kafka", "metadata-quorum", "describe", "--status")
    assert quorum.returncode == 0, quorum.stderr
    assert "LeaderId:" in quorum.stdout
    assert "CurrentVoters" in quorum.stdout


def test_producer_perf_test_tool(lab: Lab, topic: str) -> None:
    perf = run_lab(
        "kafka",
        "producer-perf-test",
        "--topic",
        topic,
        "--num-records",
        "2000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        "acks=all",
    )
    assert perf.returncode == 0, perf.stderr
    assert "2000 records sent" in perf.stdout


def test_admin_futures_survive_an_unreferenced_call(lab: Lab) -> None:
    """The way learners write it: no variable holds the client while its future resolves. Each
    call makes a new client (none is cached), kept alive by its futures."""
    cluster = lab.admin().describe_cluster(request_timeout=10).result()
    assert len(cluster.nodes) == 3
    assert lab.admin() is not lab.admin()
