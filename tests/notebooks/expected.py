"""What each lesson's ``# NBVAL_CHECK_OUTPUT`` cells must print, committed beside the tests, and
the generator that writes it:

    python -m tests.notebooks.expected                  # every lesson (the lab up)
    python -m tests.notebooks.expected 02 05-schemas-and-evolution

The generator executes each lesson as the suite does (papermill, CI parameters, the lab's
kernel, the repository as the working directory; the executed copy is left in
test-artifacts/notebooks/expected/) and writes tests/notebooks/expected/<lesson>.json: the
marked cells' outputs keyed by cell id, stream text and execute_result text only, without
execution counts or metadata. The suite runs each lesson once, under nbval, over a copy whose
marked cells carry these outputs, so a deterministic fact that changes fails the lesson even if
every run agrees with itself. Rerun the generator after changing a marked cell on purpose, and
read the diff before committing it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbval.plugin import coalesce_streams
from papermill.exceptions import PapermillExecutionError
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from tests.notebooks.catalog import (
    ARTIFACTS,
    NBVAL_MARK,
    REPO,
    ci_parameters,
    label,
    lessons_named,
    marked_cells,
    run_papermill,
)

EXPECTED = Path(__file__).resolve().parent / "expected"
COMMAND = "python -m tests.notebooks.expected"
# nbval compares every field of a cell's outputs except these (nbval.plugin.IPyNbFile), so the
# expected outputs may leave out nothing else.
NBVAL_IGNORES = frozenset({"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"})

Outputs = list[dict[str, Any]]


class NotComparable(Exception):
    """A marked cell printed something the expected outputs cannot hold."""


def file_for(lesson: Path) -> Path:
    return EXPECTED / f"{lesson.stem}.json"


def command_for(lesson: Path) -> str:
    return f"{COMMAND} {lesson.stem}"


def _lines(text: str | list[str]) -> list[str]:
    """Text as nbformat stores it on disk: a list of lines, so a diff shows the line."""
    return ("".join(text) if isinstance(text, list) else text).splitlines(keepends=True)


def kept(output: nbformat.NotebookNode, where: str) -> dict[str, Any]:
    """The comparable part of one output: a stream's name and text, an execute_result's text."""
    if output.output_type == "stream":
        return {"output_type": "stream", "name": output.name, "text": _lines(output.text)}
    if output.output_type == "execute_result":
        data = {k: _lines(v) for k, v in output.data.items() if k.startswith("text/")}
        other = sorted(set(output.data) - set(data) - NBVAL_IGNORES)
        if not other:
            return {"output_type": "execute_result", "data": data}
        shown = f"a value shown as {', '.join(other)}"
    else:
        shown = f"a {output.output_type} output"
    raise NotComparable(
        f"{where} is marked {NBVAL_MARK} but produced {shown}, which nbval would compare as it "
        "is: print the facts instead (stream text), or end the cell with a plain value."
    )


def extract(executed: nbformat.NotebookNode, where: str) -> dict[str, Outputs]:
    """The marked cells' comparable outputs, keyed by cell id, from an executed notebook."""
    cells = {}
    for cell in marked_cells(executed):
        here = f"{where}, cell {cell.get('id')}"
        outputs = coalesce_streams(copy.deepcopy(cell.outputs))  # as nbval does before comparing
        cells[cell.id] = [kept(output, here) for output in outputs]
    return cells


def load(lesson: Path) -> dict[str, Outputs] | None:
    """The lesson's expected outputs by cell id; None when it has no file."""
    path = file_for(lesson)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def write(lesson: Path, cells: dict[str, Outputs]) -> Path:
    path = file_for(lesson)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "lesson": f"{lesson.parent.name}/{lesson.name}",
        "generator": command_for(lesson),
        "cells": cells,
    }
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def problems(lesson: Path) -> list[str]:
    """Why the committed expected outputs do not fit the lesson's marked cells (empty: they do)."""
    notebook = nbformat.read(lesson, as_version=4)
    name, rerun = label(lesson), f"run `{command_for(lesson)}` with the lab up"
    marked = [c.get("id") for c in marked_cells(notebook)]
    if None in marked:
        return [f"{name}: a marked cell has no id; save the lesson as nbformat 4.5 or later"]
    expected, shown = load(lesson), _shown(file_for(lesson))
    if expected is None:
        return [f"{name} has no expected outputs ({shown}): {rerun} to write them."]
    found = []
    if missing := [i for i in marked if i not in expected]:
        found.append(
            f"{name}: cells {', '.join(missing)} are marked {NBVAL_MARK} but have no expected "
            f"output in {shown}: {rerun}."
        )
    if stale := [i for i in expected if i not in marked]:
        found.append(
            f"{shown} has outputs for cells {', '.join(stale)}, which {name} no longer marks "
            f"{NBVAL_MARK} (or no longer has): {rerun}."
        )
    return found


def with_expected(
    notebook: nbformat.NotebookNode, cells: dict[str, Outputs]
) -> nbformat.NotebookNode:
    """A copy of ``notebook`` whose marked cells carry their expected outputs, with an execution
    count (nbval compares only cells that have one)."""
    filled = copy.deepcopy(notebook)
    count = 0
    for cell in filled.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        if NBVAL_MARK not in cell.source:
            continue
        cell.execution_count = count
        cell.outputs = [_output(o, count) for o in cells[cell.id]]
    return filled


def nbval_copy(lesson: Path) -> nbformat.NotebookNode:
    """What nbval runs for ``lesson``: parameterized by papermill (CI sizes, nothing executed),
    its marked cells carrying their expected outputs."""
    notebook = parameterize_notebook(load_notebook_node(str(lesson)), ci_parameters(lesson))
    return with_expected(notebook, load(lesson) or {})


def _output(expected: dict[str, Any], count: int) -> nbformat.NotebookNode:
    if expected["output_type"] == "stream":
        text = "".join(expected["text"])
        return nbformat.v4.new_output("stream", name=expected["name"], text=text)
    data = {mime: "".join(lines) for mime, lines in expected["data"].items()}
    return nbformat.v4.new_output("execute_result", data=data, execution_count=count)


def generate(lesson: Path) -> str | None:
    """Execute ``lesson`` and write its expected outputs; the reason when nothing was written."""
    out = ARTIFACTS / "expected" / lesson.name
    try:
        run_papermill(lesson, out)
    except PapermillExecutionError as exc:
        first = (str(exc.evalue).splitlines() or [""])[0]
        return f"{label(lesson)}: In [{exc.exec_count}] failed, {exc.ename}: {first} (see {out})"
    try:
        cells = extract(nbformat.read(out, as_version=4), label(lesson))
    except NotComparable as exc:
        return str(exc)
    path = write(lesson, cells)
    print(f"wrote {_shown(path)}: {len(cells)} cells")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Execute lessons (the lab up) and write the expected outputs of their "
        f"{NBVAL_MARK} cells to tests/notebooks/expected/.",
    )
    parser.add_argument(
        "lessons", nargs="*", metavar="LESSON", help="a lesson's stem or number; default: all"
    )
    failures = [f for f in map(generate, lessons_named(parser.parse_args(argv).lessons)) if f]
    for failure in failures:
        print(f"not written: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
