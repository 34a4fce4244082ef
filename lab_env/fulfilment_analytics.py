"""The analytics service of module 11: it reads every event of a pipeline and keeps live aggregates.

It is a plain ``read_committed`` consumer, assigned every partition of every event topic from the
beginning: it changes nothing, so it needs no transaction and no group. Aggregates, from the
events' own fields and the records' timestamps (the moment each service produced them):

- events per second per topic (each stage's throughput);
- every order's end-to-end latency: ``created_at_ms`` (placed) to its terminal event;
- how many orders ended which way, how many are still in flight, revenue per region;
- records that are not events (they belong in the dead-letter topic) are counted, not fatal.

Run it in a thread (``start`` / ``stop``, the notebook's dashboard), step it (``poll``), or run it
as a process: ``python -m lab_env.fulfilment_analytics --prefix P`` prints its summary as JSON
lines.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pandas as pd
from confluent_kafka import KafkaError
from confluent_kafka.serialization import SerializationError

from lab_env import fulfilment_events as ev
from lab_env.api import Lab
from lab_env.fulfilment_services import Codec, reader

ENDINGS = {
    ev.SHIPPING_SCHEDULED: "shipped",
    ev.INVENTORY_REJECTED: "out of stock",
    ev.ORDER_CANCELED: "payment declined",
}


def millis(value: int | datetime) -> int:
    """A ``timestamp-millis`` field as epoch milliseconds (Avro readers return a datetime)."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


class Analytics:
    def __init__(self, lab: Lab, prefix: str = "", codec: Codec | None = None) -> None:
        self.prefix = prefix
        self.codec = codec or Codec(lab)
        group = lab.group(f"{prefix}fulfilment-analytics")
        self.consumer = reader(lab, group, prefix, ev.EVENT_TOPICS)
        self.logical = {prefix + t: t for t in ev.EVENT_TOPICS}
        self.per_second: Counter[tuple[str, int]] = Counter()  # (topic, unix second) -> events
        self.created: dict[str, int] = {}  # order id -> created_at_ms
        self.ended: dict[str, tuple[str, int]] = {}  # order id -> (ending, latency ms)
        self.ended_at: dict[str, int] = {}  # order id -> the terminal event's timestamp (ms)
        self.revenue: Counter[str] = Counter()  # region -> cents charged
        self.region: dict[str, str] = {}
        self.unreadable = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    def _check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the analytics thread stopped: {self.error!r}") from self.error

    # -- consuming ---------------------------------------------------------------------------

    def poll(self, seconds: float = 1.0) -> int:
        """Consume for up to ``seconds``; how many records were read."""
        deadline, count = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(500, timeout=0.2):
                if msg.error() is not None:
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"analytics: {msg.error()}")
                    continue
                count += 1
                self._add(str(msg.topic()), msg.value(), msg.timestamp()[1])
        return count

    def _add(self, topic: str, value: bytes | None, timestamp: int) -> None:
        try:
            event = self.codec.decode(topic, value)
        except (SerializationError, ValueError):
            with self.lock:
                self.unreadable += 1
            return
        name, order = self.logical[topic], event["order_id"]
        with self.lock:
            self.per_second[(name, timestamp // 1000)] += 1
            if name == ev.ORDER_CREATED:
                self.created[order] = millis(event["created_at_ms"])
                self.region[order] = event["region"]
            elif name == ev.PAYMENT_COMPLETED:
                self.revenue[self.region.get(order, "?")] += event["amount_cents"]
            elif name in ENDINGS:
                self.ended[order] = (ENDINGS[name], timestamp - millis(event["created_at_ms"]))
                self.ended_at[order] = timestamp

    def start(self) -> Analytics:
        def loop() -> None:
            try:
                while not self._stop.is_set():
                    self.poll(0.5)
            except Exception as exc:  # reported by every reader of the aggregates
                self.error = exc

        self._thread = threading.Thread(target=loop, daemon=True, name="analytics")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.consumer.close()

    # -- aggregates --------------------------------------------------------------------------

    def throughput(self) -> pd.DataFrame:
        """Events per second per topic (columns ``topic``, ``second``, ``events``); seconds
        are relative to the first event."""
        self._check()
        with self.lock:
            rows = [{"topic": t, "at": s, "events": n} for (t, s), n in self.per_second.items()]
        frame = pd.DataFrame(rows, columns=["topic", "at", "events"])
        if frame.empty:
            return frame.rename(columns={"at": "second"})
        first = frame["at"].min()
        frame["second"] = frame["at"] - first
        return frame.drop(columns="at").sort_values(["second", "topic"]).reset_index(drop=True)

    def latencies(self) -> pd.DataFrame:
        """One row per ended order: its ending, latency (ms) and when it ended (s, relative)."""
        self._check()
        with self.lock:
            rows = [
                {"order_id": o, "ending": e, "latency_ms": ms, "ended_at": self.ended_at[o]}
                for o, (e, ms) in self.ended.items()
            ]
        frame = pd.DataFrame(rows, columns=["order_id", "ending", "latency_ms", "ended_at"])
        if not frame.empty:
            frame["ended_s"] = (frame["ended_at"] - frame["ended_at"].min()) / 1000
        return frame

    def summary(self) -> dict[str, Any]:
        """Orders placed, ended (by ending), in flight; latency percentiles (ms)."""
        self._check()
        with self.lock:
            endings = Counter(e for e, _ in self.ended.values())
            latency = pd.Series([ms for _, ms in self.ended.values()], dtype="float64")
            placed, ended = len(self.created), len(self.ended)
        figures: dict[str, Any] = {
            "placed": placed,
            "ended": ended,
            "in flight": placed - ended,
            **{ending: endings.get(ending, 0) for ending in ENDINGS.values()},
            "unreadable records": self.unreadable,
        }
        for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            figures[name] = round(float(latency.quantile(q))) if len(latency) else None
        figures["avg_ms"] = round(float(latency.mean())) if len(latency) else None
        return figures

    def unfinished(self, order_ids: list[str]) -> int:
        """How many of ``order_ids`` have not ended (as far as this reader has seen)."""
        self._check()
        with self.lock:
            return sum(1 for order in order_ids if order not in self.ended)

    def revenue_by_region(self) -> pd.DataFrame:
        with self.lock:
            rows = [{"region": r, "revenue_eur": c / 100} for r, c in sorted(self.revenue.items())]
        return pd.DataFrame(rows, columns=["region", "revenue_eur"])


def main(argv: list[str] | None = None) -> int:
    """``python -m lab_env.fulfilment_analytics [--prefix P] [--every S] [--seconds S]``: the
    analytics service as a process, printing its summary as one JSON line every ``--every``
    seconds, for at most ``--seconds`` (SIGTERM or Ctrl-C stops it sooner)."""
    parser = argparse.ArgumentParser(
        description="The analytics service: a pipeline's live aggregates, as JSON lines."
    )
    parser.add_argument("--prefix", default="", help="the pipeline's topic prefix")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between summaries")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    analytics = Analytics(Lab(), args.prefix)
    deadline = time.monotonic() + args.seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            analytics.poll(args.every)
            print(json.dumps(analytics.summary()), flush=True)
    finally:
        analytics.consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
