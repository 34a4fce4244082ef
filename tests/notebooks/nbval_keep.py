"""A pytest plugin for the nbval run over one lesson (``-p tests.notebooks.nbval_keep``): when the
run ends, what each cell printed is written into the notebook nbval ran, so
test-artifacts/notebooks/notebooks/ holds the executed lesson for inspection (the expected
outputs the marked cells were compared with are in tests/notebooks/expected/). Keeping the copy
never changes the run's result.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import nbformat
import pytest

_outputs: dict[Path, dict[int, list[nbformat.NotebookNode]]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    outputs = getattr(item, "test_outputs", None)  # nbval's cell item, once the cell has run
    if call.when == "call" and outputs is not None:
        _outputs.setdefault(item.path, {})[item.cell_num] = list(outputs)  # type: ignore[attr-defined]
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    for path, cells in _outputs.items():
        try:
            write_executed(path, cells)
        except Exception as exc:  # the copy is for reading; nbval's report is the result
            print(f"the executed copy of {path} was not written: {exc}", file=sys.stderr)


def write_executed(path: Path, cells: dict[int, list[nbformat.NotebookNode]]) -> None:
    """Give the n-th code cell of ``path`` the outputs nbval saw (none for a cell that did not
    run) and save it."""
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code):
        cell.outputs = cells.get(number, [])
        cell.execution_count = number + 1 if number in cells else None
    nbformat.write(notebook, path)
