"""`lab progress`: every learner's check attempts, read back from the lab cluster.

lab progress                 # learners x labs (checks passed), then where the room is stuck
lab progress --watch 10      # the same every 10 s, until Ctrl-C (or --count refreshes)
lab progress --json          # plain data: latest status per check, pass counts, most failed
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pandas as pd
from rich.table import Table

from lab_env import progress, terminal
from lab_env.api import Lab
from lab_env.errors import LabError

out = terminal.console(wide=True)
MAX_REFRESHES = 720  # --watch 10: two hours


def _table(df: pd.DataFrame, title: str, index: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    if index:
        table.add_column(index)
    for column in df.columns:
        table.add_column(str(column), overflow="fold")
    for key, row in df.iterrows():
        table.add_row(*([str(key)] if index else []), *(str(v) for v in row))
    return table


def show(attempts: list[progress.Attempt]) -> None:
    if not attempts:
        out.print(f"No check attempts on {progress.topic_name()} yet.")
        return
    df = progress.to_frame(attempts)
    learners = df["learner"].nunique()
    out.print(_table(progress.summary(df), "Checks passed per lab", index="learner"))
    stuck = progress.most_failed(df)
    if stuck.empty:
        out.print(f"No failed attempts among {learners} learner(s).")
        return
    stuck = stuck.assign(common_message=stuck["common_message"].str.slice(0, 120))
    columns = ["lab", "check", "failing", "passed", "failed_attempts", "common_message"]
    out.print(_table(stuck[columns], "Where the room is stuck (latest attempt failing)"))


def cmd_progress(args: argparse.Namespace) -> int:
    if args.watch is not None and args.watch <= 0:
        raise LabError(f"--watch takes seconds between refreshes (> 0), got {args.watch}.")
    if args.count < 1:
        raise LabError(f"--count takes how many refreshes (at least 1), got {args.count}.")
    lab = Lab()
    refreshes = args.count if args.watch else 1
    try:
        for i in range(refreshes):
            if i:
                time.sleep(args.watch)
            attempts = progress.read_attempts(lab)
            if args.json:
                print(json.dumps(progress.report(attempts)), flush=True)
                continue
            if args.watch:
                out.clear()
                out.print(
                    terminal.styled(
                        (f"{time.strftime('%H:%M:%S')} refresh {i + 1} of {refreshes}", "dim")
                    )
                )
            show(attempts)
    except KeyboardInterrupt:  # the usual way out of --watch
        return 0
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("progress", help="learners' check attempts: who passed what, who is stuck")
    p.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds (Ctrl-C)")
    p.add_argument(
        "--count",
        type=int,
        default=MAX_REFRESHES,
        help=f"with --watch: at most this many refreshes (default {MAX_REFRESHES})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per refresh")
    p.set_defaults(run=lambda backend, args: cmd_progress(args))
