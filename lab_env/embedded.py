"""The embedded backend's supervisor: start, watch, fault and stop the lab's processes."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from lab_env import (
    artifacts,
    health,
    kafka_nodes,
    metadata_barrier,
    monitoring,
    ports,
    registry,
    security,
)
from lab_env.config import (
    APICURIO_VERSION,
    NODE_IDS,
    REGISTRY_JAVA_MIN_MAJOR,
    LabConfig,
    node_id,
)
from lab_env.errors import LabError
from lab_env.java import Java, find_java
from lab_env.processes import PAUSED, RUNNING, STARTED_MARK, STOPPED, ProcessRecord, Registry
from lab_env.waiting import NotYet, eventually, wait_for

REGISTRY, PROMETHEUS, LAG_EXPORTER = "registry", "prometheus", "lag-exporter"
Report = Callable[[str], None]
# How long a quorum leader's controller may stay inactive before `lab up` restarts that node: an
# election takes well under a second here, and a stuck controller stayed stuck for minutes.
STUCK_S = 15.0
# How long `lab up` waits for every preferred replica to be in sync before leaving the rest of the
# partitions to Kafka's periodic election (a lab with much data may take longer to catch up).
BALANCE_S = 30.0


def _quiet(_: str) -> None:
    pass


def tail(path: str | Path, lines: int = 15) -> str:
    """The last lines a process wrote since the lab last started it."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    if STARTED_MARK in text:
        text = text.rsplit(STARTED_MARK, 1)[1].split("\n", 1)[-1]
    return "\n".join(text.strip().splitlines()[-lines:]) or "(nothing)"


class EmbeddedLab:
    """Knows every process it started (pid, ports, log) and waits for real health."""

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        self.procs = Registry(cfg.home / "run")
        self.nodes = {n.node_id: n for n in kafka_nodes.nodes(cfg)}

    # -- names ------------------------------------------------------------------------------------

    def node(self, name: str | int) -> kafka_nodes.Node:
        return self.nodes[node_id(name)]

    def components(self) -> list[str]:
        return [n.name for n in self.nodes.values()] + [REGISTRY, LAG_EXPORTER, PROMETHEUS]

    def log_file(self, component: str) -> Path:
        if component not in self.components():
            component = self.node(component).name
        if component.startswith("kafka-"):
            return self.cfg.home / "logs" / f"{component}.log"
        return self.cfg.home / "logs" / f"{component}.out"

    # -- preparation ------------------------------------------------------------------------------

    def fetch(self, report: Report = _quiet, names: list[str] | None = None) -> None:
        for name in names or list(artifacts.CLOSURES):
            if not artifacts.is_cached(self.cfg, name):
                report(f"fetching {name} from Maven Central")
                artifacts.fetch(self.cfg, name, lambda item, n=name: report(f"{n}: {item}"))

    def prepare_storage(self, java: str, report: Report = _quiet) -> None:
        ident = kafka_nodes.identity(self.cfg)
        for node in self.nodes.values():
            problem = kafka_nodes.storage_problem(node, ident)
            if problem:
                raise LabError(
                    f"The data directory of {node.name} is corrupted or belongs to another "
                    f"cluster: {problem}. Run `lab reset` to wipe the lab's data and start again."
                )
        todo = [n for n in self.nodes.values() if not kafka_nodes.is_formatted(n)]
        if todo:
            report(f"formatting storage of {', '.join(n.name for n in todo)}")
            kafka_nodes.format_storage(self.cfg, java, todo)

    # -- starting ---------------------------------------------------------------------------------

    def _start_node(self, node: kafka_nodes.Node, java: Java) -> ProcessRecord:
        node.write_config()
        return self.procs.spawn(
            node.name,
            node.jvm_argv(java),
            self.cfg.home / "logs" / f"{node.name}.out",
            list(node.ports().values()),
        )

    def _node_failure(self, names: list[str]) -> str | None:
        for name in names:
            record = self.procs.get(name)
            if self.procs.live(name) is None:
                out = record.log if record else str(self.log_file(name))
                text = f"{name} exited during start-up. What it printed ({out}):\n{tail(out)}\n"
                if name.startswith("kafka-"):
                    server_log = self.log_file(name)
                    text += f"The end of its server log ({server_log}):\n{tail(server_log, 8)}\n"
                    text += "If the data directory is damaged, `lab reset` starts an empty cluster."
                return text
        return None

    def up(self, report: Report = _quiet, timeout: float = 120.0) -> dict[str, object]:
        """Start whatever is not running and wait until the whole lab is healthy."""
        java = find_java(self.cfg)
        registry_java = find_java(
            self.cfg, REGISTRY_JAVA_MIN_MAJOR, f"Apicurio Registry {APICURIO_VERSION}"
        )
        self.fetch(report)
        prom_bin = monitoring.prometheus_binary(self.cfg)
        missing = [n for n in self.nodes.values() if self.procs.live(n.name) is None]
        start_registry = self.procs.live(REGISTRY) is None
        start_prometheus = bool(prom_bin) and self.procs.live(PROMETHEUS) is None
        start_lag_exporter = self.procs.live(LAG_EXPORTER) is None
        # Every port is checked before anything starts: a busy port never leaves half a lab.
        wanted: dict[str, int] = {}
        for node in missing:
            wanted.update(node.ports())
        if start_registry:
            wanted.update(self._registry_ports())
        if start_prometheus:
            wanted["prometheus"] = self.cfg.ports.prometheus
        if start_lag_exporter:
            wanted["consumer-lag exporter"] = self.cfg.ports.lag_exporter
        ports.require_free(self.cfg.host, wanted)
        for node in self.nodes.values():  # `up` means healthy: a frozen node is thawed
            record = self.procs.live(node.name)
            if record is not None and record.state() == PAUSED:
                self.procs.signal(node.name, signal.SIGCONT)
                report(f"resumed {node.name} (it was paused)")
        if not (missing or start_registry or start_prometheus or start_lag_exporter):
            report("everything was already running; checking health")
        # Idempotent, and also for a lab that predates them: wait_healthy creates the admin user.
        security.ensure_files(self.cfg)
        if missing:
            self.prepare_storage(java.path, report)
            for node in missing:
                self._start_node(node, java)
            report(f"started {', '.join(n.name for n in missing)}")
        if start_lag_exporter:
            self.procs.spawn(
                LAG_EXPORTER,
                [sys.executable, "-m", "lab_env.lag_exporter"],
                self.log_file(LAG_EXPORTER),
                [self.cfg.ports.lag_exporter],
            )
        if prom_bin:
            # Always current: a running Prometheus re-reads the configuration and alert rules.
            monitoring.write_config(self.cfg)
            if not start_prometheus:
                monitoring.reload(self.cfg)
        if start_prometheus:
            self.procs.spawn(
                PROMETHEUS,
                monitoring.argv(self.cfg, str(prom_bin)),
                self.log_file(PROMETHEUS),
                [self.cfg.ports.prometheus],
            )
        if start_registry:
            # Quarkus boots (a few CPU-seconds) while the brokers elect a leader; the registry's
            # Kafka clients retry until the cluster answers.
            self.procs.spawn(
                REGISTRY,
                registry.jvm_argv(self.cfg, registry_java),
                self.log_file(REGISTRY),
                list(self._registry_ports().values()),
            )
        self.wait_healthy(report, timeout, prometheus=bool(prom_bin))
        return self.status()

    def _registry_ports(self) -> dict[str, int]:
        return {
            "schema registry": self.cfg.ports.registry,
            "schema registry (management)": self.cfg.ports.registry_management,
        }

    def wait_healthy(self, report: Report, timeout: float, prometheus: bool) -> None:
        """Brokers registered, one quorum leader whose controller accepts a metadata write (the
        admin user's SCRAM credentials) that every broker has applied, the registry serving its
        replayed journal, every scrape target up."""
        names = [n.name for n in self.nodes.values()]
        hint = "See `lab logs` and `lab status`."

        def registered() -> health.ClusterView | None:
            view = health.cluster_view(self.cfg)
            return view if view and len(view.brokers) == len(NODE_IDS) else None

        view = wait_for(
            f"{len(NODE_IDS)} registered brokers",
            registered,
            timeout,
            fail=lambda: self._node_failure(names),
            interval=0.5,
            hint=hint,
        )
        report(f"brokers registered: {', '.join(map(str, view.brokers))}")
        leader = wait_for(
            "the nodes to agree on a KRaft quorum leader",
            lambda: health.quorum_leader(self.cfg),
            timeout,
            fail=lambda: self._node_failure(names),
            interval=0.5,
            hint=hint,
        )
        report(f"quorum leader: kafka-{leader}")
        self._wait_controller_writes(report, timeout, names, hint)
        self._balance_leaders(report)
        wait_for(
            "the schema registry to read back its journal",
            lambda: registry.replayed(self.cfg),
            timeout,
            fail=lambda: self._node_failure([REGISTRY]),
            interval=0.5,
            hint=hint,
        )
        level = registry.ensure_default_compatibility(self.cfg)
        report(f"schema registry answering (default compatibility {level})")
        self._forget_old_registry_groups(report)
        if prometheus:
            wait_for(
                "Prometheus scrape targets to be up",
                self._targets_up,
                timeout,
                fail=lambda: self._node_failure([PROMETHEUS]),
                interval=0.5,
                hint=hint,
            )
            report("Prometheus scraping every target")
        else:
            report("no Prometheus binary found: the exporters serve, but nothing scrapes them")

    def _forget_old_registry_groups(self, report: Report) -> None:
        """Housekeeping, after the registry has joined its own group: a failure is reported,
        never fatal."""
        try:
            with AdminClient(health.admin_config(self.cfg)) as admin:
                old = registry.forget_old_groups(admin)
        except KafkaException as exc:
            report(f"could not delete the consumer groups the registry no longer reads in: {exc}")
            return
        if old:
            report(f"deleted {len(old)} consumer group(s) the registry no longer reads in")

    def _balance_leaders(self, report: Report) -> None:
        """Every partition led by its preferred replica. Nodes that start one after another leave
        most partitions led by the first one up; Kafka's periodic election
        (``auto.leader.rebalance.enable``, every ``leader.imbalance.check.interval.seconds``, 300 s)
        then moved them, and every group and transaction coordinator with them, five minutes
        into a lesson or a test: consumers with a 6 s session lost it while their coordinator
        loaded elsewhere. Done here, the moves happen before anything uses the lab."""
        moved, pending = 0, 0

        def elected() -> bool:
            nonlocal moved, pending
            done, pending = health.elect_preferred_leaders(self.cfg)
            moved += done
            return not pending

        settled = eventually(elected, BALANCE_S, interval=1)
        metadata_barrier.wait_applied(self.cfg, self.live_nodes(), 60)
        report(
            f"partition leaders on their preferred replicas ({moved} moved)"
            if settled
            else f"{pending} partitions wait for their preferred replica to be in sync; Kafka's "
            "periodic election moves their leaders then"
        )

    def _wait_controller_writes(
        self, report: Report, timeout: float, names: list[str], hint: str
    ) -> None:
        """Until the controller stores the admin user's SCRAM credentials (a metadata write)
        and every broker has applied them. A quorum leader whose controller stays inactive
        (``health.stuck_controller``) for STUCK_S is restarted, once."""
        stuck_since: float | None = None
        restarted = False

        def written() -> bool | NotYet:
            nonlocal stuck_since, restarted
            try:
                with AdminClient(health.admin_config(self.cfg)) as admin:
                    security.ensure_admin_user(self.cfg, admin)
                return True
            except LabError as exc:
                refused = str(exc)
            stuck = health.stuck_controller(health.node_views(self.cfg))
            if stuck is None:
                stuck_since = None
                return NotYet(refused)
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since >= STUCK_S and not restarted:
                report(
                    f"kafka-{stuck} leads the KRaft quorum but its controller is not active "
                    f"(it refuses metadata changes); restarting kafka-{stuck}"
                )
                self.restart_node(stuck)
                restarted, stuck_since = True, None
            return NotYet(f"kafka-{stuck} leads the quorum but its controller is not active")

        wait_for(
            "the controller to accept a metadata write (the admin user's SCRAM credentials)",
            written,
            timeout,
            fail=lambda: self._node_failure(names),
            interval=0.5,
            hint=hint,
        )
        applied = metadata_barrier.wait_applied(self.cfg, self.live_nodes(), timeout)
        report(f"controller accepts metadata writes; every broker at offset {applied.committed}")

    def restart_node(self, name: str | int) -> None:
        """Stop a node gracefully (SIGKILL if it does not stop within a minute), start it."""
        node = self.node(name)
        self.procs.stop(node.name, timeout=60)
        self.start(node.node_id)

    def _targets_up(self) -> bool:
        try:
            found = monitoring.targets(self.cfg)
        except Exception:
            return False
        # The lag exporter is a teaching aid, not the lab's health: `up` restarts it when it is
        # gone, and a target of it that is down does not hold the lab back.
        needed = [t for t in found if t["job"] != "consumer-lag"]
        return len(needed) == len(NODE_IDS) + 1 and all(t["health"] == "up" for t in needed)

    # -- stopping ---------------------------------------------------------------------------------

    def down(self, report: Report = _quiet) -> list[str]:
        """Stop everything gracefully: clients of Kafka first (together), then the nodes
        (together)."""
        stopped: list[str] = []
        clients, nodes = [REGISTRY, LAG_EXPORTER, PROMETHEUS], [n.name for n in self.nodes.values()]
        for names, timeout in ((clients, 30), (nodes, 60)):
            with ThreadPoolExecutor(len(names)) as pool:
                results = list(pool.map(lambda n, t=timeout: self.procs.stop(n, timeout=t), names))
            stopped += [n for n, was in zip(names, results, strict=True) if was]
        for name in stopped:
            report(f"stopped {name}")
        return stopped

    def reset(self) -> None:
        """Wipe every byte of lab data (the cache of downloads stays)."""
        if any(self.procs.live(c) for c in self.components()):
            raise LabError("The lab is running; `lab down` first (or `lab reset --yes` does both).")
        for sub in ("data", "config", "run"):
            shutil.rmtree(self.cfg.home / sub, ignore_errors=True)
        kafka_nodes.identity_file(self.cfg).unlink(missing_ok=True)

    # -- faults -----------------------------------------------------------------------------------

    def kill(self, name: str | int) -> ProcessRecord:
        node = self.node(name)
        record = self.procs.signal(node.name, signal.SIGKILL)
        if record is None:
            raise LabError(f"{node.name} is not running.")
        eventually(lambda: record.state() == STOPPED, 10, interval=0.05)
        self.procs.forget(node.name)
        return record

    def start(self, name: str | int) -> ProcessRecord:
        node = self.node(name)
        record = self.procs.live(node.name)
        if record is not None:
            if record.state() == PAUSED:
                raise LabError(f"{node.name} is paused; `lab resume {node.node_id}` continues it.")
            return record
        java = find_java(self.cfg)
        ports.require_free(self.cfg.host, node.ports())
        self.prepare_storage(java.path)
        record = self._start_node(node, java)
        wait_for(
            f"{node.name} to rejoin the cluster (its broker running, unfenced)",
            lambda: health.broker_running(self.cfg, node.node_id),
            120,
            fail=lambda: self._node_failure([node.name]),
            interval=0.2,
            max_interval=0.5,
            hint="See `lab logs` and `lab status`.",
        )
        # Running is not caught up with the others: the node answers metadata requests from
        # what it has applied, which may still lag the log the controller has committed since.
        metadata_barrier.wait_applied(self.cfg, self.live_nodes(), 60)
        return record

    def live_nodes(self) -> tuple[int, ...]:
        """Nodes whose process runs and is not paused."""
        return tuple(
            node.node_id
            for node in self.nodes.values()
            if (record := self.procs.live(node.name)) is not None and record.state() == RUNNING
        )

    def pause(self, name: str | int) -> ProcessRecord:
        return self._signal(name, signal.SIGSTOP, RUNNING)

    def resume(self, name: str | int) -> ProcessRecord:
        return self._signal(name, signal.SIGCONT, PAUSED)

    def _signal(self, name: str | int, sig: signal.Signals, expected: str) -> ProcessRecord:
        node = self.node(name)
        record = self.procs.live(node.name)
        if record is None:
            raise LabError(f"{node.name} is not running.")
        # SIGCONT always goes out: a JVM just sent SIGSTOP may not read as stopped yet, and a
        # resume skipped for that reason would leave it frozen. SIGCONT to a running process is
        # a no-op.
        if record.state() != expected and sig != signal.SIGCONT:
            return record  # already paused: nothing to do
        self.procs.signal(node.name, sig)
        return record

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything `lab status` shows, as plain data."""
        comps = []
        for name in self.components():
            record = self.procs.live(name)
            state = record.state() if record else STOPPED
            if name.startswith("kafka-"):
                address = self.node(name).bootstrap
            elif name == REGISTRY:
                address = self.cfg.registry()
            elif name == LAG_EXPORTER:
                address = f"http://{self.cfg.host}:{self.cfg.ports.lag_exporter}/metrics"
            else:
                address = self.cfg.prometheus()
            comps.append(
                {
                    "name": name,
                    "pid": record.pid if record else None,
                    "state": state,
                    "address": address,
                    "rss_mib": round(record.rss() / 2**20, 1) if record else 0,
                    "log": str(self.log_file(name)),
                }
            )
        running = [c["name"] for c in comps if c["state"] == RUNNING]
        node_ids = tuple(int(str(n).split("-")[1]) for n in running if str(n).startswith("kafka-"))
        view = health.cluster_view(self.cfg, timeout=2.0) if node_ids else None
        views = health.node_views(self.cfg, node_ids)
        stuck = health.stuck_controller(views)
        prom = monitoring.prometheus_binary(self.cfg)
        return {
            "backend": "embedded",
            "bootstrap": self.cfg.bootstrap(),
            "components": comps,
            "quorum_leader": health.majority_leader(views),
            "controller": (
                f"kafka-{stuck} leads the KRaft quorum but its controller is not active, so "
                "metadata changes are refused; if this lasts, `lab up` restarts it"
                if stuck is not None
                else "active"
                if views
                else "down"
            ),
            "brokers": view.brokers if view else [],
            "under_replicated_partitions": view.under_replicated if view else None,
            "registry": registry.state(self.cfg) if REGISTRY in running else "down",
            "prometheus": (
                "not installed"
                if not prom
                else ("up" if PROMETHEUS in running and self._targets_up() else "down")
            ),
            "total_rss_mib": round(sum(float(c["rss_mib"]) for c in comps), 1),
        }
