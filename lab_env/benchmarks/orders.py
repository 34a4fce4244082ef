"""`make bench-orders`: the order-fulfilment pipeline's sustained throughput and end-to-end latency.

Starts the four services (inventory, payment, shipping, order) with ``--instances`` each on a
pipeline of its own, places generated orders (``datasets.orders``: skewed SKUs and customers)
at a steady ``--rate`` for ``--seconds`` from ``--generators`` processes (each places every
N-th order at rate/N, so that the generator is not the limit: one process encoding Avro and
producing offered at most about 2,350 orders per second here), and times every order from the
moment it is placed to
the moment its terminal event (``shipping.scheduled``, ``inventory.rejected`` or
``order.canceled``) is visible to a ``read_committed`` consumer, which is what a downstream
service sees. Then it reconciles the run: every order ended exactly once, nothing lost or
duplicated, no stock oversold.

When the services stop, each logs where its transactions' time went (processing the batch,
``send_offsets_to_transaction``, commit); the benchmark prints those averages per instance, the
profile of a run that falls short.

Throughput is the rate at which orders ended between the 10th and 90th percentile of the ending
times: the offered rate when the pipeline keeps up (then the latency of the last orders is no
worse than that of the first), its ceiling when it does not (then the latency grows). The
article's figures (1.2 s average latency, 210,000 orders per minute at peak) are printed beside
the measured ones.

    python -m lab_env.benchmarks.orders [--rate N] [--seconds S] [--instances N] [--generators N]

The last line is machine-readable, the issue's figures first:
RESULT orders_per_min=<n> p50_ms=<n> p99_ms=<n> lost=<n> duplicated=<n> orders_per_s=<n> ...
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.synchronize
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from lab_env import datasets
from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.api import Lab
from lab_env.benchmarks.machine import describe
from lab_env.config import load_config
from lab_env.errors import LabError
from lab_env.fulfilment_pipeline import Pipeline, paced
from lab_env.fulfilment_reconcile import reconcile
from lab_env.producing import percentile
from lab_env.steps import Steps

ARTICLE = {"avg_ms": 1200, "orders_per_min": 210_000}
PLENTY = 1_000_000_000  # units per SKU: no order is rejected for stock, every order does all stages


class Watcher(threading.Thread):
    """A read_committed consumer of the terminal topics: when each order's ending became visible
    (wall clock, ms), by order id (the key: nothing to decode)."""

    def __init__(self, lab: Lab, prefix: str, expected: int, timeout: float) -> None:
        super().__init__(daemon=True)
        group = f"{prefix}bench-watcher-{uuid.uuid4().hex[:6]}"
        self.consumer = fs.reader(lab, group, prefix, ev.TERMINAL)
        self.expected, self.timeout = expected, timeout
        self.ended: dict[str, float] = {}

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while len(self.ended) < self.expected and time.monotonic() < deadline:
                for msg in self.consumer.consume(500, timeout=0.2):
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            print(f"watcher: {msg.error()}", file=sys.stderr)
                        continue
                    self.ended.setdefault(msg.key().decode(), time.time() * 1000)
        finally:
            self.consumer.close()


def steady_rate(ends_ms: list[float]) -> float:
    """Orders ended per second between the 10th and the 90th percentile of the ending times:
    the offered rate when the pipeline keeps up, its ceiling when it does not. (Dividing every
    ending by the whole run would charge the last orders' latency to the throughput.)"""
    ends = sorted(ends_ms)
    low, high = len(ends) // 10, len(ends) * 9 // 10
    if high - low < 2 or ends[high] <= ends[low]:
        return 0.0
    return (high - low) / ((ends[high] - ends[low]) / 1000)


def profile(logs: Path) -> list[dict[str, Any]]:
    """Each service instance's transactions, from the line it logs when it stops: how many, the
    average batch, and where a transaction's time went (ms)."""
    rows = []
    for log in sorted(logs.glob("*.log")):
        stops = [json.loads(x) for x in log.read_text().splitlines() if '"stopped"' in x]
        if stops and stops[-1].get("transactions"):
            last = stops[-1]
            rows.append(
                {
                    "instance": log.stem,
                    "transactions": last["transactions"],
                    "avg batch": round(last["events_in"] / last["transactions"]),
                    **{k: last[k] for k in ("process_ms", "send_offsets_ms", "commit_ms")},
                }
            )
    return rows


def _generator(
    prefix: str,
    orders: list[dict[str, Any]],
    rate: float,
    ready: Any,
    go: multiprocessing.synchronize.Event,
    results: Any,
) -> None:
    """One load generator process: its clients made, it waits for ``go``, places ``orders`` at
    ``rate`` and puts (when each was placed, by order id) on ``results``."""
    lab = Lab()
    codec = fs.Codec(lab)
    placed: dict[str, float] = {}
    ready.put(True)
    go.wait(120)
    try:
        fs.place_orders(lab, paced(orders, rate, placed), prefix, codec)
        results.put(placed)
    except Exception as exc:  # reported by the parent, which waits for every generator
        results.put(f"{type(exc).__name__}: {exc}")


def place_in_parallel(
    prefix: str, orders: list[dict[str, Any]], rate: float, generators: int
) -> tuple[dict[str, float], float, float]:
    """Place ``orders`` at ``rate`` from ``generators`` processes, each every N-th order at
    rate/N, started together. When each order was placed (epoch ms), the start and end (ms)."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    workers = [
        context.Process(
            target=_generator,
            args=(prefix, orders[i::generators], rate / generators, ready, go, results),
            daemon=True,
        )
        for i in range(generators)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=120)
        started = time.time() * 1000
        go.set()
        placed: dict[str, float] = {}
        for _ in workers:
            got = results.get(timeout=len(orders) / rate + 300)
            if isinstance(got, str):
                raise LabError(f"a load generator failed: {got}")
            placed.update(got)
        return placed, started, time.time() * 1000
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3500, help="orders placed per second")
    parser.add_argument("--seconds", type=float, default=60, help="how long orders are placed")
    parser.add_argument("--instances", type=int, default=1, help="instances of each service")
    parser.add_argument(
        "--generators", type=int, default=2, help="load generator processes (default 2)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the pipeline's topics")
    args = parser.parse_args(argv)
    if not 1 <= args.generators <= 8:
        raise LabError(f"run 1 to 8 load generators, not {args.generators}.")
    cfg = load_config()
    for line in describe(cfg):
        print(line)
    lab = Lab(cfg)
    count = int(args.rate * args.seconds)
    catalog = datasets.make_catalog()
    orders = list(datasets.orders(catalog, count, seed=42, peak_per_s=max(args.rate, 1.0)))
    if len(orders) < count:
        raise LabError(f"the generator made {len(orders)} orders, not {count}.")
    stock = {sku.sku: PLENTY for sku in catalog}
    pipeline = Pipeline(lab, stock)
    print(
        f"pipeline {pipeline.prefix} in {pipeline.workdir} with {args.instances} instance(s) "
        "of each service; "
        f"{count} orders at {args.rate:g}/s for {args.seconds:g} s from "
        f"{args.generators} generator process(es)"
    )
    step = Steps(sys.stderr)  # progress; stdout keeps the figures
    try:
        with step.phase(f"starting {args.instances} instance(s) of each service") as found:
            pipeline.start_all(args.instances)
            expected = pipeline.running()
            pipeline.wait_assigned()
            found.append("every partition assigned")
        warm = [dict(o, order_id=f"warm-{i}") for i, o in enumerate(orders[:50])]
        with step.phase(f"warm-up, {len(warm)} orders through every service (not timed)"):
            pipeline.place(warm)  # every service assigned and running before the clock starts
            pipeline.settle(len(warm), timeout=120)
        watcher = Watcher(lab, pipeline.prefix, count + len(warm), args.seconds + 300)
        watcher.start()
        placing = f"placing {count:,} orders at {args.rate:g}/s for {args.seconds:g} s"
        with step.phase(placing) as found:
            placed, started, placing_ended = place_in_parallel(
                pipeline.prefix, orders, args.rate, args.generators
            )
            found.append(f"{len(watcher.ended):,} of {watcher.expected:,} ended so far")
        with step.phase("waiting for every order's terminal event") as found:
            watcher.join(args.seconds + 310)
            found.append(f"{len(watcher.ended):,} of {watcher.expected:,} ended (warm-up included)")
        with step.phase("reconciling, every event read back"):
            pipeline.check_alive(expected)
            events = pipeline.settle(count + len(warm), timeout=60)
            report = reconcile(warm + orders, events, stock)
    finally:
        with step.phase("stopping the services"):
            pipeline.stop_all()  # each instance logs its transactions' profile as it stops
            phases = profile(pipeline.workdir / "logs")
            pipeline.close(delete=not args.keep)  # --keep keeps the logs too

    ended = sorted((k for k in placed if k in watcher.ended), key=placed.__getitem__)
    latencies = [watcher.ended[k] - placed[k] for k in ended]
    if not latencies:
        raise LabError(
            "no order ended: is every service running? Run again with --keep to keep the "
            "services' logs (the work directory is printed at the start)."
        )
    ended_per_s = steady_rate([watcher.ended[k] for k in ended])
    offered_per_s = len(placed) / ((placing_ended - started) / 1000)
    tenth = max(1, len(latencies) // 10)
    first, last = statistics.mean(latencies[:tenth]), statistics.mean(latencies[-tenth:])
    figures = {
        "orders_per_min": round(ended_per_s * 60),
        "p50_ms": round(percentile(latencies, 0.50)),
        "p99_ms": round(percentile(latencies, 0.99)),
        "lost": len(report.lost),
        "duplicated": sum(report.duplicated.values()),
        "orders_per_s": round(ended_per_s),
        "offered_per_s": round(offered_per_s),
        "avg_ms": round(statistics.mean(latencies)),
        "max_ms": round(max(latencies)),
        "first_tenth_avg_ms": round(first),
        "last_tenth_avg_ms": round(last),
        "ended": len(latencies),
        "placed": len(placed),
        "instances": args.instances,
        "generators": args.generators,
        "exact": report.exact,
    }
    print()
    print(f"{'':28}{'measured here':>16}{'article':>12}")
    print(f"{'average latency (ms)':28}{figures['avg_ms']:>16}{ARTICLE['avg_ms']:>12}")
    print(f"{'p99 latency (ms)':28}{figures['p99_ms']:>16}{'-':>12}")
    print(f"{'orders per minute':28}{figures['orders_per_min']:>16}{ARTICLE['orders_per_min']:>12}")
    print(
        f"offered {figures['offered_per_s']}/s, ended {figures['orders_per_s']}/s; latency of "
        f"the first tenth {first:.0f} ms, of the last tenth {last:.0f} ms"
    )
    print(f"reconciliation: {report.summary()}")
    print("where a transaction's time goes, per service instance (averages):")
    for row in phases:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0 if report.exact else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
