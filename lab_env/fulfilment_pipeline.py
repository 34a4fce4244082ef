"""The order-fulfilment pipeline as processes: start, scale, kill and stop service instances, place
orders, wait until every order has ended, and tidy up. Tests, the benchmark, ``lab orders`` and the
module 11 notebook drive the services through this one class.

A pipeline lives in a work directory: ``stock.json`` (the inventory's opening stock), ``run/`` (one
record per running instance, as the lab keeps for its own processes) and ``logs/``. Instances run
detached, so a pipeline started by ``lab orders up`` is found again by the next ``lab orders``
command. Every pipeline has its own topic prefix, so several can share a cluster.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env import schemas
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.processes import STOPPED, Registry
from lab_env.waiting import eventually, wait_for

SERVICES = ("inventory", "payment", "shipping", "order")


def paced(
    orders: Iterable[dict[str, Any]], rate: float, placed: dict[str, float] | None = None
) -> Iterator[dict[str, Any]]:
    """Hand out ``orders`` at ``rate`` per second (a load generator's clock); with ``placed``,
    note when each was handed out (epoch ms), by order id."""
    if rate <= 0:
        raise LabError(f"orders are placed at a positive rate, not {rate}.")
    start = time.monotonic()
    for i, order in enumerate(orders):
        ahead = i / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        if placed is not None:
            placed[order["order_id"]] = time.time() * 1000
        yield order


def instance_name(service: str, instance: str | int) -> str:
    return f"{service}-{instance}"


class Pipeline:
    """One pipeline's service instances, named ``<service>-<instance>``."""

    def __init__(
        self,
        lab: Lab,
        stock: dict[str, int] | None = None,
        prefix: str | None = None,
        workdir: Path | None = None,
        die_with_caller: bool = True,
    ) -> None:
        """A pipeline in ``workdir`` (a new temporary one by default, which ``close`` removes);
        an existing work directory keeps its stock unless another is given. The prefix defaults
        to a new one.

        Instances die with the process that started them (a notebook's kernel, a test), even
        when it fails before ``close``; ``die_with_caller=False`` (``lab orders``) lets them
        run on until stopped."""
        self.die_with_caller = die_with_caller
        self.lab = lab
        self.owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="fulfilment-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prefix: str = f"orders-{uuid.uuid4().hex[:6]}." if prefix is None else prefix
        self.stock_file = self.workdir / "stock.json"
        if stock is not None or not self.stock_file.exists():
            self.stock_file.write_text(json.dumps(stock or fs.catalog_stock()))
        self.stock: dict[str, int] = json.loads(self.stock_file.read_text())
        self.procs = Registry(self.workdir / "run")
        self.codec = fs.Codec(lab)
        self._topics_ready = False
        self._terminal: Consumer | None = None  # ended()'s reader, created on first use
        self._ended: set[tuple[str, int, int]] = set()

    def ensure_topics(self) -> None:
        """Create the pipeline's topics (once; those that exist are kept)."""
        if not self._topics_ready:
            fs.ensure_topics(self.lab, self.prefix)
            self._topics_ready = True

    # -- processes ---------------------------------------------------------------------------

    def running(self) -> list[tuple[str, str]]:
        """(service, instance) of every live instance."""
        names = [r.name for r in self.procs.all() if self.procs.live(r.name) is not None]
        return sorted((n.rsplit("-", 1)[0], n.rsplit("-", 1)[1]) for n in names)

    def log(self, service: str, instance: str | int) -> Path:
        return self.workdir / "logs" / f"{instance_name(service, instance)}.log"

    def start(self, service: str, instance: str | int = 1) -> None:
        """Start one instance (its number names its transactional id and static membership: a
        number that ran before fences its predecessor and takes its partitions back)."""
        if service not in SERVICES:
            raise LabError(f"there is no service {service!r}; choose one of {', '.join(SERVICES)}.")
        name = instance_name(service, instance)
        if self.procs.live(name) is not None:
            raise LabError(f"{service} instance {instance} is already running.")
        self.ensure_topics()
        command = [sys.executable, "-m", "lab_env.fulfilment_services", service]
        command += ["--instance", str(instance), "--prefix", self.prefix]
        command += ["--stock", str(self.stock_file)]
        self.procs.spawn(
            name, command, self.log(service, instance), [], die_with_parent=self.die_with_caller
        )

    def start_all(self, instances: int = 1) -> None:
        for service in SERVICES:
            self.scale(service, instances)

    def scale(self, service: str, instances: int) -> None:
        """Run instances 1..``instances`` of ``service``: start the missing, stop the rest."""
        if not 1 <= instances <= ev.PARTITIONS:
            raise LabError(
                f"run 1 to {ev.PARTITIONS} instances: a group never has more active members "
                f"than its topic has partitions ({ev.PARTITIONS})."
            )
        running = [int(i) for s, i in self.running() if s == service]
        for instance in range(1, instances + 1):
            if instance not in running:
                self.start(service, instance)
        for instance in running:
            if instance > instances:
                self.stop(service, instance)

    def kill(self, service: str, instance: str | int = 1) -> None:
        """SIGKILL one instance: no goodbye, its open transaction left for its successor."""
        name = instance_name(service, instance)
        record = self.procs.signal(name, signal.SIGKILL)
        if record is None:
            raise LabError(f"{service} instance {instance} is not running.")
        eventually(lambda: record.state() == STOPPED, 10, interval=0.05)
        self.procs.forget(name)

    def stop(self, service: str, instance: str | int = 1, timeout: float = 30) -> None:
        """Stop one instance gracefully (SIGTERM: it finishes its batch and leaves the group)."""
        self.procs.stop(instance_name(service, instance), timeout)

    def assignments(self) -> dict[tuple[str, str], list[int]]:
        """Each running instance's latest assignment, from the ``assigned`` lines it logs."""
        found: dict[tuple[str, str], list[int]] = {}
        for service, instance in self.running():
            log = self.log(service, instance)
            lines = log.read_text().splitlines() if log.exists() else []
            # Only this run's lines: a restarted instance appends to its predecessor's log.
            for line in lines:
                if line.startswith("{") and '"assigned ' in line:
                    event = json.loads(line)["event"]
                    found[(service, instance)] = json.loads(event.removeprefix("assigned "))
                elif line.startswith("---"):
                    found.pop((service, instance), None)
        return found

    def wait_assigned(self, timeout: float = 60) -> None:
        """Until every running instance has partitions and each service's instances share all
        of them: the group has settled, no rebalance is pending from a start or a stop."""

        def settled() -> bool:
            running = self.running()
            found = self.assignments()
            if set(found) != set(running):
                return False
            for service in {s for s, _ in running}:
                parts = [p for (s, _), ps in found.items() if s == service for p in ps]
                if sorted(parts) != list(range(ev.PARTITIONS)):
                    return False
            return True

        wait_for("every service instance to get its partitions", settled, timeout, interval=0.5)

    def check_alive(self, expected: Iterable[tuple[str, str]]) -> None:
        """Raise, with the end of its log, when an instance of ``expected`` is not running."""
        running = set(self.running())
        for service, instance in expected:
            if (service, instance) not in running:
                log = self.log(service, instance)
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise LabError(f"{service} instance {instance} is not running: {tail}")

    # -- orders ------------------------------------------------------------------------------

    def place(self, orders: Iterable[dict[str, Any]]) -> int:
        self.ensure_topics()
        return fs.place_orders(self.lab, orders, self.prefix, self.codec)

    def ended(self) -> int:
        """How many terminal events are committed so far (one per order in a correct run).

        One ``read_committed`` reader keeps its position across calls, so a caller polling
        this reads each event once instead of every terminal topic each time. It may trail
        the brokers by a fetch: poll it, do not take one call as the final count.
        """
        if self._terminal is None:
            self.ensure_topics()
            group = self.lab.group(f"{self.prefix}ended-{uuid.uuid4().hex[:6]}")
            self._terminal = fs.reader(self.lab, group, self.prefix, ev.TERMINAL)
        deadline = time.monotonic() + 5  # bounded even while events keep arriving
        while time.monotonic() < deadline and (batch := self._terminal.consume(1000, timeout=0.2)):
            # one log entry counts once, even if a leader change hands it over again
            self._ended.update(
                (m.topic(), m.partition(), m.offset()) for m in batch if m.error() is None
            )
        return len(self._ended)

    def settle(self, expected: int, timeout: float = 120) -> dict[str, list[dict[str, Any]]]:
        """Wait (bounded) until ``expected`` orders have ended; every event, decoded. An
        instance that dies meanwhile is an error."""
        running = self.running()

        def ended() -> bool:
            self.check_alive(running)  # raises, with the instance's log
            return self.ended() >= expected

        eventually(ended, timeout, interval=1)
        return fs.read_events(self.lab, self.prefix, self.codec)

    # -- the end -----------------------------------------------------------------------------

    def stop_all(self) -> list[str]:
        """Stop every instance (all receive SIGTERM at once; each finishes its batch)."""
        return self.procs.stop_all(timeout=30)

    def close(self, delete: bool = True) -> None:
        """Stop every instance; with ``delete``, delete the pipeline's topics, subjects and
        groups too, and the work directory (logs included) if the pipeline made it."""
        self.stop_all()
        if self._terminal is not None:
            self._terminal.close()
            self._terminal = None
        if not delete:
            return
        topics = [self.prefix + t for t in (*ev.EVENT_TOPICS, ev.DEAD_LETTER, fs.STOCK)]
        for topic in topics:
            self.lab.delete_topic(topic)
        for topic in topics:
            schemas.forget_subject(self.lab, f"{topic}-value")
        self.lab.delete_groups(*(f"{self.prefix}fulfilment-{s}" for s in SERVICES), timeout=60)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
