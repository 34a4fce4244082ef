"""`make bench-produce`: the lab's Python load generator against `kafka-producer-perf-test`.

Same cluster, same topic layout, same records and the same producer settings on both sides, in
four configurations (100-byte and 1 KiB records; acks=1, and acks=all with idempotence; lz4).
Runs are interleaved (Python, Java, Python, Java, ...) so a slow moment of the machine hits both,
and each configuration reports the median of its rounds and the ratio Python/Java in records/s.

Both clients get every setting explicitly: librdkafka and the Java client have different defaults
(batch.size 1,000,000 vs 16,384 bytes; idempotence off vs on). The Java tool sends random
upper-case letters per record; the Python generator sends the same kind of payload (a pool of
distinct random-letter values larger than lz4's window), so lz4 finds the same little to gain.

    python -m lab_env.benchmarks.produce [--rounds N] [--scale F] [--processes N]

The last line is machine-readable:
RESULT min_ratio=<lowest Python/Java ratio> <config>_py=<rec/s> <config>_java=<rec/s> ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from typing import Any

from lab_env import tuning
from lab_env.api import Lab
from lab_env.benchmarks.machine import describe
from lab_env.config import load_config
from lab_env.steps import Steps, timed

COMMON = {"linger.ms": 5, "batch.size": 262_144, "compression.type": "lz4"}
ACKS_1 = {"acks": "1", "enable.idempotence": False, "max.in.flight.requests.per.connection": 5}
ACKS_ALL = {"acks": "all", "enable.idempotence": True, "max.in.flight.requests.per.connection": 5}
PARTITIONS = 6
# The Python generator hands records to produce_batch() 1000 at a time: one call into the
# client per thousand records instead of per record (every record still gets its delivery
# report, from which its latency and any failure are counted). One produce() call per record
# costs this 2-core machine about a third of its Python throughput on 100-byte records.
PRODUCE_BATCH = 1000
# Kreps, "Benchmarking Apache Kafka: 2 Million Writes Per Second (On Three Cheap Machines)",
# 2014: 100-byte records, one producer thread, three 6-core machines with 7200 rpm disks.
REFERENCE = {
    "no replication": 821_557,
    "3x replication, asynchronous (acks=1)": 786_980,
    "3x replication, synchronous (acks=all)": 421_823,
}


@dataclass(frozen=True)
class Case:
    name: str
    size: int
    records: int
    settings: dict[str, Any]


def cases(scale: float) -> list[Case]:
    def n(records: int) -> int:
        return max(10_000, int(records * scale))

    return [
        Case("100B_acks1", 100, n(2_000_000), {**COMMON, **ACKS_1}),
        Case("100B_all_idem", 100, n(2_000_000), {**COMMON, **ACKS_ALL}),
        Case("1KiB_acks1", 1024, n(400_000), {**COMMON, **ACKS_1}),
        Case("1KiB_all_idem", 1024, n(400_000), {**COMMON, **ACKS_ALL}),
    ]


def run_case(
    lab: Lab, case: Case, rounds: int, processes: int, step: Steps
) -> dict[str, list[int]]:
    figures: dict[str, list[int]] = {"py": [], "java": []}
    spec = tuning.ProduceSpec(
        records=case.records,
        message_bytes=case.size,
        partitions=PARTITIONS,
        processes=processes,
        deadline_s=120,
        produce_batch=PRODUCE_BATCH,
    )
    for r in range(1, rounds + 1):
        at = f"{case.name} round {r} of {rounds}"
        python = timed(step, f"{at}, python", lambda: tuning.produce(lab, spec, case.settings))
        if python["failed"] or not python["complete"]:
            sys.exit(f"{case.name}: the Python run lost records: {python['errors']}")
        java = timed(step, f"{at}, java", lambda: tuning.java_produce(lab, spec, case.settings))
        figures["py"].append(python["records/s"])
        figures["java"].append(java["records/s"])
        print(
            f"  {case.name} round {r}: python {python['records/s']:>9,} rec/s "
            f"(p99 {python['p99 ms']:.0f} ms, {python['CPU s']:.1f} CPU s)   "
            f"java {java['records/s']:>9,} rec/s (p99 {java['p99 ms']:.0f} ms)",
            flush=True,
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per config")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply record counts")
    parser.add_argument("--processes", type=int, default=1, help="Python producer processes")
    args = parser.parse_args(argv)
    cfg = load_config()
    lab = Lab(cfg)
    for line in describe(cfg):
        print(line)
    print(
        f"cluster: 3 brokers on this machine, topic of {PARTITIONS} partitions, RF 3, "
        f"min.insync.replicas 2; Python: {args.processes} process(es) of confluent-kafka "
        f"(librdkafka), produce_batch() of {PRODUCE_BATCH}; Java: kafka-producer-perf-test, "
        "one producer"
    )
    print("settings on both sides: " + ", ".join(f"{k}={v}" for k, v in COMMON.items()))
    results: dict[str, dict[str, int]] = {}
    step = Steps(sys.stderr)  # progress; stdout keeps the figures
    configs = cases(args.scale)
    for i, case in enumerate(configs, 1):
        print(f"{case.name}: {case.records:,} records of {case.size} B, {case.settings}")
        step(f"config {i} of {len(configs)}, {case.name}")
        figures = run_case(lab, case, args.rounds, args.processes, step)
        results[case.name] = {k: round(statistics.median(v)) for k, v in figures.items()}
    print()
    print(f"{'config':<16}{'python rec/s':>14}{'java rec/s':>14}{'ratio':>8}{'py MB/s':>10}")
    ratios = {}
    for case in cases(args.scale):
        py, java = results[case.name]["py"], results[case.name]["java"]
        ratios[case.name] = py / java
        mb = py * case.size / 1e6
        print(f"{case.name:<16}{py:>14,}{java:>14,}{ratios[case.name]:>8.2f}{mb:>10.1f}")
    print()
    print("2014 reference (Kreps; 100-byte records, three dedicated 6-core machines):")
    for what, rate in REFERENCE.items():
        print(f"  {what:<40}{rate:>10,} rec/s")
    here = results["100B_acks1"]
    print(
        f"  this machine, 100 B, 3x replication, acks=1: python {here['py']:,} rec/s, "
        f"java {here['java']:,} rec/s (brokers, clients and all replicas share "
        f"{os.cpu_count()} cores)"
    )
    fields = [f"min_ratio={min(ratios.values()):.2f}"]
    for name, pair in results.items():
        fields += [f"{name}_py={pair['py']}", f"{name}_java={pair['java']}"]
    print("RESULT " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
