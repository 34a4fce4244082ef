"""`lab orders`: the case study's pipeline (module 11) on the lab, from the command line.

lab orders up --instances 2          # topics, schemas, and 2 instances of each service
lab orders place --rate 200 --seconds 30
lab orders status                    # instances, their partitions, and the orders' endings
lab orders scale payment 3           # 1..6 instances (never more than the partitions)
lab orders kill payment --instance 2 # SIGKILL, as a crash would
lab orders down [--delete]           # stop the services (and delete topics, groups, subjects)

The pipeline's topics are named as the article names them (``order.created``, ...) unless
``--prefix`` is given; each prefix is a pipeline of its own, its processes and logs in
``<lab home>/orders/<prefix>``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lab_env import datasets, terminal
from lab_env import fulfilment_events as ev
from lab_env.api import Lab
from lab_env.config import load_config
from lab_env.errors import LabError
from lab_env.fulfilment_pipeline import SERVICES, Pipeline, paced
from lab_env.processes import Registry
from lab_env.records import read_all
from lab_env.steps import Steps

out = terminal.console(wide=True)
MAX_SECONDS = 3600  # `place` is bounded: an hour at most
PROGRESS_EVERY_S = 5.0  # `place` without a terminal: a progress line this often


def pipeline(args: argparse.Namespace) -> Pipeline:
    """The pipeline of ``--prefix`` (each prefix has its own processes and logs)."""
    cfg = load_config()
    prefix = args.prefix or ""
    workdir = cfg.home / "orders" / (prefix.rstrip(".") or "default")
    return Pipeline(Lab(cfg), prefix=prefix, workdir=workdir, die_with_caller=False)


def cmd_scale(args: argparse.Namespace) -> int:
    """`up` (every service) and `scale` (one): run N instances, then show the settled groups."""
    p = pipeline(args)
    for service in [args.service] if args.verb == "scale" else SERVICES:
        p.scale(service, args.instances)
    p.wait_assigned(timeout=120)
    show(p)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    p = pipeline(args)
    p.kill(args.service, args.instance)
    out.print(f"killed {args.service} instance {args.instance} (SIGKILL)")
    return 0


def stop_every_pipeline(home: Path, timeout: float = 30) -> list[str]:
    """Stop the instances of every pipeline ``lab orders`` started under ``home`` (``lab down``
    does, before it stops the brokers they would otherwise keep retrying): their names, as
    ``<pipeline>/<service>-<instance>``."""
    return [
        f"{run_dir.parent.name}/{name}"
        for run_dir in sorted((home / "orders").glob("*/run"))
        for name in Registry(run_dir).stop_all(timeout)
    ]


def cmd_down(args: argparse.Namespace) -> int:
    p = pipeline(args)
    stopped = p.stop_all()
    out.print(f"stopped {', '.join(stopped) or 'nothing (no instance was running)'}")
    if args.delete:
        p.close(delete=True)
        out.print(f"deleted the pipeline's topics, groups and subjects (prefix {p.prefix!r})")
    return 0


def placing(placed: int, total: int, seconds: float) -> str:
    """A progress line of `place`: ``placed 1,750 of 3,500 orders (350/s)``."""
    return f"placed {placed:,} of {total:,} orders ({placed / max(seconds, 1e-9):,.0f}/s)"


def with_progress(orders: Iterable[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    """``orders`` as they are handed out, with their progress on stderr: a transient bar on a
    terminal; elsewhere (a notebook, a log, CI), where a bar's redrawing is noise, a line every
    PROGRESS_EVERY_S seconds."""
    if sys.stderr.isatty():
        bar = Progress(
            TextColumn("placing orders"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=terminal.err,
            transient=True,
        )
        with bar:
            task = bar.add_task("place", total=total)
            for order in orders:
                yield order
                bar.advance(task)
        return
    step, due = Steps(sys.stderr), PROGRESS_EVERY_S
    for placed, order in enumerate(orders, 1):
        yield order
        if (seconds := step.elapsed()) >= due:
            step(placing(placed, total, seconds))
            due = (seconds // PROGRESS_EVERY_S + 1) * PROGRESS_EVERY_S


def cmd_place(args: argparse.Namespace) -> int:
    if args.rate <= 0 or not 0 < args.seconds <= MAX_SECONDS:
        raise LabError(f"--rate must be positive and --seconds between 0 and {MAX_SECONDS}.")
    p = pipeline(args)
    count = int(args.rate * args.seconds)
    catalog = datasets.make_catalog()
    orders = datasets.orders(catalog, count, seed=args.seed, peak_per_s=max(args.rate, 1.0))
    # A fresh run of ids each time: the seed fixes the contents, the run tag keeps ids unique.
    tag = time.strftime("%H%M%S")
    renamed = (dict(o, order_id=f"{o['order_id']}-{tag}") for o in orders)
    start = time.monotonic()
    handed_out = with_progress(paced(itertools.islice(renamed, count), args.rate), count)
    with contextlib.closing(handed_out):  # the bar goes, even when placing fails
        placed = p.place(handed_out)
    took = time.monotonic() - start
    out.print(f"placed {placed} orders in {took:.1f} s ({placed / took:.0f}/s)")
    return 0


def endings(p: Pipeline) -> dict[str, int]:
    return {
        t: len(read_all(p.lab, p.prefix + t, decode=False, timeout=60))
        for t in (ev.ORDER_CREATED, *ev.TERMINAL, ev.DEAD_LETTER)
    }


def show(p: Pipeline) -> None:
    table = Table(title=f"pipeline (topic prefix {p.prefix!r})", title_justify="left")
    for column in ("service", "instance", "pid", "partitions"):
        table.add_column(column)
    found = p.assignments()
    records = {r.name: r for r in p.procs.all()}
    for service, instance in p.running():
        record = records[f"{service}-{instance}"]
        parts = found.get((service, instance))
        table.add_row(service, instance, str(record.pid), "-" if parts is None else str(parts))
    out.print(table)
    try:
        counts = endings(p)
    except LabError:
        out.print("the pipeline has no topics: `lab orders up` creates them")
        return
    ended = ", ".join(f"{t} {counts[t]}" for t in ev.TERMINAL)
    out.print(
        f"orders placed: {counts[ev.ORDER_CREATED]}; "
        f"ended: {sum(counts[t] for t in ev.TERMINAL)} ({ended}); "
        f"dead letters: {counts[ev.DEAD_LETTER]}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    show(pipeline(args))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("orders", help="the case study's order-fulfilment pipeline (module 11)")
    p.add_argument("--prefix", help="topic prefix, naming one pipeline (default: none)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="create the topics and start every service")
    up.add_argument("--instances", type=int, default=1, help="instances of each service (1-6)")
    up.set_defaults(run=lambda _b, a: cmd_scale(a))
    scale = verbs.add_parser("scale", help="run N instances of one service")
    scale.add_argument("service", choices=SERVICES)
    scale.add_argument("instances", type=int)
    scale.set_defaults(run=lambda _b, a: cmd_scale(a))
    kill = verbs.add_parser("kill", help="SIGKILL one instance")
    kill.add_argument("service", choices=SERVICES)
    kill.add_argument("--instance", default="1")
    kill.set_defaults(run=lambda _b, a: cmd_kill(a))
    place = verbs.add_parser("place", help="place generated orders at a steady rate")
    place.add_argument("--rate", type=float, default=100, help="orders per second")
    place.add_argument("--seconds", type=float, default=10)
    place.add_argument("--seed", type=int, default=0)
    place.set_defaults(run=lambda _b, a: cmd_place(a))
    verbs.add_parser("status", help="instances, partitions, orders").set_defaults(
        run=lambda _b, a: cmd_status(a)
    )
    down = verbs.add_parser("down", help="stop every instance")
    down.add_argument("--delete", action="store_true", help="and delete topics, groups, subjects")
    down.set_defaults(run=lambda _b, a: cmd_down(a))
