"""Lab 04: a transactional consume-transform-produce worker, checked by running it.

The learner writes ``run_worker(lab, input_topic, output_topic, group_id, transactional_id, stop,
fail_hook)``. Each check creates fresh topics, writes the input itself (committed transactions and
one aborted transaction, whose records no output may come from), runs the learner's function in
threads, injects the failures, then reads the output back with ``read_committed``: exactly one
output record per committed input record, ``transform(value)`` under the same key, and the group's
committed offsets past the end of the input.

- ``check_abort_path``: ``fail_hook`` raises inside some transactions, after their records were
  produced. The worker must abort them and rewind its consumer to the committed offsets.
- ``check_crash_recovery``: ``fail_hook`` freezes a worker in the middle of a transaction (a
  process that hangs, or has died); a second worker with the same ``transactional.id`` takes
  over, and the frozen one, woken up at the end, must not get anything committed.

The ``lab`` the worker receives is the real lab with every client it creates recorded, so a
check can say which setting or call is missing, and so the crash check can make the replacement a
static member of the group (``group.instance.id``): it takes the partitions of the frozen member at
once instead of waiting for that member to leave.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.records import read_all
from lab_env.steps import Steps
from lab_env.transactional_worker import (
    SESSION_TIMEOUT_MS,
    caught_up,
    committed_offsets,
    transform,
    wait_until_caught_up,
)
from lab_env.waiting import eventually

PARTITIONS = 3
RECORDS = 60
POISON = 5  # records of the input's aborted transaction
MARKER_KEY = "lab-check-marker"  # what fail_hook writes into a transaction it makes fail
WAIT_S = 20.0  # for the worker to process the input
FIRST_WAVE_S = 10.0  # for the first wave: the second is written after this anyway
STOP_S = 15.0  # for run_worker to return once stop is set
FREEZE_MAX_S = 90.0  # a frozen worker is released after this long, whatever happens

Worker = Callable[..., Any]
# librdkafka logs the fencing and the failures the checks cause (to stderr by default, which a
# notebook shows in the check's cell); the checks report what matters themselves.
LOG = logging.getLogger("lab_env.lab_checks.exactly_once.librdkafka")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False


class InjectedFailure(Exception):
    """Raised by ``fail_hook``: something went wrong inside the transaction."""


# -- the input and the verdict on the output (pure) ------------------------------------------------


def input_records(count: int, prefix: str = "order") -> list[tuple[str, str]]:
    """(key, value) pairs: ``count`` orders of seven customers, each value unique."""
    return [(f"customer-{i % 7}", f"{prefix} {i}") for i in range(count)]


def poison_records(count: int = POISON) -> list[tuple[str, str]]:
    """The records of the input's aborted transaction: no output may come from them."""
    return input_records(count, prefix="aborted order")


@dataclass
class Verdict:
    """The output compared with the input, record by record."""

    expected: int
    committed: int
    duplicates: dict[tuple[str, str], int] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[tuple[str, str]] = field(default_factory=list)
    markers: int = 0
    from_aborted: int = 0

    @property
    def exact(self) -> bool:
        return not (
            self.duplicates or self.missing or self.foreign or self.markers or self.from_aborted
        )


def _out(key: str | None, value: str | None) -> tuple[str, str]:
    return (key or "", value or "")


def verdict(
    inputs: list[tuple[str, str]],
    aborted: list[tuple[str, str]],
    output: list[tuple[str | None, str | None]],
) -> Verdict:
    """Compare the output (key, value) pairs with what ``inputs`` must produce: one
    ``(key, transform(value))`` each. Markers of failed transactions, outputs of the aborted input
    records, duplicates, missing and unexpected records are counted separately."""
    want = Counter(_out(k, transform(v.encode()).decode()) for k, v in inputs)
    poison = {_out(k, transform(v.encode()).decode()) for k, v in aborted}
    got = Counter(_out(k, v) for k, v in output)
    report = Verdict(expected=sum(want.values()), committed=len(output))
    report.markers = sum(n for (k, _), n in got.items() if k == MARKER_KEY)
    report.from_aborted = sum(n for pair, n in got.items() if pair in poison)
    for pair, n in got.items():
        if pair[0] == MARKER_KEY or pair in poison:
            continue
        if pair not in want:
            report.foreign.append(pair)
        elif n > want[pair]:
            report.duplicates[pair] = n - want[pair]
    report.missing = [pair for pair, n in want.items() if got.get(pair, 0) < n]
    return report


def _sample(pairs: list[tuple[str, str]] | dict[tuple[str, str], int]) -> str:
    items = sorted(pairs)[:3]
    return ", ".join(f"{v!r} (key {k!r})" for k, v in items)


def explain(report: Verdict, failures: str) -> None:
    """Raise a LabCheckError naming the first thing wrong with the output, with the likely fix.
    ``failures`` says what the check did to the worker, for the messages."""
    require(
        report.markers == 0,
        f"{report.markers} record(s) written inside a transaction that failed ({failures}) are "
        "visible to read_committed consumers: the transaction was committed anyway. On a "
        "failure inside a transaction call producer.abort_transaction(), never "
        "commit_transaction().",
    )
    require(
        report.from_aborted == 0,
        f"{report.from_aborted} output record(s) were made from input records of an aborted "
        "transaction: the consumer read them with isolation.level=read_uncommitted (the Java "
        "consumer's default). Use isolation.level=read_committed (librdkafka's default).",
    )
    require(
        not report.foreign,
        f"{len(report.foreign)} output record(s) are not transform(value) of any input record, "
        f"e.g. {_sample(report.foreign)}: produce transform(msg.value()) with key=msg.key().",
    )
    require(
        not report.duplicates,
        f"{sum(report.duplicates.values())} duplicate output record(s), e.g. "
        f"{_sample(report.duplicates)} ({failures}): a batch was committed twice. The consumed "
        "offsets must commit in the same transaction as the output "
        "(producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), "
        "consumer.consumer_group_metadata())), not with consumer.commit().",
    )
    require(
        not report.missing,
        f"{len(report.missing)} of {report.expected} input records have no output, e.g. "
        f"{_sample(report.missing)} ({failures}). After abort_transaction() the consumer's "
        "position is still past the aborted batch: seek every assigned partition back to its "
        "committed offset (consumer.committed(consumer.assignment())), or those records are "
        "skipped.",
    )


# -- the lab the worker gets: real clients, recorded -----------------------------------------------


# Called before each transactional call a checked producer makes, with the call's name and the
# producer (its count of that call already raised): a check's way to inject a failure or a freeze.
Faults = Callable[[str, "_Producer"], None]


class _Producer(Producer):
    """A real producer that counts the transactional calls made on it, and lets a check act
    before each (``faults``)."""

    def __init__(self, config: dict[str, Any], faults: Faults | None = None) -> None:
        super().__init__(config)
        self.config = config
        self.faults = faults
        self.thread = threading.get_ident()
        self.calls: Counter[str] = Counter()

    @property
    def transactional(self) -> bool:
        return bool(self.config.get("transactional.id"))

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.faults is not None:
            self.faults(name, self)

    def init_transactions(self, *args: Any) -> None:
        self._call("init_transactions")
        super().init_transactions(*args)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self._call("send_offsets_to_transaction")
        super().send_offsets_to_transaction(*args)

    def commit_transaction(self, *args: Any) -> None:
        self._call("commit_transaction")
        super().commit_transaction(*args)

    def abort_transaction(self, *args: Any) -> None:
        self._call("abort_transaction")
        super().abort_transaction(*args)


class _Consumer(Consumer):
    """A real consumer that counts its offset commits (which a transactional worker never makes)."""

    def __init__(self, config: dict[str, Any], learner: dict[str, Any]) -> None:
        super().__init__(config)
        self.config = config
        self.learner = learner  # the settings the learner passed, before the lab's defaults
        self.commits = 0

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self.commits += 1
        return super().commit(*args, **kwargs)


class WorkerLab:
    """The ``lab`` a checked worker receives: the real one, with every client recorded.

    ``static_id``, when given, makes every consumer a static group member with that
    ``group.instance.id`` (unless the learner set one): a replacement worker then takes over the
    partitions of a frozen one at once, as a restarted instance with a stable identity would.
    """

    def __init__(
        self, lab: Lab, static_id: str | None = None, faults: Faults | None = None
    ) -> None:
        self._lab = lab
        self._static_id = static_id
        self._faults = faults
        self._lock = threading.Lock()
        self.producers: list[_Producer] = []
        self.consumers: list[_Consumer] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lab, name)

    def producer(self, config: dict[str, Any] | None = None) -> Producer:
        settings = self._lab.client_config({"logger": LOG, **(config or {})})
        producer = _Producer(settings, self._faults)
        with self._lock:
            self.producers.append(producer)
        return producer

    def consumer(self, group_id: str, config: dict[str, Any] | None = None) -> Consumer:
        learner = dict(config or {})
        settings = {"group.id": group_id, "auto.offset.reset": "earliest", **learner}
        if self._static_id:
            if str(settings.get("group.protocol", "classic")) == "consumer":
                raise LabCheckError(
                    "this check replaces a frozen worker with a new one that has the same "
                    "group.instance.id; with group.protocol=consumer (KIP-848) the broker refuses "
                    "the newcomer until the frozen member's session expires. Leave group.protocol "
                    "at its default (classic) for this lab."
                )
            settings.setdefault("group.instance.id", self._static_id)
            settings.setdefault("session.timeout.ms", SESSION_TIMEOUT_MS)
        consumer = _Consumer(self._lab.client_config({"logger": LOG, **settings}), learner)
        with self._lock:
            self.consumers.append(consumer)
        return consumer

    def transactional_producer(self, thread: int) -> _Producer | None:
        """The last transactional producer the given thread created."""
        with self._lock:
            mine = [p for p in self.producers if p.thread == thread and p.transactional]
        return mine[-1] if mine else None

    def calls(self, name: str) -> int:
        return sum(p.calls[name] for p in self.producers)


class FailHook:
    """What the check passes as ``fail_hook``: counts its calls; on the calls in ``fail_on`` it
    writes a marker record into the caller's open transaction and raises InjectedFailure; on call
    ``freeze_on`` it blocks until released (a worker that hangs mid-transaction)."""

    def __init__(
        self,
        clients: WorkerLab,
        output: str,
        fail_on: tuple[int, ...] = (),
        freeze_on: int | None = None,
    ) -> None:
        self.clients, self.output = clients, output
        self.fail_on, self.freeze_on = fail_on, freeze_on
        self.calls = 0
        self.failures = 0
        self.markers = 0
        self.outside_transaction = 0
        self.frozen = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            self.failures += 1
            self._mark()
            raise InjectedFailure(f"failure injected in transaction {self.calls} by the check")
        if self.calls == self.freeze_on:
            self.frozen.set()
            self.release.wait(FREEZE_MAX_S)

    def _mark(self) -> None:
        producer = self.clients.transactional_producer(threading.get_ident())
        if producer is None:
            return
        try:
            producer.produce(self.output, key=MARKER_KEY, value=b"written before a failure")
            producer.flush(10)
            self.markers += 1
        except (KafkaException, BufferError):
            self.outside_transaction += 1  # produce() refuses when no transaction is open


class LearnerThread:
    """A learner's function in a daemon thread, called with ``args`` and then its own ``stop``
    event (and ``after``, if any); its exception kept."""

    def __init__(self, function: Worker, *args: Any, after: tuple[Any, ...] = ()) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        call = (*args, self.stop, *after)
        self.thread = threading.Thread(target=self._run, args=(function, call), daemon=True)
        self.thread.start()

    def _run(self, run_worker: Worker, args: tuple[Any, ...]) -> None:
        try:
            run_worker(*args)
        except BaseException as exc:  # anything the worker lets escape is reported
            self.error = exc

    def alive(self) -> bool:
        return self.thread.is_alive()

    def finish(self, timeout: float = STOP_S) -> bool:
        """Set ``stop`` and wait for ``run_worker`` to return; False if it did not in time."""
        self.stop.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


class WorkerThread(LearnerThread):
    """The learner's ``run_worker`` in a daemon thread."""

    def __init__(
        self, run_worker: Worker, clients: WorkerLab, scenario: Scenario, hook: FailHook
    ) -> None:
        where = (scenario.input, scenario.output, scenario.group, scenario.transactional_id)
        super().__init__(run_worker, clients, *where, after=(hook,))


# -- one run of the check --------------------------------------------------------------------------


class Scenario:
    """Fresh topics, group and transactional.id for one check run; the topics are deleted after."""

    def __init__(self, lab: Lab, name: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.lab = lab
        self.input = lab.topic(f"lab04.{name}.input.{suffix}")
        self.output = lab.topic(f"lab04.{name}.output.{suffix}")
        self.group = lab.group(f"lab04-{name}-{suffix}")
        self.transactional_id = lab.group(f"lab04-{name}-{suffix}")  # the learner's namespace
        self.static_id = f"lab04-{name}-worker-{suffix}"
        self.inputs: list[tuple[str, str]] = []
        self.aborted: list[tuple[str, str]] = []
        self.ends: dict[int, int] = {}
        self._writer: Producer | None = None

    def __enter__(self) -> Scenario:
        for topic in (self.input, self.output):
            self.lab.create_topic(topic, partitions=PARTITIONS)
        return self

    def __exit__(self, *exc: object) -> None:
        for topic in (self.input, self.output):
            with contextlib.suppress(Exception):
                self.lab.delete_topic(topic)
        with contextlib.suppress(Exception):  # refused while a member remains: it then expires
            self.lab.delete_groups(self.group, timeout=10)

    def write(self, records: list[tuple[str, str]], abort: bool = False) -> None:
        """Append ``records`` to the input in one transaction, committed or aborted."""
        if self._writer is None:
            self._writer = self.lab.producer({"transactional.id": f"{self.transactional_id}-in"})
            self._writer.init_transactions(30)
        ends = dict(self.ends)

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None and not abort:
                ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

        self._writer.begin_transaction()
        for key, value in records:
            self._writer.produce(self.input, key=key, value=value, on_delivery=delivered)
        self._writer.flush(30)  # the records reach the log, even those of an aborted transaction
        if abort:
            self._writer.abort_transaction(30)
            self.aborted += records
        else:
            self._writer.commit_transaction(30)
            self.inputs += records
            self.ends = ends

    def wait(
        self,
        worker: WorkerThread,
        timeout: float = WAIT_S,
        unless: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Wait until the group's committed offsets pass the input written so far; give up early
        when the worker has ended or ``unless()`` is true."""
        return wait_until_caught_up(
            self.lab,
            self.group,
            self.input,
            self.ends,
            timeout,
            lambda: worker.alive() and not unless(),
        )

    def caught_up(self) -> bool:
        return caught_up(committed_offsets(self.lab, self.group, self.input), self.ends)

    def output_pairs(self, isolation_level: str = "read_committed") -> list[tuple[Any, Any]]:
        """The output's (key, value) pairs. Commit markers reach the partitions a moment after
        commit_transaction() returns, so a short output is read again for a few seconds."""
        read: list[dict[str, Any]] = []

        def complete() -> bool:
            read[:] = read_all(self.lab, self.output, isolation_level=isolation_level)
            return len(read) >= len(self.inputs)

        eventually(complete, 5, interval=0.5)
        return [(r["key"], r["value"]) for r in read]


# -- what every check requires of the worker's clients ---------------------------------------------


def raise_check_errors(*workers: LearnerThread) -> None:
    """Re-raise the first LabCheckError a learner's thread met (a check hook refused a call)."""
    for worker in workers:
        if isinstance(worker.error, LabCheckError):
            raise worker.error


def require_transactional_id(clients: WorkerLab, function: str, expected: str, named: str) -> None:
    """``function`` made a transactional producer, and only with ``expected`` (``named`` says
    where the learner's code gets that id)."""
    transactional = [p for p in clients.producers if p.transactional]
    require(
        transactional,
        f"{function} created no transactional producer: create it with "
        f"lab.producer({{'transactional.id': {named}, ...}}) (the lab passed to {function}) and "
        "call producer.init_transactions() before the first transaction.",
    )
    ids = {str(p.config["transactional.id"]) for p in transactional}
    require(
        ids == {expected},
        f"the producer's transactional.id is {sorted(ids)}, not {expected!r} ({named}): a "
        "restarted instance must reuse the same id, so that init_transactions() fences the old "
        "one and aborts its open transaction.",
    )


def require_offsets_in_transactions(clients: WorkerLab, function: str) -> None:
    """The consumer side of a consume-transform-produce loop: init_transactions() called, a
    consumer made through the lab, auto-commit off and no commit(): the offsets go in the
    transaction."""
    require(
        all(p.calls["init_transactions"] for p in clients.producers if p.transactional),
        "call producer.init_transactions() once, before begin_transaction(): it registers the "
        "transactional.id and fences older instances.",
    )
    require(
        clients.consumers,
        f"{function} created no consumer through the lab it was given: use "
        "lab.consumer(group, {...}) so the check can run it.",
    )
    for consumer in clients.consumers:
        auto = str(consumer.learner.get("enable.auto.commit", True)).lower()
        require(
            auto == "false",
            "the consumer has enable.auto.commit on (librdkafka's default): it commits offsets "
            "on a timer, outside any transaction. Pass {'enable.auto.commit': False}; the "
            "offsets are committed by send_offsets_to_transaction().",
        )
    require(
        sum(c.commits for c in clients.consumers) == 0,
        f"{function} called consumer.commit(): offsets committed outside the transaction commit "
        "even when the output aborts. Send them with producer.send_offsets_to_transaction() "
        "instead.",
    )


def _require_transactional_producer(clients: WorkerLab, scenario: Scenario) -> None:
    require_transactional_id(
        clients, "run_worker", scenario.transactional_id, "the transactional_id argument"
    )


def _require_started(worker: WorkerThread, clients: WorkerLab, scenario: Scenario) -> None:
    """What can be told once the worker has run a little: a crash before its first transaction,
    or no transactional producer."""
    raise_check_errors(worker)
    crashed = worker.error is not None and not isinstance(worker.error, InjectedFailure)
    require(
        not (crashed and not any(p.transactional for p in clients.producers)),
        f"run_worker raised {describe(worker.error)} before its first transaction.",
    )
    _require_transactional_producer(clients, scenario)


def _require_clients(clients: WorkerLab, scenario: Scenario) -> None:
    _require_transactional_producer(clients, scenario)
    require_offsets_in_transactions(clients, "run_worker")


def _require_transactions_used(clients: WorkerLab, hook: FailHook) -> None:
    require(
        hook.calls > 0,
        "fail_hook() was never called: call it in every transaction, after producing the "
        "batch and before send_offsets_to_transaction()/commit_transaction().",
    )
    require(
        hook.outside_transaction == 0,
        "fail_hook() was called while no transaction was open: call it between "
        "begin_transaction() and commit_transaction(), after producing the batch.",
    )
    require(
        clients.calls("send_offsets_to_transaction") > 0,
        "the worker never called producer.send_offsets_to_transaction(): the consumed offsets "
        "must commit in the same transaction as the output records.",
    )


def describe(error: BaseException | None) -> str:
    if isinstance(error, KafkaException) and isinstance(error.args[0], KafkaError):
        return f"{error.args[0].name()} ({error.args[0].str()})"
    return f"{type(error).__name__}: {error}"


# -- the checks ------------------------------------------------------------------------------------


def _split(records: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    require(
        isinstance(records, int) and records >= 10,
        f"records must be an int of at least 10, not {records!r}.",
    )
    data = input_records(records)
    return data[: records // 2], data[records // 2 :]


def _stop_all(workers: list[WorkerThread], hooks: list[FailHook]) -> list[WorkerThread]:
    """Release every frozen hook, set every ``stop``; the workers that did not return in time."""
    for hook in hooks:
        hook.release.set()
    return [w for w in workers if not w.finish()]


def _require_stopped(stuck: list[WorkerThread]) -> None:
    require(
        not stuck,
        f"run_worker did not return within {STOP_S:.0f} s after stop.set(): check "
        "stop.is_set() in your loop, and keep every blocking call short "
        "(consume(..., timeout=0.5)).",
    )


def check_abort_path(lab: Lab, run_worker: Worker, records: int = RECORDS) -> None:
    """Failures inside transactions: the worker must abort each and rewind, and lose nothing.

    The input is written in two waves, each a committed transaction; an aborted transaction sits
    between them. ``fail_hook`` fails the 1st and 3rd transactions the worker makes (after
    writing a marker record into them)."""
    require(callable(run_worker), "pass your run_worker function itself (no parentheses).")
    first, second = _split(records)
    step = Steps()
    with Scenario(lab, "abort") as scenario:
        clients = WorkerLab(lab)
        hook = FailHook(clients, scenario.output, fail_on=(1, 3))
        step(f"writing {len(first)} input records, then a transaction of {POISON} that aborts")
        scenario.write(first)
        scenario.write(poison_records(), abort=True)
        step("starting run_worker; fail_hook fails its 1st and 3rd transactions")
        worker = WorkerThread(run_worker, clients, scenario, hook)
        try:
            scenario.wait(worker, FIRST_WAVE_S)
            if clients.producers or not worker.alive():
                _require_started(worker, clients, scenario)
            step(f"writing the second wave, {len(second)} records; waiting for the group's commits")
            scenario.write(second)
            done = scenario.wait(worker)
        finally:
            step("stopping run_worker")
            stuck = _stop_all([worker], [hook])
        _require_stopped(stuck)
        raise_check_errors(worker)
        _require_clients(clients, scenario)
        aborts = clients.calls("abort_transaction")
        require(
            aborts >= hook.failures,
            f"{hook.failures} transaction(s) failed (fail_hook raised InjectedFailure) but "
            f"abort_transaction() was called {aborts} time(s): catch the failure and call "
            "producer.abort_transaction(), then rewind the consumer.",
        )
        require(
            worker.error is None,
            f"run_worker raised {describe(worker.error)}. A failure inside a transaction is "
            "handled by aborting it and rewinding the consumer; only a fatal error "
            "(error.fatal(), e.g. fenced) ends the worker.",
        )
        _require_transactions_used(clients, hook)
        failures = f"{hook.failures} injected failure(s)"
        step("reading the output back")
        report = verdict(scenario.inputs, scenario.aborted, scenario.output_pairs())
        explain(report, failures)
        require(
            done or scenario.caught_up(),
            "the output is complete, but the group's committed offsets are not past the end of "
            f"the input after {WAIT_S:.0f} s: send consumer.position(consumer.assignment()) with "
            "send_offsets_to_transaction() in every transaction.",
        )
    passed(
        f"{report.expected} input records, {report.committed} output records: {hook.failures} "
        "failed transactions aborted and their batches processed again, no duplicate, none "
        f"missing, nothing from the aborted input transaction ({len(scenario.aborted)} records)"
    )


def check_crash_recovery(lab: Lab, run_worker: Worker, records: int = RECORDS) -> None:
    """A worker frozen mid-transaction is replaced by a new one with the same transactional.id.

    Worker 1 processes the first wave; in its 2nd transaction ``fail_hook`` freezes it after it
    produced its batch (records sent, transaction open). Worker 2 starts with the same group and
    ``transactional.id``: its ``init_transactions()`` aborts worker 1's transaction and fences it.
    When worker 2 has processed all the input, worker 1 is woken up: whatever it tries, nothing
    of it may be committed."""
    require(callable(run_worker), "pass your run_worker function itself (no parentheses).")
    first, second = _split(records)
    step = Steps()
    with Scenario(lab, "crash") as scenario:
        clients = WorkerLab(lab, static_id=scenario.static_id)
        frozen_hook = FailHook(clients, scenario.output, freeze_on=2)
        replacement_hook = FailHook(clients, scenario.output)
        step(f"writing {len(first)} input records; starting run_worker (worker 1)")
        scenario.write(first)
        zombie = WorkerThread(run_worker, clients, scenario, frozen_hook)
        workers = [zombie]
        frozen = done = False
        try:
            scenario.wait(zombie, FIRST_WAVE_S, unless=frozen_hook.frozen.is_set)
            if clients.producers or not zombie.alive():
                _require_started(zombie, clients, scenario)
            step(
                f"writing the second wave, {len(second)} records; fail_hook freezes worker 1 "
                "in its 2nd transaction"
            )
            scenario.write(second)
            if zombie.alive():
                frozen_hook.frozen.wait(WAIT_S)
            frozen = frozen_hook.frozen.is_set()
            if frozen:
                step("worker 1 is frozen; starting worker 2 with the same transactional.id")
                workers.append(WorkerThread(run_worker, clients, scenario, replacement_hook))
                done = scenario.wait(workers[-1])
        finally:
            step("stopping the workers (a frozen one is woken up first)")
            stuck = _stop_all(workers, [frozen_hook, replacement_hook])
        _require_stopped(stuck)
        raise_check_errors(*workers)
        _require_clients(clients, scenario)
        require(
            frozen,
            "the worker never reached its second transaction"
            + (f": it raised {describe(zombie.error)}" if zombie.error else "")
            + ". Loop until stop.is_set(), one transaction per batch, and call fail_hook() in "
            "each.",
        )
        replacement = workers[-1]
        require(
            replacement.error is None,
            f"the replacement worker raised {describe(replacement.error)}: init_transactions() "
            "must fence the frozen worker and abort its transaction, then consume from the "
            "offsets committed by the last committed transaction.",
        )
        _require_transactions_used(clients, frozen_hook)
        step("reading the output back")
        leftovers = len(scenario.output_pairs("read_uncommitted"))
        report = verdict(scenario.inputs, scenario.aborted, scenario.output_pairs())
        explain(report, "a worker frozen mid-transaction, then replaced and woken up")
        require(
            done or scenario.caught_up(),
            "the output is complete, but the group's committed offsets are not past the end of "
            f"the input after {WAIT_S:.0f} s: send consumer.position(consumer.assignment()) with "
            "send_offsets_to_transaction() in every transaction.",
        )
    woke = (
        f"on waking up it got {describe(zombie.error)}"
        if zombie.error
        else "on waking up it committed nothing"
    )
    passed(
        f"{report.expected} input records, {report.committed} output records, exact. The frozen "
        f"worker's open transaction was aborted by its replacement's init_transactions() "
        f"({leftovers - report.committed} aborted records are visible only to read_uncommitted); "
        f"{woke}"
    )
