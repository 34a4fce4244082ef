"""The `lab` command. Every subcommand is idempotent and answers in sentences, never tracebacks."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from lab_env import artifacts, bench_cli, doctor, orders_cli, progress_cli, tools, workshop
from lab_env.backends import Backend, backend
from lab_env.config import KAFKA_VERSION, REPO, LabConfig, load_config
from lab_env.embedded import EmbeddedLab
from lab_env.errors import LabError
from lab_env.kernel import ensure_kernel, ensure_settings
from lab_env.steps import stamp
from lab_env.terminal import err, out, styled


def _reporter(start: float) -> Callable[[str], None]:
    def report(message: str) -> None:
        err.print(styled((stamp(time.monotonic() - start), "dim"), " ", message))

    return report


def _status_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"Kafka lab ({status['backend']} backend, Kafka {KAFKA_VERSION})")
    for column in ("component", "state", "pid", "address", "RSS MiB"):
        table.add_column(column)
    colours = {"running": "green", "paused": "yellow", "stopped": "red"}
    for comp in status["components"]:
        state = comp["state"]
        table.add_row(
            comp["name"],
            styled((state, colours.get(state, "white"))),
            str(comp["pid"] or "-"),
            comp["address"],
            f"{comp['rss_mib']:.0f}" if comp["pid"] else "-",
        )
    return table


def _print_status(status: dict[str, Any]) -> None:
    if status["components"]:
        out.print(_status_table(status))
    leader = status["quorum_leader"]
    urp = status["under_replicated_partitions"]
    out.print(f"bootstrap servers:  {status['bootstrap']}")
    out.print(f"brokers registered: {', '.join(map(str, status['brokers'])) or 'none answering'}")
    out.print(f"quorum leader:      {f'kafka-{leader}' if leader is not None else 'unknown'}")
    if "controller" in status:
        out.print(f"controller:         {status['controller']}")
    out.print(f"under-replicated partitions: {urp if urp is not None else 'unknown'}")
    out.print(f"schema registry:    {status['registry']}")
    out.print(f"prometheus:         {status['prometheus']}")
    if status.get("total_rss_mib"):
        out.print(f"total RSS:          {status['total_rss_mib']:.0f} MiB")


# --- subcommands ----------------------------------------------------------------------------------


def cmd_up(lab: Backend, args: argparse.Namespace) -> int:
    start = time.monotonic()
    status = lab.up(_reporter(start), timeout=args.timeout)
    err.print(styled(("The lab is up", "green"), f" ({time.monotonic() - start:.1f} s)."))
    _print_status(status)
    return 0


def cmd_down(lab: Backend, args: argparse.Namespace) -> int:
    pipelines = orders_cli.stop_every_pipeline(lab.cfg.home)
    if pipelines:
        out.print("Stopped the order pipelines' services: " + ", ".join(pipelines))
    stopped = lab.down(_reporter(time.monotonic()))
    out.print("Stopped: " + ", ".join(stopped) if stopped else "Nothing was running.")
    return 0


def cmd_status(lab: Backend, args: argparse.Namespace) -> int:
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0


def _fault(verb: str) -> Callable[[Backend, argparse.Namespace], int]:
    def run(lab: Backend, args: argparse.Namespace) -> int:
        record = getattr(lab, verb)(args.node)
        pid = getattr(record, "pid", None)
        past = {
            "kill": "killed (SIGKILL)",
            "start": "running",
            "pause": "paused (SIGSTOP)",
            "resume": "resumed (SIGCONT)",
        }
        out.print(
            f"kafka-{str(args.node).removeprefix('kafka-')} {past[verb]}"
            + (f", pid {pid}" if pid else "")
            + "."
        )
        return 0

    return run


def cmd_reset(lab: Backend, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise LabError(
                "`lab reset` deletes every topic, record and schema; pass --yes to confirm."
            )
        answer = input("Delete every topic, record and schema of the lab? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.print("Nothing was deleted.")
            return 1
    lab.down(_reporter(time.monotonic()))
    lab.reset()
    out.print("The lab's data is wiped; `lab up` starts an empty cluster.")
    return 0


def cmd_logs(lab: Backend, args: argparse.Namespace) -> int:
    if not isinstance(lab, EmbeddedLab):
        raise LabError(
            f"`lab logs` reads the embedded backend's files; for {lab.name}, use its own logs."
        )
    path = lab.log_file(args.component)
    if not path.exists():
        raise LabError(f"{args.component} has no log yet ({path}).")
    cmd = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(path)]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def cmd_kafka(lab: Backend, args: argparse.Namespace) -> int:
    return tools.run(lab.cfg, args.tool, args.args).returncode


# No news feed or update check: the lab may be offline, and a learner's first view should be
# the start page, not a prompt about announcements.
JUPYTER_QUIET = [
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]


def cmd_jupyter(lab: Backend, args: argparse.Namespace) -> int:
    # Imported here, not at the top: lab_env.labs loads nbformat, whose schema validator took
    # 1.7 s to import on every `lab` command (`lab kill 2` took 5.5 s; about 1 s without it).
    from lab_env.labs import START

    cfg = lab.cfg
    ensure_kernel()  # the kernel every notebook names
    ensure_settings()
    argv = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.ip={cfg.host}",
        f"--ServerApp.port={cfg.ports.jupyter}",
        f"--ServerApp.root_dir={REPO}",
        f"--LabApp.default_url=/lab/tree/notebooks/{START.name}",  # the start page
    ]
    argv += JUPYTER_QUIET
    if args.no_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # containers and CI machines often run as root
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0


def cmd_doctor(lab: Backend, args: argparse.Namespace) -> int:
    failed = 0
    for check in doctor.checks(lab.cfg):
        mark = (
            ("ok  ", "green")
            if check.ok
            else (("FAIL", "red") if check.required else ("warn", "yellow"))
        )
        out.print(styled(mark, f" {check.name}: {check.detail}"))
        if not check.ok and check.fix:
            out.print(f"      fix: {check.fix}")
        failed += int(not check.ok and check.required)
    out.print(
        "Everything `lab up` needs is in place."
        if not failed
        else f"{failed} problem(s) to fix first."
    )
    return 1 if failed else 0


def cmd_fetch(lab: Backend, args: argparse.Namespace) -> int:
    if not isinstance(lab, EmbeddedLab):
        raise LabError("Only the embedded backend fetches Kafka from Maven Central.")
    unknown = [n for n in args.closures if n not in artifacts.CLOSURES]
    if unknown:
        raise LabError(
            f"Nothing called {', '.join(unknown)} to fetch; "
            f"choose from {', '.join(artifacts.CLOSURES)}."
        )
    lab.fetch(_reporter(time.monotonic()), args.closures or None)
    out.print(f"In the cache ({lab.cfg.cache}): {', '.join(args.closures or artifacts.CLOSURES)}.")
    return 0


def cmd_config(lab: Backend, args: argparse.Namespace) -> int:
    cfg = lab.cfg
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    data["bootstrap"] = cfg.bootstrap()
    data["registry_url"] = cfg.registry()
    data["prometheus_url"] = cfg.prometheus()
    print(json.dumps(data, indent=2, default=str))
    return 0


# --- parser ------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lab",
        description="Run the Kafka lab: a 3-node KRaft cluster, a schema registry and Prometheus.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="start the lab and wait until it is healthy")
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for health (default 120)"
    )
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop every lab process (data is kept)").set_defaults(run=cmd_down)
    status = sub.add_parser("status", help="what runs, where, and how healthy")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=cmd_status)
    for verb, text in (
        ("kill", "SIGKILL a node"),
        ("start", "start a stopped node"),
        ("pause", "SIGSTOP a node"),
        ("resume", "SIGCONT a paused node"),
    ):
        fault = sub.add_parser(verb, help=text)
        fault.add_argument("node", help="1, 2, 3 or kafka-1, kafka-2, kafka-3")
        fault.set_defaults(run=_fault(verb))
    reset = sub.add_parser("reset", help="wipe all lab data (asks first)")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    reset.set_defaults(run=cmd_reset)
    logs = sub.add_parser("logs", help="show a component's log")
    logs.add_argument(
        "component", help="kafka-1, kafka-2, kafka-3 (or 1, 2, 3), registry, prometheus"
    )
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(run=cmd_logs)
    kafka = sub.add_parser(
        "kafka", help="run one of Kafka's CLI tools, e.g. `lab kafka topics --list`"
    )
    kafka.add_argument("tool", help=", ".join(sorted(tools.TOOLS)))
    kafka.add_argument("args", nargs=argparse.REMAINDER)
    kafka.set_defaults(run=cmd_kafka)
    jupyter = sub.add_parser("jupyter", help="open JupyterLab on the notebooks")
    jupyter.add_argument("--no-browser", action="store_true")
    jupyter.set_defaults(run=cmd_jupyter)
    sub.add_parser("doctor", help="check Java, Maven, ports, disk and caches").set_defaults(
        run=cmd_doctor
    )
    fetch = sub.add_parser("fetch", help="download Kafka and friends into the cache")
    fetch.add_argument(
        "closures",
        nargs="*",
        metavar="NAME",
        help=f"what to fetch: {', '.join(artifacts.CLOSURES)} (default: all)",
    )
    fetch.set_defaults(run=cmd_fetch)
    sub.add_parser("config", help="print the effective configuration").set_defaults(run=cmd_config)
    bench_cli.add_parser(sub)
    progress_cli.add_parser(sub)
    orders_cli.add_parser(sub)
    workshop.add_parser(sub)
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and a polite kill both unwind through the same clean-up (a started download is
    # discarded), even where the shell started us with SIGINT ignored (`lab fetch &`).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    args = parser().parse_args(argv)
    try:
        cfg: LabConfig = load_config()
        return int(args.run(backend(cfg), args))
    except LabError as exc:
        err.print(styled(("error:", "red"), " ", str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("Interrupted. Anything half-fetched was discarded; `lab status` shows what runs.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
