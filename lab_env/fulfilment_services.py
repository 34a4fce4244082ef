"""The order-fulfilment services of module 11: each a transactional consume-transform-produce loop.

    python -m lab_env.fulfilment_services inventory --instance 1 [--stock stock.json]
    python -m lab_env.fulfilment_services payment --instance 1
    python -m lab_env.fulfilment_services shipping --instance 1
    python -m lab_env.fulfilment_services order --instance 1      # cancels released orders

A service reads its input topics in the group ``fulfilment-<service>`` (read_committed), and for
each batch opens a transaction holding its output events, its state changes and the consumed
offsets (``send_offsets_to_transaction``): all commit, or none do. An abortable error aborts the
batch, rewinds the consumer to its committed offsets and reloads the service's state, so the batch
is processed again from the same state. The transactional id is ``fulfilment-<service>-<instance>``
and the consumer is a static member with the same name: an instance restarted with its number
fences its killed predecessor, aborts its open transaction and takes its partitions back at once.

- **inventory** reserves stock for ``order.created`` (``inventory.reserved``, or
  ``inventory.rejected`` when a line is short) and releases it for ``payment.failed``
  (``inventory.released``: the compensation). Stock is sharded by partition: partition ``p`` of
  ``order.created`` owns share ``p`` of every SKU's units, so no two instances touch the same
  units. Each change is written to the compacted changelog ``inventory.stock`` (key
  ``<partition>:<sku>``) in the same transaction; an instance that gets partitions rebuilds their
  stock from it. The ``range`` assignor gives partition ``p`` of ``order.created`` and of
  ``payment.failed`` (same key, same partition count) to the same instance.
- **payment** charges ``inventory.reserved`` orders (``payment.completed``) unless their
  ``risk_score`` is above the threshold (``payment.failed``, with the items to release). The
  outcome is in the data, so a rerun declines the same orders.
- **shipping** schedules paid orders (``shipping.scheduled``).
- **order** cancels orders whose stock was released (``order.canceled``). Its front door,
  accepting orders, is :func:`place_orders`.

A record that cannot be read (not Avro, unknown schema) or processed goes to
``fulfilment.dead-letter`` unchanged, with the reason in its headers (``error``,
``error.class``, ``source.topic``, ``source.partition``, ``source.offset``, ``service``), in the
same transaction: it is never silently dropped, and it never stops the pipeline.

Every topic name gets the ``--prefix`` (empty by default), so tests and learners can run
pipelines side by side.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from lab_env import datasets
from lab_env import fulfilment_events as ev
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.records import read_all
from lab_env.transactional_worker import (
    SESSION_TIMEOUT_MS,
    TXN_TIMEOUT_S,
    commit_retrying,
    data_records,
    rewind,
)

STOCK = "inventory.stock"  # compacted changelog: "<partition>:<sku>" -> units left (ASCII)
RISK_THRESHOLD = 0.25
CARRIERS = ("lab-post", "lab-express", "lab-freight")
# A killed instance's open transaction blocks read_committed readers of its partitions until it
# is aborted: by its restarted successor at once, else after this long. Kafka's default: a
# shorter one (15 s was tried) aborted a live instance's slow first transaction on a loaded CI
# machine, and an aborted transaction's producer is fenced for good.
TRANSACTION_TIMEOUT_MS = 60_000
# One transaction per batch: a transaction costs a few round trips to the coordinators (tens of
# ms here) whatever its size, so a loop takes what arrives within WAIT_S, up to BATCH records.
# Waiting for a fixed batch to fill would cap a service at one batch per wait.
BATCH = 2000
WAIT_S = 0.05
# A new transaction's first request right after a commit is often refused with
# CONCURRENT_TRANSACTIONS while the coordinator finishes the previous one (writes its markers);
# librdkafka retries after retry.backoff.ms (default 100 ms), doubling up to retry.backoff.max.ms
# (default 1000 ms). Short, flat retries start the next transaction as soon as it may.
RETRY_BACKOFF_MS = 10
RETRY_BACKOFF_MAX_MS = 50
# A read_committed fetch that finds only records of an open transaction returns nothing, and the
# next one waits up to fetch.wait.max.ms (default 500 ms) even after the transaction commits:
# every stage of the pipeline would add that wait to an order's latency.
FETCH_WAIT_MAX_MS = 50

Output = tuple[str, dict[str, Any]]  # (logical topic, event)


def now_ms() -> int:
    return int(time.time() * 1000)


def share(units: int, partition: int, partitions: int = ev.PARTITIONS) -> int:
    """Partition ``partition``'s share of ``units``; the shares sum to ``units``."""
    return units // partitions + (1 if partition < units % partitions else 0)


def _base(event: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": event["order_id"], "created_at_ms": event["created_at_ms"]}


class Service:
    """What a service does with one event; the loop (:func:`run`) does the rest."""

    name = ""
    inputs: tuple[str, ...] = ()

    def handle(self, topic: str, partition: int, event: dict[str, Any]) -> list[Output]:
        raise NotImplementedError

    def load(self, lab: Lab, topic: Callable[[str], str], partitions: set[int]) -> None:
        """(Re)build the state of ``partitions`` (after an assignment or an abort)."""

    def changes(self) -> list[tuple[str, str]]:
        """The state changes since the last call: (changelog key, value)."""
        return []


class Payment(Service):
    name, inputs = "payment", (ev.INVENTORY_RESERVED,)

    def __init__(self, threshold: float = RISK_THRESHOLD) -> None:
        self.threshold = threshold

    def handle(self, topic: str, partition: int, event: dict[str, Any]) -> list[Output]:
        if event["risk_score"] > self.threshold:
            reason = f"declined: risk {event['risk_score']:.2f} above {self.threshold:.2f}"
            failed = {**_base(event), "items": event["items"], "reason": reason}
            return [(ev.PAYMENT_FAILED, {**failed, "failed_at_ms": now_ms()})]
        paid = {**_base(event), "amount_cents": event["amount_cents"], "paid_at_ms": now_ms()}
        return [(ev.PAYMENT_COMPLETED, paid)]


class Shipping(Service):
    name, inputs = "shipping", (ev.PAYMENT_COMPLETED,)

    def handle(self, topic: str, partition: int, event: dict[str, Any]) -> list[Output]:
        carrier = CARRIERS[zlib.crc32(event["order_id"].encode()) % len(CARRIERS)]
        scheduled = {**_base(event), "carrier": carrier, "scheduled_at_ms": now_ms()}
        return [(ev.SHIPPING_SCHEDULED, scheduled)]


class OrderCancel(Service):
    name, inputs = "order", (ev.INVENTORY_RELEASED,)

    def handle(self, topic: str, partition: int, event: dict[str, Any]) -> list[Output]:
        reason = "payment declined; stock released"
        return [(ev.ORDER_CANCELED, {**_base(event), "reason": reason, "canceled_at_ms": now_ms()})]


class Inventory(Service):
    name, inputs = "inventory", (ev.ORDER_CREATED, ev.PAYMENT_FAILED)

    def __init__(self, initial: dict[str, int]) -> None:
        self.initial = initial
        self.stock: dict[tuple[int, str], int] = {}
        self._changed: dict[tuple[int, str], int] = {}

    def load(self, lab: Lab, topic: Callable[[str], str], partitions: set[int]) -> None:
        latest: dict[tuple[int, str], int] = {}
        for record in read_all(lab, topic(STOCK)):
            where, _, sku = str(record["key"]).partition(":")
            if int(where) in partitions and record["value"] is not None:
                latest[(int(where), sku)] = int(record["value"])
        self.stock = {
            (p, sku): latest.get((p, sku), share(units, p))
            for p in partitions
            for sku, units in self.initial.items()
        }
        self._changed = {}

    def _add(self, partition: int, items: Iterable[dict[str, Any]], sign: int) -> None:
        for item in items:
            key = (partition, item["sku"])
            self.stock[key] = self.stock.get(key, 0) + sign * int(item["quantity"])
            self._changed[key] = self.stock[key]

    def handle(self, topic: str, partition: int, event: dict[str, Any]) -> list[Output]:
        if topic == ev.PAYMENT_FAILED:  # compensation
            self._add(partition, event["items"], +1)
            released = {**_base(event), "items": event["items"], "released_at_ms": now_ms()}
            return [(ev.INVENTORY_RELEASED, released)]
        short = [
            item["sku"]
            for item in event["items"]
            if self.stock.get((partition, item["sku"]), 0) < int(item["quantity"])
        ]
        if short:
            rejected = {**_base(event), "missing_skus": short, "rejected_at_ms": now_ms()}
            return [(ev.INVENTORY_REJECTED, rejected)]
        self._add(partition, event["items"], -1)
        reserved = {
            **_base(event),
            "items": event["items"],
            "amount_cents": event["amount_cents"],
            "risk_score": event["risk_score"],
            "reserved_at_ms": now_ms(),
        }
        return [(ev.INVENTORY_RESERVED, reserved)]

    def changes(self) -> list[tuple[str, str]]:
        out = [(f"{p}:{sku}", str(units)) for (p, sku), units in sorted(self._changed.items())]
        self._changed = {}
        return out


def catalog_stock(seed: int = 0) -> dict[str, int]:
    return {s.sku: s.initial_stock for s in datasets.make_catalog(seed=seed)}


def make_service(name: str, stock: dict[str, int] | None = None) -> Service:
    if name == "inventory":
        return Inventory(stock if stock is not None else catalog_stock())
    makers: dict[str, Callable[[], Service]] = {
        "payment": Payment,
        "shipping": Shipping,
        "order": OrderCancel,
    }
    if name not in makers:
        raise LabError(f"No service {name!r}: the services are inventory, {', '.join(makers)}.")
    return makers[name]()


# -- topics and serialization ----------------------------------------------------------------------


def ensure_topics(lab: Lab, prefix: str = "") -> None:
    """The event topics, the dead-letter topic and the compacted stock changelog; and every
    event's schema registered under its subject, so that no service's first transaction waits
    on a first registration (an existing subject keeps its versions)."""
    for name in (*ev.EVENT_TOPICS, ev.DEAD_LETTER):
        lab.create_topic(prefix + name, ev.PARTITIONS, 3, exist_ok=True)
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    lab.create_topic(prefix + STOCK, ev.PARTITIONS, 3, config=compacted, exist_ok=True)
    registry = lab.registry()
    for name in ev.EVENT_TOPICS:
        subject = ev.subject(prefix + name)
        try:
            registry.get_latest_version(subject)
        except SchemaRegistryError:
            registry.register_schema(subject, Schema(json.dumps(ev.SCHEMAS[name]), "AVRO"))


class Codec:
    """Avro values through the registry, subjects named after the (prefixed) topics."""

    def __init__(self, lab: Lab, schemas: dict[str, dict[str, Any]] | None = None) -> None:
        self.registry = lab.registry()
        self.schemas = schemas or ev.SCHEMAS
        self.reader = AvroDeserializer(self.registry)
        self._writers: dict[str, AvroSerializer] = {}

    def encode(self, logical: str, topic: str, value: dict[str, Any]) -> bytes:
        if topic not in self._writers:
            schema = json.dumps(self.schemas[logical])
            self._writers[topic] = AvroSerializer(self.registry, schema)
        encoded = self._writers[topic](value, SerializationContext(topic, MessageField.VALUE))
        assert encoded is not None
        return encoded

    def decode(self, topic: str, data: bytes | None) -> dict[str, Any]:
        """An event read from ``topic``; SerializationError or ValueError when it is none."""
        value = self.reader(data, SerializationContext(topic, MessageField.VALUE))
        if not isinstance(value, dict) or "order_id" not in value:
            raise ValueError(f"not an order event: {type(value).__name__}")
        return value


def reader(lab: Lab, group: str, prefix: str, topics: Iterable[str]) -> Consumer:
    """A ``read_committed`` consumer assigned every partition of ``topics`` (prefixed) from its
    first record: for readers of the whole run that keep no position in a group (the analytics
    service, the benchmark's watcher). Assigned, not subscribed: no group join to wait for."""
    consumer: Consumer = lab.consumer(
        group,
        {
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        },
    )
    consumer.assign(
        [
            TopicPartition(prefix + t, p, OFFSET_BEGINNING)
            for t in topics
            for p in range(ev.PARTITIONS)
        ]
    )
    return consumer


def read_events(
    lab: Lab, prefix: str = "", codec: Codec | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every committed event of every event topic, decoded: logical topic -> events. A record
    that is not an event (the services sent it to the dead-letter topic) is left out."""
    codec = codec or Codec(lab)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ev.EVENT_TOPICS:
        out[name] = []
        for record in read_all(lab, prefix + name, decode=False):
            try:
                out[name].append(codec.decode(prefix + name, record["value"]))
            except (SerializationError, ValueError):
                continue
    return out


def place_orders(
    lab: Lab, orders: Iterable[dict[str, Any]], prefix: str = "", codec: Codec | None = None
) -> int:
    """The order service's front door: each order as an ``order.created`` event, keyed by its
    id and stamped with the moment it is placed (``created_at_ms``, from which every stage's
    latency is measured). The codec's ``order.created`` schema decides the fields: a field the
    order lacks takes the schema's default (``coupon_code`` of version 2). Returns how many were
    acknowledged."""
    codec = codec or Codec(lab)
    topic = prefix + ev.ORDER_CREATED
    fields = codec.schemas[ev.ORDER_CREATED]["fields"]
    defaults = {f["name"]: f.get("default") for f in fields if f["name"] != "created_at_ms"}
    producer = lab.producer({"enable.idempotence": True, "linger.ms": 5})
    count = 0
    for order in orders:
        event = {**{k: order.get(k, d) for k, d in defaults.items()}, "created_at_ms": now_ms()}
        value = codec.encode(ev.ORDER_CREATED, topic, event)
        producer.produce(topic, key=order["order_id"], value=value)
        producer.poll(0)
        count += 1
    left = producer.flush(60)
    if left:
        raise LabError(f"{left} of {count} orders were not acknowledged within 60 s.")
    return count


# -- the loop --------------------------------------------------------------------------------------


@dataclass
class Counters:
    transactions: int = 0
    aborted: int = 0
    events_in: int = 0
    events_out: int = 0
    dead_letters: int = 0
    # Where a committed transaction's time went, in seconds summed over the run: decoding,
    # deciding, encoding and producing its batch; send_offsets_to_transaction; commit.
    process_s: float = 0.0
    offsets_s: float = 0.0
    commit_s: float = 0.0

    def phases_ms(self) -> dict[str, float]:
        """Each phase's average per committed transaction, in ms."""
        n = max(self.transactions, 1)
        return {
            "process_ms": round(self.process_s * 1000 / n, 1),
            "send_offsets_ms": round(self.offsets_s * 1000 / n, 1),
            "commit_ms": round(self.commit_s * 1000 / n, 1),
        }


def dead_letter(
    producer: Producer, topic: str, service: str, msg: Message, exc: BaseException
) -> None:
    """Send ``msg`` unchanged to the dead-letter ``topic`` (in the producer's open transaction),
    with why and where from in its headers."""
    headers = [
        ("error", str(exc)[:1000].encode()),
        ("error.class", type(exc).__name__.encode()),
        ("source.topic", str(msg.topic()).encode()),
        ("source.partition", str(msg.partition()).encode()),
        ("source.offset", str(msg.offset()).encode()),
        ("service", service.encode()),
    ]
    producer.produce(topic, key=msg.key(), value=msg.value(), headers=headers)


def run(
    lab: Lab,
    service: Service,
    instance: str,
    stop: threading.Event,
    prefix: str = "",
    batch: int = BATCH,
    report: Callable[[str], None] = lambda _: None,
) -> Counters:
    """Process ``service``'s inputs until ``stop`` is set."""

    def topic(name: str) -> str:
        return prefix + name

    codec = Codec(lab)
    counters = Counters()
    consumer: Consumer = lab.consumer(
        f"{prefix}fulfilment-{service.name}",
        {
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            # A static member: an instance restarted with its number takes its partitions back
            # at once, instead of waiting for the killed one's session to expire.
            "group.instance.id": f"{prefix}fulfilment-{service.name}-{instance}",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        },
    )
    producer = lab.producer(
        {
            "transactional.id": f"{prefix}fulfilment-{service.name}-{instance}",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "retry.backoff.ms": RETRY_BACKOFF_MS,
            "retry.backoff.max.ms": RETRY_BACKOFF_MAX_MS,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(TXN_TIMEOUT_S)

    def owned() -> set[int]:
        return {tp.partition for tp in consumer.assignment()}

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        service.load(lab, topic, {tp.partition for tp in partitions})
        report(f"assigned {sorted({tp.partition for tp in partitions})}")

    consumer.subscribe([topic(t) for t in service.inputs], on_assign=on_assign)
    logical = {topic(t): t for t in service.inputs}
    try:
        while not stop.is_set():
            records = data_records(consumer.consume(num_messages=batch, timeout=WAIT_S))
            if not records:
                continue
            producer.begin_transaction()
            try:
                started = time.perf_counter()
                for msg in records:
                    _process(producer, codec, service, msg, logical, topic, counters)
                for key, value in service.changes():
                    producer.produce(topic(STOCK), key=key, value=value)
                processed = time.perf_counter()
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()),
                    consumer.consumer_group_metadata(),
                    TXN_TIMEOUT_S,
                )
                offsets = time.perf_counter()
                commit_retrying(producer)
                committed = time.perf_counter()
                counters.transactions += 1
                counters.process_s += processed - started
                counters.offsets_s += offsets - processed
                counters.commit_s += committed - offsets
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise
                producer.abort_transaction(TXN_TIMEOUT_S)
                counters.aborted += 1
                rewind(consumer)
                service.load(lab, topic, owned())
                report(f"aborted a batch ({exc.args[0].name()}); rewound and reloaded")
    finally:
        consumer.close()
    return counters


def _process(
    producer: Producer,
    codec: Codec,
    service: Service,
    msg: Message,
    logical: dict[str, str],
    topic: Callable[[str], str],
    counters: Counters,
) -> None:
    counters.events_in += 1
    try:
        event = codec.decode(str(msg.topic()), msg.value())
        outputs = service.handle(logical[str(msg.topic())], int(msg.partition() or 0), event)
    except (SerializationError, ValueError, KeyError, TypeError) as exc:
        dead_letter(producer, topic(ev.DEAD_LETTER), service.name, msg, exc)
        counters.dead_letters += 1
        return
    for name, value in outputs:
        physical = topic(name)
        producer.produce(physical, key=value["order_id"], value=codec.encode(name, physical, value))
        producer.poll(0)
        counters.events_out += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="inventory, payment, shipping or order")
    parser.add_argument("--instance", default="1", help="this instance's number (default 1)")
    parser.add_argument("--prefix", default="", help="prepended to every topic name")
    parser.add_argument("--stock", type=Path, help="inventory: a JSON object of SKU -> units")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stock = json.loads(args.stock.read_text()) if args.stock else None
        service = make_service(args.service, stock)
        lab = Lab()

        def say(text: str) -> None:
            print(json.dumps({"service": service.name, "event": text}), flush=True)

        say("ready")
        counters = run(lab, service, args.instance, stop, args.prefix, report=say)
    except (LabError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopped = {"service": service.name, "event": "stopped", **vars(counters)}
    print(json.dumps({**stopped, **counters.phases_ms()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
