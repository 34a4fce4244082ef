"""Learner copies of the labs, generated from their solutions (the single source of truth).

In a solution notebook, code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the
answer. The learner copy replaces it with ``# YOUR CODE HERE`` plus the region's ``# STUB:``
lines, uncommented, so the notebook still runs and its checks fail with the lab's own message:

    ### BEGIN SOLUTION
    partitions = 6
    # STUB: partitions = None
    ### END SOLUTION

Markdown cells tagged ``answers`` (the answers to the lesson's "Check yourself" questions, kept
at the end of each solution) are left out. Outputs are cleared. ``python -m lab_env.labs``
regenerates ``labs/``; ``--check`` exits 1 when ``labs/`` is out of date (the test suite runs it).

The same command keeps two things about every notebook in step: its kernel (the lab's own,
:mod:`lab_env.kernel`) and the curriculum table in lesson 00, the start page ``lab jupyter``
opens, listing each module's lesson and lab in order.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from lab_env.config import REPO
from lab_env.errors import LabError
from lab_env.kernel import kernelspec

BEGIN, END, STUB = "### BEGIN SOLUTION", "### END SOLUTION", "# STUB: "
ANSWERS = "answers"  # the tag of a solution's cell that a learner copy leaves out
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
    notebook.cells = [c for c in notebook.cells if ANSWERS not in c.metadata.get("tags", [])]
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
    return notebook


def render(path: Path) -> str:
    notebook = learner_copy(nbformat.read(path, as_version=4), path.name)
    return nbformat.writes(notebook) + "\n"


# -- the start page and the kernel -------------------------------------------------------------

START = REPO / "notebooks" / "00-welcome-and-lab-tour.ipynb"
CURRICULUM_HEADING = "## The curriculum"
_TITLE = re.compile(r"^#\s+(?:Lab\s+|Module\s+)?\d+\s*·\s*(.+)$")


def title(path: Path) -> str:
    """A notebook's title: its first heading without the ``NN ·`` (or ``Lab NN ·``) prefix."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            match = _TITLE.match(first)
            return match.group(1).strip() if match else first.lstrip("# ").strip()
    return path.stem


def curriculum(repo: Path = REPO) -> str:
    """The start page's table: every module's lesson and lab, in order, as relative links."""
    lessons = sorted((repo / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    labs = {p.name[:2]: p for p in sorted((repo / "labs").glob("[0-9][0-9]-*.ipynb"))}
    rows = [
        CURRICULUM_HEADING,
        "",
        "Work through the modules in order: read and run the lesson, then do its lab. The labs' "
        "checks test your work against the cluster; solved labs are in `solutions/`.",
        "",
        "| module | lesson | lab |",
        "|---|---|---|",
    ]
    for lesson in lessons:
        number = lesson.name[:2]
        lab = labs.get(number)
        cell = f"[{title(lab)}](../labs/{lab.name})" if lab else "-"
        rows.append(f"| {number} | [{title(lesson)}]({lesson.name}) | {cell} |")
    return "\n".join(rows)


def with_start_page(notebook: nbformat.NotebookNode, repo: Path = REPO) -> nbformat.NotebookNode:
    """Lesson 00 with its curriculum cell (second cell, after the introduction) up to date."""
    notebook = nbformat.from_dict(notebook)
    table = curriculum(repo)
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith(CURRICULUM_HEADING):
            cell.source = table
            return notebook
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell(table))
    return notebook


def normalised(path: Path, repo: Path = REPO) -> str:
    """A lesson or solution as stored: the lab's kernel, and (lesson 00) the curriculum."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = kernelspec()
    if path.name == START.name and path.parent.name == "notebooks":
        notebook = with_start_page(notebook, repo)
    return nbformat.writes(notebook) + "\n"


def stored_notebooks(repo: Path = REPO) -> list[Path]:
    return sorted((repo / "notebooks").glob("*.ipynb")) + sorted(
        (repo / "solutions").glob("*.ipynb")
    )


def stale(solutions: Path = REPO / "solutions", labs: Path = REPO / "labs") -> list[str]:
    """Labs that differ from what their solutions generate, labs with no solution, and lessons
    or solutions whose kernel or curriculum table is not up to date."""
    problems = []
    repo = solutions.parent
    for path in stored_notebooks(repo):
        if path.read_text() != normalised(path, repo):
            problems.append(f"{path.relative_to(repo)}: kernel or curriculum table out of date")
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
    repo = solutions.parent
    for path in stored_notebooks(repo):
        text = normalised(path, repo)
        if path.read_text() != text:
            path.write_text(text)
            written.append(path)
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
