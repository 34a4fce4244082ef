"""A consume-transform-produce worker, run as a real process, and the supervisor that kills it.

    python -m lab_env.transactional_worker --input orders --output orders.upper \\
        --group upper --transactional-id upper-1 [--batch 10] [--delay-ms 20]

reads ``--input`` in the consumer group ``--group`` and writes ``transform(value)`` (same key) to
``--output``. With ``--transactional-id`` each batch is one transaction: the output records and the
consumed offsets commit together (``send_offsets_to_transaction``), or neither does. With
``--no-transactions`` it is the usual at-least-once pipeline instead: an idempotent producer, and
offsets committed after the batch is delivered.

The worker prints one JSON line per event on stdout (``ready``, ``begin``, ``delivered``,
``committed``, ``aborted``, ``hanging``, ``stopped``), so a supervisor can SIGKILL it at a chosen
moment. ``--hang-in-txn N`` makes that moment exact: in transaction (or batch) N the worker
delivers its records, reports ``hanging`` and waits to be killed, before it commits anything.
``--delay-ms`` slows each record down instead, for kills at arbitrary moments. SIGTERM stops it
cleanly between two batches.

The consumer is a static group member (``group.instance.id``): a worker restarted with the same
identity takes its partitions back at once, instead of waiting ``session.timeout.ms`` for the
killed member to expire.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from lab_env.config import load_config
from lab_env.group_offsets import Client, committed_on
from lab_env.waiting import eventually

# The broker's floor for session.timeout.ms (group.min.session.timeout.ms): a static member that
# stopped is dropped from the group 6 s later instead of 45 s.
SESSION_TIMEOUT_MS = 6000
# Bounds on the blocking transactional calls, so that a worker never hangs on a dead cluster.
TXN_TIMEOUT_S = 30.0


def transform(value: bytes | None) -> bytes:
    """The worker's business logic: deterministic, so the output can be checked record by record."""
    return (value or b"").upper()


def consumer_config(group: str, instance_id: str | None = None) -> dict[str, Any]:
    """The input consumer of a consume-transform-produce loop.

    ``enable.auto.commit`` is off: offsets are committed by the transaction (or, without
    transactions, explicitly after the output is delivered), never on a timer.
    ``isolation.level=read_committed`` is librdkafka's default; it is set anyway, because the
    Java consumer's default is ``read_uncommitted`` and the setting documents the intent.
    """
    config: dict[str, Any] = {
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
    }
    if instance_id:
        config["group.instance.id"] = instance_id
    return config


def rewind(consumer: Consumer, timeout: float = 10.0) -> list[TopicPartition]:
    """Seek every assigned partition back to its committed offset (its start when none is).

    After ``abort_transaction()`` the consumer's position is still past the records of the aborted
    transaction; without this they would never be processed again. Returns the seek targets.
    """
    assigned = consumer.assignment()
    if not assigned:
        return []
    targets = []
    for tp in consumer.committed(assigned, timeout=timeout):
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        target = TopicPartition(tp.topic, tp.partition, offset)
        consumer.seek(target)
        targets.append(target)
    return targets


def data_records(messages: Iterable[Message]) -> list[Message]:
    """The data records of a ``consume()`` result; a fatal consumer error is raised."""
    out = []
    for msg in messages:
        error = msg.error()
        if error is None:
            out.append(msg)
        elif error.fatal():
            raise KafkaException(error)
    return out


def commit_retrying(producer: Producer, timeout: float = TXN_TIMEOUT_S) -> None:
    """``commit_transaction``, retried while its error is retriable (e.g. a timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            producer.commit_transaction(max(0.1, deadline - time.monotonic()))
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise


Report = Callable[..., None]


class _Idle:
    """Whether the loop has had no input for ``limit`` seconds since it got its partitions."""

    def __init__(self, consumer: Consumer, limit: float | None) -> None:
        self.consumer, self.limit = consumer, limit
        self.since = time.monotonic()

    def saw_records(self) -> None:
        self.since = time.monotonic()

    def expired(self) -> bool:
        if self.limit is None:
            return False
        if not self.consumer.assignment():  # still joining the group: not idle yet
            self.since = time.monotonic()
        return time.monotonic() - self.since > self.limit


def _silent(event: str, **fields: Any) -> None:
    pass


@dataclass
class Counters:
    transactions: int = 0
    committed: int = 0
    aborted: int = 0
    records_out: int = 0
    errors: list[str] = field(default_factory=list)


def _batches(
    consumer: Consumer, stop: threading.Event, batch: int, idle_exit_s: float | None
) -> Iterator[list[Message]]:
    """The consumed records, ``batch`` at most at a time, until ``stop`` is set (or the input has
    been idle for ``idle_exit_s``)."""
    idle = _Idle(consumer, idle_exit_s)
    while not stop.is_set():
        records = data_records(consumer.consume(num_messages=batch, timeout=0.5))
        if records:
            idle.saw_records()
            yield records
        elif idle.expired():
            return


def _produce(
    producer: Producer,
    output: str,
    records: list[Message],
    txn: int,
    delay_s: float = 0.0,
    report: Report = _silent,
    side_effect: Callable[[Message], None] | None = None,
) -> list[KafkaError]:
    """Produce ``transform(value)`` of each record, same key; report each delivery. Returns the
    list that collects the delivery errors, filled as the delivery reports are served."""
    delivered, errors = 0, []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(err)
            return
        delivered += 1
        report("delivered", txn=txn, delivered=delivered, records=len(records))

    for msg in records:
        if side_effect is not None:
            side_effect(msg)
        producer.produce(
            output, key=msg.key(), value=transform(msg.value()), on_delivery=on_delivery
        )
        producer.poll(0)  # serves delivery reports
        if delay_s:
            time.sleep(delay_s)
            producer.poll(0)
    return errors


def process_transactionally(
    consumer: Consumer,
    producer: Producer,
    output: str,
    stop: threading.Event,
    batch: int = 10,
    delay_s: float = 0.0,
    fail_hook: Callable[[int], None] | None = None,
    rewind_on_abort: bool = True,
    report: Report = _silent,
    idle_exit_s: float | None = None,
    side_effect: Callable[[Message], None] | None = None,
) -> Counters:
    """The consume-transform-produce loop: one transaction per consumed batch.

    ``producer`` has a ``transactional.id`` and ``init_transactions()`` already returned.
    ``fail_hook(n)`` runs after transaction ``n`` produced its records and before it commits; an
    exception from it is a failure inside the transaction. Errors are handled by their class:
    a fatal one (``fatal()``, e.g. fenced by a newer instance) ends the loop, an abortable one
    (``txn_requires_abort()``) or an application failure aborts the transaction and rewinds the
    consumer, a retriable one (``retriable()``) is retried by ``commit_retrying``.
    ``side_effect(msg)``, if given, runs for every record processed: something outside Kafka,
    which no Kafka transaction can take back. ``idle_exit_s`` ends the loop after that long
    without input.
    """
    counters = Counters()
    for records in _batches(consumer, stop, batch, idle_exit_s):
        counters.transactions += 1
        txn = counters.transactions
        producer.begin_transaction()
        report("begin", txn=txn, records=len(records))
        try:
            _produce(producer, output, records, txn, delay_s, report, side_effect)
            if fail_hook is not None:
                fail_hook(txn)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                TXN_TIMEOUT_S,
            )
            commit_retrying(producer)  # flushes, then commits output and offsets together
        except Exception as exc:
            error = exc.args[0] if isinstance(exc, KafkaException) else None
            if isinstance(error, KafkaError) and error.fatal():
                report("fatal", txn=txn, error=error.name())
                raise  # fenced, or worse: this producer can do nothing more
            producer.abort_transaction(TXN_TIMEOUT_S)  # also purges records not yet sent
            targets = rewind(consumer) if rewind_on_abort else []
            counters.aborted += 1
            counters.errors.append(error.name() if error else type(exc).__name__)
            report(
                "aborted",
                txn=txn,
                error=counters.errors[-1],
                rewound={f"{t.partition}": t.offset for t in targets},
            )
            continue
        counters.committed += 1
        counters.records_out += len(records)
        report("committed", txn=txn, records=len(records), total=counters.records_out)
    return counters


def process_at_least_once(
    consumer: Consumer,
    producer: Producer,
    output: str,
    stop: threading.Event,
    batch: int = 10,
    delay_s: float = 0.0,
    report: Report = _silent,
    idle_exit_s: float | None = None,
    fail_hook: Callable[[int], None] | None = None,
) -> Counters:
    """The same pipeline without transactions: produce the batch (idempotent producer), wait for
    every delivery, then commit the consumed offsets. A crash between the two repeats the batch.
    ``fail_hook(n)`` runs between the deliveries of batch ``n`` and its offset commit."""
    counters = Counters()
    for records in _batches(consumer, stop, batch, idle_exit_s):
        counters.transactions += 1
        txn = counters.transactions
        report("begin", txn=txn, records=len(records))
        errors = _produce(producer, output, records, txn, delay_s, report)
        if producer.flush(TXN_TIMEOUT_S) != 0 or errors:
            raise KafkaException(errors[0] if errors else KafkaError(KafkaError._MSG_TIMED_OUT))
        if fail_hook is not None:
            fail_hook(txn)
        consumer.commit(asynchronous=False)
        counters.committed += 1
        counters.records_out += len(records)
        report("committed", txn=txn, records=len(records), total=counters.records_out)
    return counters


# -- the process -----------------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.time(), 3), **fields}), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab_env.transactional_worker",
        description="Consume --input, write transform(value) to --output, exactly once.",
    )
    parser.add_argument("--input", required=True, help="topic to consume")
    parser.add_argument("--output", required=True, help="topic to produce to")
    parser.add_argument("--group", required=True, help="consumer group id")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--transactional-id", help="the producer's transactional.id")
    mode.add_argument(
        "--no-transactions",
        action="store_true",
        help="at-least-once instead: idempotent producer, offsets committed after delivery",
    )
    parser.add_argument("--batch", type=int, default=10, help="records per transaction")
    parser.add_argument("--delay-ms", type=int, default=0, help="pause after each record")
    parser.add_argument(
        "--instance-id",
        help="group.instance.id (default: the transactional.id, else the group id)",
    )
    parser.add_argument(
        "--idle-exit-s", type=float, help="exit after this many seconds without input"
    )
    parser.add_argument(
        "--supervised",
        action="store_true",
        help="stop when stdin closes: the worker ends with the process that started it",
    )
    parser.add_argument(
        "--hang-in-txn",
        type=int,
        metavar="N",
        help="hang in transaction (or batch) N, its records delivered and nothing committed, "
        "until killed: a crash at the worst moment, made reproducible",
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.delay_ms < 0 or (args.hang_in_txn or 1) < 1:
        parser.error("--batch and --hang-in-txn must be at least 1, --delay-ms at least 0")
    return args


# A hanging worker that nobody kills exits by itself after this long, without committing.
HANG_S = 300.0


def _hang_hook(producer: Producer, stop: threading.Event, txn: int | None) -> Callable[[int], None]:
    def hook(n: int) -> None:
        if n == txn:
            producer.flush(TXN_TIMEOUT_S)  # the batch's records are in the output's log
            _emit("hanging", txn=n)
            stop.wait(HANG_S)
            os._exit(3)  # no clean-up, no commit: as if the process had died here

    return hook


def _stop_at_eof(stop: threading.Event) -> None:
    for _ in sys.stdin:
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.supervised:  # a notebook that dies must not leave workers behind
        threading.Thread(target=_stop_at_eof, args=(stop,), daemon=True).start()
    base = load_config().client_config()
    instance = args.instance_id or args.transactional_id or args.group
    consumer = Consumer({**base, **consumer_config(args.group, instance)})
    if args.transactional_id:
        producer = Producer({**base, "transactional.id": args.transactional_id})
        # Fences any older instance with this transactional.id and aborts its open transaction.
        producer.init_transactions(TXN_TIMEOUT_S)
    else:
        producer = Producer({**base, "enable.idempotence": True})
    consumer.subscribe([args.input])
    _emit("ready", pid=os.getpid(), transactions=bool(args.transactional_id))
    try:
        loop = process_transactionally if args.transactional_id else process_at_least_once
        counters = loop(
            consumer,
            producer,
            args.output,
            stop,
            batch=args.batch,
            delay_s=args.delay_ms / 1000,
            report=_emit,
            idle_exit_s=args.idle_exit_s,
            fail_hook=_hang_hook(producer, stop, args.hang_in_txn),
        )
    except KafkaException as exc:
        _emit("failed", error=exc.args[0].name(), reason=exc.args[0].str())
        return 1
    finally:
        consumer.close()
    producer.flush(TXN_TIMEOUT_S)
    _emit("stopped", committed=counters.committed, aborted=counters.aborted)
    return 0


# -- the supervisor --------------------------------------------------------------------------------


def committed_offsets(lab: Client, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (partitions with none left out).

    An offset sent with ``send_offsets_to_transaction`` shows up here once its transaction
    commits, never before, and never if it aborts. ``lab`` is the lab or a client configuration.
    No answer from the coordinator (it may be moving) reads as nothing committed yet.
    """
    try:
        offsets = committed_on(lab, group, topic)
    except KafkaException:
        return {}
    return {p: offset for p, offset in offsets.items() if offset is not None}


def end_offsets(admin: AdminClient, topic: str) -> dict[int, int]:
    """Each partition's high watermark: the offset after its last record."""
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in metadata.partitions}
    futures = admin.list_offsets(request, request_timeout=10)
    return {tp.partition: future.result().offset for tp, future in futures.items()}


def caught_up(committed: dict[int, int], ends: dict[int, int]) -> bool:
    """Whether every partition's committed offset has passed its last input record.

    ``ends`` maps a partition to the offset after its last data record. A transaction marker may
    follow that record; a consumer's position steps over it only when it reads it, so the
    committed offset may be the marker's offset or the one after, both past the data.
    """
    return all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0)


def wait_until_caught_up(
    lab: Client,
    group: str,
    topic: str,
    ends: dict[int, int],
    timeout: float = 60.0,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Poll the group's committed offsets until they pass ``ends`` (True), the deadline passes or
    ``alive()`` turns false (False)."""
    eventually(
        lambda: not alive() or caught_up(committed_offsets(lab, group, topic), ends),
        timeout,
        interval=0.2,
    )
    return caught_up(committed_offsets(lab, group, topic), ends)


class WorkerProcess:
    """A worker started with ``subprocess``, its events read from its stdout as they come.

    ``wait_for(predicate, timeout)`` returns the first event matching ``predicate``; ``kill()``
    sends SIGKILL (no clean-up of any kind runs in the worker); ``stop()`` sends SIGTERM and waits.
    The worker also stops when the process that started it ends (its stdin closes).
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "lab_env.transactional_worker", "--supervised", *args]
        # Nothing is ever written to its stdin: the pipe closes when this process ends (however
        # it ends), and the worker stops then.
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._ended = False  # its stdout has closed: no event will come any more
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(
        cls,
        input: str,
        output: str,
        group: str,
        transactional_id: str | None = None,
        batch: int = 10,
        delay_ms: int = 0,
        instance_id: str | None = None,
        hang_in_txn: int | None = None,
    ) -> WorkerProcess:
        args = ["--input", input, "--output", output, "--group", group]
        if transactional_id:
            args += ["--transactional-id", transactional_id]
        else:
            args += ["--no-transactions"]
        args += ["--batch", str(batch), "--delay-ms", str(delay_ms)]
        if instance_id:
            args += ["--instance-id", instance_id]
        if hang_in_txn:
            args += ["--hang-in-txn", str(hang_in_txn)]
        return cls(args)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._queue.put(event)
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def _drain(self, timeout: float) -> dict[str, Any] | bool | None:
        """The next event; False when none came within ``timeout``; None once stdout closed."""
        if self._ended:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if event is None:
            self._ended = True
        else:
            self.events.append(event)
        return event

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first event (since the last call) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching worker event in {timeout:.0f} s{self._tail()}")
            event = self._drain(min(left, 0.5))
            if event is None:
                raise RuntimeError(f"the worker exited ({self.proc.poll()}){self._tail()}")
            if event and predicate(event):
                return event

    def _tail(self) -> str:
        lines = self.stderr[-5:]
        return (": " + " | ".join(lines)) if lines else ""

    def kill(self) -> int:
        """SIGKILL: the process dies mid-whatever, exactly as in a crash. Returns its exit code."""
        self.proc.kill()
        return self._reap(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait: the worker finishes its batch and closes its clients. A worker
        still running after ``timeout`` is killed. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self._reap(timeout)

    def _reap(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        for reader in self._readers:  # the pipes close with the process: read them to the end
            reader.join(5)
        while self._drain(0.1) not in (None, False):
            pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


if __name__ == "__main__":
    sys.exit(main())
