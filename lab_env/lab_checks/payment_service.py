"""Lab 11: the case study's payment service, written by the learner and checked in the running
pipeline.

The learner writes two functions:

- ``decide(event)``: what the payment service makes of one ``inventory.reserved`` event, as a list
  of ``(topic, event)`` pairs: ``payment.completed`` when the order's ``risk_score`` is at most
  :data:`RISK_THRESHOLD`, else ``payment.failed`` carrying the reserved items, so that inventory
  can release them (the compensation) and the order ends canceled.
- ``payment_loop(lab, prefix, instance, stop)``: the service's transactional consume-transform-
  produce loop over ``<prefix>inventory.reserved``, with the events ``decide`` returns, the
  dead-letter topic for records it cannot read, and the consumed offsets in each transaction.

``check_decide`` calls ``decide`` on a few events (pure). ``check_payment_service`` runs the
learner's loop in a thread beside the lab's own inventory, shipping and order processes
(:class:`~lab_env.fulfilment_pipeline.Pipeline`), places orders in two waves and injects two
failures into the learner's first instance:

1. its first ``send_offsets_to_transaction()`` raises an abortable error: the loop must abort the
   transaction, rewind its consumer and process the batch again;
2. after the first wave has ended, its next ``commit_transaction()`` freezes (an instance that
   hangs mid-transaction, its records sent). A second instance with the same number starts:
   its ``init_transactions()`` must fence the frozen one and abort its transaction. When every
   order has ended, the frozen instance wakes up; nothing it does may be committed.

Then the run is reconciled (:mod:`lab_env.fulfilment_reconcile`): every order exactly one terminal
state, no event duplicated, every declined payment compensated, no stock oversold; each order
ended as its risk score says; and the malformed record the check slipped into the input is in the
dead-letter topic, unchanged. (The malformed record is written with the second wave, so that
the batch the first failure aborts holds orders: a loop that does not rewind loses them.)
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import KafkaError, KafkaException

from lab_env import datasets
from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.fulfilment_pipeline import Pipeline
from lab_env.fulfilment_reconcile import Reconciliation, reconcile
from lab_env.lab_checks.exactly_once import (
    LearnerThread,
    WorkerLab,
    _Producer,
    describe,
    raise_check_errors,
    require_offsets_in_transactions,
    require_transactional_id,
)
from lab_env.records import read_all
from lab_env.steps import Steps
from lab_env.waiting import eventually

RISK_THRESHOLD = fs.RISK_THRESHOLD
ORDERS = 120
SERVICE = "payment"
MALFORMED_KEY = b"lab11-malformed"
MALFORMED_VALUE = b"not an Avro event"
WAVE_S = 90.0  # for a wave of orders to end
STALL_S = 45.0  # no more order ended for this long: the rest are lost
ENDED, LOST, DIED, SLOW = "ended", "lost", "died", "slow"  # how a wave of orders went
FREEZE_WAIT_S = 60.0  # for the first instance to reach its frozen commit
FREEZE_MAX_S = 180.0  # a frozen instance is released after this long, whatever happens
STOP_S = 20.0  # for payment_loop to return once stop is set

Function = Callable[..., Any]


def member(prefix: str, instance: str) -> str:
    """An instance's transactional.id and group.instance.id."""
    return f"{prefix}fulfilment-{SERVICE}-{instance}"


def group(prefix: str) -> str:
    return f"{prefix}fulfilment-{SERVICE}"


# -- decide, checked on its own (pure) -------------------------------------------------------------


def reserved_event(order: dict[str, Any], risk: float) -> dict[str, Any]:
    """The ``inventory.reserved`` event inventory writes for ``order``, with ``risk``."""
    return {
        "order_id": order["order_id"],
        "created_at_ms": order["created_at_ms"],
        "items": order["items"],
        "amount_cents": order["amount_cents"],
        "risk_score": risk,
        "reserved_at_ms": order["created_at_ms"] + 5,
    }


def expected_topic(risk: float) -> str:
    return ev.PAYMENT_FAILED if risk > RISK_THRESHOLD else ev.PAYMENT_COMPLETED


def _invalid(topic: str, value: object) -> str | None:
    """Why ``value`` is not a valid ``topic`` event, or None."""
    if not isinstance(value, dict):
        return f"the event is a {type(value).__name__}, not a dict"
    schema = fastavro.parse_schema(ev.SCHEMAS[topic])
    try:
        fastavro.validation.validate(value, schema, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        return f"it does not match the {topic} schema: {exc}"
    extra = set(value) - {f["name"] for f in ev.SCHEMAS[topic]["fields"]}
    return f"it has fields the schema does not: {sorted(extra)}" if extra else None


def _check_one(decide: Function, event: dict[str, Any]) -> str:
    risk = event["risk_score"]
    want = expected_topic(risk)
    try:
        out = decide(dict(event))
    except Exception as exc:
        raise LabCheckError(
            f"decide() raised {type(exc).__name__}: {exc} (risk_score {risk})"
        ) from exc
    require(
        isinstance(out, list) and len(out) == 1,
        f"decide() must return a list with one (topic, event) pair; it returned {out!r}.",
    )
    pair = out[0]
    require(
        isinstance(pair, tuple) and len(pair) == 2,
        f"decide() must return [(topic, event)]; its item is {pair!r}.",
    )
    topic, value = pair
    rule = f"risk_score {risk} is {'above' if risk > RISK_THRESHOLD else 'not above'}"
    require(
        topic == want,
        f"{rule} the threshold {RISK_THRESHOLD}, so the event is {want!r}, not {topic!r} "
        f"(decline only when risk_score > RISK_THRESHOLD).",
    )
    problem = _invalid(topic, value)
    require(problem is None, f"decide()'s {topic} event is not valid: {problem}.")
    for name in ("order_id", "created_at_ms"):
        require(
            value[name] == event[name],
            f"{topic}.{name} must be the reserved event's ({event[name]!r}), not "
            f"{value[name]!r}: every stage's latency is measured from created_at_ms.",
        )
    if topic == ev.PAYMENT_FAILED:
        require(
            value["items"] == event["items"],
            "payment.failed must carry the reserved items unchanged: inventory releases exactly "
            f"those (the compensation). It carries {value['items']!r}.",
        )
        require(value["reason"].strip(), "payment.failed needs a reason for the customer.")
    else:
        require(
            value["amount_cents"] == event["amount_cents"],
            f"payment.completed charges the reserved amount, {event['amount_cents']} cents, not "
            f"{value['amount_cents']}.",
        )
    at = value["failed_at_ms" if topic == ev.PAYMENT_FAILED else "paid_at_ms"]
    require(
        at >= event["created_at_ms"],
        f"the {topic} event's time ({at}) is before the order was created: use the current "
        "time in epoch milliseconds (fs.now_ms()).",
    )
    return topic


def check_decide(decide: Function) -> None:
    """``decide`` on events below, at and above the threshold."""
    require(callable(decide), "pass your decide function itself (no parentheses).")
    orders = list(datasets.orders(datasets.make_catalog(seed=7), count=4, seed=7))
    risks = [0.02, RISK_THRESHOLD, RISK_THRESHOLD + 0.01, 0.97]
    outcomes = [
        _check_one(decide, reserved_event(o, r)) for o, r in zip(orders, risks, strict=True)
    ]
    shown = ", ".join(f"{r} -> {t}" for r, t in zip(risks, outcomes, strict=True))
    passed(
        "decide() pays risk scores up to the threshold and declines above it, carrying the "
        f"items to release: {shown}"
    )


# -- the failures injected into the learner's first instance --------------------------------------


class Faults:
    """Acts on the transactional producers the first instance's thread creates: an abortable
    error in its first ``send_offsets_to_transaction()``; once armed, a freeze in its next
    ``commit_transaction()`` until released."""

    def __init__(self) -> None:
        self.victim: LearnerThread | None = None
        self.injected = 0
        self.armed = threading.Event()
        self.frozen = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str, producer: _Producer) -> None:
        victim = self.victim
        if victim is None or producer.thread != victim.thread.ident or not producer.transactional:
            return
        if name == "send_offsets_to_transaction" and self.injected == 0:
            self.injected += 1
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    "injected by the check: the offsets could not be added to the transaction "
                    "in time; abort the transaction and retry the batch",
                    txn_requires_abort=True,
                )
            )
        if name == "commit_transaction" and self.armed.is_set() and not self.frozen.is_set():
            self.frozen.set()
            self.release.wait(FREEZE_MAX_S)


# -- one run -----------------------------------------------------------------------------------


class Run:
    """A pipeline of the lab's inventory, shipping and order processes under a fresh prefix, its
    orders, and the learner's payment instances as threads."""

    def __init__(self, lab: Lab, orders: int, workdir: Path) -> None:
        self.step = Steps()  # the check's progress lines, timed from here
        self.orders = list(datasets.orders(datasets.make_catalog(seed=11), count=orders, seed=11))
        self.lab = lab
        self.prefix = lab.topic(f"lab11-{uuid.uuid4().hex[:6]}.")
        self.pipeline = Pipeline(lab, prefix=self.prefix, workdir=workdir)
        self.faults = Faults()
        self.clients = WorkerLab(lab, static_id=member(self.prefix, "1"), faults=self.faults)
        self.instances: list[LearnerThread] = []
        self.placed: list[dict[str, Any]] = []  # the orders placed so far, in order

    def start_services(self) -> None:
        self.pipeline.ensure_topics()
        for service in ("inventory", "shipping", "order"):
            self.pipeline.start(service)

    def write_malformed(self) -> None:
        producer = self.lab.producer()
        topic = self.prefix + ev.INVENTORY_RESERVED
        producer.produce(topic, key=MALFORMED_KEY, value=MALFORMED_VALUE)
        require(producer.flush(30) == 0, "the malformed record could not be written.")

    def start_instance(self, payment_loop: Function) -> LearnerThread:
        instance = LearnerThread(payment_loop, self.clients, self.prefix, "1")
        if not self.instances:
            self.faults.victim = instance
        self.instances.append(instance)
        return instance

    def place(self, orders: list[dict[str, Any]]) -> None:
        self.placed += orders
        self.pipeline.place(orders)

    def wait_ended(self, count: int, instance: LearnerThread, timeout: float = WAVE_S) -> str:
        """Until ``count`` orders have ended: ENDED; DIED when ``instance`` has died; LOST when
        orders had begun to end and none has for STALL_S (the rest are lost); SLOW when
        ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        last, progress = -1, time.monotonic()
        while time.monotonic() < deadline and instance.alive():
            ended = self.pipeline.ended()
            if ended >= count:
                return ENDED
            if ended != last:
                last, progress = ended, time.monotonic()
            elif ended > 0 and time.monotonic() - progress > STALL_S:
                return LOST
            self.pipeline.check_alive([(s, "1") for s in ("inventory", "shipping", "order")])
            time.sleep(0.5)
        if self.pipeline.ended() >= count:
            return ENDED
        return SLOW if instance.alive() else DIED

    def stop(self) -> list[LearnerThread]:
        """Release the frozen instance, stop every instance; those that did not return."""
        self.faults.release.set()
        return [i for i in self.instances if not i.finish(STOP_S)]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a static member's group may outlive the check
            self.pipeline.close()

    def reconcile(self) -> tuple[Reconciliation, dict[str, list[dict[str, Any]]]]:
        events = fs.read_events(self.lab, self.prefix, self.pipeline.codec)
        return reconcile(self.placed, events, self.pipeline.stock), events


# -- what the check requires -----------------------------------------------------------------------


def _require_clients(run: Run) -> None:
    clients, prefix = run.clients, run.prefix
    first = run.instances[0]
    require(
        any(p.transactional for p in clients.producers) or first.error is None,
        f"payment_loop raised {describe(first.error)} before its first transaction.",
    )
    require_transactional_id(clients, "payment_loop", member(prefix, "1"), "member")
    require_offsets_in_transactions(clients, "payment_loop")
    for consumer in clients.consumers:
        require(
            consumer.config["group.id"] == group(prefix),
            f"the consumer's group is {consumer.config['group.id']!r}, not {group(prefix)!r} "
            "(group): every payment instance shares one group, so they share the partitions.",
        )
        require(
            consumer.learner.get("isolation.level") == "read_committed",
            "the consumer must read with isolation.level=read_committed: inventory writes "
            "inventory.reserved in transactions, and an aborted one's reservations never "
            "happened.",
        )


def _require_abort_path(run: Run) -> None:
    first = run.instances[0]
    require(
        run.faults.injected,
        "payment_loop never called producer.send_offsets_to_transaction(): the consumed offsets "
        "must commit in the same transaction as the payment events.",
    )
    abortable = (
        isinstance(first.error, KafkaException)
        and isinstance(first.error.args[0], KafkaError)
        and not first.error.args[0].fatal()
    )
    require(
        not abortable,
        f"payment_loop raised {describe(first.error)}. The check made send_offsets_to_transaction"
        "() fail with an abortable error (txn_requires_abort()): abort the transaction, rewind "
        "the consumer to its committed offsets (rewind(consumer)) and go on; only a fatal error "
        "ends the service.",
    )
    require(
        first.error is None or run.faults.frozen.is_set(),
        f"payment_loop raised {describe(first.error)} while processing the orders; a service "
        "runs until stop is set, and only a fatal Kafka error (error.fatal()) ends it.",
    )
    require(
        run.clients.calls("abort_transaction") >= 1,
        "send_offsets_to_transaction() failed once, but abort_transaction() was never called: "
        "an abortable error leaves the transaction unusable until it is aborted.",
    )


def _require_ends(
    run: Run, report: Reconciliation, events: dict[str, list[dict[str, Any]]]
) -> None:
    what = "an abortable error, then an instance frozen mid-transaction and replaced"
    require(
        not report.duplicated,
        f"events were committed twice after {what}: {sorted(report.duplicated)[:3]}. A batch "
        "whose transaction aborts must leave nothing behind, and a replacement must fence the "
        "old instance (same transactional.id) before it processes anything. " + report.summary(),
    )
    require(
        not report.lost,
        f"{len(report.lost)} order(s) never ended, e.g. {report.lost[:3]}: their reservations "
        "were consumed but no payment event was committed. After abort_transaction(), seek "
        "the consumer back to its committed offsets (rewind(consumer)), or the aborted batch is "
        "skipped. " + report.summary(),
    )
    require(
        report.exact, f"the run does not reconcile: {report.summary()}; {report.broken_chains[:3]}"
    )
    risk = {o["order_id"]: o["risk_score"] for o in run.orders}
    wrong = [
        (e["order_id"], topic)
        for topic in (ev.PAYMENT_COMPLETED, ev.PAYMENT_FAILED)
        for e in events[topic]
        if expected_topic(risk[e["order_id"]]) != topic
    ]
    require(
        not wrong,
        f"{len(wrong)} order(s) got the wrong payment outcome for their risk score, e.g. "
        f"{wrong[:3]}: decline (payment.failed) exactly when risk_score > {RISK_THRESHOLD}.",
    )


def _require_dead_letter(dead: list[dict[str, Any]]) -> None:
    mine = [r for r in dead if r["key"] == MALFORMED_KEY]
    require(
        len(mine) == 1,
        f"the check wrote one record that is not Avro to inventory.reserved (key "
        f"{MALFORMED_KEY.decode()!r}); {len(mine)} copies of it are in the dead-letter topic. "
        "Catch the decoding error and send the record there with fs.dead_letter(...), in the "
        "same transaction.",
    )
    require(
        mine[0]["value"] == MALFORMED_VALUE and mine[0]["headers"].get("error"),
        "the dead-lettered record must be the original, unchanged, with the error in its "
        "'error' header (fs.dead_letter does both).",
    )


def _drive(run: Run, payment_loop: Function) -> tuple[str, bool]:
    """Both waves, the failures injected: how the first wave went (ENDED, LOST, DIED, SLOW)
    and whether every order ended. A first wave whose orders are lost, or whose instance died,
    is where the check's verdict comes from: the second is not run."""
    half = len(run.orders) // 2
    quarter = half // 2
    step = run.step
    step("starting the lab's inventory, shipping and order services")
    run.start_services()
    step(
        f"starting your payment_loop, placing {quarter} orders; the check fails its first "
        "send_offsets_to_transaction()"
    )
    first = run.start_instance(payment_loop)
    # The first wave in two parts: the first part's batch gets the abortable error, and the
    # second part's transactions commit offsets past it. A loop that does not rewind has then
    # lost the first part for good (a replacement resumes from the committed offsets).
    run.place(run.orders[:quarter])
    eventually(  # the fault, or an end without it (no transaction, or none that sends offsets)
        lambda: run.faults.injected or not first.alive() or run.pipeline.ended() >= quarter,
        WAVE_S,
        interval=0.2,
    )
    step(f"placing {half - quarter} more orders, waiting for the first {half} to end")
    run.place(run.orders[quarter:half])
    first_wave = run.wait_ended(half, first)
    raise_check_errors(*run.instances)
    _require_clients(run)
    _require_abort_path(run)
    if first_wave in (LOST, DIED):
        return first_wave, False
    step(
        f"writing a malformed record, placing the second wave of {len(run.orders) - half} "
        "orders; the check freezes your instance mid-transaction"
    )
    run.write_malformed()  # after the first wave: the aborted first batch holds orders
    run.faults.armed.set()
    run.place(run.orders[half:])
    eventually(lambda: not first.alive() or run.faults.frozen.is_set(), FREEZE_WAIT_S, 0.2)
    if not run.faults.frozen.is_set():
        return first_wave, False
    step("your instance is frozen; starting a replacement, waiting for every order to end")
    replacement = run.start_instance(payment_loop)
    return first_wave, run.wait_ended(len(run.orders), replacement) == ENDED


def check_payment_service(lab: Lab, payment_loop: Function, orders: int = ORDERS) -> None:
    """The learner's payment service in the pipeline, two failures injected, the run reconciled."""
    require(callable(payment_loop), "pass your payment_loop function itself (no parentheses).")
    require(
        isinstance(orders, int) and 20 <= orders <= 2000,
        f"orders must be an int from 20 to 2000, not {orders!r}.",
    )
    with tempfile.TemporaryDirectory(prefix="lab11-") as workdir:
        run = Run(lab, orders, Path(workdir))
        try:
            first_wave, complete = _drive(run, payment_loop)
            run.step("stopping your instances, reconciling every order")
            stuck = run.stop()
            report, events = run.reconcile()
            dead = read_all(lab, run.prefix + ev.DEAD_LETTER, decode=False)
        finally:
            run.stop()
            run.close()
    require(
        not stuck,
        f"payment_loop did not return within {STOP_S:.0f} s after stop.set(): check "
        "stop.is_set() in the loop and keep every blocking call short.",
    )
    raise_check_errors(*run.instances)
    _require_clients(run)
    _require_abort_path(run)
    if first_wave == LOST:
        _require_ends(run, report, events)  # names the orders lost
        require(False, f"orders stopped ending in the first wave: {report.summary()}")
    require(
        run.faults.frozen.is_set(),
        "the first instance never committed a transaction for the second wave of orders, where "
        "the check freezes it: loop until stop.is_set(), one transaction per batch.",
    )
    replacement = run.instances[-1]
    require(
        replacement.error is None,
        f"the replacement instance raised {describe(replacement.error)}: its "
        "init_transactions() must fence the frozen instance and abort its transaction, then it "
        "consumes from the last committed offsets.",
    )
    _require_ends(run, report, events)
    _require_dead_letter(dead)
    require(complete, f"not every order ended in time: {report.summary()}")
    first = run.instances[0]
    woke = (
        f"on waking up it got {describe(first.error)}"
        if first.error
        else "on waking up it committed nothing"
    )
    passed(
        f"{report.summary()}. An abortable error was aborted and its batch processed again; the "
        f"instance frozen mid-transaction was fenced by its replacement ({woke}); the malformed "
        "record is in the dead-letter topic"
    )
