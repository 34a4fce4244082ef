"""`make bench-startup`: seconds from `lab up` to healthy (caches warm), and the stack's memory.

Each run stops the lab, then times the `lab up` command itself, as a user runs it, until it
returns: brokers registered, quorum leader elected, registry answering, every scrape target up.
Memory is the resident set of every lab process, at rest and after a bounded load (records of
1 KiB through a replicated topic with acks=all), since a JVM's RSS grows with use.

    python -m lab_env.benchmarks.startup [--runs N] [--records N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from lab_env.api import Lab
from lab_env.benchmarks.machine import describe
from lab_env.config import load_config
from lab_env.embedded import EmbeddedLab
from lab_env.steps import Steps

LAB = Path(sys.executable).with_name("lab")


def timed_up() -> float:
    start = time.monotonic()
    proc = subprocess.run([str(LAB), "up"], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"`lab up` failed:\n{proc.stderr}")
    return elapsed


def rss(supervisor: EmbeddedLab) -> dict[str, float]:
    return {c["name"]: c["rss_mib"] for c in supervisor.status()["components"]}


def load(lab: Lab, records: int) -> float:
    """Produce and consume ``records`` 1 KiB records (acks=all, RF 3); returns seconds taken."""
    topic = f"bench.startup.{uuid.uuid4().hex[:6]}"
    lab.create_topic(topic, partitions=3)
    start = time.monotonic()
    producer = lab.producer({"acks": "all", "linger.ms": 10, "compression.type": "none"})
    payload = b"x" * 1024
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)
    consumer = lab.consumer(f"bench-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 120
    while seen < records and time.monotonic() < deadline:
        seen += len(consumer.consume(num_messages=1000, timeout=1.0))
    consumer.close()
    elapsed = time.monotonic() - start
    lab.delete_topic(topic)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    cfg = load_config()
    supervisor = EmbeddedLab(cfg)
    was_running = all(supervisor.procs.live(c) for c in supervisor.components())
    for line in describe(cfg):
        print(line)
    print("warming up: caches and storage (not timed)")
    step = Steps(sys.stderr)  # progress; stdout keeps the figures
    with step.phase("warming up with `lab up` (not timed)"):
        supervisor.up()  # fetches and formats on a first run

    times = []
    for run in range(1, args.runs + 1):
        with step.phase(f"run {run} of {args.runs}, stopping the lab"):
            supervisor.down()
        with step.phase(f"run {run} of {args.runs}, timing `lab up`"):
            times.append(timed_up())
        print(f"run {run}: lab up -> healthy in {times[-1]:.1f} s")
    at_rest = rss(supervisor)
    with step.phase(f"load, {args.records:,} records of 1 KiB produced and consumed"):
        seconds = load(Lab(cfg), args.records)
    loaded = rss(supervisor)
    print(f"load: {args.records} records of 1 KiB, acks=all, RF 3, in {seconds:.1f} s")
    print("RSS MiB       at rest   after load")
    for name in at_rest:
        print(f"  {name:<11} {at_rest[name]:>7.0f}  {loaded[name]:>10.0f}")
    median, total = statistics.median(times), sum(loaded.values())
    print(f"  {'total':<11} {sum(at_rest.values()):>7.0f}  {total:>10.0f}")
    print(
        f"startup: median {median:.1f} s, min {min(times):.1f}, max {max(times):.1f} (goal: 20 s)"
    )
    print(f"memory after load: {total:.0f} MiB (goal: under 3072 MiB)")
    if not was_running:
        with step.phase("stopping the lab (it was not running before)"):
            supervisor.down()
    print(f"RESULT startup_s={median:.1f} rss_mib={total:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
