"""Lab 07: a topic and a producer that survive the loss of any one broker, nothing lost, nothing
duplicated. The settings are checked as written, then the check itself creates the topic with
them, produces a bounded numbered stream with the producer settings, kills the leader of a
partition mid-stream, restarts it, and counts what came back."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource

from lab_env import health
from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.errors import LabError
from lab_env.replication import (
    count,
    partition_table,
    produce_numbered,
    read_numbers,
    restart,
)
from lab_env.steps import Steps

TOPIC_KEYS = {"partitions", "replication_factor", "min.insync.replicas"}
TRUE = {True, "true", "True", "1"}
ACKS_ALL = {"all", "-1", -1}
# The controller fences a killed broker after broker.session.timeout.ms (9 s); the producer must
# keep retrying at least that long, with room for a metadata refresh and a busy machine.
MIN_DELIVERY_TIMEOUT_MS = 30_000


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def topic_problems(topic: object) -> list[str]:
    """What keeps ``topic`` (partitions, replication_factor, min.insync.replicas) from surviving
    the loss of any one broker of three without refusing or losing writes."""
    if not isinstance(topic, dict) or set(topic) != TOPIC_KEYS:
        keys = sorted(topic) if isinstance(topic, dict) else type(topic).__name__
        return [
            f"TOPIC must be a dict with exactly the keys {sorted(TOPIC_KEYS)}, not {keys}: e.g. "
            '{"partitions": 3, "replication_factor": 3, "min.insync.replicas": 2}.'
        ]
    problems = []
    partitions = _int(topic["partitions"])
    rf = _int(topic["replication_factor"])
    isr = _int(topic["min.insync.replicas"])
    if partitions is None or partitions < 1:
        problems.append(f"partitions={topic['partitions']!r}: give a whole number of at least 1.")
    if rf is None or rf < 3:
        problems.append(
            f"replication_factor={topic['replication_factor']!r}: with fewer than 3 copies, losing "
            "one broker leaves too few to both survive and accept acks=all writes: use 3."
        )
    elif rf > 3:
        problems.append(f"replication_factor={rf}: the lab has 3 brokers, so at most 3.")
    if isr is None or isr < 2:
        problems.append(
            f"min.insync.replicas={topic['min.insync.replicas']!r}: with 1, an acks=all write is "
            "acknowledged by the leader alone when its followers lag, and lost with it: use 2."
        )
    elif rf is not None and 3 <= rf <= isr:
        problems.append(
            f"min.insync.replicas={isr} with replication_factor={rf}: one broker down and every "
            "acks=all write is refused (NOT_ENOUGH_REPLICAS): keep it below the replication "
            "factor (2 of 3)."
        )
    return problems


def producer_problems(producer: object) -> list[str]:
    """What keeps a producer config from having every acknowledged record survive, once."""
    if not isinstance(producer, dict):
        return [f"PRODUCER must be a dict of librdkafka settings, not {type(producer).__name__}."]
    problems = []
    acks = producer.get("acks", producer.get("request.required.acks", "all"))
    idempotent = producer.get("enable.idempotence", False) in TRUE
    if acks not in ACKS_ALL:
        problems.append(
            f"acks={acks!r}: the leader acknowledges before any follower has the record, and a "
            "leader that dies then takes it along: set acks='all'."
        )
    if not idempotent:
        problems.append(
            "enable.idempotence is off: a batch retried after a leader change can be written "
            "twice (or out of order): set enable.idempotence=True."
        )
    for key in ("message.timeout.ms", "delivery.timeout.ms"):
        timeout = _int(producer.get(key))
        if key in producer and (timeout is None or 0 < timeout < MIN_DELIVERY_TIMEOUT_MS):
            problems.append(
                f"{key}={producer[key]!r}: a new leader takes about broker.session.timeout.ms "
                f"(9 s) to be elected; give the producer at least {MIN_DELIVERY_TIMEOUT_MS} ms "
                "(librdkafka's default is 300000)."
            )
    return problems


def check_settings(topic: dict[str, Any], producer: dict[str, Any]) -> None:
    """The settings as written: replication, min.insync.replicas, acks and idempotence."""
    problems = topic_problems(topic) + producer_problems(producer)
    require(not problems, " ".join(problems))
    passed(
        f"replication_factor={topic['replication_factor']}, min.insync.replicas="
        f"{topic['min.insync.replicas']}, acks={producer.get('acks', 'all')}, idempotent"
    )


def _topic_facts(lab: Lab, topic: str) -> tuple[set[int], int]:
    """Replication factors of ``topic``'s partitions and its min.insync.replicas, as the
    cluster has them."""
    factors = {len(row["replicas"]) for row in partition_table(lab, topic)}
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = lab.admin().describe_configs([resource], request_timeout=10)[resource].result()
    return factors, int(configs["min.insync.replicas"].value)


def _victim(lab: Lab, topic: str) -> tuple[int, int]:
    """A partition whose leader is not the active controller (any, if none), and its leader."""
    table = partition_table(lab, topic)
    quorum = health.quorum_leader(lab.config)
    row = next((r for r in table if r["leader"] not in (None, quorum)), table[0])
    return row["partition"], row["leader"]


def check_survives_broker_loss(
    lab: Lab,
    topic: dict[str, Any],
    producer: dict[str, Any],
    records: int = 1500,
    rate: int = 300,
    flush_timeout: float = 20.0,
) -> None:
    """Create a topic with ``topic``'s settings, produce ``records`` numbered records with
    ``producer``'s settings, kill the leader of one partition a third of the way in, restart
    it, and count: every acknowledged record present exactly once, no failed delivery.

    Deliveries still outstanding ``flush_timeout`` s after the stream are purged and count as
    failed (a partition whose only replica died never comes back in time).
    """
    require(
        isinstance(topic, dict) and set(topic) == TOPIC_KEYS and isinstance(producer, dict),
        " ".join(topic_problems(topic) + producer_problems(producer))
        or "TOPIC and PRODUCER must be dicts.",
    )
    partitions, rf = _int(topic["partitions"]), _int(topic["replication_factor"])
    isr = str(topic["min.insync.replicas"])
    require(
        partitions is not None and 1 <= partitions <= 12 and rf is not None and 1 <= rf <= 3,
        f"the check creates the topic with partitions={topic['partitions']!r} and "
        f"replication_factor={topic['replication_factor']!r}: use 1-12 partitions and a "
        "replication factor of 1-3 (the lab has 3 brokers).",
    )
    step = Steps()
    name = lab.topic(f"lab07.payments.{uuid.uuid4().hex[:6]}")
    step(f"creating a topic with TOPIC's settings: {partitions} partitions, RF {rf}")
    try:
        lab.create_topic(name, partitions, rf, config={"min.insync.replicas": isr})
    except LabError as exc:
        raise LabCheckError(f"the check could not create the topic with TOPIC: {exc}") from None
    victim: int | None = None
    try:
        try:
            factors, min_isr = _topic_facts(lab, name)
            partition, victim = _victim(lab, name)

            def kill() -> None:
                lab.faults.kill(victim)
                step(f"killed kafka-{victim}, the leader of partition {partition}")

            step(
                f"producing {records:,} numbered records at {rate}/s with PRODUCER's settings; "
                f"kafka-{victim} is killed after {records // 3:,}"
            )
            try:
                run = produce_numbered(
                    lab, name, producer, records, rate, kill, records // 3, flush_timeout
                )
            except (KafkaException, TypeError, ValueError) as exc:
                reason = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
                raise LabCheckError(
                    f"the producer config was refused: {reason}. Check PRODUCER's "
                    "keys against librdkafka's CONFIGURATION.md."
                ) from None
        finally:
            if victim is not None:
                step(f"starting kafka-{victim} again, waiting for every replica to catch up")
                restart(lab, victim)
        step("reading every record back")
        read = read_numbers(lab, name, timeout=60)
    finally:
        with contextlib.suppress(LabError, KafkaException):
            lab.delete_topic(name)
    tally = count(run.sent, run.acked, run.failed, read)
    errors = sorted(set(run.failed.values()))
    problems = []
    if tally.lost:
        problems.append(
            f"{tally.lost} acknowledged records are missing (e.g. {list(tally.lost_examples)}): "
            "acknowledged by a leader that died before a follower had them: set acks='all' and "
            "min.insync.replicas=2."
        )
    if tally.duplicated and not (run.producer_id is not None and run.epoch_bump_explains(read)):
        problems.append(
            f"{tally.duplicated} records were written twice: a retried batch was appended again; "
            "is enable.idempotence on?"
        )
    if tally.failed:
        cause = (
            "its only copy was on that broker"
            if max(factors) < 2
            else "the producer gave up before a new leader was elected"
        )
        problems.append(
            f"{tally.failed} of {tally.sent} deliveries failed ({', '.join(errors)}) when node "
            f"{victim} (leader of partition {partition}) was killed: {cause}. Use "
            "replication_factor=3, min.insync.replicas=2, and leave message.timeout.ms at its "
            "default."
        )
    if max(factors) < 3:
        problems.append(f"the topic has replication factor {max(factors)}; use 3.")
    if min_isr < 2:
        problems.append(f"the topic has min.insync.replicas={min_isr}; use 2.")
    if run.producer_id is None:
        problems.append(
            "the producer was not idempotent (the cluster gave it no producer id): set "
            "enable.idempotence=True (it implies acks=all)."
        )
    require(not problems, " ".join(problems))
    once = (
        f"{tally.duplicated} written twice when librdkafka bumped the producer's epoch during "
        "the election (librdkafka issue 4953; only a transaction rules that out)"
        if tally.duplicated
        else "each read back once"
    )
    passed(
        f"node {victim} killed mid-stream: {tally.acknowledged} of {tally.sent} records "
        f"acknowledged, none lost, none failed, {once}"
    )
