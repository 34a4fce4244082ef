"""The order-fulfilment pipeline as processes: start, scale, kill and stop service instances, place
orders, wait until every order has ended, and tidy up. Tests, the benchmark and the module 11
notebook drive the services through this one class.

Every pipeline has its own topic prefix (``<name>.``), so several can share a cluster.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env import schemas
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.records import read_all

SERVICES = ("inventory", "payment", "shipping", "order")


class Pipeline:
    """One pipeline's service processes, keyed ``(service, instance)``."""

    def __init__(
        self,
        lab: Lab,
        stock: dict[str, int],
        prefix: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.lab = lab
        self.prefix = prefix if prefix is not None else f"orders-{uuid.uuid4().hex[:6]}."
        self.stock = stock
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="fulfilment-"))
        self.stock_file = self.workdir / "stock.json"
        self.stock_file.write_text(json.dumps(stock))
        self.procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
        self.codec = fs.Codec(lab)
        fs.ensure_topics(lab, self.prefix)

    # -- processes ---------------------------------------------------------------------------

    def start(self, service: str, instance: str | int = 1) -> None:
        """Start one instance (its number names its transactional id and static membership: a
        number that ran before fences its predecessor and takes its partitions back)."""
        if service not in SERVICES:
            raise LabError(f"there is no service {service!r}; choose one of {', '.join(SERVICES)}.")
        key = (service, str(instance))
        if key in self.procs and self.procs[key].poll() is None:
            raise LabError(f"{service} instance {instance} is already running.")
        command = [sys.executable, "-m", "lab_env.fulfilment_services", service]
        command += ["--instance", str(instance), "--prefix", self.prefix]
        command += ["--stock", str(self.stock_file)]
        log = (self.workdir / f"{service}-{instance}.log").open("a")
        self.procs[key] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)

    def start_all(self, instances: int = 1) -> None:
        for service in SERVICES:
            for instance in range(1, instances + 1):
                self.start(service, instance)

    def scale(self, service: str, instances: int) -> None:
        """Run instances 1..``instances`` of ``service``: start the missing, stop the rest."""
        if not 1 <= instances <= ev.PARTITIONS:
            raise LabError(
                f"run 1 to {ev.PARTITIONS} instances: a group never has more active members "
                f"than its topic has partitions ({ev.PARTITIONS})."
            )
        running = sorted(
            int(i) for (s, i), p in self.procs.items() if s == service and p.poll() is None
        )
        for instance in range(1, instances + 1):
            if instance not in running:
                self.start(service, instance)
        for instance in running:
            if instance > instances:
                self.stop(service, instance)

    def kill(self, service: str, instance: str | int = 1) -> None:
        """SIGKILL one instance: no goodbye, its open transaction left for its successor."""
        proc = self.procs.pop((service, str(instance)))
        proc.kill()
        proc.wait(10)

    def stop(self, service: str, instance: str | int = 1, timeout: float = 30) -> None:
        """Stop one instance gracefully (SIGTERM: it finishes its batch and leaves the group)."""
        proc = self.procs.pop((service, str(instance)))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def check_alive(self) -> None:
        for (service, instance), proc in self.procs.items():
            if proc.poll() is not None:
                log = self.workdir / f"{service}-{instance}.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise LabError(f"{service} instance {instance} exited ({proc.returncode}): {tail}")

    # -- orders ------------------------------------------------------------------------------

    def place(self, orders: Iterable[dict[str, Any]]) -> int:
        return fs.place_orders(self.lab, orders, self.prefix, self.codec)

    def ended(self) -> int:
        """How many terminal events are committed (one per order in a correct run)."""
        return sum(
            len(read_all(self.lab, self.prefix + t, decode=False, timeout=60)) for t in ev.TERMINAL
        )

    def settle(self, expected: int, timeout: float = 120) -> dict[str, list[dict[str, Any]]]:
        """Wait (bounded) until ``expected`` orders have ended; every event, decoded."""
        deadline = time.monotonic() + timeout
        while self.ended() < expected and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(1)
        return fs.read_events(self.lab, self.prefix, self.codec)

    # -- the end -----------------------------------------------------------------------------

    def close(self, delete: bool = True) -> None:
        """Stop every instance; with ``delete``, delete the pipeline's topics, subjects and
        groups too."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        if not delete:
            return
        topics = [self.prefix + t for t in (*ev.EVENT_TOPICS, ev.DEAD_LETTER, fs.STOCK)]
        for topic in topics:
            self.lab.delete_topic(topic)
        for topic in topics:
            schemas.forget_subject(self.lab, f"{topic}-value")
        self.lab.delete_groups(*(f"{self.prefix}fulfilment-{s}" for s in SERVICES), timeout=60)
