"""Soak: every lesson executed headless, round after round, on one lab that is knocked about in
between, to find the lessons that fail now and then and the cells that take longest.

    python -m tests.soak --rounds 3             # `make soak` (ROUNDS=3)
    python -m tests.soak --rounds 1 --timeout 600 02 07

Each run is papermill in a process of its own (CI parameters, the lab's kernel, the repository as
the working directory, each cell bounded by 300 s), stopped after ``--timeout`` s. Between rounds
a broker restart (`lab kill 2`, `lab start 2`) and a whole-lab one (`lab down`, `lab up`). A lab
that is not running is started with `lab up` first and stopped at the end; a running one is left
running. Executed copies and papermill's log are kept in test-artifacts/soak/round-<n>/.

The report: every failed run (lesson, round, the failing cell's index in the lesson file, the
error's first line), then the 10 slowest cells of all runs (lesson, cell index, seconds, from the
start and end times papermill records in each cell's metadata). The exit status is 1 if any run
failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lab_env.api import Lab
from lab_env.kernel import KERNEL_NAME
from tests.notebooks.catalog import CELL_TIMEOUT_S, REPO, ci_parameters, lessons_named

LAB = Path(sys.executable).with_name("lab")  # the console script, as a user runs it
OUT = REPO / "test-artifacts" / "soak"
RUN_TIMEOUT_S = 1200.0
LAB_TIMEOUT_S = 300.0
SLOWEST = 10
# Cells papermill adds to the notebook it writes: not the lesson's.
ADDED_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})


@dataclass(frozen=True)
class Failure:
    lesson: str
    round: int
    cell: int | None  # index in the lesson file; None when no cell is to blame
    error: str  # the first line


@dataclass(frozen=True)
class CellTime:
    lesson: str
    round: int
    cell: int
    seconds: float


@dataclass(frozen=True)
class Run:
    """One lesson run: papermill's notebook as far as it got (None: none written), its exit
    status, and whether it was stopped at the timeout."""

    notebook: nbformat.NotebookNode | None
    returncode: int | None
    timed_out: bool


@dataclass
class Results:
    failures: list[Failure] = field(default_factory=list)
    times: list[CellTime] = field(default_factory=list)
    runs: int = 0


class LabCommandFailed(Exception):
    """A `lab` command between rounds failed: every later run would fail too."""


# -- reading executed notebooks (pure) -----------------------------------------------------------


def lesson_cells(executed: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    """(index in the lesson file, cell) for the cells of the lesson in papermill's output."""
    own = [c for c in executed.cells if ADDED_TAGS.isdisjoint(c.metadata.get("tags", []))]
    return list(enumerate(own))


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failure_of(executed: nbformat.NotebookNode, lesson: str, round_: int) -> Failure | None:
    """The run's first failing cell: one with an error output, or that papermill marked as
    raising (a cell timeout), or the cell that was still running when the run was stopped."""
    for index, cell in lesson_cells(executed):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if errors:
            evalue = first_line(str(errors[0].get("evalue", "")))
            ename = errors[0].get("ename", "Error")
            return Failure(lesson, round_, index, f"{ename}: {evalue}" if evalue else ename)
        state = cell.metadata.get("papermill", {})
        if state.get("exception"):
            return Failure(lesson, round_, index, "the cell raised (no error output)")
        if state.get("status") == "running":
            return Failure(lesson, round_, index, "the cell was still running when stopped")
    return None


def cell_times(executed: nbformat.NotebookNode, lesson: str, round_: int) -> list[CellTime]:
    """How long each executed cell took, as papermill recorded it (``duration``: its end time
    minus its start time, in seconds)."""
    times = []
    for index, cell in lesson_cells(executed):
        seconds = cell.metadata.get("papermill", {}).get("duration")
        if isinstance(seconds, int | float):
            times.append(CellTime(lesson, round_, index, float(seconds)))
    return times


def verdict(run: Run, lesson: str, round_: int, timeout: float) -> Failure | None:
    """What went wrong in ``run``, if anything. A run stopped at the timeout names the cell
    that was running; a papermill that failed with no failing cell names no cell."""
    failure = failure_of(run.notebook, lesson, round_) if run.notebook is not None else None
    if run.timed_out:
        cell = failure.cell if failure else None
        return Failure(lesson, round_, cell, f"timed out after {timeout:g} s")
    if failure is None and run.returncode:
        written = "" if run.notebook is not None else ", no notebook written"
        return Failure(lesson, round_, None, f"papermill exited with {run.returncode}{written}")
    return failure


def slowest(times: Iterable[CellTime], count: int = SLOWEST) -> list[CellTime]:
    return sorted(times, key=lambda t: t.seconds, reverse=True)[:count]


def summary(failures: list[Failure], times: list[CellTime], runs: int) -> list[str]:
    """The report's lines: failures by lesson (in run order), then the slowest cells."""
    lines = [f"{len(failures)} of {runs} lesson runs failed" + (":" if failures else ".")]
    for lesson in dict.fromkeys(f.lesson for f in failures):
        for f in (f for f in failures if f.lesson == lesson):
            where = "no cell" if f.cell is None else f"cell {f.cell}"
            lines.append(f"  {f.lesson}  round {f.round}  {where}  {f.error}")
    if times:
        lines.append(f"the {min(SLOWEST, len(times))} slowest cells:")
        for t in slowest(times):
            lines.append(f"  {t.lesson}  cell {t.cell}  {t.seconds:.1f} s  (round {t.round})")
    return lines


# -- running (needs the lab) ---------------------------------------------------------------------


def run_lesson(lesson: Path, out: Path, timeout: float) -> Run:
    """Execute ``lesson`` into ``out`` with papermill (its output in ``out`` with ``.log``),
    stopped after ``timeout`` s."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "papermill", str(lesson), str(out), "-k", KERNEL_NAME]
    command += ["--cwd", str(REPO), "--execution-timeout", str(CELL_TIMEOUT_S)]
    command += ["--no-progress-bar", "-y", json.dumps(ci_parameters(lesson))]
    timed_out = False
    with out.with_suffix(".log").open("w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(proc)
        except BaseException:  # ^C: papermill runs in a session of its own, so stop it too
            stop(proc)
            raise
    notebook = None
    with contextlib.suppress(OSError, ValueError):  # none written, or cut off mid-write
        notebook = nbformat.read(out, as_version=4)
    return Run(notebook, proc.returncode, timed_out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt papermill (it shuts its kernel down, with the kernel's children), then kill
    whatever is left of its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def lab(*args: str) -> None:
    """Run the `lab` command, as a user does; raise LabCommandFailed if it fails."""
    command = f"lab {' '.join(args)}"
    print(command, flush=True)
    try:
        proc = subprocess.run(
            [str(LAB), *args], capture_output=True, text=True, timeout=LAB_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabCommandFailed(f"`{command}` did not end within {LAB_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        raise LabCommandFailed(f"`{command}` failed:\n{proc.stdout}{proc.stderr}")


def knock_about() -> None:
    """A broker restart, then a whole-lab restart."""
    lab("kill", "2")
    lab("start", "2")
    lab("down")
    lab("up")


def soak(lessons: list[Path], rounds: int, timeout: float, results: Results) -> None:
    """The rounds, each result added to ``results`` as it comes (a soak cut short still
    reports what ran)."""
    for round_ in range(1, rounds + 1):
        if round_ > 1:
            knock_about()
        print(f"round {round_} of {rounds}", flush=True)
        for lesson in lessons:
            start = time.monotonic()
            run = run_lesson(lesson, OUT / f"round-{round_}" / lesson.name, timeout)
            results.runs += 1
            if run.notebook is not None:
                results.times += cell_times(run.notebook, lesson.stem, round_)
            failure = verdict(run, lesson.stem, round_, timeout)
            if failure is not None:
                results.failures.append(failure)
            said = "ok" if failure is None else f"FAILED: {failure.error}"
            print(f"  {lesson.stem:40} {time.monotonic() - start:6.0f} s  {said}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak",
        description="Execute every lesson ROUNDS times, restarting a broker and the lab between "
        "rounds; report the failures and the slowest cells.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="default: 3")
    parser.add_argument(
        "--timeout", type=float, default=RUN_TIMEOUT_S, help="seconds per lesson run"
    )
    parser.add_argument(
        "lessons", nargs="*", metavar="LESSON", help="a lesson's stem or number; default: all"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.timeout <= 0:
        parser.error("--rounds must be at least 1 and --timeout positive")
    lessons = lessons_named(args.lessons)
    backend = Lab().backend
    if backend.name == "external":
        raise SystemExit(
            "The soak restarts brokers and the lab, which the external backend cannot: run it on "
            "the embedded or docker backend."
        )
    started = not backend.live_nodes()  # no broker running: this soak starts (and stops) it
    results, problems = Results(), []
    try:
        if started:
            lab("up")
        soak(lessons, args.rounds, args.timeout, results)
    except LabCommandFailed as exc:
        problems.append(f"The soak stopped early: {exc}")
    finally:
        if started:
            try:
                lab("down")
            except LabCommandFailed as exc:
                problems.append(str(exc))
    print("\n".join(summary(results.failures, results.times, results.runs)))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if results.failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
