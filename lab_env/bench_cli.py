"""`lab bench produce|consume`: module 06's benchmarks from a shell, without widgets.

    lab bench produce --records 500000 --size 100 --set linger.ms=20 --set compression.type=lz4
    lab bench produce --records 2000000 --set acks=1 --set enable.idempotence=false --java
    lab bench consume --records 500000 --set fetch.min.bytes=100000 --batch 1000 --java

Each run is bounded by its record count and a deadline. `--java` runs Kafka's own perf-test tool
on the same settings after the Python run; `--json` prints one JSON object per run instead of a
table.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from lab_env import terminal, tuning
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.steps import Steps, timed

out = terminal.console(wide=True)

PRODUCE_COLUMNS = ("engine", "processes", "records", "failed", "records/s", "MB/s")
LATENCY_COLUMNS = ("p50 ms", "p95 ms", "p99 ms")
CONSUME_COLUMNS = ("engine", "batch", "records", "records/s", "MB/s")


def settings_from(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict; a malformed one is refused in a sentence."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise tuning.InvalidSettings(
                f"--set takes KEY=VALUE, e.g. --set linger.ms=20; got {pair!r}."
            )
        settings[key.strip()] = value.strip()
    return settings


def _split(settings: dict[str, str], known: dict[str, Any], side: str) -> dict[str, str]:
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise tuning.InvalidSettings(
            f"{', '.join(unknown)}: not a {side} setting this benchmark varies; "
            f"choose from {', '.join(known)}."
        )
    return settings


def cmd_bench(args: argparse.Namespace) -> int:
    lab = Lab()
    spec = tuning.ProduceSpec(
        records=args.records,
        message_bytes=args.size,
        keys=args.keys,
        partitions=args.partitions,
        processes=args.processes,
        payload=args.payload,
        deadline_s=args.deadline,
        produce_batch=args.produce_batch,
    )
    given = settings_from(args.set or [])
    step = Steps(sys.stderr)  # stdout keeps the table or the JSON
    records = f"{spec.records:,} records of {spec.message_bytes} B"
    runs = 2 if args.java else 1
    if args.side == "produce":
        settings = tuning.producer_settings(_split(given, tuning.PRODUCER_DEFAULTS, "producer"))
        rows = [
            timed(
                step,
                f"run 1 of {runs}, python producer, {records}",
                lambda: tuning.produce(lab, spec, settings),
            )
        ]
        if args.java:
            rows.append(
                timed(
                    step,
                    "run 2 of 2, kafka-producer-perf-test",
                    lambda: tuning.java_produce(lab, spec, settings),
                )
            )
        columns = (*PRODUCE_COLUMNS, *LATENCY_COLUMNS)
    else:
        settings = tuning.consumer_settings(_split(given, tuning.CONSUMER_DEFAULTS, "consumer"))
        with step.phase(f"filling a topic of {spec.partitions} partitions with {records}"):
            topic = tuning.fill(lab, spec)
        try:
            rows = [
                timed(
                    step,
                    f"run 1 of {runs}, python consumer, batches of {args.batch}",
                    lambda: tuning.consume(lab, topic, settings, batch=args.batch),
                )
            ]
            if args.java:
                rows.append(
                    timed(
                        step,
                        "run 2 of 2, kafka-consumer-perf-test",
                        lambda: tuning.java_consume(lab, topic, spec.records, settings),
                    )
                )
        finally:
            lab.delete_topic(topic)
        columns = CONSUME_COLUMNS
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(args.side, settings, rows, columns)
    incomplete = [r for r in rows if r.get("complete") is False or r.get("failed")]
    if incomplete:
        raise LabError(
            "The run did not deliver every record before its deadline: "
            f"{incomplete[0].get('errors') or 'see the table'}. Try fewer --records."
        )
    return 0


def _print_table(
    side: str, settings: dict[str, Any], rows: list[dict[str, Any]], columns: tuple[str, ...]
) -> None:
    out.print(f"{side} settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    table = Table()
    for column in columns:
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="a bounded produce or consume benchmark (module 06)")
    bench.add_argument("side", choices=("produce", "consume"))
    bench.add_argument("--records", type=int, default=200_000, help="default 200000")
    bench.add_argument("--size", type=int, default=100, help="message bytes (default 100)")
    bench.add_argument("--partitions", type=int, default=6, help="default 6")
    bench.add_argument("--keys", choices=tuning.KEYS, default="none")
    bench.add_argument("--payload", choices=tuning.PAYLOADS, default="random")
    bench.add_argument("--processes", type=int, default=1, help="producer processes")
    bench.add_argument("--batch", type=int, default=500, help="consume(num_messages=...)")
    bench.add_argument(
        "--produce-batch",
        type=int,
        default=0,
        metavar="N",
        help="hand records to produce_batch() N at a time (default 0: produce() per record)",
    )
    bench.add_argument("--deadline", type=float, default=60.0, help="seconds (default 60)")
    bench.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a client setting; repeatable"
    )
    bench.add_argument("--java", action="store_true", help="also run Kafka's perf-test tool")
    bench.add_argument("--json", action="store_true", help="one JSON object per run")
    bench.set_defaults(run=lambda backend, args: cmd_bench(args))
