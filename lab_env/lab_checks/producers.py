"""Lab 02: a reliable, fast producer. Each check runs the learner's ``produce_orders`` itself,
with a producer built from the learner's ``PRODUCER_CONFIG``, against a fresh topic, and reads
the topic back (or asks the broker what it remembers about the producer)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer

from lab_env.api import Lab
from lab_env.checks import LabCheckError, passed, require
from lab_env.producing import (
    WARM_UP_KEY,
    Stats,
    order_event,
    paused_follower,
    producer_state,
    records_resent,
    warm_partitions,
    warm_up,
)
from lab_env.records import read_all
from lab_env.steps import Steps

# The throughput target is relative, measured on the same cluster around the learner's run: a
# shared two-core machine's absolute rates swing several-fold with load, their ratio much less.
# Measured here (topics warmed up, 2000 events): flush() after every record made 450-690
# records/s, and the lab's stub 0.9-1.2x the check's own naive loop (up to 2.6x before topics
# were warmed up); the solution made 24,000-34,000 records/s, 53-69x (14x at worst on cold
# topics under heavy load). 8x sits between them with margin on both sides.
SPEEDUP = 8  # the learner's records/s must be this many times the flush-per-record producer's
MAX_RUNS = 3  # a rate within 3x below the target is run again, up to this many times in all
BASELINE_EVENTS = 100  # events the check produces one flush() at a time to measure that rate
QUEUE_LIMIT = 1_000  # queue.buffering.max.messages in the throughput check: BufferError must be met
IDEMPOTENCE_EVENTS = 200
RETRY_EVENTS = 300
PAUSE_S = 3.0  # a follower frozen this long ...
RETRY_REQUEST_TIMEOUT_MS = 300  # ... outlasts request.timeout.ms many times: the producer retries
SMALL_MAX_MESSAGE_BYTES = 4_096  # the failure check's topic: max.message.bytes
OVERSIZED_NOTE = 20_000  # random base64 characters (no codec shrinks them below the limit)
SIZE_ERROR_WORDS = ("MSG_SIZE_TOO_LARGE", "MESSAGE_TOO_LARGE", "too large")

ProduceOrders = Callable[[Producer, str, list[dict[str, Any]]], Any]


def order_events(count: int) -> list[dict[str, Any]]:
    """The lab's events: ``event_id`` unique, ``order_id`` the key (an order's events must stay
    in order), about 200 bytes of JSON each."""
    return [order_event(i) for i in range(count)]


# -- pure helpers (unit-tested) -----------------------------------------------------------------


@dataclass
class Tally:
    """What a topic holds compared with the events that were meant to be written once each."""

    records: int = 0
    duplicates: int = 0  # records beyond the first for an event
    duplicated_events: int = 0  # events stored more than once
    missing: list[int] = field(default_factory=list)  # event ids not stored
    unexpected: list[str] = field(default_factory=list)  # records that are no lab event
    wrong_keys: list[int] = field(default_factory=list)  # events not keyed by their order id
    out_of_order: list[str] = field(default_factory=list)  # orders whose events are reordered


def tally(records: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> Tally:
    """Count duplicates, missing events, foreign records, wrong keys and per-order reordering.

    ``records`` are ``read_all`` rows; an event is recognised by its JSON ``event_id``. Order is
    judged per order id within a partition, by offset: the producer's order is the events' order.
    """
    expected = {e["event_id"]: e for e in events}
    position = {e["event_id"]: i for i, e in enumerate(events)}
    result = Tally(records=len(records))
    seen: Counter[int] = Counter()
    by_order: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for record in records:
        try:
            event = json.loads(record["value"])
            event_id = event["event_id"]
        except (TypeError, ValueError, KeyError):
            result.unexpected.append(str(record["value"])[:60])
            continue
        if event_id not in expected:
            result.unexpected.append(str(record["value"])[:60])
            continue
        seen[event_id] += 1
        if record["key"] != expected[event_id]["order_id"]:
            result.wrong_keys.append(event_id)
        order = expected[event_id]["order_id"]
        by_order[order].append((record["partition"], record["offset"], position[event_id]))
    result.duplicates = sum(n - 1 for n in seen.values())
    result.duplicated_events = sum(1 for n in seen.values() if n > 1)
    result.missing = sorted(set(expected) - set(seen))
    for order, stored in by_order.items():
        produced = [p for _, _, p in sorted(stored)]
        if any(b < a for a, b in itertools.pairwise(produced)):
            result.out_of_order.append(order)
    return result


def names_size_error(text: str) -> bool:
    """Whether ``text`` names the broker's "record too large" error."""
    return any(word.lower() in text.lower() for word in SIZE_ERROR_WORDS)


def exception_text(exc: BaseException) -> str:
    """An exception, its args and its causes as one string (what a learner's raise carries)."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [type(current).__name__, str(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return " ".join(parts)


def report_counts(report: object) -> tuple[int, list[str]]:
    """``(delivered, failed)`` from the learner's report, or a LabCheckError saying its shape."""
    require(
        isinstance(report, dict) and "delivered" in report and "failed" in report,
        f"produce_orders returned {report!r:.120}: return a dict "
        "{'delivered': <records the delivery callback saw succeed>, "
        "'failed': [<one str per failed delivery>]}.",
    )
    assert isinstance(report, dict)
    delivered, failed = report["delivered"], report["failed"]
    require(
        isinstance(delivered, int) and not isinstance(delivered, bool),
        f"report['delivered'] is {delivered!r}: count the successful delivery reports (an int).",
    )
    require(
        isinstance(failed, list | tuple),
        f"report['failed'] is {failed!r:.80}: make it a list with one entry (str(err)) per "
        "failed delivery.",
    )
    return delivered, [str(f) for f in failed]


# -- running the learner's function --------------------------------------------------------------


@dataclass
class Outcome:
    report: object = None
    error: BaseException | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    producer_id: int | None = None


def _producer(lab: Lab, config: object, overrides: dict[str, Any], stats: Stats) -> Producer:
    require(
        isinstance(config, dict),
        f"PRODUCER_CONFIG must be a dict of librdkafka settings, not {type(config).__name__}.",
    )
    assert isinstance(config, dict)
    try:
        return lab.producer({**config, **overrides, **stats.config()})
    except KafkaException as exc:
        raise LabCheckError(
            f"librdkafka refuses PRODUCER_CONFIG: {exc.args[0].str()}. Fix that setting."
        ) from None


def _run(
    lab: Lab,
    config: object,
    produce_orders: ProduceOrders,
    topic: str,
    events: list[dict[str, Any]],
    overrides: dict[str, Any] | None = None,
    pause_follower: bool = False,
) -> Outcome:
    """Build the producer, warm it up, then time ``produce_orders(producer, topic, events)``
    (optionally while a follower of the topic's partition 0 is paused)."""
    require(callable(produce_orders), "produce_orders must be a function.")
    stats = Stats()
    producer = _producer(lab, config, overrides or {}, stats)
    warm_up(producer, topic, stats)
    outcome = Outcome(producer_id=stats.idempotence()[1])
    pause = paused_follower(lab, topic, PAUSE_S) if pause_follower else contextlib.nullcontext()
    with pause:
        start = time.monotonic()
        try:
            outcome.report = produce_orders(producer, topic, list(events))
        except Exception as exc:  # the learner's exception is data here: the checks judge it
            outcome.error = exc
        outcome.seconds = time.monotonic() - start
    outcome.stats = stats.wait_next(producer, 0.5)
    producer.purge()  # nothing the learner left unflushed may trickle in after the check reads
    producer.flush(0)
    return outcome


def _topic(lab: Lab, purpose: str, partitions: int, config: dict[str, str] | None = None) -> str:
    """A fresh topic, warmed up (``warm_partitions``): a new partition's first ``acks=all``
    write waits for its followers, and that wait must not be charged to the learner."""
    name = lab.topic(f"lab02.{purpose}.{uuid.uuid4().hex[:8]}")
    lab.create_topic(name, partitions=partitions, config=config)
    warm_partitions(lab, name)
    return name


def _stored(lab: Lab, topic: str) -> list[dict[str, Any]]:
    """The topic's records, the check's warm-up records left out."""
    return [r for r in read_all(lab, topic) if r["key"] != WARM_UP_KEY]


def _require_no_error(outcome: Outcome, when: str) -> None:
    if outcome.error is None:
        return
    if isinstance(outcome.error, BufferError):
        raise LabCheckError(
            f"produce_orders raised BufferError {when}: the producer's local queue was full "
            f"(the check sets queue.buffering.max.messages={QUEUE_LIMIT}). produce() never "
            "blocks: catch BufferError, call producer.poll(0.05) so deliveries drain the queue, "
            "and produce the same event again."
        )
    raise LabCheckError(
        f"produce_orders raised {type(outcome.error).__name__}: {outcome.error} {when}; on a "
        "healthy cluster every event should be delivered."
    )


def _events(count: int) -> str:
    return f"{count} event{'' if count == 1 else 's'}"


def _require_exactly_once(found: Tally, events: list[dict[str, Any]], topic: str) -> None:
    require(
        not found.unexpected,
        f"{topic!r} holds {len(found.unexpected)} records that are not the lab's events, e.g. "
        f"{found.unexpected[:1]}: produce each event as json.dumps(event).",
    )
    require(
        found.duplicates == 0,
        f"{found.duplicates} duplicates ({_events(found.duplicated_events)} stored more than "
        "once): is enable.idempotence on? A producer that is not idempotent writes a batch "
        "again each time it retries one the broker had already written; and never produce an "
        "event a second time yourself.",
    )
    require(
        not found.missing,
        f"{len(found.missing)} of {len(events)} events are missing from {topic!r} (e.g. "
        f"event_id {found.missing[:3]}): call producer.flush() before returning, and check "
        "that flush() returned 0 (records still queued when it returns were not delivered).",
    )
    require(
        not found.wrong_keys,
        f"{len(found.wrong_keys)} events are not keyed by their order id (e.g. event_id "
        f"{found.wrong_keys[:3]}): produce with key=event['order_id'] so an order's events "
        "share a partition and stay in order.",
    )


# -- the checks ---------------------------------------------------------------------------------


def check_fast_and_complete(
    lab: Lab, config: object, produce_orders: ProduceOrders, events: list[dict[str, Any]]
) -> None:
    """Every event exactly once, a truthful report, and SPEEDUP times the throughput of a
    producer that calls ``flush()`` after every record (librdkafka's defaults otherwise).

    The learner's rate is events over the wall time of the call, final flush included, with
    metadata, connections and the producer id fetched before the clock starts. The naive rate
    is measured before the first run and after each, and the fastest counts, so a burst of load
    during one measurement cannot lower the bar. A rate within 3x below the target is run again
    on a fresh topic, up to MAX_RUNS runs in all (a shared machine has slow moments: a CI run
    once measured the solution at 4% below the bar, at a tenth of its usual rate); flushing
    every record is far slower.
    """
    step = Steps()
    step(f"timing a producer that flushes after every record ({BASELINE_EVENTS} events)")
    naive = flush_per_record_rate(lab, events[:BASELINE_EVENTS])
    runs, seconds = 0, float("inf")
    while True:
        runs += 1
        step(f"timing produce_orders on {len(events):,} events (run {runs} of at most {MAX_RUNS})")
        seconds = min(seconds, _fast_and_complete_run(lab, config, produce_orders, events))
        rate = len(events) / max(seconds, 1e-9)
        # The bar is final before the decision: measured again after each run.
        step(f"best so far {rate:,.0f} records/s; timing the flush-per-record producer again")
        naive = max(naive, flush_per_record_rate(lab, events[:BASELINE_EVENTS]))
        target = SPEEDUP * naive
        if rate >= target or rate < target / 3 or runs == MAX_RUNS:
            break
    require(
        rate >= target,
        f"{len(events)} events took {seconds:.2f} s: {rate:,.0f} records/s "
        f"({f'best of {runs} runs' if runs > 1 else 'one run'}). The target is {SPEEDUP}x the "
        f"{naive:,.0f} records/s a producer that flushes after every record made on this "
        f"cluster just now: {target:,.0f} records/s. flush() waits a full round trip: produce() "
        "every event, poll(0) in the loop to serve delivery reports, and flush() once at the "
        "end; linger.ms, batch.size and compression.type shape the batches.",
    )
    passed(
        f"{len(events)} events, each exactly once, at {rate:,.0f} records/s: "
        f"{rate / naive:,.0f}x the {naive:,.0f} records/s of flush() after every record"
    )


def flush_per_record_rate(lab: Lab, events: list[dict[str, Any]]) -> float:
    """Records/s of the naive producer: librdkafka's defaults, ``flush()`` after each record,
    timed like the learner's run (events over wall time)."""
    topic = _topic(lab, "baseline", partitions=3)
    try:
        stats = Stats()
        producer = lab.producer(stats.config())
        warm_up(producer, topic, stats)
        start = time.monotonic()
        for event in events:
            producer.produce(topic, key=event["order_id"], value=json.dumps(event))
            producer.flush(30)
        seconds = time.monotonic() - start
        require(len(producer) == 0, f"the check's own records to {topic!r} were not delivered.")
    finally:
        lab.delete_topic(topic)
    return len(events) / max(seconds, 1e-9)


def _fast_and_complete_run(
    lab: Lab, config: object, produce_orders: ProduceOrders, events: list[dict[str, Any]]
) -> float:
    """One timed run on a fresh 3-partition topic, checked for exactness; its seconds."""
    topic = _topic(lab, "orders", partitions=3)
    try:
        overrides = {"queue.buffering.max.messages": QUEUE_LIMIT}
        outcome = _run(lab, config, produce_orders, topic, events, overrides)
        _require_no_error(outcome, f"while producing {len(events)} events")
        delivered, failed = report_counts(outcome.report)
        found = tally(_stored(lab, topic), events)
    finally:
        lab.delete_topic(topic)
    _require_exactly_once(found, events, topic)
    require(
        not failed and delivered == len(events),
        f"your report says delivered={delivered}, failed={len(failed)}, but all "
        f"{len(events)} events are on the topic: count deliveries in the delivery callback "
        "(err is None: delivered; otherwise append str(err) to failed), and return after "
        "flush().",
    )
    return outcome.seconds


def check_idempotent_producer(
    lab: Lab, config: object, produce_orders: ProduceOrders, events: list[dict[str, Any]]
) -> None:
    """The partition's leader must know the producer: a producer id and the sequence numbers
    of its records. A broker tracks only idempotent (or transactional) producers, and librdkafka
    refuses ``enable.idempotence=true`` unless ``acks=all``: so this shows both are in effect."""
    step = Steps()
    sample = events[:IDEMPOTENCE_EVENTS]
    topic = _topic(lab, "idempotence", partitions=1)
    try:
        step(f"producing {len(sample)} events with produce_orders to a topic of 1 partition")
        outcome = _run(lab, config, produce_orders, topic, sample)
        _require_no_error(outcome, f"while producing {len(sample)} events")
        step("asking the partition's leader which producers it knows")
        states = producer_state(lab, topic)
    finally:
        lab.delete_topic(topic)
    require(
        states,
        f"the leader of {topic!r} keeps no producer state: your producer sent no producer id, "
        "so it is not idempotent. Set enable.idempotence=true in PRODUCER_CONFIG (librdkafka's "
        "default is false; it implies acks=all, retries and max.in.flight <= 5).",
    )
    mine = [s for s in states if s["producer_id"] == outcome.producer_id]
    require(
        len(mine) == 1,
        f"the broker knows producer ids {[s['producer_id'] for s in states]}, but the producer "
        f"the check gave produce_orders has id {outcome.producer_id}: produce with the producer "
        "passed in, do not create your own.",
    )
    last = mine[0]["last_sequence"]
    require(
        last == len(sample) - 1,
        f"the broker's last sequence number for your producer is {last}, but {len(sample)} "
        f"events make sequences 0..{len(sample) - 1}: produce every event once, with this "
        "producer.",
    )
    passed(
        f"the leader tracks your producer (id {outcome.producer_id}, sequences 0..{last}): "
        "enable.idempotence=true is in effect, and with it acks=all"
    )


def check_no_duplicates_under_retries(
    lab: Lab, config: object, produce_orders: ProduceOrders, events: list[dict[str, Any]]
) -> None:
    """Exactly once and in order per order while the producer is made to retry.

    The check freezes a follower of the topic's partition for PAUSE_S seconds and sets
    ``request.timeout.ms`` to RETRY_REQUEST_TIMEOUT_MS: an ``acks=all`` write cannot be
    acknowledged while an in-sync replica lags, so the leader, which has already written the
    batch, answers REQUEST_TIMED_OUT and the producer sends the batch again.
    """
    step = Steps()
    sample = events[:RETRY_EVENTS]
    topic = _topic(lab, "retries", partitions=1)
    can_pause = lab.backend.name != "external"  # the lab does not run an external cluster
    note = "" if can_pause else " (an external cluster: no broker paused, no retries forced)"
    try:
        overrides = {"request.timeout.ms": RETRY_REQUEST_TIMEOUT_MS}
        paused = f", a follower paused for {PAUSE_S:.0f} s" if can_pause else ""
        step(f"producing {len(sample)} events with produce_orders{paused}")
        outcome = _run(lab, config, produce_orders, topic, sample, overrides, can_pause)
        resent = records_resent(outcome.stats)
        if outcome.error is not None:
            raise LabCheckError(
                f"produce_orders raised {type(outcome.error).__name__}: {outcome.error} while a "
                f"follower was paused for {PAUSE_S:.0f} s. REQUEST_TIMED_OUT is retriable: the "
                "producer retries it by itself unless retries (message.send.max.retries) or "
                "message.timeout.ms (delivery.timeout.ms) stop it; keep both at their defaults."
            )
        delivered, failed = report_counts(outcome.report)
        require(
            not failed,
            f"{len(failed)} deliveries failed while a follower was paused (e.g. {failed[:1]}): "
            "keep retries and message.timeout.ms at their defaults so the producer outlasts a "
            "short stall.",
        )
        step("reading the topic back")
        found = tally(_stored(lab, topic), sample)
    finally:
        lab.delete_topic(topic)
    _require_exactly_once(found, sample, topic)
    require(
        not found.out_of_order,
        f"the events of {len(found.out_of_order)} orders (e.g. {found.out_of_order[:3]}) are "
        "stored out of order: without idempotence a retried batch can land behind a later "
        "one. enable.idempotence=true keeps order with up to 5 requests in flight.",
    )
    require(
        delivered == len(sample),
        f"your report says delivered={delivered}, the topic holds all {len(sample)} events: "
        "count the successful delivery reports.",
    )
    passed(
        f"{len(sample)} events exactly once and in order per order, although the producer "
        f"sent {resent} records again while a follower was paused{note}"
    )


def check_failures_surfaced(
    lab: Lab, config: object, produce_orders: ProduceOrders, events: list[dict[str, Any]]
) -> None:
    """A delivery that fails must reach the caller: raised, or listed in ``report['failed']``.

    The topic takes records of at most SMALL_MAX_MESSAGE_BYTES (its ``max.message.bytes``);
    one event carries a note far larger (random, so compression cannot shrink it), and the
    broker rejects its batch with MSG_SIZE_TOO_LARGE. That error is not retriable, and it
    arrives only in a delivery report.
    """
    noise = base64.b64encode(random.Random(2).randbytes(OVERSIZED_NOTE * 3 // 4)).decode()
    oversized = {**order_event(10**9), "note": noise}
    sample = [*events[:10], oversized, *events[10:20]]
    topic = _topic(lab, "too-large", 1, {"max.message.bytes": str(SMALL_MAX_MESSAGE_BYTES)})
    try:
        outcome = _run(lab, config, produce_orders, topic, sample)
        stored = len(_stored(lab, topic))
    finally:
        lab.delete_topic(topic)
    if outcome.error is not None:
        text = exception_text(outcome.error)
        require(
            names_size_error(text),
            f"produce_orders raised {type(outcome.error).__name__}: {outcome.error}, which "
            "does not name the failed delivery: raise with the KafkaError your delivery "
            "callback received (its name is MSG_SIZE_TOO_LARGE).",
        )
        passed(f"the failed delivery reached the caller: {type(outcome.error).__name__} raised")
        return
    delivered, failed = report_counts(outcome.report)
    require(
        failed,
        f"produce_orders returned {outcome.report!r:.120} although the broker rejected a "
        f"record (MSG_SIZE_TOO_LARGE: the topic's max.message.bytes is "
        f"{SMALL_MAX_MESSAGE_BYTES}): a failed delivery arrives only as err in the delivery "
        "callback. Collect it and raise, or return it in report['failed'].",
    )
    require(
        any(names_size_error(f) for f in failed),
        f"report['failed'] is {failed[:2]}, which does not name the broker's error: append "
        "str(err) from the delivery callback (it says MSG_SIZE_TOO_LARGE).",
    )
    require(
        delivered == stored,
        f"your report says delivered={delivered}, the topic holds {stored} records: count "
        "only reports whose err is None (records batched with the oversized one fail with it).",
    )
    passed(f"{len(failed)} failed deliveries reported, {delivered} delivered, as on the topic")
