"""Producing, measured: a bounded benchmark, the bytes a topic takes on the brokers, the state
a broker keeps per idempotent producer, and a follower paused to make produce requests retry.

    run = benchmark(lab, topic, {"linger.ms": 20, "compression.type": "lz4"}, order_values(5000))
    run.row()  # records/s, MB/s, delivery latency p50/p95/p99 ...

Everything here is bounded (a record count and a deadline) and uses the real client API: the
lessons show the same calls in their cells; these helpers only spare repeating them.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import KafkaError, Message, Producer

from lab_env import health, tools
from lab_env.api import Lab
from lab_env.config import NODE_IDS
from lab_env.errors import LabError
from lab_env.waiting import wait_for

STATUSES = ("created", "paid", "packed", "shipped", "delivered")


def order_event(i: int, orders: int = 500, seed: int = 0) -> dict[str, Any]:
    """Order event ``i``: a small JSON document like a shop emits (about 200 bytes).

    ``event_id`` is unique, ``order_id`` repeats (it is the key: one order, one partition) and
    the other fields are drawn from a generator seeded by ``i``, so every run sends the same
    bytes and compression ratios compare like with like.
    """
    rnd = random.Random(seed * 1_000_003 + i)
    return {
        "event_id": i,
        "order_id": f"o-{i % orders}",
        "status": STATUSES[(i // orders) % len(STATUSES)],
        "customer": f"customer-{rnd.randrange(10_000)}",
        "amount_cents": rnd.randrange(100, 100_000),
        "currency": "EUR",
        "items": [
            {"sku": f"sku-{rnd.randrange(2_000)}", "qty": rnd.randrange(1, 4)}
            for _ in range(rnd.randrange(1, 4))
        ],
    }


def order_values(records: int, seed: int = 0) -> list[bytes]:
    """``records`` order events, JSON-encoded."""
    return [json.dumps(order_event(i, seed=seed)).encode() for i in range(records)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by the nearest-rank method; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) - 1e-9)))
    return ordered[rank - 1]


@dataclass
class Run:
    """One benchmark run: what was produced, how fast, and what the delivery reports said."""

    config: dict[str, Any]
    records: int  # produce() calls that the local queue accepted
    delivered: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # error name -> failed deliveries
    seconds: float = 0.0  # first produce() to the end of flush()
    cpu_seconds: float = 0.0  # CPU this process used meanwhile, librdkafka's threads included
    delivered_bytes: int = 0  # key + value bytes of delivered records
    latencies_ms: list[float] = field(default_factory=list)  # produce() to acknowledgement
    complete: bool = True  # False: the deadline stopped the run early
    buffer_full: int = 0  # BufferErrors met (the local queue was full; poll() and retried)
    stats: dict[str, Any] = field(default_factory=dict)  # librdkafka's last statistics

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def row(self) -> dict[str, Any]:
        """The run as one table row (config keys first)."""
        seconds = max(self.seconds, 1e-9)
        requests = {"produce requests": produce_requests(self.stats)} if self.stats else {}
        return {
            **self.config,
            "records": self.records,
            "failed": self.failed,
            "records/s": round(self.delivered / seconds),
            "MB/s": round(self.delivered_bytes / seconds / 1e6, 2),
            "CPU s": round(self.cpu_seconds, 3),
            "p50 ms": round(percentile(self.latencies_ms, 0.50), 1),
            "p95 ms": round(percentile(self.latencies_ms, 0.95), 1),
            "p99 ms": round(percentile(self.latencies_ms, 0.99), 1),
            **requests,
        }


def produce_requests(stats: dict[str, Any]) -> int:
    """Produce requests a producer sent, all brokers (from librdkafka's statistics)."""
    return sum(b.get("req", {}).get("Produce", 0) for b in stats.get("brokers", {}).values())


def records_resent(stats: dict[str, Any]) -> int:
    """Records a producer transmitted more than once: retries (``txmsgs`` minus ``msgs`` over
    every partition, from librdkafka's statistics)."""
    return sum(
        part["txmsgs"] - part["msgs"]
        for topic in stats.get("topics", {}).values()
        for number, part in topic.get("partitions", {}).items()
        if number != "-1"  # librdkafka's placeholder for records not yet partitioned
    )


class Stats:
    """librdkafka's statistics of one client, newest report kept (its counters are cumulative).

    Put ``stats.config()`` into the client's config; reports arrive every ``interval_ms``,
    served like delivery reports by ``poll()``/``flush()``.
    """

    def __init__(self, interval_ms: int = 100) -> None:
        self.interval_ms = interval_ms
        self.count = 0
        self.text = ""

    def config(self) -> dict[str, Any]:
        return {"statistics.interval.ms": self.interval_ms, "stats_cb": self._on_stats}

    def _on_stats(self, text: str) -> None:
        self.count += 1
        self.text = text

    @property
    def latest(self) -> dict[str, Any]:
        return json.loads(self.text) if self.text else {}

    def wait_next(self, client: Producer, timeout: float = 1.0) -> dict[str, Any]:
        """Serve ``client`` until a report newer than now arrives (or ``timeout``)."""
        count, deadline = self.count, time.monotonic() + timeout
        while self.count == count and time.monotonic() < deadline:
            client.poll(0.02)
        return self.latest

    def idempotence(self) -> tuple[str | None, int | None]:
        """The idempotent producer's state and producer id (None, None: not idempotent)."""
        eos = self.latest.get("eos")
        if not eos:
            return None, None
        return eos.get("idemp_state"), eos.get("producer_id")

    def producer_id_and_epoch(self) -> tuple[int | None, int | None]:
        """The idempotent producer's id and current epoch (None, None: none assigned)."""
        eos = self.latest.get("eos") or {}
        pid, epoch = eos.get("producer_id", -1), eos.get("producer_epoch", -1)
        return (pid, epoch) if pid is not None and pid >= 0 else (None, None)


WARM_UP_KEY = "warm-up"


def warm_partitions(lab: Lab, topic: str, timeout: float = 30.0) -> int:
    """Write one small ``acks=all`` record (key WARM_UP_KEY) to every partition of ``topic``.

    The first ``acks=all`` write to a new partition waits while its followers start fetching
    it (up to a second on this lab); a measurement on a fresh topic would charge that wait to
    whatever it measures first. Returns the number of records written (one per partition).

    Every delivery report is read. A warm-up record refused with a retriable error is written
    again until ``timeout``; a non-retriable error, or the deadline, ends in a LabError that names
    the partition and the error. A warm-up that failed unnoticed once let lesson 02's first
    measured record take offset 0, not 1.
    """
    deadline = time.monotonic() + timeout
    partitions = _partitions_of(lab, topic)
    written: set[int] = set()
    failed: dict[int, KafkaError] = {}

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            written.add(msg.partition())
        else:
            failed[msg.partition()] = err

    producer = lab.producer({"acks": "all"})
    to_write = partitions
    while True:
        failed.clear()
        for partition in to_write:
            producer.produce(
                topic, key=WARM_UP_KEY, value=b"warm-up", partition=partition, on_delivery=report
            )
        in_flight = producer.flush(max(deadline - time.monotonic(), 0.1))
        hopeless = any(not err.retriable() for err in failed.values())
        if in_flight or not failed or hopeless or time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # only refused records are written again: none can land twice
        to_write = sorted(failed)
    missing = [p for p in partitions if p not in written]
    if missing:
        why = ", ".join(
            f"partition {p}: {failed[p].name() if p in failed else 'no report'}" for p in missing
        )
        raise LabError(
            f"could not write the warm-up records to {topic!r} ({why}): see `lab status`."
        )
    return len(partitions)


def _partitions_of(lab: Lab, topic: str) -> list[int]:
    """``topic``'s partitions, from the metadata (every broker has it: the topic was created
    through the lab, whose ``create_topic`` waits for the metadata barrier)."""
    with lab.admin() as admin:
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None or not metadata.partitions:
        why = metadata.error.str() if metadata.error is not None else "no partitions"
        raise LabError(f"{topic!r} is not in the cluster's metadata ({why}).")
    return sorted(metadata.partitions)


def warm_up(producer: Producer, topic: str, stats: Stats, timeout: float = 10.0) -> None:
    """Fetch ``topic``'s metadata and, for an idempotent producer, wait for its producer id:
    what a producer does before its first record, done before a clock starts or a broker is
    paused."""
    producer.list_topics(topic, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, _ = stats.idempotence()
        if stats.count and state in (None, "Assigned"):
            return
        stats.wait_next(producer, 0.5)
    raise LabError(f"the producer did not get ready for {topic!r} in {timeout:.0f} s.")


def benchmark(
    lab: Lab,
    topic: str,
    config: dict[str, Any],
    values: Sequence[bytes],
    keys: Sequence[bytes | str | None] | None = None,
    deadline_s: float = 60.0,
    stats: bool = False,
    progress: Callable[[int], None] | None = None,
    start_at: float | None = None,
    batch: int = 0,
) -> Run:
    """Produce ``values`` (with ``keys``) to ``topic`` as fast as the producer takes them.

    Bounded twice: by the number of values and by ``deadline_s`` (produce stops there, and the
    final flush gets what is left, at least 10 s). Delivery reports are served by ``poll(0)``
    after each ``produce()`` and by the final ``flush()``; a full local queue (``BufferError``)
    is waited out with ``poll()``, as a producer must. With ``stats`` the run keeps librdkafka's
    statistics as they stand after the flush: produce requests sent, retries, ...

    ``progress`` is called with the number of records handed to the producer so far, about a
    hundred times a run. With ``batch`` the records go to ``produce_batch()`` that many at a
    time (one call into the client per batch instead of one per record; each record still gets
    its delivery report), else to ``produce()`` one by one. ``start_at`` (a ``time.time()``
    instant) holds the first record back until then, so several processes start together.
    """
    if keys is not None and len(keys) != len(values):
        raise LabError(f"{len(keys)} keys for {len(values)} values: give one key per value.")
    run = Run(config=dict(config), records=0)
    counters = Stats()
    producer = lab.producer({**config, **counters.config()})
    warm_up(producer, topic, counters)  # metadata, connections, producer id: before the clock

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            run.errors[err.name()] += 1
            return
        run.delivered += 1
        run.delivered_bytes += len(msg.value() or b"") + len(msg.key() or b"")
        latency = msg.latency()
        if latency is not None:
            run.latencies_ms.append(latency * 1000)

    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    start, cpu_start = time.monotonic(), time.process_time()
    deadline = start + deadline_s
    if batch:
        _produce_batches(producer, topic, values, keys, batch, deadline, run, delivered, progress)
    else:
        _produce_each(producer, topic, values, keys, deadline, run, delivered, progress)
    left = producer.flush(max(10.0, deadline - time.monotonic()))
    run.seconds = time.monotonic() - start
    run.cpu_seconds = time.process_time() - cpu_start
    if left:
        run.complete = False
        run.errors["not delivered before the deadline"] += left
    if stats:
        run.stats = counters.wait_next(producer)
    return run


Delivered = Callable[[KafkaError | None, Message], None]


def _produce_each(
    producer: Producer,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | str | None] | None,
    deadline: float,
    run: Run,
    delivered: Delivered,
    progress: Callable[[int], None] | None,
) -> None:
    every = max(1, len(values) // 100)
    for i, value in enumerate(values):
        key = keys[i] if keys is not None else None
        while time.monotonic() < deadline:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
            except BufferError:  # the local queue is full: serve reports, let it drain, retry
                run.buffer_full += 1
                producer.poll(0.01)
                continue
            run.records += 1
            break
        else:
            run.complete = False
            return
        producer.poll(0)
        if progress is not None and run.records % every == 0:
            progress(run.records)


def _produce_batches(
    producer: Producer,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | str | None] | None,
    size: int,
    deadline: float,
    run: Run,
    delivered: Delivered,
    progress: Callable[[int], None] | None,
) -> None:
    """``produce_batch()`` ``size`` records at a time. Records the local queue had no room for
    come back marked with ``_error`` (QUEUE_FULL) and are offered again after a ``poll()``; any
    other refusal counts as that record's failure, as ``produce()`` would have raised it."""
    for first in range(0, len(values), size):
        pending: list[dict[str, Any]] = [
            {"value": v} if keys is None else {"value": v, "key": keys[first + j]}
            for j, v in enumerate(values[first : first + size])
        ]
        while pending and time.monotonic() < deadline:
            try:
                run.records += producer.produce_batch(topic, pending, on_delivery=delivered)
                refused = [m for m in pending if "_error" in m]
            except BufferError:  # not seen in practice: a full queue marks records instead
                refused = [m for m in pending if "_error" in m] or pending
            pending = []
            for message in refused:
                error = message.pop("_error", None)
                if error is None or error.code() == KafkaError._QUEUE_FULL:
                    pending.append(message)
                else:
                    run.errors[error.name()] += 1
            if pending:
                run.buffer_full += 1
                producer.poll(0.01)
        if pending:
            run.complete = False
            return
        producer.poll(0)
        if progress is not None:
            progress(run.records)


def stored_bytes(lab: Lab, topics: Sequence[str]) -> dict[str, int]:
    """Bytes each topic's log takes on its leaders' disks (one replica, all partitions).

    Asked of the brokers with Kafka's own ``kafka-log-dirs.sh --describe`` (one call for all
    topics; about 2 s, it starts a JVM). The size is what the broker appended: record batches
    as the producer compressed them, with their headers.
    """
    if not topics:
        return {}
    done = tools.run(
        lab.config, "log-dirs", ["--describe", "--topic-list", ",".join(topics)], capture=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("{")), None)
    if done.returncode != 0 or line is None:
        raise LabError(f"kafka-log-dirs failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return log_dir_sizes(json.loads(line), topics)


def log_dir_sizes(described: dict[str, Any], topics: Sequence[str]) -> dict[str, int]:
    """Per topic, the sum over partitions of the largest replica (kafka-log-dirs' JSON)."""
    largest: dict[tuple[str, int], int] = {}
    for broker in described.get("brokers", []):
        for log_dir in broker.get("logDirs", []):
            for part in log_dir.get("partitions", []):
                topic, _, number = part["partition"].rpartition("-")
                if topic in topics and not part.get("isFuture"):
                    where = (topic, int(number))
                    largest[where] = max(largest.get(where, 0), int(part["size"]))
    return {t: sum(size for (name, _), size in largest.items() if name == t) for t in topics}


def producer_state(lab: Lab, topic: str, partition: int = 0) -> list[dict[str, int]]:
    """The producers a partition's leader remembers (Kafka's ``kafka-transactions.sh
    describe-producers``): one row per producer id that wrote with idempotence or in a
    transaction, with its epoch and the last sequence number it wrote. A producer without
    idempotence sends no producer id and is not listed."""
    done = tools.run(
        lab.config,
        "transactions",
        ["describe-producers", "--topic", topic, "--partition", str(partition)],
        capture=True,
    )
    if done.returncode != 0:
        raise LabError(
            f"kafka-transactions describe-producers failed: {done.stderr.strip()[-500:]}"
        )
    return parse_producer_state(done.stdout)


def parse_producer_state(text: str) -> list[dict[str, int]]:
    """Rows of ``describe-producers`` output (tab-separated, a header line first)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((i for i, line in enumerate(lines) if line.startswith("ProducerId")), None)
    if header is None:
        return []
    names = [n.strip() for n in lines[header].split("\t") if n.strip()]
    rows = []
    for line in lines[header + 1 :]:
        cells = [c.strip() for c in line.split("\t")][: len(names)]
        row = dict(zip(names, cells, strict=False))
        rows.append(
            {
                "producer_id": int(row["ProducerId"]),
                "epoch": int(row["ProducerEpoch"]),
                "last_sequence": int(row["LastSequence"]),
            }
        )
    return rows


def pick_follower(lab: Lab, topic: str, partition: int = 0) -> int:
    """A replica of ``topic``'s partition that is neither its leader nor the KRaft quorum
    leader: pausing it stalls ``acks=all`` writes without moving any leadership."""
    meta = lab.admin().list_topics(topic, timeout=10).topics[topic].partitions[partition]
    quorum = health.quorum_leader(lab.config)
    for node in meta.replicas:
        if node not in (meta.leader, quorum) and node in meta.isrs:
            return node
    raise LabError(
        f"{topic!r} partition {partition} has no in-sync follower to pause "
        f"(replicas {meta.replicas}, ISR {meta.isrs}): is a broker down? See `lab status`."
    )


@contextlib.contextmanager
def paused_follower(
    lab: Lab, topic: str, seconds: float = 3.0, partition: int = 0
) -> Iterator[int]:
    """Freeze one in-sync follower of ``topic``'s partition for ``seconds`` (at most 5).

    The leader keeps appending, but an ``acks=all`` write is acknowledged only once every
    in-sync replica has it, so while the follower is frozen each produce request waits; when
    it waits longer than the producer's ``request.timeout.ms``, the leader answers
    REQUEST_TIMED_OUT although it has already written the batch, and the producer retries.
    The block starts once the node is really stopped; a timer resumes it on time even while
    the body blocks; leaving the block resumes it in any case and waits until it runs and
    every partition is back in sync.
    """
    if not 0 < seconds <= 5:
        raise LabError(f"pause a broker for 0-5 s, not {seconds} s: others share the cluster.")
    victim = pick_follower(lab, topic, partition)
    lock, resumed = threading.Lock(), threading.Event()

    def resume_once() -> None:  # the timer or the block's end, whichever comes first
        with lock:
            if not resumed.is_set():
                _resume(lab, victim)
                resumed.set()

    timer = threading.Timer(seconds, resume_once)
    lab.faults.pause(victim)
    try:
        _wait_process(lab, victim, stopped=True)
        timer.start()
        yield victim
    finally:
        timer.cancel()
        resume_once()
        wait_in_sync(lab)


def _threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (Linux: /proc; elsewhere the process state)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    states = []
    for stat in tasks.glob("*/stat"):
        with contextlib.suppress(OSError):
            states.append(stat.read_text().rpartition(")")[2].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


def _wait_process(lab: Lab, node: int, stopped: bool, timeout: float = 10.0) -> None:
    """Until the embedded node's threads are all stopped (or none is).

    SIGSTOP reaches a busy JVM's threads one by one, and the lab resumes only a node it sees
    stopped: resuming too early would leave the node frozen. (Docker pauses synchronously.)
    """
    procs = getattr(lab.backend, "procs", None)
    record = procs.live(f"kafka-{node}") if procs is not None else None
    if record is None:
        return
    deadline = time.monotonic() + timeout
    while _threads_stopped(record.pid) != stopped:
        if time.monotonic() > deadline:
            what = "stop" if stopped else "run again"
            raise LabError(f"kafka-{node} did not {what} within {timeout:.0f} s: see `lab status`.")
        time.sleep(0.01)


def _resume(lab: Lab, node: int) -> None:
    """Resume ``node`` and make sure it runs (a resume the lab saw no reason for is retried)."""
    deadline = time.monotonic() + 10
    while True:
        lab.faults.resume(node)
        try:
            _wait_process(lab, node, stopped=False, timeout=1.0)
            return
        except LabError:
            if time.monotonic() > deadline:
                raise


def wait_in_sync(lab: Lab, timeout: float = 120.0) -> None:
    """Until every broker is registered and no partition is under-replicated."""
    wait_for(
        "every partition back in sync",
        lambda: (
            (view := health.cluster_view(lab.config))
            and len(view.brokers) == len(NODE_IDS)
            and view.under_replicated == 0
        ),
        timeout,
        interval=0.2,
    )
