"""`lab bench` and the tuning engine on the live cluster: short runs, sane figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab_env import tuning
from lab_env.api import Lab
from tests.helpers import Namespace, phases, progress_lines, run_lab
from tests.tiers import CPU

# Benchmarks keep both cores busy.
pytestmark = [pytest.mark.cluster, CPU]


def rows(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def tuning_topics(lab: Lab) -> set[str]:
    """The engine's own run topics (``tuning.<N>p.<id>``) in ``lab``'s namespace."""
    prefix = lab.topic("tuning.")
    return {t for t in lab.admin().list_topics(timeout=10).topics if t.startswith(prefix)}


def test_bench_produce_python_and_java(namespace: Namespace) -> None:
    before = tuning_topics(namespace.lab)
    done = run_lab(
        "bench", "produce", "--records", "20000", "--size", "200", "--partitions", "5",
        "--set", "linger.ms=10", "--set", "compression.type=lz4", "--java", "--json",
        env=namespace.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    python, java = rows(done.stdout)
    first = "run 1 of 2, python producer, 20,000 records of 200 B"
    assert phases(done.stderr) == [first, first, *["run 2 of 2, kafka-producer-perf-test"] * 2]
    assert progress_lines(done.stderr)[1].endswith(f", {python['records/s']:,} records/s")
    assert (python["engine"], java["engine"]) == ("python", "java")
    assert python["records"] == java["records"] == 20_000
    assert python["failed"] == 0 and python["complete"] is True
    for row in (python, java):
        assert row["linger.ms"] == 10 and row["compression.type"] == "lz4"
        assert row["acks"] == "all" and row["enable.idempotence"] is True
        assert 0 < row["records/s"] < 10_000_000
        assert 0 <= row["p50 ms"] <= row["p95 ms"] <= row["p99 ms"]
    assert python["MB/s"] == pytest.approx(python["records/s"] * 200 / 1e6, rel=0.05)
    assert tuning_topics(namespace.lab) == before  # each run's topic is deleted afterwards


def test_bench_consume_python_and_java(lab: Lab) -> None:
    done = run_lab(
        "bench", "consume", "--records", "20000", "--batch", "1000",
        "--set", "fetch.min.bytes=1024", "--java", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    python, java = rows(done.stdout)
    assert phases(done.stderr) == [
        *["filling a topic of 6 partitions with 20,000 records of 100 B"] * 2,
        *["run 1 of 2, python consumer, batches of 1000"] * 2,
        *["run 2 of 2, kafka-consumer-perf-test"] * 2,
    ]  # on stderr: stdout holds the JSON rows only
    assert python["records"] == java["records"] == 20_000
    assert python["complete"] is True and python["batch"] == 1000
    assert python["fetch.min.bytes"] == java["fetch.min.bytes"] == 1024
    assert python["records/s"] > 0 and java["records/s"] > 0


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--set", "acks=1"], "enable.idempotence=true needs acks=all"),
        (["--set", "max.poll.records=500"], "max.poll.records: not a producer setting"),
        (["--records", "0"], "records must be a number from 1"),
    ],
)
def test_bench_refuses_in_a_sentence_and_runs_nothing(
    namespace: Namespace, args: list[str], sentence: str
) -> None:
    before = tuning_topics(namespace.lab)
    done = run_lab("bench", "produce", "--partitions", "5", *args, env=namespace.env)
    assert done.returncode == 1
    assert sentence in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert tuning_topics(namespace.lab) == before


def test_several_processes_share_the_records(lab: Lab) -> None:
    spec = tuning.ProduceSpec(records=30_001, message_bytes=100, processes=2, keys="skewed")
    row = tuning.produce(lab, spec, {"linger.ms": 20})
    assert row["processes"] == 2
    assert row["records"] == 30_001 and row["failed"] == 0 and row["complete"]
    assert row["records/s"] > 0


def test_consume_reads_what_fill_wrote(lab: Lab) -> None:
    spec = tuning.ProduceSpec(records=5_000, message_bytes=50, partitions=2, payload="random")
    topic = tuning.fill(lab, spec)
    try:
        row = tuning.consume(lab, topic, batch=100)
    finally:
        lab.delete_topic(topic)
    assert row["records"] == 5_000
    assert row["complete"] is True


def test_produce_batch_delivers_every_record_across_partitions(lab: Lab) -> None:
    topic = f"it-batch-{tuning.uuid.uuid4().hex[:8]}"
    lab.create_topic(topic, partitions=4)
    try:
        spec = tuning.ProduceSpec(
            records=20_003, message_bytes=80, produce_batch=1000, keys="uniform"
        )
        row = tuning.produce(lab, spec, {"linger.ms": 5}, topic=topic)
        consumer = lab.consumer("it-batch-watermarks")
        try:
            ends = [
                consumer.get_watermark_offsets(tuning.TopicPartition(topic, p), 10)[1]
                for p in range(4)
            ]
        finally:
            consumer.close()
    finally:
        lab.delete_topic(topic)
    assert row["records"] == 20_003 and row["failed"] == 0 and row["complete"]
    assert row["produce_batch"] == 1000
    assert sum(ends) == 20_003  # each record once (idempotent producer: no duplicates)
    # Keyed records go to their keys' partitions. (Unkeyed ones from one produce_batch() call
    # mostly land in one partition: librdkafka's sticky partitioner keeps a partition for
    # sticky.partitioning.linger.ms, and a batch call hands it thousands of records at once.)
    assert all(n > 0 for n in ends)
    assert 0 < row["p50 ms"] <= row["p99 ms"]  # a delivery report per record


def test_bench_orders_measures_a_small_exact_run() -> None:
    """The case study's benchmark end to end at a tiny rate: figures printed, run reconciled."""
    done = subprocess.run(
        [sys.executable, "-m", "lab_env.benchmarks.orders", "--rate", "40", "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    figures = dict(pair.split("=", 1) for pair in result.split()[1:])
    assert figures["exact"] == "True" and figures["ended"] == figures["placed"] == "120"
    assert figures["lost"] == figures["duplicated"] == "0" and figures["generators"] == "2"
    assert result.split()[1:6] == [
        f"{name}={figures[name]}"
        for name in ("orders_per_min", "p50_ms", "p99_ms", "lost", "duplicated")
    ]  # the figures first, in its order
    assert 0 < int(figures["p50_ms"]) <= int(figures["p99_ms"]) <= int(figures["max_ms"])
    assert "machine:" in done.stdout and "lost 0" in done.stdout
    profiled = [line for line in done.stdout.splitlines() if line.startswith("  instance ")]
    assert len(profiled) == 4 and all("commit_ms" in line for line in profiled), done.stdout
    # Progress on stderr, each phase as it starts and ends; stdout keeps the figures.
    assert phases(done.stderr) == [
        phase
        for phase in (
            "starting 1 instance(s) of each service",
            "warm-up, 50 orders through every service (not timed)",
            "placing 120 orders at 40/s for 3 s",
            "waiting for every order's terminal event",
            "reconciling, every event read back",
            "stopping the services",
        )
        for _start_and_end in range(2)
    ], done.stderr
    assert progress_lines(done.stderr)[7].endswith(", 170 of 170 ended (warm-up included)")
    assert progress_lines(done.stdout) == []
