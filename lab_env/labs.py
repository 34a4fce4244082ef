"""Learner copies of the labs, generated from their solutions (the single source of truth).

In a solution notebook, code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the
answer. The learner copy replaces it with ``# YOUR CODE HERE`` plus the region's ``# STUB:``
lines, uncommented, so the notebook still runs and its checks fail with the lab's own message:

    ### BEGIN SOLUTION
    partitions = 6
    # STUB: partitions = None
    ### END SOLUTION

Outputs are cleared. ``python -m lab_env.labs`` regenerates ``labs/``; ``--check`` exits 1 when
``labs/`` is out of date (the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from lab_env.config import REPO
from lab_env.errors import LabError

BEGIN, END, STUB = "### BEGIN SOLUTION", "### END SOLUTION", "# STUB: "
PLACEHOLDER = "# YOUR CODE HERE"


def strip_solutions(source: str, where: str = "cell") -> str:
    """One cell's source with every solution region replaced by its stub."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise LabError(f"{where}, line {number}: {BEGIN} inside another solution region.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + PLACEHOLDER)
        elif marker == END:
            if not inside:
                raise LabError(f"{where}, line {number}: {END} without {BEGIN}.")
            inside = False
        elif inside:
            if marker.startswith(STUB):
                out.append(line.replace(STUB, "", 1))
        else:
            out.append(line)
    if inside:
        raise LabError(f"{where}: {BEGIN} is never closed by {END}.")
    return "\n".join(out)


def learner_copy(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    notebook = nbformat.from_dict(solution)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
    return notebook


def render(path: Path) -> str:
    notebook = learner_copy(nbformat.read(path, as_version=4), path.name)
    return nbformat.writes(notebook) + "\n"


def stale(solutions: Path = REPO / "solutions", labs: Path = REPO / "labs") -> list[str]:
    """Labs that differ from what their solutions generate, and labs with no solution."""
    problems = []
    for path in sorted(solutions.glob("*.ipynb")):
        target = labs / path.name
        if not target.is_file() or target.read_text() != render(path):
            problems.append(f"labs/{path.name} is out of date")
    sources = {p.name for p in solutions.glob("*.ipynb")}
    for orphan in sorted({p.name for p in labs.glob("*.ipynb")} - sources):
        problems.append(f"labs/{orphan} has no solution in solutions/")
    return problems


def generate(solutions: Path = REPO / "solutions", labs: Path = REPO / "labs") -> list[Path]:
    labs.mkdir(exist_ok=True)
    written = []
    for path in sorted(solutions.glob("*.ipynb")):
        (labs / path.name).write_text(render(path))
        written.append(labs / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate labs/ from solutions/.")
    parser.add_argument("--check", action="store_true", help="only report out-of-date labs")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale()
            for line in problems:
                print(line)
            if problems:
                print("Regenerate with: python -m lab_env.labs")
            return 1 if problems else 0
        for path in generate():
            print(f"wrote {path.relative_to(REPO)}")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
