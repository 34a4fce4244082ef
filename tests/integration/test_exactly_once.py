"""Exactly-once on the real lab: the worker process SIGKILLed mid-transaction and restarted keeps
its output exact (and the at-least-once one does not); lab 04's checks pass the right worker and
fail each broken one with the message that names its bug.

Only worker processes the tests start are killed; brokers are left alone. Every wait is bounded.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from lab_env.api import Lab
from lab_env.checks import LabCheckError
from lab_env.lab_checks.exactly_once import check_abort_path, check_crash_recovery
from lab_env.records import read_all
from lab_env.transactional_worker import (
    WorkerProcess,
    committed_offsets,
    end_offsets,
    transform,
    wait_until_caught_up,
)
from tests.helpers import progress_lines

pytestmark = pytest.mark.cluster

RECORDS = 200
BATCH = 10


@pytest.fixture
def pipeline(lab: Lab, make_topic: Callable[..., str]) -> Iterator[dict[str, Any]]:
    """An input topic with RECORDS records (non-transactional), an output topic, a group."""
    source, output = make_topic(), make_topic()
    producer = lab.producer({"enable.idempotence": True})
    values = [f"order {i}" for i in range(RECORDS)]
    for i, value in enumerate(values):
        producer.produce(source, key=f"customer-{i % 7}", value=value)
    assert producer.flush(30) == 0
    ends = end_offsets(lab.admin(), source)
    assert sum(ends.values()) == RECORDS
    group = f"it-eos-{uuid.uuid4().hex[:8]}"
    yield {"source": source, "output": output, "group": group, "values": values, "ends": ends}
    lab.delete_groups(group, timeout=10)


def killed_mid_batch(worker: WorkerProcess) -> None:
    """SIGKILL the worker where it hangs: its third batch delivered, nothing of it committed."""
    with worker:
        assert worker.wait_for(lambda e: e["event"] == "hanging", 60)["txn"] == 3
        assert worker.kill() == -9


def restarted_to_the_end(lab: Lab, p: dict[str, Any], transactional_id: str | None) -> None:
    with WorkerProcess.start(p["source"], p["output"], p["group"], transactional_id, BATCH) as w:
        assert wait_until_caught_up(lab, p["group"], p["source"], p["ends"], 90, w.alive)
        assert w.stop() == 0
        assert w.events[-1]["event"] == "stopped"


def output_counts(lab: Lab, p: dict[str, Any]) -> Counter[str]:
    return Counter(r["value"] for r in read_all(lab, p["output"]))


def test_transactional_worker_sigkilled_mid_transaction_stays_exact(
    lab: Lab, pipeline: dict[str, Any]
) -> None:
    p = pipeline
    transactional_id = f"it-eos-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess.start(
        p["source"], p["output"], p["group"], transactional_id, BATCH, hang_in_txn=3
    )
    killed_mid_batch(worker)
    # The killed transaction is open: its delivered records are visible to read_uncommitted only.
    committed = len(read_all(lab, p["output"]))
    pending = len(read_all(lab, p["output"], isolation_level="read_uncommitted")) - committed
    assert 0 < pending <= BATCH
    assert sum(committed_offsets(lab, p["group"], p["source"]).values()) == committed

    restarted_to_the_end(lab, p, transactional_id)
    counts = output_counts(lab, p)
    assert sorted(counts) == sorted(transform(v.encode()).decode() for v in p["values"])
    assert set(counts.values()) == {1}  # no duplicate, none missing
    leftovers = len(read_all(lab, p["output"], isolation_level="read_uncommitted")) - RECORDS
    assert leftovers == pending  # the killed transaction, aborted by the restarted instance


def test_at_least_once_worker_sigkilled_mid_batch_duplicates(
    lab: Lab, pipeline: dict[str, Any]
) -> None:
    p = pipeline
    killed_mid_batch(
        WorkerProcess.start(p["source"], p["output"], p["group"], None, BATCH, 0, hang_in_txn=3)
    )
    delivered = len(read_all(lab, p["output"]))
    committed = sum(committed_offsets(lab, p["group"], p["source"]).values())
    restarted_to_the_end(lab, p, None)
    counts = output_counts(lab, p)
    assert set(counts) == {transform(v.encode()).decode() for v in p["values"]}
    # The batch delivered but not committed was processed again: idempotence did not prevent it.
    assert sum(n - 1 for n in counts.values()) == delivered - committed > 0


def test_worker_refuses_bad_arguments() -> None:
    worker = WorkerProcess(["--input", "a", "--output", "b", "--group", "g"])
    assert worker.proc.wait(30) == 2
    worker.stop()
    assert any("--transactional-id" in line for line in worker.stderr)


# -- lab 04's checks, on the right worker and on broken ones ---------------------------------------


def rewind(consumer: Any) -> None:
    for tp in consumer.committed(consumer.assignment(), timeout=10):
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def make_worker(
    consumer_config: dict[str, Any] | None = None,
    rewinds: bool = True,
    aborts: bool = True,
    offsets_in_transaction: bool = True,
) -> Callable[..., None]:
    """The lab's solution, with one of its parts optionally broken."""

    def run_worker(
        lab: Any,
        input_topic: str,
        output_topic: str,
        group_id: str,
        transactional_id: str,
        stop: threading.Event,
        fail_hook: Callable[[], None],
    ) -> None:
        config = {"enable.auto.commit": False} if consumer_config is None else consumer_config
        consumer = lab.consumer(group_id, config)
        producer = lab.producer({"transactional.id": transactional_id})
        producer.init_transactions(30)
        consumer.subscribe([input_topic])
        try:
            while not stop.is_set():
                batch = [m for m in consumer.consume(BATCH, 0.5) if m.error() is None]
                if not batch:
                    continue
                producer.begin_transaction()
                try:
                    for msg in batch:
                        producer.produce(output_topic, key=msg.key(), value=transform(msg.value()))
                    fail_hook()
                    if offsets_in_transaction:
                        producer.send_offsets_to_transaction(
                            consumer.position(consumer.assignment()),
                            consumer.consumer_group_metadata(),
                            30,
                        )
                    producer.commit_transaction(30)
                    if not offsets_in_transaction:
                        consumer.commit(asynchronous=False)
                except Exception as exc:
                    if isinstance(exc, KafkaException) and exc.args[0].fatal():
                        raise
                    if not aborts:
                        producer.commit_transaction(30)  # "the failure does not matter"
                        continue
                    producer.abort_transaction(30)
                    if rewinds:
                        rewind(consumer)
        finally:
            consumer.close()

    return run_worker


def test_checks_pass_the_right_worker(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    worker = make_worker()
    check_abort_path(lab, worker, records=40)
    aborts = capsys.readouterr().out
    check_crash_recovery(lab, worker, records=40)
    crash = capsys.readouterr().out
    # Each says what it is doing as each phase starts, above its verdict.
    assert progress_lines(aborts.split("PASSED")[0]) == [
        "writing 20 input records, then a transaction of 5 that aborts",
        "starting run_worker; fail_hook fails its 1st and 3rd transactions",
        "writing the second wave, 20 records; waiting for the group's commits",
        "stopping run_worker",
        "reading the output back",
    ], aborts
    assert progress_lines(crash.split("PASSED")[0]) == [
        "writing 20 input records; starting run_worker (worker 1)",
        "writing the second wave, 20 records; fail_hook freezes worker 1 in its 2nd transaction",
        "worker 1 is frozen; starting worker 2 with the same transactional.id",
        "stopping the workers (a frozen one is woken up first)",
        "reading the output back",
    ], crash


@pytest.mark.parametrize(
    ("check", "worker", "message"),
    [
        (check_abort_path, make_worker(rewinds=False), "have no output"),
        (check_abort_path, make_worker(aborts=False), "abort_transaction"),
        (
            check_abort_path,
            make_worker({"enable.auto.commit": False, "isolation.level": "read_uncommitted"}),
            "aborted transaction",
        ),
        (check_abort_path, make_worker({}), "enable.auto.commit"),
        (check_crash_recovery, make_worker(offsets_in_transaction=False), "consumer.commit"),
        (
            check_crash_recovery,
            make_worker({"enable.auto.commit": False, "group.protocol": "consumer"}),
            "group.protocol",
        ),
    ],
    ids=["no-rewind", "no-abort", "read-uncommitted", "auto-commit", "offsets-outside", "kip848"],
)
def test_checks_fail_broken_workers(
    lab: Lab, check: Callable[..., None], worker: Callable[..., None], message: str
) -> None:
    with pytest.raises(LabCheckError, match=message):
        check(lab, worker, records=40)


def test_checks_refuse_bad_input(lab: Lab) -> None:
    with pytest.raises(LabCheckError, match="no parentheses"):
        check_abort_path(lab, None)
    with pytest.raises(LabCheckError, match="at least 10"):
        check_crash_recovery(lab, make_worker(), records=3)
