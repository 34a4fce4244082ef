"""Lab 03: an at-least-once consumer group, checked by running the learner's worker on the cluster.

The learner writes a consumer configuration and ``work(consumer, topic, process, stop)``: a loop
that subscribes ``consumer`` to ``topic``, hands every record to ``process(msg)`` and commits,
until ``stop`` is set. The checks create the consumers themselves (the learner's configuration,
plus a group id, the classic protocol and short timeouts), run ``work`` in threads against a fresh
topic, disturb it, and then read the group's committed offsets back from the cluster:

- ``check_commits_follow_processing``: the worker dies in the middle of a record (``process``
  raises ``SimulatedCrash``, which the learner must not catch); no committed offset may lie
  beyond a record that was not processed; a restarted worker must then finish the topic.
- ``check_rebalances``: a second worker joins mid-run (a rebalance: revoked partitions must be
  committed, not processed twice), then the first stops polling for longer than
  ``max.poll.interval.ms`` (its partitions are lost: it must survive and rejoin); at the end
  every record is processed and the group has committed the end offsets.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.consuming import committed_offsets, end_offsets, produce_numbered
from lab_env.steps import Steps
from lab_env.waiting import eventually

# What the checks add to the learner's configuration: the classic protocol (KIP-848 groups do
# not let a client set these timeouts), a session that expires in 6 s (the broker's
# group.min.session.timeout.ms), heartbeats that notice a rebalance within half a second, and
# the smallest max.poll.interval.ms librdkafka accepts with that session.
CHECK_SETTINGS: dict[str, Any] = {
    "group.protocol": "classic",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "max.poll.interval.ms": 6000,
}
STALL_S = 8.0  # longer than max.poll.interval.ms, plus librdkafka's twice-a-second check
PROCESS_S = 0.003  # each record's "processing" in the rebalance check, so workers overlap
WORKER_WAIT_S = 30.0  # the most any phase of a check waits for the workers
STOP_WAIT_S = 15.0  # how long a worker has to return after stop is set


class SimulatedCrash(BaseException):
    """Raised by the check's ``process()``: the worker dies in the middle of a record, as a
    process killed at that moment would. A BaseException, like KeyboardInterrupt: do not catch it.
    """


# -- pure helpers: what the audit shows --------------------------------------------------------


def first_unprocessed(processed: set[int], end: int) -> int:
    """The lowest offset below ``end`` that was not processed (``end`` when all were)."""
    return next((o for o in range(end) if o not in processed), end)


def commits_ahead(
    committed: dict[int, int | None], processed: dict[int, set[int]]
) -> list[tuple[int, int, int]]:
    """Partitions whose committed offset lies beyond a record nobody processed, as
    (partition, committed offset, first unprocessed offset): a consumer restarting from such a
    commit skips that record for good."""
    ahead = []
    for partition, offset in sorted(committed.items()):
        if offset is None:
            continue
        gap = first_unprocessed(processed.get(partition, set()), offset)
        if gap < offset:
            ahead.append((partition, offset, gap))
    return ahead


def unprocessed(processed: dict[int, set[int]], ends: dict[int, int]) -> dict[int, list[int]]:
    """Per partition, the offsets below its end offset that were never processed."""
    missing = {}
    for partition, end in sorted(ends.items()):
        left = [o for o in range(end) if o not in processed.get(partition, set())]
        if left:
            missing[partition] = left
    return missing


def repeated(log: Iterable[tuple[str, int, int, float]], before: float) -> list[tuple[int, int]]:
    """(partition, offset) of records processed more than once, counting only processing that
    happened before ``before`` (seconds on the audit's clock)."""
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for _member, partition, offset, t in log:
        if t < before:
            seen[(partition, offset)] += 1
    return sorted(key for key, count in seen.items() if count > 1)


def offsets_text(offsets: list[int], shown: int = 5) -> str:
    """ "3, 4, 5" or "3, 4, 5, 6, 7 and 12 more"."""
    head = ", ".join(str(o) for o in offsets[:shown])
    more = len(offsets) - shown
    return f"{head} and {more} more" if more > 0 else head


# -- the audit: what the learner's code did, as the check saw it --------------------------------


class Audit:
    """Every processed record, every rebalance callback and every commit or store call, with
    the time it happened (seconds since the audit began); shared by all workers of a check."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.log: list[tuple[str, int, int, float]] = []  # member, partition, offset, t
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def processed(self, member: str, msg: Message) -> None:
        with self.lock:
            self.log.append((member, msg.partition(), msg.offset(), self.now()))

    def event(self, kind: str, member: str, partitions: Iterable[int]) -> None:
        with self.lock:
            self.events.append(
                {"t": self.now(), "kind": kind, "member": member, "partitions": sorted(partitions)}
            )

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def by_partition(self) -> dict[int, set[int]]:
        with self.lock:
            out: dict[int, set[int]] = defaultdict(set)
            for _member, partition, offset, _t in self.log:
                out[partition].add(offset)
            return dict(out)


def _partitions_named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> set[int]:
    """The partitions a commit()/store_offsets() call names explicitly (none: the stored ones)."""
    message = kwargs.get("message", args[0] if args else None)
    offsets = kwargs.get("offsets", args[1] if len(args) > 1 else None)
    named = set()
    if message is not None:
        named.add(message.partition())
    for tp in offsets or []:
        named.add(tp.partition)
    return named


class AuditedConsumer(Consumer):
    """The learner's consumer: a real ``Consumer`` that also tells the audit about rebalance
    callbacks and about commits and stores naming partitions it does not own."""

    def __init__(self, config: dict[str, Any], member: str, audit: Audit) -> None:
        super().__init__(config)
        self.member, self.audit = member, audit
        self.closed = False

    def subscribe(  # type: ignore[override]
        self,
        topics: list[str],
        on_assign: Callable[..., Any] | None = None,
        on_revoke: Callable[..., Any] | None = None,
        on_lost: Callable[..., Any] | None = None,
    ) -> None:
        def wrap(kind: str, callback: Callable[..., Any] | None) -> Callable[..., Any]:
            def wrapped(consumer: Consumer, partitions: list[TopicPartition]) -> None:
                self.audit.event(kind, self.member, (tp.partition for tp in partitions))
                if callback is not None:
                    callback(consumer, partitions)

            return wrapped

        # Without on_lost, confluent-kafka hands lost partitions to on_revoke: keep that.
        super().subscribe(
            topics,
            on_assign=wrap("assign", on_assign),
            on_revoke=wrap("revoke", on_revoke),
            on_lost=wrap("lost", on_lost if on_lost is not None else on_revoke),
        )

    def _check_owned(self, call: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        named = _partitions_named(args, kwargs)
        owned = {tp.partition for tp in self.assignment()}
        stray = sorted(named - owned)
        if stray:
            self.audit.problem(
                f"{self.member} called {call}() for partitions {stray} after they were revoked "
                "(it owns "
                f"{sorted(owned)}): the group had given them to another member, and a commit "
                "for them overwrites that member's progress. Drop a partition's pending offsets "
                "in on_revoke and on_lost, and commit only partitions you still own."
            )

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._check_owned("commit", args, kwargs)
        return super().commit(*args, **kwargs)

    def store_offsets(self, *args: Any, **kwargs: Any) -> Any:
        self._check_owned("store_offsets", args, kwargs)
        return super().store_offsets(*args, **kwargs)

    def close(self) -> None:
        self.closed = True
        super().close()


class Worker:
    """The learner's ``work`` in a thread, with the check's ``process`` (which may crash or
    stall on the record the check chooses)."""

    def __init__(
        self,
        run: Run,
        name: str,
        process_s: float = 0.0,
        crash: Callable[[Worker], bool] | None = None,
        stall: Callable[[Worker], bool] | None = None,
        on_stall_end: Callable[[], None] | None = None,
    ) -> None:
        self.audit, self.name, self.topic, self.work = run.audit, name, run.topic, run.work
        self.process_s, self.crash, self.stall = process_s, crash, stall
        self.on_stall_end = on_stall_end
        settings = {
            "auto.offset.reset": "earliest",
            **run.config,
            **CHECK_SETTINGS,
            "group.id": run.group,
            "client.id": name,
        }
        self.consumer = AuditedConsumer(run.lab.client_config(settings), name, run.audit)
        self.stop = threading.Event()
        self.count = 0  # records this worker processed
        self.crashed = False
        self.stalled: tuple[float, float] | None = None  # (start, end) on the audit's clock
        self.error: BaseException | None = None
        self.trace = ""
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def process(self, msg: Message) -> None:
        """What the learner calls for each record."""
        if self.crashed:
            self.audit.problem(
                f"{self.name} went on calling process() after it raised SimulatedCrash: "
                "your code caught it (a bare except, or except BaseException). A crash must "
                "end the worker; catch only the exceptions you handle (KafkaException)."
            )
            raise SimulatedCrash(f"{self.name} crashed already")
        if not isinstance(msg, Message) or msg.error() is not None:
            what = msg.error().str() if isinstance(msg, Message) else type(msg).__name__
            text = (
                f"process() got {what!r}, not a record: consume()/poll() also return error "
                "events (msg.error() is set) and poll() returns None on timeout; pass only "
                "records whose msg.error() is None."
            )
            self.audit.problem(text)
            raise LabCheckError(text)
        if self.crash is not None and self.crash(self):
            self.crashed = True
            raise SimulatedCrash(f"{self.name} died while processing offset {msg.offset()}")
        if self.stall is not None and self.stalled is None and self.stall(self):
            start = self.audit.now()
            self.stop.wait(STALL_S)  # no poll() for longer than max.poll.interval.ms
            self.stalled = (start, self.audit.now())
            if self.on_stall_end is not None:
                self.on_stall_end()
        if self.process_s:
            time.sleep(self.process_s)
        self.audit.processed(self.name, msg)
        self.count += 1

    def _run(self) -> None:
        try:
            self.work(self.consumer, self.topic, self.process, self.stop)
        except SimulatedCrash:
            if not self.crashed:  # raised again after a crash the learner swallowed
                self.crashed = True
        except BaseException as exc:
            self.error = exc
            self.trace = "".join(traceback.format_exception_only(type(exc), exc)).strip()

    def start(self) -> Worker:
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def finish(self) -> bool:
        """Set ``stop`` and wait for ``work`` to return; close the consumer if it did not (a
        consumer still in use by a running thread is left alone). True if it returned."""
        self.stop.set()
        self.thread.join(STOP_WAIT_S)
        if self.thread.is_alive():
            return False
        self.close()
        return True

    def close(self) -> None:
        """Close the consumer (if the learner's code has not), as a process's end would."""
        if not self.consumer.closed:
            with contextlib.suppress(BaseException):
                self.consumer.close()


def _error_text(worker: Worker) -> str:
    exc = worker.error
    hint = ""
    if isinstance(exc, KafkaException):
        name = exc.args[0].name()
        if name == "_NO_OFFSET":
            hint = (
                " commit() without offsets raises _NO_OFFSET when nothing new was processed: "
                "commit only when you have processed something, or catch KafkaException."
            )
        elif name in ("_ASSIGNMENT_LOST", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "_STATE"):
            hint = (
                " A commit fails once the group has taken the partitions away (here: no poll "
                "for longer than max.poll.interval.ms). Catch KafkaException around commits, "
                "and in on_lost drop the lost partitions' pending offsets without committing."
            )
    elif isinstance(exc, LabCheckError):
        return str(exc)
    raised = worker.trace
    if isinstance(exc, KafkaException):
        raised = f"KafkaException {exc.args[0].name()} ({exc.args[0].str()})"
    return f"{worker.name}'s work() raised {raised}.{hint}"


def _validate(config: object, work: object) -> dict[str, Any]:
    require(
        isinstance(config, dict),
        f"the configuration must be a dict of librdkafka settings, not {type(config).__name__}.",
    )
    require(callable(work), "work must be a function: def work(consumer, topic, process, stop).")
    return dict(config)  # type: ignore[arg-type]


class Run:
    """One check's run: a fresh topic and group, the audit, the workers, and a thread that
    samples the group's committed offsets (admin API) and keeps the first one that lies beyond
    an unprocessed record. The sampling is sound: processing is read after the commit, and
    processing only grows, so a gap seen then existed when the commit was read."""

    def __init__(self, lab: Lab, name: str, partitions: int, config: object, work: object) -> None:
        self.config = _validate(config, work)
        self.lab, self.work, self.partitions = lab, work, partitions
        suffix = uuid.uuid4().hex[:8]
        self.topic = lab.topic(f"lab03.{name}.{suffix}")
        self.group = lab.group(f"lab03-{name}-{suffix}")
        self.audit = Audit()
        self.workers: list[Worker] = []
        self.ahead: list[tuple[int, int, int]] = []  # the first commit seen ahead, if any
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_commits, name="commits", daemon=True)

    def __enter__(self) -> Run:
        self.lab.create_topic(self.topic, self.partitions)
        self._watch.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        try:
            self.finish()
        except LabCheckError:
            if exc_type is None:  # report a stuck worker, unless something else failed first
                raise
        finally:
            self._watch.join(10)
            self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.lab.delete_topic(self.topic)
        with contextlib.suppress(Exception):  # a member left behind: the group then expires
            self.lab.delete_groups(self.group, timeout=10)

    def produce(self, count: int) -> None:
        produce_numbered(self.lab, self.topic, count, self.partitions)

    def worker(self, name: str, **options: Any) -> Worker:
        worker = Worker(self, name, **options)
        self.workers.append(worker)
        return worker.start()

    def sample_commits(self) -> list[tuple[int, int, int]]:
        committed = committed_offsets(self.lab, self.group, self.topic, self.partitions)
        ahead = commits_ahead(committed, self.audit.by_partition())
        if ahead and not self.ahead:
            self.ahead = ahead
        return ahead

    def _watch_commits(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(KafkaException):
                self.sample_commits()

    def ends(self) -> dict[int, int]:
        return end_offsets(self.lab, self.topic, self.partitions)

    def all_processed(self, ends: dict[int, int]) -> bool:
        return not unprocessed(self.audit.by_partition(), ends)

    def finish(self) -> None:
        """Set every worker's stop; require that each work() returns in time."""
        for worker in self.workers:
            worker.stop.set()
        stuck = [w for w in self.workers if not w.finish()]
        require(
            not stuck,
            f"{', '.join(w.name for w in stuck)} did not return within {STOP_WAIT_S:.0f} s "
            "after stop was set: loop with `while not stop.is_set():` and poll with a short "
            "timeout.",
        )

    def require_healthy(self) -> None:
        """No worker raised (other than the check's crash), no audited misuse."""
        for worker in self.workers:
            if worker.error is not None:
                raise LabCheckError(_error_text(worker))
        if self.audit.problems:
            raise LabCheckError(self.audit.problems[0])

    def require_not_ahead(self, ahead: list[tuple[int, int, int]], when: str) -> None:
        if not ahead:
            return
        partition, offset, gap = ahead[0]
        skipped = f"offset {gap}" if gap == offset - 1 else f"offsets {gap} to {offset - 1}"
        raise LabCheckError(
            f"{when}, the group's committed offset for partition {partition} was {offset}, but "
            f"the record at offset {gap} had not been processed: a consumer restarting from "
            f"that commit skips {skipped}, and they are lost. Commit (or store) an offset "
            "only after process() returned for its record: enable.auto.commit=false and commit "
            "after processing (never before, never in a finally block after a crash), or "
            "enable.auto.offset.store=false and store_offsets(msg) after process(msg)."
        )

    def require_complete(self) -> None:
        """Every record processed, and the group's committed offsets at the end offsets."""
        ends = self.ends()
        missing = unprocessed(self.audit.by_partition(), ends)
        if missing:
            partition, offsets = next(iter(missing.items()))
            total = sum(len(v) for v in missing.values())
            raise LabCheckError(
                f"{total} records were never processed, e.g. partition {partition} offsets "
                f"{offsets_text(offsets)}: subscribe to the topic and call process(msg) for "
                "every record until stop is set (auto.offset.reset stays earliest)."
            )
        committed = committed_offsets(self.lab, self.group, self.topic, self.partitions)
        behind = {p: (committed[p], ends[p]) for p in ends if committed[p] != ends[p]}
        require(
            not behind,
            "every record was processed, but at the end the group's committed offsets are "
            + ", ".join(f"partition {p}: {c} (end {e})" for p, (c, e) in sorted(behind.items()))
            + ": records processed but not committed are processed again by the next "
            "consumer. Commit what you processed before work() returns (and before close()).",
        )


def check_commits_follow_processing(
    lab: Lab, config: dict[str, Any], work: Callable[..., Any], records: int = 300
) -> None:
    """A worker dies in the middle of a record; the group's commits must not be ahead of what
    was processed, and a restarted worker must process the rest and commit to the end."""
    crash_at = records // 2 + 7  # mid-batch for any batch size that divides `records`
    step = Steps()
    with Run(lab, "crash", 3, config, work) as run:
        step(f"producing {records} records; worker-1 runs work() and dies at record {crash_at + 1}")
        run.produce(records)
        first = run.worker("worker-1", crash=lambda w: w.count == crash_at)
        eventually(lambda: not first.running, WORKER_WAIT_S, 0.05)
        run.require_healthy()
        require(
            not first.running or first.crashed,
            f"worker-1 processed {first.count} of {records} records in "
            f"{WORKER_WAIT_S:.0f} s; the check crashes it at record {crash_at + 1}: "
            "subscribe to the topic and call process(msg) for each record.",
        )
        require(
            first.crashed,
            f"work() returned after {first.count} records although stop was not set: "
            "keep consuming until stop.is_set().",
        )
        first.close()  # the dead worker's consumer goes, as its process would
        run.require_not_ahead(
            run.sample_commits() or run.ahead,
            f"After worker-1 died while processing its record {crash_at + 1}",
        )
        run.require_healthy()

        step("worker-1 died; worker-2 processes the rest")
        second = run.worker("worker-2")
        ends = run.ends()
        eventually(lambda: not second.running or run.all_processed(ends), WORKER_WAIT_S, 0.05)
        run.finish()
        run.require_healthy()
        run.require_not_ahead(run.ahead, "While worker-2 ran")
        run.require_complete()
        twice = len(run.audit.log) - len({(p, o) for _m, p, o, _t in run.audit.log})
    passed(
        f"{records} records: nothing committed ahead of processing when worker-1 died; "
        f"worker-2 finished the topic and committed the end offsets; {twice} records "
        "were processed twice (at-least-once: done, not yet committed at the crash)"
    )


def check_rebalances(
    lab: Lab, config: dict[str, Any], work: Callable[..., Any], records: int = 600
) -> None:
    """Two workers share a topic: the second joins mid-run, then the first stalls beyond
    max.poll.interval.ms and loses its partitions. Nothing may be committed ahead of
    processing, nothing processed twice across the clean rebalance, no partition committed by a
    member that no longer owns it; the stalled worker must rejoin; at the end every record is
    processed and the group's committed offsets are the end offsets.

    About half the records are produced at the start (an odd number, so that no commit interval
    ends exactly on the last one), the rest once the two workers have processed those, so that
    the first worker surely has records to stall on after the rebalance."""
    first_half = records // 2 + 7
    second_half = threading.Event()
    stall_ahead: list[tuple[int, int, int]] = []
    step = Steps()
    with Run(lab, "rebalance", 6, config, work) as run:
        step(f"producing {first_half} records; worker-1 runs work()")
        run.produce(first_half)
        first = run.worker(
            "worker-1",
            process_s=PROCESS_S,
            stall=lambda w: second_half.is_set(),
            on_stall_end=lambda: stall_ahead.extend(run.sample_commits()),
        )
        started = eventually(
            lambda: first.count >= records // 8 or not first.running, WORKER_WAIT_S, 0.05
        )
        run.require_healthy()
        require(
            started and first.running,
            f"worker-1 processed {first.count} records in {WORKER_WAIT_S:.0f} s"
            + ("" if first.running else " and returned although stop was not set")
            + ": subscribe to the topic and call process(msg) for each record until "
            "stop.is_set().",
        )

        step("worker-2 joins the group: a rebalance")
        second = run.worker("worker-2", process_s=PROCESS_S)

        def assigned(member: str, after: float = 0.0) -> bool:
            return any(
                e["member"] == member and e["kind"] == "assign" and e["partitions"]
                for e in list(run.audit.events)
                if e["t"] > after
            )

        def both() -> bool:
            return first.running and second.running

        joined = eventually(lambda: assigned("worker-2") or not both(), WORKER_WAIT_S, 0.05)
        run.require_healthy()
        require(
            joined and second.running,
            f"worker-2 got no partitions within {WORKER_WAIT_S:.0f} s of joining the group: "
            "subscribe with consumer.subscribe([topic], ...) and keep polling.",
        )
        first_ends = run.ends()
        eventually(lambda: run.all_processed(first_ends) or not both(), WORKER_WAIT_S, 0.05)
        run.require_healthy()
        step(
            f"producing {records - first_half} more records; worker-1 stalls for "
            f"{STALL_S:.0f} s, longer than max.poll.interval.ms"
        )
        run.produce(records - first_half)
        second_half.set()
        eventually(lambda: first.stalled is not None or not first.running, STALL_S + 20, 0.05)
        run.require_healthy()
        require(
            first.stalled is not None,
            "worker-1 never called process() again after worker-2 joined: after a "
            "rebalance, keep polling and processing the partitions you are given.",
        )
        stall_start, stall_end = first.stalled
        step("worker-1's stall is over; waiting for it to rejoin and the records to be processed")
        ends = run.ends()
        eventually(
            lambda: (assigned("worker-1", stall_end) and run.all_processed(ends)) or not both(),
            WORKER_WAIT_S,
            0.05,
        )
        back = assigned("worker-1", stall_end)
        run.finish()
        run.require_healthy()
        run.require_not_ahead(
            stall_ahead,
            f"When worker-1 had not polled for {STALL_S:.0f} s (longer than "
            "max.poll.interval.ms: the group had taken its partitions)",
        )
        run.require_not_ahead(run.ahead, "While the workers ran")
        twice = repeated(run.audit.log, stall_start)
        if twice:
            partition, offset = twice[0]
            who = [m for m, p, o, _t in run.audit.log if (p, o) == (partition, offset)]
            raise LabCheckError(
                f"{len(twice)} record{'s were' if len(twice) > 1 else ' was'} processed twice "
                f"although no worker had failed, e.g. partition {partition} offset {offset}, "
                f"processed by {' then '.join(who)}: when worker-2 joined, the rebalance revoked "
                "partitions whose processed records were not committed yet, and their next "
                "owner (after an eager rebalance, even the same worker) started again from the "
                "last commit. In on_revoke, commit the processed offsets of the revoked "
                "partitions synchronously (asynchronous=False)."
            )
        require(
            back,
            "worker-1 never got partitions again after its stall: when poll() was not called "
            "for longer than max.poll.interval.ms the group took its partitions (on_lost), "
            "and librdkafka rejoins on the next poll. Keep polling after a failed commit or a "
            "lost assignment; do not return or unsubscribe.",
        )
        run.require_complete()
        lost = sum(1 for e in run.audit.events if e["kind"] == "lost")
    passed(
        f"{records} records over 6 partitions: a member joined (no record processed twice), a "
        f"member stalled and lost its partitions ({lost} on_lost call) and rejoined; nothing "
        "committed ahead of processing; the group committed the end offsets"
    )
