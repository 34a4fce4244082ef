"""The tuning explorer's engine: settings checked, then a bounded benchmark on the live cluster.

Module 06's widgets, `lab bench produce|consume` and `make bench-produce` all call these
functions; nothing here knows about widgets.

    settings = producer_settings({"linger.ms": 20, "compression.type": "lz4"})
    row = produce(lab, ProduceSpec(records=200_000, message_bytes=100), settings)
    row["records/s"], row["p99 ms"]

Kafka's own `kafka-producer-perf-test` and `kafka-consumer-perf-test` run on the same settings
through ``java_produce`` and ``java_consume``, so the two clients share one table.

Settings are the clients' real keys. The explorer fills every producer key it offers, so Python
and Java run with the same values: librdkafka and the Java client have different defaults
(``batch.size`` 1,000,000 vs 16,384 bytes; idempotence off vs on), and a comparison on defaults
compares defaults, not clients.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from lab_env import tools
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.producing import (
    Run,
    benchmark,
    order_values,
    percentile,
    produce_requests,
    warm_partitions,
)
from lab_env.transactional_worker import end_offsets

# librdkafka's defaults for the keys the explorer offers, except idempotence, which is on: the
# lab's lessons recommend it, and the Java client has it on by default.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "max.in.flight.requests.per.connection": 5,
    "batch.size": 1_000_000,
    "linger.ms": 5,
    "compression.type": "none",
}
CONSUMER_DEFAULTS: dict[str, Any] = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 500}
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
KEYS = ("none", "uniform", "skewed")
PAYLOADS = ("random", "orders")
DISTINCT_KEYS = 1000
PAYLOAD_POOL = 4096  # distinct values cycled: 4096 x 100 B is past lz4's 64 KiB window ...
PAYLOAD_POOL_BYTES = 16_000_000  # ... and at most this much memory for large records
ORDER_POOL = 5000  # distinct order events cycled
MAX_MESSAGE_BYTES = 1_000_000  # under the topic's default max.message.bytes (1 MiB + overhead)
_LETTERS = bytes(65 + i % 26 for i in range(256))  # any byte to A..Z, as the Java tool's payload


class InvalidSettings(LabError):
    """A setting or a combination the clients refuse, said as a sentence."""


@dataclass(frozen=True)
class ProduceSpec:
    """What a produce benchmark sends, beside the producer's settings."""

    records: int = 100_000
    message_bytes: int = 100  # ignored for the "orders" payload (its JSON is ~200 bytes)
    keys: str = "none"  # none (sticky partitioner), uniform over 1000 keys, or skewed (Zipf)
    partitions: int = 6
    processes: int = 1  # producer processes sharing the records (one Python process is GIL-bound)
    payload: str = "random"  # random A..Z letters (as kafka-producer-perf-test), or order JSON
    deadline_s: float = 60.0
    seed: int = 0
    produce_batch: int = 0  # 0: produce() per record; N: produce_batch() with N records a call

    def check(self) -> None:
        _in_range("records", self.records, 1, 5_000_000)
        _in_range("message size (bytes)", self.message_bytes, 1, MAX_MESSAGE_BYTES)
        _in_range("partitions", self.partitions, 1, 48)
        _in_range("processes", self.processes, 1, 8)
        _in_range("deadline (s)", self.deadline_s, 1, 600)
        _in_range("produce_batch size (0: produce() per record)", self.produce_batch, 0, 100_000)
        _one_of("key distribution", self.keys, KEYS)
        _one_of("payload", self.payload, PAYLOADS)


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidSettings(f"{name} must be a number from {low:,} to {high:,}; got {value!r}.")


def _one_of(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidSettings(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise InvalidSettings(f"{name} must be true or false; got {value!r}.")


def _integer(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidSettings(f"{name} must be a whole number; got {value!r}.") from None
    _in_range(name, number, low, high)
    return number


def producer_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The explorer's producer keys, defaults filled in, values checked and normalised.

    Raises InvalidSettings, a sentence that says what to change, for values out of range and for
    the combinations librdkafka refuses: idempotence needs ``acks=all`` and at most 5 requests
    in flight per connection.
    """
    settings = {**PRODUCER_DEFAULTS, **(overrides or {})}
    acks = str(settings["acks"]).lower()
    if acks not in ("0", "1", "all", "-1"):
        raise InvalidSettings(f"acks must be 0, 1 or all; got {settings['acks']!r}.")
    settings["acks"] = "all" if acks == "-1" else acks
    idempotent = _flag("enable.idempotence", settings["enable.idempotence"])
    settings["enable.idempotence"] = idempotent
    in_flight = _integer(
        "max.in.flight.requests.per.connection",
        settings["max.in.flight.requests.per.connection"],
        1,
        1_000_000,
    )
    settings["max.in.flight.requests.per.connection"] = in_flight
    settings["batch.size"] = _integer("batch.size", settings["batch.size"], 1, 2_147_483_647)
    settings["linger.ms"] = _integer("linger.ms", settings["linger.ms"], 0, 900_000)
    _one_of("compression.type", settings["compression.type"], COMPRESSION)
    if idempotent and settings["acks"] != "all":
        raise InvalidSettings(
            f"enable.idempotence=true needs acks=all (got acks={settings['acks']}): the broker "
            "can only deduplicate retries of writes that every in-sync replica has. Set acks "
            "to all, or turn idempotence off."
        )
    if idempotent and in_flight > 5:
        raise InvalidSettings(
            f"enable.idempotence=true allows at most 5 requests in flight per connection (got "
            f"max.in.flight.requests.per.connection={in_flight}); with 1 to 5 the broker still "
            "keeps order across retries."
        )
    _librdkafka_accepts(settings)
    return settings


def _librdkafka_accepts(settings: dict[str, Any]) -> None:
    """The last word is the client's: build a producer that knows no broker, so connects nowhere
    (and keeps quiet about it), and see whether librdkafka takes the settings."""
    try:
        Producer({"log_level": 0, **_client_values(settings)})
    except KafkaException as exc:
        raise InvalidSettings(f"librdkafka refuses these settings: {exc.args[0].str()}") from None


def consumer_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The explorer's consumer keys, defaults filled in and checked."""
    settings = {**CONSUMER_DEFAULTS, **(overrides or {})}
    settings["fetch.min.bytes"] = _integer(
        "fetch.min.bytes", settings["fetch.min.bytes"], 1, 100_000_000
    )
    settings["fetch.wait.max.ms"] = _integer(
        "fetch.wait.max.ms", settings["fetch.wait.max.ms"], 0, 300_000
    )
    return settings


def _client_values(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in settings.items()}


# -- what is sent -------------------------------------------------------------------------------


def payloads(spec: ProduceSpec, count: int, offset: int = 0) -> list[bytes]:
    """``count`` values: random letters of ``spec.message_bytes`` (a pool of distinct values,
    cycled) or order JSON events; the same bytes for the same seed."""
    if spec.payload == "orders":
        pool = order_values(ORDER_POOL, seed=spec.seed)
    else:
        size = spec.message_bytes
        distinct = min(PAYLOAD_POOL, max(16, PAYLOAD_POOL_BYTES // size))
        raw = random.Random(spec.seed).randbytes(size * distinct).translate(_LETTERS)
        pool = [raw[i * size : (i + 1) * size] for i in range(distinct)]
    return [pool[(offset + i) % len(pool)] for i in range(count)]


def keys(spec: ProduceSpec, count: int, offset: int = 0) -> list[bytes] | None:
    """None (no keys), keys uniform over 1000 values, or skewed: key k drawn with weight 1/(k+1),
    so a few keys (and their partitions) take most records."""
    if spec.keys == "none":
        return None
    rnd = random.Random(spec.seed * 7919 + offset)
    names = [f"key-{k}".encode() for k in range(DISTINCT_KEYS)]
    if spec.keys == "uniform":
        return [names[rnd.randrange(DISTINCT_KEYS)] for _ in range(count)]
    weights = [1 / (k + 1) for k in range(DISTINCT_KEYS)]
    return rnd.choices(names, weights=weights, k=count)


# -- the Python producer --------------------------------------------------------------------------


def produce(
    lab: Lab,
    spec: ProduceSpec,
    settings: dict[str, Any],
    topic: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the Python producer (``spec.processes`` processes) and return one table row.

    Without ``topic`` a new topic of ``spec.partitions`` partitions (RF 3) is created for the run
    and deleted afterwards. ``progress`` gets the records handed to the producer so far (one
    process only; with several it is called once, at the end).

    Several processes are started with ``spawn`` (never fork a process that runs librdkafka's
    threads), which re-imports the caller's main module: a plain script must guard its entry
    point with ``if __name__ == "__main__":``. Notebooks need nothing.
    """
    spec.check()
    settings = producer_settings(settings)
    with _topic(lab, spec.partitions, topic) as name:
        if spec.processes == 1:
            values = payloads(spec, spec.records)
            run = benchmark(
                lab,
                name,
                _client_values(settings),
                values,
                keys(spec, spec.records),
                deadline_s=spec.deadline_s,
                stats=True,
                progress=progress,
                batch=spec.produce_batch,
            )
            runs = [run]
        else:
            runs = _in_processes(lab, spec, settings, name)
            if progress is not None:
                progress(spec.records)
    return _row("python", spec, settings, runs)


def _share(records: int, processes: int, index: int) -> int:
    return records // processes + (1 if index < records % processes else 0)


def _in_processes(lab: Lab, spec: ProduceSpec, settings: dict[str, Any], topic: str) -> list[Run]:
    start_at = time.time() + 3.0 + 0.5 * spec.processes  # every process warmed up and waiting
    jobs, offset = [], 0
    for index in range(spec.processes):
        count = _share(spec.records, spec.processes, index)
        jobs.append((spec, settings, topic, offset, count, start_at))
        offset += count
    context = get_context("spawn")  # no fork of a process that has librdkafka threads
    with ProcessPoolExecutor(spec.processes, mp_context=context) as pool:
        return list(pool.map(_produce_share, jobs))


def _produce_share(job: tuple[ProduceSpec, dict[str, Any], str, int, int, float]) -> Run:
    spec, settings, topic, offset, count, start_at = job
    lab = Lab()
    return benchmark(
        lab,
        topic,
        _client_values(settings),
        payloads(spec, count, offset),
        keys(spec, count, offset),
        deadline_s=spec.deadline_s,
        stats=True,
        start_at=start_at,
        batch=spec.produce_batch,
    )


def _row(
    engine: str, spec: ProduceSpec, settings: dict[str, Any], runs: list[Run]
) -> dict[str, Any]:
    seconds = max(max(r.seconds for r in runs), 1e-9)  # they started together
    delivered = sum(r.delivered for r in runs)
    latencies = [ms for r in runs for ms in r.latencies_ms]
    errors: dict[str, int] = {}
    for r in runs:
        for name, n in r.errors.items():
            errors[name] = errors.get(name, 0) + n
    return {
        "engine": engine,
        "processes": spec.processes,
        **settings,
        "message bytes": _mean_size(spec),
        "partitions": spec.partitions,
        "keys": spec.keys,
        "payload": spec.payload,
        "produce_batch": spec.produce_batch,
        "records": sum(r.records for r in runs),
        "failed": sum(errors.values()),
        "errors": ", ".join(f"{k} x{v}" for k, v in sorted(errors.items())),
        "complete": all(r.complete for r in runs),
        "seconds": round(seconds, 2),
        "records/s": round(delivered / seconds),
        "MB/s": round(sum(r.delivered_bytes for r in runs) / seconds / 1e6, 2),
        "CPU s": round(sum(r.cpu_seconds for r in runs), 3),
        "produce requests": sum(produce_requests(r.stats) for r in runs),
        "p50 ms": round(percentile(latencies, 0.50), 1),
        "p95 ms": round(percentile(latencies, 0.95), 1),
        "p99 ms": round(percentile(latencies, 0.99), 1),
    }


def _mean_size(spec: ProduceSpec) -> int:
    if spec.payload == "random":
        return spec.message_bytes
    sample = order_values(200, seed=spec.seed)
    return round(sum(map(len, sample)) / len(sample))


class _topic:
    """The run's topic: the one given, or a new one deleted afterwards."""

    def __init__(self, lab: Lab, partitions: int, name: str | None) -> None:
        self.lab, self.partitions, self.given = lab, partitions, name
        self.name = name or lab.topic(f"tuning.{partitions}p.{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> str:
        if self.given is None:
            self.lab.create_topic(self.name, partitions=self.partitions, replication_factor=3)
            warm_partitions(self.lab, self.name)
        return self.name

    def __exit__(self, *exc: object) -> None:
        if self.given is None:
            self.lab.delete_topic(self.name)


# -- the Python consumer --------------------------------------------------------------------------


def fill(lab: Lab, spec: ProduceSpec) -> str:
    """A new topic holding ``spec.records`` records to consume (the caller deletes it)."""
    spec.check()
    name = lab.topic(f"tuning.read.{uuid.uuid4().hex[:8]}")
    lab.create_topic(name, partitions=spec.partitions, replication_factor=3)
    fast = producer_settings({"linger.ms": 20, "compression.type": "lz4"})
    row = produce(lab, spec, fast, topic=name)
    if row["failed"] or not row["complete"]:
        lab.delete_topic(name)
        raise LabError(f"could not fill {name!r}: {row['errors'] or 'deadline reached'}.")
    return name


def consume(
    lab: Lab,
    topic: str,
    settings: dict[str, Any] | None = None,
    batch: int = 500,
    records: int | None = None,
    deadline_s: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Read ``topic`` from the start with ``consume(num_messages=batch)`` and return one row.

    The consumer is assigned every partition (no group, no commits), so the figure is the fetch
    path alone; the clock starts at ``assign()``, before the first fetch (librdkafka prefetches
    up to ``queued.min.messages`` records per partition before the first ``consume()``
    returns, so a clock started at the first record would overstate the rate). Stops at
    ``records`` (default: all the topic holds) or at ``deadline_s``.
    """
    settings = consumer_settings(settings)
    _in_range("consume() batch size", batch, 1, 1_000_000)
    _in_range("deadline (s)", deadline_s, 1, 600)
    meta = lab.admin().list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise LabError(f"topic {topic!r} is not there: {meta.error.str()}.")
    ends = end_offsets(lab.admin(), topic)
    wanted = min(records or sum(ends.values()), sum(ends.values()))
    consumer = Consumer(
        lab.client_config(
            {
                "group.id": lab.group(f"tuning-{uuid.uuid4().hex[:8]}"),  # never joined
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                **settings,
            }
        )
    )
    seen = size = 0
    cpu_start, start = time.process_time(), time.monotonic()
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    deadline = start + deadline_s
    while seen < wanted and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=batch, timeout=0.5)
        for m in messages:
            if m.error() is None:
                seen += 1
                size += len(m.value() or b"") + len(m.key() or b"")
        if progress is not None:
            progress(seen)
    seconds = max(time.monotonic() - start, 1e-9)
    cpu = time.process_time() - cpu_start
    consumer.close()
    return {
        "engine": "python",
        **settings,
        "batch": batch,
        "records": seen,
        "complete": seen >= wanted,
        "seconds": round(seconds, 2),
        "records/s": round(seen / seconds),
        "MB/s": round(size / seconds / 1e6, 2),
        "CPU s": round(cpu, 3),
    }


# -- Kafka's own tools ---------------------------------------------------------------------------

_PRODUCER_TOTAL = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mib>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


def parse_producer_perf(output: str) -> dict[str, float]:
    """The final summary line of ``kafka-producer-perf-test``. Its "MB/sec" is MiB/s."""
    found = _PRODUCER_TOTAL.findall(output)
    if not found:
        raise LabError("kafka-producer-perf-test printed no summary line:\n" + output[-800:])
    records, rate, mib, _avg, _max, p50, p95, p99 = found[-1]
    return {
        "records": int(records),
        "records/s": round(float(rate)),
        "MB/s": round(float(mib) * 1024 * 1024 / 1e6, 2),
        "p50 ms": float(p50),
        "p95 ms": float(p95),
        "p99 ms": float(p99),
    }


def java_produce(
    lab: Lab, spec: ProduceSpec, settings: dict[str, Any], topic: str | None = None
) -> dict[str, Any]:
    """``kafka-producer-perf-test`` with the same records count, size and producer settings.

    The tool sends unkeyed records of random letters, like the "random" payload here; keyed or
    order-JSON specs are refused rather than compared unlike with like.
    """
    spec.check()
    if spec.keys != "none" or spec.payload != "random":
        raise InvalidSettings(
            "kafka-producer-perf-test sends unkeyed random letters only: use keys=none and "
            "payload=random to compare with it."
        )
    settings = producer_settings(settings)
    props = [f"{k}={v}" for k, v in _client_values(settings).items()]
    with _topic(lab, spec.partitions, topic) as name:
        args = ["--topic", name, "--num-records", str(spec.records)]
        args += ["--record-size", str(spec.message_bytes), "--throughput", "-1"]
        done = tools.run(
            lab.config, "producer-perf-test", [*args, "--producer-props", *props], capture=True
        )
    if done.returncode != 0:
        raise LabError(f"kafka-producer-perf-test failed:\n{(done.stderr or done.stdout)[-800:]}")
    figures = parse_producer_perf(done.stdout)
    return {
        "engine": "java",
        "processes": 1,
        **settings,
        "message bytes": spec.message_bytes,
        "partitions": spec.partitions,
        "keys": spec.keys,
        "payload": spec.payload,
        **figures,
    }


def parse_consumer_perf(output: str) -> dict[str, float]:
    """The CSV line ``kafka-consumer-perf-test`` prints (header, then values).

    ``records/s`` and ``MB/s`` are the tool's fetch rates, which leave out the time its consumer
    spends joining its group (the group's first rebalance, ~3 s with the broker's default
    ``group.initial.rebalance.delay.ms``); the Python consumer joins no group, so these compare.
    The rate with the join is kept as ``records/s with join``.
    """
    lines = [line for line in output.splitlines() if line.count(",") >= 5]
    header = next((i for i, line in enumerate(lines) if "nMsg.sec" in line), None)
    if header is None or header + 1 >= len(lines):
        raise LabError("kafka-consumer-perf-test printed no results:\n" + output[-800:])
    names = [n.strip() for n in lines[header].split(",")]
    values = dict(zip(names, (v.strip() for v in lines[header + 1].split(",")), strict=False))
    return {
        "records": int(float(values["data.consumed.in.nMsg"])),
        "records/s": round(float(values["fetch.nMsg.sec"])),
        "MB/s": round(float(values["fetch.MB.sec"]) * 1024 * 1024 / 1e6, 2),
        "records/s with join": round(float(values["nMsg.sec"])),
    }


def java_consume(
    lab: Lab, topic: str, records: int, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``kafka-consumer-perf-test`` reading ``records`` of ``topic`` with the same fetch settings.

    The Java consumer has no ``fetch.wait.max.ms``; its name for it is ``fetch.max.wait.ms``.
    """
    settings = consumer_settings(settings)
    props = {
        "fetch.min.bytes": settings["fetch.min.bytes"],
        "fetch.max.wait.ms": settings["fetch.wait.max.ms"],
        "auto.offset.reset": "earliest",
    }
    args = ["--topic", topic, "--num-records", str(records), "--timeout", "30000"]
    done = tools.run(lab.config, "consumer-perf-test", args, capture=True, properties=props)
    if done.returncode != 0:
        raise LabError(f"kafka-consumer-perf-test failed:\n{(done.stderr or done.stdout)[-800:]}")
    return {"engine": "java", **settings, "batch": None, **parse_consumer_perf(done.stdout)}
