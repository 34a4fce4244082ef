"""Replication and failure, counted: who leads each partition and who is in sync, a bounded
stream of numbered records produced through a fault, and what came back.

    rows = partition_table(lab, topic)          # leader, replicas, ISR per partition
    run = produce_numbered(lab, topic, {"acks": "all"}, 3000, rate=500,
                           fault=lambda: lab.faults.kill(2), fault_after=1000)
    tally = count(run.sent, run.acked, run.failed, numbers(read_all(lab, topic)))

A record's number is its value, so a reader can say exactly which acknowledged records are
missing and which are there twice. Kafka's own ``kafka-verifiable-producer`` and
``kafka-verifiable-consumer`` (JSON lines on stdout) give an independent, Java-client witness.
Everything is bounded: a record count, a rate, and a deadline on every wait.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from lab_env import artifacts, health, tools
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.producing import Stats, _resume, _wait_process, wait_in_sync
from lab_env.records import read_all
from lab_env.waiting import NotYet, until_answered, wait_for

Table = list[dict[str, Any]]


# -- the partition state table -------------------------------------------------------------------


def partition_table(lab: Lab, topic: str, timeout: float = 3.0) -> Table:
    """One row per partition: its leader, its replicas (the first is the *preferred* leader),
    its in-sync replicas (ISR) and the replicas out of sync, as the cluster's metadata has them.

    A paused broker accepts connections but never answers, and a client may route a request
    to it. So the lab's admin client (``describe_topics``) gets ``timeout`` seconds; if it has
    no answer, a fresh client bootstrapped to one broker alone (its first request can only go
    to that broker) asks each broker in turn for the topic's metadata.
    """
    future = lab.admin().describe_topics(TopicCollection([topic]), request_timeout=timeout)
    try:
        partitions = future[topic].result().partitions
        return [
            _row(
                p.id,
                p.leader.id if p.leader else None,
                [n.id for n in p.replicas],
                [n.id for n in p.isr],
            )
            for p in sorted(partitions, key=lambda p: p.id)
        ]
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise LabError(f"there is no topic {topic!r}.") from None
    for broker in lab.config.bootstrap().split(","):
        table = _broker_view(lab, broker, topic)
        if table is not None:
            return table
    raise LabError(f"no broker described {topic!r}: see `lab status`.")


def _broker_view(lab: Lab, broker: str, topic: str, timeout: float = 2.0) -> Table | None:
    """``topic`` as one broker's metadata cache has it (None: no answer in ``timeout`` s)."""
    config = {
        "bootstrap.servers": broker,
        "socket.connection.setup.timeout.ms": 2000,
        "log_level": 0,
    }
    try:
        with AdminClient(lab.client_config(config)) as client:
            meta = client.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException:
        return None
    if meta is None or meta.error is not None:
        return None
    return [
        _row(p.id, p.leader if p.leader >= 0 else None, list(p.replicas), list(p.isrs))
        for p in sorted(meta.partitions.values(), key=lambda p: p.id)
    ]


def broker_views(lab: Lab, topic: str) -> list[Table]:
    """``topic`` as seen by each broker that answers within 2 s, asked in parallel.

    Brokers apply metadata changes asynchronously, and a broker just resumed from a pause
    still answers from its old cache for a moment: a change has happened when every
    answering broker shows it.
    """
    brokers = lab.config.bootstrap().split(",")
    with ThreadPoolExecutor(len(brokers)) as pool:
        views = list(pool.map(lambda b: _broker_view(lab, b, topic), brokers))
    return [v for v in views if v is not None]


def _row(partition: int, leader: int | None, replicas: list[int], isr: list[int]) -> dict:
    return {
        "partition": partition,
        "leader": leader,
        "replicas": replicas,
        "isr": isr,
        "out_of_sync": [r for r in replicas if r not in isr],
        "preferred": replicas[0] if replicas else None,
        "leader_is_preferred": bool(replicas) and leader == replicas[0],
    }


def _table_or_none(lab: Lab, topic: str) -> Table | None:
    try:
        return partition_table(lab, topic, timeout=2)
    except LabError:  # no broker answered this time: ask again
        return None


def wait_for_table(
    lab: Lab, topic: str, what: str, condition: Callable[[Table], bool], timeout: float = 60.0
) -> float:
    """Seconds until ``condition(table)`` holds in the view of every broker that answers
    (at least two of them), polled about every 0.3 s and for at most ``timeout`` s."""
    start = time.monotonic()

    def agreed() -> bool:
        views = broker_views(lab, topic)
        return len(views) >= 2 and all(condition(view) for view in views)

    wait_for(what, agreed, timeout, interval=0.3)
    return time.monotonic() - start


class Watcher:
    """Describes ``topic`` every ``interval`` s in a background thread (at most ``seconds``),
    so the metadata's view of an election can be timed while a producer runs in the foreground.

        with Watcher(lab, topic) as watch:
            ...
        watch.history  # rows of partition_table, each with "t": seconds since the start
    """

    def __init__(self, lab: Lab, topic: str, interval: float = 0.25, seconds: float = 120.0):
        self.lab, self.topic, self.interval, self.seconds = lab, topic, interval, seconds
        self.started = time.monotonic()
        self.history: Table = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() - self.started < self.seconds:
            table = _table_or_none(self.lab, self.topic)
            t = round(time.monotonic() - self.started, 2)
            for row in table or []:
                self.history.append({"t": t, **row})
            self._stop.wait(self.interval)

    def __enter__(self) -> Watcher:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, partition: int, condition: Callable[[dict[str, Any]], bool]) -> float | None:
        """When (seconds since the start) ``partition`` first met ``condition``."""
        return next(
            (r["t"] for r in self.history if r["partition"] == partition and condition(r)), None
        )


def leader_of(lab: Lab, topic: str, partition: int) -> int | None:
    return partition_table(lab, topic)[partition]["leader"]


def create_topic_on(
    lab: Lab, name: str, assignment: list[list[int]], config: dict[str, str] | None = None
) -> None:
    """Create a topic whose partition ``i`` lives on the brokers ``assignment[i]`` (the first is
    its preferred leader); every live broker knows it on return (``Lab.wait_for_metadata``).

    ``lab.create_topic`` lets the controller place replicas; a demonstration that kills one
    broker needs to know which partitions live on it.
    """
    topic = NewTopic(name, len(assignment), replica_assignment=assignment, config=config or {})
    with lab.admin() as admin:
        try:
            admin.create_topics([topic], request_timeout=30)[name].result()
        except KafkaException as exc:
            raise LabError(f"Creating topic {name!r} failed: {exc.args[0].str()}") from None
    lab.wait_for_metadata()


def broker_config(lab: Lab, node: int, names: Iterable[str]) -> Table:
    """Broker ``node``'s value of each config, with whether it can change without a restart."""
    resource = ConfigResource(ConfigResource.Type.BROKER, str(node))
    entries = lab.admin().describe_configs([resource], request_timeout=10)[resource].result()
    return [
        {
            "config": name,
            "value": entries[name].value,
            "default": entries[name].is_default,
            "read_only": entries[name].is_read_only,
        }
        for name in names
    ]


def elect_preferred(lab: Lab, topic: str, partitions: Iterable[int]) -> dict[int, str]:
    """Ask the controller to move each partition's leadership back to its preferred replica.
    Returns each partition's outcome: ``"elected"``, or the error's name (ELECTION_NOT_NEEDED
    when the preferred replica already leads)."""
    outcome = health.preferred_election(lab.admin(), [TopicPartition(topic, p) for p in partitions])
    return dict(sorted((tp.partition, result) for tp, result in outcome.items()))


def pause(lab: Lab, node: int) -> None:
    """SIGSTOP ``node`` and wait until every thread of it has stopped."""
    lab.faults.pause(node)
    _wait_process(lab, node, stopped=True)


def resume(lab: Lab, node: int) -> None:
    """SIGCONT ``node`` and make sure it runs again (a paused node must never be left behind)."""
    _resume(lab, node)


def restart(lab: Lab, node: int, timeout: float = 120.0) -> float:
    """Start a killed node, then wait until every partition is back in sync; seconds taken."""
    start = time.monotonic()

    def started() -> bool | NotYet:
        try:
            lab.faults.start(node)
        except LabError as exc:
            # A port of the node may still be held for a minute (TIME_WAIT) by a client
            # connection that happened to get it as its ephemeral port: wait it out.
            if "in use" not in str(exc):
                raise
            return NotYet(str(exc))
        return True

    wait_for(f"kafka-{node}'s ports to be free", started, timeout, interval=2)
    wait_in_sync(lab, timeout)
    return time.monotonic() - start


# -- a numbered stream, through a fault ----------------------------------------------------------


@dataclass
class Deliveries:
    """What the producer was told about each numbered record."""

    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    acked: dict[int, tuple[float, int]] = field(default_factory=dict)  # n -> (s, partition)
    failed: dict[int, str] = field(default_factory=dict)  # n -> error name
    fault_at: float | None = None  # seconds after the start
    fault_after: int | None = None  # the last record handed to the producer before the fault
    # The idempotent producer's id and epoch at the end (librdkafka's statistics, "eos"); None
    # when the producer was not idempotent. An idempotent producer starts at epoch 0.
    producer_id: int | None = None
    producer_epoch: int | None = None

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        number = int(msg.value())
        if err is not None:
            self.failed[number] = err.name()
        else:
            self.acked[number] = (time.monotonic() - self.started, msg.partition())

    def timeline(self) -> Table:
        """One row per acknowledged record: when it was acknowledged, and its partition."""
        return [
            {"record": n, "acked_s": round(t, 3), "partition": p}
            for n, (t, p) in sorted(self.acked.items())
        ]

    def acked_before_fault(self) -> set[int]:
        """The records acknowledged before the fault (all of them when there was none)."""
        if self.fault_at is None:
            return set(self.acked)
        return {n for n, (t, _) in self.acked.items() if t <= self.fault_at}

    def epoch_bump_explains(self, read: Iterable[int]) -> bool:
        """Whether the duplicates in ``read`` (if any) are the idempotent producer's known
        failure, librdkafka issue 4953: during a leader change librdkafka may bump the
        producer's epoch, and batches that were in flight (perhaps already written) are sent
        again under the new epoch, which the broker cannot recognise as retries.

        That explains a duplicate only if the epoch really moved and the record was still
        unacknowledged when the fault came; a record acknowledged before it is never resent.
        """
        copies = Counter(read)
        twice = {n for n, c in copies.items() if c > 1}
        if not twice:
            return True
        bumped = self.producer_epoch is not None and self.producer_epoch > 0
        return bumped and not twice & self.acked_before_fault()


def produce_numbered(
    lab: Lab,
    topic: str,
    config: dict[str, Any],
    records: int,
    rate: float,
    fault: Callable[[], object] | None = None,
    fault_after: int | None = None,
    flush_timeout: float = 60.0,
    first: int = 0,
) -> Deliveries:
    """Produce records ``first .. first+records-1`` (value and key: the number) at about
    ``rate`` per second; call ``fault()`` once, right after record ``fault_after`` was handed
    to the producer. Waits at most ``flush_timeout`` s for the outstanding acknowledgements,
    then purges what is left: those records count as failed (``_PURGE_QUEUE`` /
    ``_PURGE_INFLIGHT``), so a run never outlasts its bound.
    """
    if records < 1 or rate <= 0:
        raise LabError(f"produce at least one record at a positive rate, not {records} at {rate}.")
    stats = Stats(interval_ms=200)
    producer = lab.producer({**config, **stats.config()})
    producer.list_topics(topic, timeout=10)  # metadata first: the clock starts when records do
    run = Deliveries()
    for i in range(records):
        number = first + i
        producer.produce(topic, key=str(number), value=str(number), on_delivery=run.on_delivery)
        run.sent += 1
        producer.poll(0)
        if fault is not None and i == fault_after:
            run.fault_at, run.fault_after = time.monotonic() - run.started, number
            fault()
        ahead = (i + 1) / rate - (time.monotonic() - run.started)
        if ahead > 0:
            producer.poll(ahead)
    if producer.flush(flush_timeout) > 0:
        producer.purge()
        producer.flush(5)
    stats.wait_next(producer)
    run.producer_id, run.producer_epoch = stats.producer_id_and_epoch()
    return run


def first_ack_after(run: Deliveries) -> Table:
    """Per partition: seconds from the fault to the first acknowledgement of a record produced
    after it (acknowledgements of earlier records may still arrive just after the fault)."""
    if run.fault_at is None or run.fault_after is None:
        return []
    rows = []
    for partition in sorted({p for _, p in run.acked.values()}):
        after = [t for n, (t, p) in run.acked.items() if p == partition and n > run.fault_after]
        rows.append(
            {
                "partition": partition,
                "first_ack_after_fault_s": round(min(after) - run.fault_at, 2) if after else None,
            }
        )
    return rows


# -- counting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A stream's outcome: what the producer was told, and what a reader found."""

    sent: int
    acknowledged: int
    failed: int
    read: int
    lost: int  # acknowledged, but not in the topic
    duplicated: int  # read more than once (extra copies)
    unacknowledged_present: int  # not acknowledged (failed or never answered), yet in the topic
    lost_examples: tuple[int, ...] = ()

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lost_examples"}


def numbers(values: Iterable[Any], prefix: str = "") -> list[int]:
    """The record numbers among ``values`` (str or bytes): ``"17"``, or ``"<prefix>.17"`` when
    ``prefix`` is given (kafka-verifiable-producer's ``--value-prefix``, an integer).
    Other values are skipped."""
    out = []
    for value in values:
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if not isinstance(value, str):
            continue
        if prefix:
            head, dot, value = value.partition(".")
            if not dot or head != prefix:
                continue
        elif "." in value:
            continue
        if value.isdigit():
            out.append(int(value))
    return out


def count(sent: int, acked: Iterable[int], failed: Iterable[int], read: Iterable[int]) -> Count:
    """Compare what the producer was told with what a reader found."""
    acked_set, read_list = set(acked), list(read)
    read_set = set(read_list)
    lost = sorted(acked_set - read_set)
    return Count(
        sent=sent,
        acknowledged=len(acked_set),
        failed=len(set(failed)),
        read=len(read_list),
        lost=len(lost),
        duplicated=len(read_list) - len(read_set),
        unacknowledged_present=len(read_set - acked_set),
        lost_examples=tuple(lost[:5]),
    )


def read_numbers(lab: Lab, topic: str, prefix: str = "", timeout: float = 30.0) -> list[int]:
    """Every record number in ``topic``, read back whole with ``read_all``.

    Just after an election the new leader answers OFFSET_NOT_AVAILABLE until its high
    watermark has caught up (a follower has fetched in the new leader epoch): ask again.
    """
    return until_answered(
        f"the records of {topic!r}",
        lambda: numbers((r["value"] for r in read_all(lab, topic, timeout)), prefix),
        timeout,
        interval=0.5,
    )


# -- Kafka's own verifiable tools: an independent witness -----------------------------------------


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects a verifiable tool printed, one a line (other lines are skipped)."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def producer_events(events: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """kafka-verifiable-producer's account: the numbers it was told were acknowledged, the
    errors it got (exception class -> count), and its own summary (``tool_data``)."""
    acked = [e.get("value") for e in events if e.get("name") == "producer_send_success"]
    errors = Counter(
        str(e.get("exception", "?")).rsplit(".", 1)[-1]
        for e in events
        if e.get("name") == "producer_send_error"
    )
    failed = [e.get("value") for e in events if e.get("name") == "producer_send_error"]
    summary = next((e for e in events if e.get("name") == "tool_data"), {})
    return {
        "acked": numbers(acked, prefix),
        "failed": numbers(failed, prefix),
        "errors": dict(errors),
        "sent": summary.get("sent"),
    }


def consumer_values(events: list[dict[str, Any]]) -> list[str]:
    """The values kafka-verifiable-consumer (``--verbose``) read, in the order it read them."""
    return [e.get("value") for e in events if e.get("name") == "record_data"]


def run_tool(lab: Lab, tool: str, args: list[str], timeout: float) -> list[dict[str, Any]]:
    """Run one of Kafka's verifiable tools with a hard deadline and return its JSON events.

    ``tools.run`` has no deadline, and a verifiable consumer asked for more records than the
    topic holds would wait forever; output printed before the deadline is kept.
    """
    artifacts.fetch(lab.config, "tools")
    command = tools.argv(lab.config, tool, args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        return parse_events(out.decode(errors="replace") if isinstance(out, bytes) else out)
    events = parse_events(done.stdout)
    if done.returncode != 0 and not events:
        raise LabError(f"kafka-{tool} failed: {done.stderr.strip()[-600:]}")
    return events
