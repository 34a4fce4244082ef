"""Consumer lag as Prometheus metrics: the lab's own exporter, one of the lab's processes.

Kafka's brokers do not export consumer lag (it is a difference between two offsets they keep in
different places: a partition's log end and a group's committed offset), so the lab computes it on
every scrape, for every consumer group and partition:

    kafka_consumergroup_committed_offset{group, topic, partition}
    kafka_topic_partition_end_offset{group, topic, partition}
    kafka_consumergroup_lag{group, topic, partition}          end - committed
    kafka_consumergroup_lag_sum{group, topic}                 summed over partitions

A partition the group has never committed counts as lag from the partition's start (its log start
offset), like `kafka-consumer-groups --describe` shows it. Run it as
``python -m lab_env.lag_exporter --port 9308`` (``lab up`` does).

Offsets and assignments come from the admin API: one client asks for every group, which is
cheap. librdkafka's admin requests to a group coordinator can crash the process when the
coordinator dies or moves mid-request (``lab_env.group_offsets`` says how; the lab's other readers
go through it instead, at a consumer's cost per group). So the exporter serves from a child
process that this command starts again whenever it dies of a signal: a broker fault costs a
scrape or two, not the lag metrics.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from lab_env.artifacts import die_with_parent
from lab_env.config import LabConfig, load_config
from lab_env.errors import LabError

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int  # -1: the group has not committed this partition
    start: int
    end: int

    @property
    def lag(self) -> int:
        """Records the group has yet to process: from its committed offset (or, with none, from
        the partition's start) to the log end. Never negative."""
        position = self.committed if self.committed >= 0 else self.start
        return max(self.end - position, 0)


def lags(admin: AdminClient, timeout: float = TIMEOUT_S) -> list[PartitionLag]:
    """Every consumer group's lag per partition it has committed or is assigned."""
    listing = admin.list_consumer_groups(request_timeout=timeout).result()
    groups = sorted(g.group_id for g in listing.valid)
    if not groups:
        return []
    committed: dict[tuple[str, str, int], int] = {}
    for group in groups:
        request = [ConsumerGroupTopicPartitions(group)]
        try:
            answer = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group]
            partitions = answer.result().topic_partitions or []
        except KafkaException:
            continue  # the group went away between the listing and this request
        for tp in partitions:
            if tp.error is None:
                committed[(group, tp.topic, tp.partition)] = tp.offset
    # Partitions assigned to a live member but never committed lag from their start.
    for group, future in admin.describe_consumer_groups(groups, request_timeout=timeout).items():
        try:
            members = future.result().members or []
        except KafkaException:
            continue
        for member in members:
            for tp in member.assignment.topic_partitions if member.assignment else []:
                committed.setdefault((group, tp.topic, tp.partition), -1)
    if not committed:
        return []
    keys = {(t, p) for _, t, p in committed}
    ends = _offsets(admin, keys, OffsetSpec.latest(), timeout)
    starts = _offsets(admin, keys, OffsetSpec.earliest(), timeout)
    return [
        PartitionLag(g, t, p, offset, starts[(t, p)], ends[(t, p)])
        for (g, t, p), offset in sorted(committed.items())
        if (t, p) in ends and (t, p) in starts
    ]


def _offsets(
    admin: AdminClient, keys: set[tuple[str, int]], spec: OffsetSpec, timeout: float
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets(
        {TopicPartition(t, p): spec for t, p in keys}, request_timeout=timeout
    )
    out: dict[tuple[str, int], int] = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException:
            continue  # deleted topic, or its leader is unavailable: no sample this scrape
    return out


class LagCollector(Collector):
    """Computes every metric at scrape time, so Prometheus' timestamps are the offsets' times.

    Each scrape uses a new admin client. librdkafka caches each group's coordinator and every
    request refreshes the entry, so one long-lived client would keep asking a group's former
    coordinator after a broker restart (NOT_COORDINATOR on every scrape) and that group's lag
    would vanish from the metrics.
    """

    def __init__(self, client: dict[str, object]) -> None:
        self.client = client
        self.lock = threading.Lock()  # one scrape at a time: each is several admin requests

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["group", "topic", "partition"]
        committed = GaugeMetricFamily(
            "kafka_consumergroup_committed_offset", "Committed offset of a group.", labels=labels
        )
        end = GaugeMetricFamily(
            "kafka_topic_partition_end_offset", "Log end offset (high watermark).", labels=labels
        )
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag", "Records not yet committed by the group.", labels=labels
        )
        lag_sum = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Lag summed over a topic's partitions.",
            labels=["group", "topic"],
        )
        up = GaugeMetricFamily("kafka_lag_exporter_up", "1 if the cluster answered this scrape.")
        with self.lock:
            try:
                with AdminClient(self.client) as admin:
                    rows = lags(admin)
                up.add_metric([], 1)
            except KafkaException:
                rows = []
                up.add_metric([], 0)
        sums: dict[tuple[str, str], int] = {}
        for r in rows:
            key = [r.group, r.topic, str(r.partition)]
            committed.add_metric(key, r.committed)
            end.add_metric(key, r.end)
            lag.add_metric(key, r.lag)
            sums[(r.group, r.topic)] = sums.get((r.group, r.topic), 0) + r.lag
        for (group, topic), total in sorted(sums.items()):
            lag_sum.add_metric([group, topic], total)
        yield from (committed, end, lag, lag_sum, up)


def serve(cfg: LabConfig, port: int) -> None:
    REGISTRY.register(LagCollector({**cfg.client_config(), "log_level": 0}))
    try:
        server, thread = start_http_server(port, addr=cfg.host)
    except OSError as exc:
        raise LabError(f"The lag exporter cannot listen on {cfg.host}:{port}: {exc}.") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(5)


def supervise(argv: list[str], pause_s: float = 1.0) -> int:
    """Run ``python -m lab_env.lag_exporter --serve ARGV`` and run it again each time it dies of
    a signal; return its exit code when it exits by itself. SIGTERM and SIGINT are passed on."""
    child: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    while True:
        command = [sys.executable, "-m", "lab_env.lag_exporter", "--serve", *argv]
        child = subprocess.Popen(command, preexec_fn=die_with_parent)
        code = child.wait()
        if stopping.is_set() or code >= 0:
            return max(code, 0) if stopping.is_set() else code
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        print(f"lag exporter died of {name}; starting it again", file=sys.stderr, flush=True)
        time.sleep(pause_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="default: the lab's lag exporter port")
    parser.add_argument(
        "--serve", action="store_true", help="serve in this process, without a supervisor"
    )
    args = parser.parse_args(argv)
    if not args.serve:
        return supervise(["--port", str(args.port)] if args.port else [])
    try:
        cfg = load_config()
        serve(cfg, args.port or cfg.ports.lag_exporter)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
