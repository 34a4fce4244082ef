"""Consumer groups, observed: members in threads, what each owned and consumed when, and lag.

    recorder = Recorder()
    with SteadyProducer(lab, topic, partitions=6, rate=300, seconds=30):
        first = Member(lab, group, topic, "consumer-1", recorder).start()
        ...
    recorder.ownership()         # who owned which partition, from when to when
    lag(lab, group, topic, 6)    # committed offsets against high watermarks

Every member is a real ``confluent_kafka.Consumer`` subscribed with ``on_assign``,
``on_revoke`` and ``on_lost`` callbacks; the callbacks and every ``consume()`` batch are recorded
with a timestamp, so a lesson can chart assignments and pauses measured on the cluster. Every
loop is bounded by a deadline: a lesson never hangs on a group that does not settle.

``python -m lab_env.consuming crash-worker ...`` is a consumer process for showing what a crash
does to at-least-once processing: it processes records (one line each in a file), commits every
``--commit-every`` records, and after ``--hold-after`` records it stops with its latest work
uncommitted, waiting to be killed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.group_offsets import committed_on as committed_offsets


class Recorder:
    """A thread-safe event log with one clock (seconds since the recorder was made)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, kind: str, member: str, t: float | None = None, **fields: Any) -> None:
        with self._lock:
            self.events.append(
                {"t": self.now() if t is None else t, "kind": kind, "member": member, **fields}
            )

    def of(self, *kinds: str) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((e for e in self.events if e["kind"] in kinds), key=lambda e: e["t"])

    def ownership(self, end: float | None = None) -> list[dict[str, Any]]:
        """Who owned which partition from when to when: one row per (member, partition, interval).

        Built from the ``owns`` events (a member's partitions after each callback) and
        ``closed``. While a member owns nothing it gets rows with ``partition`` None, so a chart
        shows an idle member (one beyond the partition count) too.
        """
        end = self.now() if end is None else end
        rows: list[dict[str, Any]] = []
        opened: dict[tuple[str, int | None], float] = {}
        for event in self.of("owns", "closed"):
            member, t = event["member"], event["t"]
            owned: set[int | None] = set()
            if event["kind"] == "owns":
                owned = set(event["partitions"]) or {None}
            for (m, p), start in list(opened.items()):
                if m == member and p not in owned:
                    rows.append({"member": m, "partition": p, "start": start, "end": t})
                    del opened[(m, p)]
            for p in owned:
                opened.setdefault((member, p), t)
        for (m, p), start in opened.items():
            rows.append({"member": m, "partition": p, "start": start, "end": end})
        return sorted(
            rows,
            key=lambda r: (
                r["start"],
                r["member"],
                -1 if r["partition"] is None else r["partition"],
            ),
        )


class Member:
    """One consumer of a group, polling in its own thread until stopped or its deadline passes.

    It records ``assign``/``revoke``/``lost`` callbacks, what it ``owns`` after each, and one
    ``consumed`` event per partition per ``consume()`` batch. Commits are left to the
    configuration (librdkafka's automatic commits unless ``enable.auto.commit`` is false).
    """

    def __init__(
        self,
        lab: Lab,
        group: str,
        topic: str,
        name: str,
        recorder: Recorder,
        config: dict[str, Any] | None = None,
        batch: int = 100,
        timeout: float = 0.1,
        deadline_s: float = 120.0,
    ) -> None:
        self.lab, self.group, self.topic, self.name = lab, group, topic, name
        self.recorder, self.config = recorder, dict(config or {})
        self.batch, self.timeout = batch, timeout
        self.deadline_s = deadline_s
        self.owned: set[int] = set()
        self.consumed = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _callback(self, kind: str) -> Callable[[Consumer, list[TopicPartition]], None]:
        """A rebalance callback that records what happened; the client then assigns or
        unassigns by itself (confluent-kafka does so when the callback does not)."""

        def callback(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            numbers = {tp.partition for tp in partitions}
            self.recorder.add(kind, self.name, partitions=sorted(numbers))
            self.owned = self.owned | numbers if kind == "assign" else self.owned - numbers
            self.recorder.add("owns", self.name, partitions=sorted(self.owned))

        return callback

    def _run(self) -> None:
        deadline = time.monotonic() + self.deadline_s
        try:
            consumer = self.lab.consumer(self.group, {"client.id": self.name, **self.config})
        except BaseException as exc:
            self.error = exc
            self._subscribed.set()
            return
        try:
            consumer.subscribe(
                [self.topic],
                on_assign=self._callback("assign"),
                on_revoke=self._callback("revoke"),
                on_lost=self._callback("lost"),
            )
            self.recorder.add("subscribed", self.name)
            self._subscribed.set()
            while not self._stop.is_set() and time.monotonic() < deadline:
                messages = consumer.consume(self.batch, self.timeout)
                for m in messages:
                    if m.error() is not None:
                        self.recorder.add("error", self.name, error=m.error().str())
                good = [m for m in messages if m.error() is None]
                if not good:
                    continue
                for partition, count in sorted(Counter(m.partition() for m in good).items()):
                    self.recorder.add("consumed", self.name, partition=partition, records=count)
                self.consumed += len(good)
        except BaseException as exc:  # kept, and raised again by stop()
            self.error = exc
        finally:
            self._subscribed.set()
            try:
                consumer.close()
            except BaseException as exc:  # a close that fails is reported like a loop error
                self.error = self.error or exc
            self.owned = set()
            self.recorder.add("closed", self.name)

    def start(self, wait: float = 10.0) -> Member:
        self._thread.start()
        if not self._subscribed.wait(wait):
            raise LabError(f"{self.name} did not subscribe within {wait} s.")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and close the consumer (it leaves the group)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise LabError(f"{self.name} did not stop within {timeout} s.")
        if self.error is not None:
            raise self.error


def stop_all(members: Iterable[Member], timeout: float = 30.0) -> None:
    """Stop every member, all at once (each close is a rebalance for the others)."""
    members = list(members)
    for m in members:
        m._stop.set()
    for m in members:
        m.stop(timeout)


def balanced(members: Iterable[Member], partitions: int) -> bool:
    """Every partition owned by exactly one of ``members``, spread evenly: each member owns
    ``partitions // n`` or one more (so a member beyond the partition count owns none)."""
    members = list(members)
    owned = sorted(p for m in members for p in m.owned)
    even = partitions // len(members)
    return owned == list(range(partitions)) and all(
        len(m.owned) in (even, even + 1) for m in members
    )


def owner_at(events: list[dict[str, Any]], partition: int, t: float) -> str | None:
    """The member that owned ``partition`` at time ``t``, from the ``owns``/``closed`` events."""
    owners: dict[str, set[int]] = {}
    for e in sorted(events, key=lambda e: e["t"]):
        if e["t"] > t:
            break
        if e["kind"] == "owns":
            owners[e["member"]] = set(e["partitions"])
        elif e["kind"] == "closed":
            owners.pop(e["member"], None)
    holders = sorted(m for m, owned in owners.items() if partition in owned)
    return holders[0] if holders else None


def rebalance_pauses(
    events: list[dict[str, Any]], join_t: float, settled_t: float, partitions: int
) -> list[dict[str, Any]]:
    """What the rebalance between ``join_t`` (a member joined) and ``settled_t`` (the group was
    seen balanced again) did to each partition.

    ``before``/``after``: its owner at those two moments; ``stopped``: whether it was revoked
    (or lost) in between; ``paused_s``: from the last batch consumed from it before that revoke
    to the first batch consumed from it after, by whichever member (0 if never revoked);
    ``resumed_s``: when that first batch came, in seconds after ``join_t``.
    """
    rows = []
    for p in range(partitions):
        revokes = [
            e["t"]
            for e in events
            if e["kind"] in ("revoke", "lost")
            and p in e["partitions"]
            and join_t <= e["t"] <= settled_t
        ]
        row: dict[str, Any] = {
            "partition": p,
            "before": owner_at(events, p, join_t),
            "after": owner_at(events, p, settled_t),
            "stopped": bool(revokes),
            "paused_s": 0.0,
            "resumed_s": None,
        }
        row["moved"] = row["before"] != row["after"]
        if revokes:
            revoked = min(revokes)
            consumed = sorted(
                e["t"] for e in events if e["kind"] == "consumed" and e["partition"] == p
            )
            last = [t for t in consumed if t <= revoked]
            first = [t for t in consumed if t > revoked]
            start = last[-1] if last else revoked
            row["paused_s"] = first[0] - start if first else None
            row["resumed_s"] = first[0] - join_t if first else None
        rows.append(row)
    return rows


class SteadyProducer:
    """Produce ``rate`` records per second round-robin over the partitions, in a thread, until
    stopped or ``seconds`` pass: a bounded background load for watching consumers."""

    def __init__(self, lab: Lab, topic: str, partitions: int, rate: int, seconds: float) -> None:
        self.lab, self.topic, self.partitions = lab, topic, partitions
        self.rate, self.seconds = rate, seconds
        self.produced = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def _run(self) -> None:
        try:
            producer = self.lab.producer({"acks": "all", "linger.ms": 5})
            start = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - start < self.seconds:
                due = int((time.monotonic() - start) * self.rate)
                while self.produced < due:
                    partition = self.produced % self.partitions
                    producer.produce(self.topic, value=str(self.produced), partition=partition)
                    self.produced += 1
                producer.poll(0)
                time.sleep(0.02)
            # The load is only there to be consumed: what is still queued at the end is dropped
            # rather than waited for (on a busy machine acks=all deliveries can take seconds).
            producer.purge()
            producer.flush(5)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise self.error


def produce_numbered(lab: Lab, topic: str, count: int, partitions: int) -> None:
    """``count`` records with values "0", "1", ... round-robin over the partitions."""
    producer = lab.producer({"acks": "all", "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, value=str(i), partition=i % partitions)
        if i % 1000 == 999:
            producer.poll(0)
    left = producer.flush(30)
    if left:
        raise LabError(f"{left} records to {topic!r} were not acknowledged within 30 s.")


def group_members(lab: Lab, group: str) -> list[dict[str, Any]]:
    """The group as its coordinator sees it: each member's client.id and partitions."""
    with lab.admin() as admin:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    return sorted(
        (
            {
                "client.id": m.client_id,
                "partitions": sorted(tp.partition for tp in m.assignment.topic_partitions),
            }
            for m in description.members
        ),
        key=lambda m: m["client.id"],
    )


# -- lag: a group's committed offsets against the partitions' high watermarks -------------------
# committed_offsets(lab, group, topic, partitions) is group_offsets.committed_on, re-exported.


def end_offsets(lab: Lab, topic: str, partitions: int, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark: the offset the next record will get.

    Asked by a consumer made for the purpose, from each partition's leader
    (QueryWatermarkOffsets)."""
    with Consumer(lab.client_config({"group.id": "lab-end-offsets", "log_level": 0})) as reader:
        return {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            for p in range(partitions)
        }


def lag(lab: Lab, group: str, topic: str, partitions: int) -> list[dict[str, Any]]:
    """Per partition: the committed offset, the high watermark, and the lag between them (what
    monitoring calls consumer lag: records the group has not committed yet)."""
    committed = committed_offsets(lab, group, topic, partitions)
    ends = end_offsets(lab, topic, partitions)
    return [
        {
            "partition": p,
            "committed": committed[p],
            "end": ends[p],
            "lag": ends[p] - (committed[p] or 0),
        }
        for p in range(partitions)
    ]


# -- a consumer process to crash ----------------------------------------------------------------


def crash_worker(
    topic: str, group: str, out: str, commit_every: int, hold_after: int, session_ms: int
) -> int:
    """Process records (append "partition offset" to ``out``), commit synchronously every
    ``commit_every`` records; after ``hold_after`` records, stop with the rest uncommitted
    and wait (at most 120 s) to be killed."""
    lab = Lab()
    consumer = lab.consumer(group, {"enable.auto.commit": False, "session.timeout.ms": session_ms})
    consumer.subscribe([topic])
    processed = 0
    deadline = time.monotonic() + 120
    with open(out, "a", buffering=1) as log:  # line-buffered: each line is written at once
        while processed < hold_after and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            log.write(f"{msg.partition()} {msg.offset()}\n")  # the record's effect
            processed += 1
            if processed % commit_every == 0:
                consumer.commit(asynchronous=False)
        print(f"processed {processed}, holding", flush=True)
        while time.monotonic() < deadline:
            time.sleep(0.2)
    return 1  # only reached if nobody killed it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_env.consuming")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("crash-worker", help="a consumer that waits to be killed")
    worker.add_argument("--topic", required=True)
    worker.add_argument("--group", required=True)
    worker.add_argument("--out", required=True)
    worker.add_argument("--commit-every", type=int, default=100)
    worker.add_argument("--hold-after", type=int, required=True)
    worker.add_argument("--session-timeout-ms", type=int, default=6000)
    args = parser.parse_args(argv)
    return crash_worker(
        args.topic,
        args.group,
        args.out,
        args.commit_every,
        args.hold_after,
        args.session_timeout_ms,
    )


if __name__ == "__main__":
    sys.exit(main())
