"""The soak's report, from executed notebooks as papermill writes them (no lab, no kernel)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.soak import (
    CellTime,
    Failure,
    Run,
    cell_times,
    failure_of,
    slowest,
    summary,
    verdict,
)


def cell(
    source: str, seconds: float | None, status: str = "completed", **extra: object
) -> nbformat.NotebookNode:
    code = new_code_cell(source)
    code.metadata.papermill = {"duration": seconds, "status": status, "exception": False, **extra}
    return code


def injected() -> nbformat.NotebookNode:
    code = cell("CI = True", 0.01)
    code.metadata.tags = ["injected-parameters"]
    return code


def executed(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Papermill's output: the lesson's cells with the injected parameters after the first."""
    return new_notebook(cells=[cells[0], injected(), *cells[1:]])


def error(ename: str, evalue: str) -> nbformat.NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[])


def test_a_clean_run_has_no_failure_and_its_cells_timed_in_lesson_numbering() -> None:
    notebook = executed(cell("CI = False", 0.01), new_markdown_cell("why"), cell("work()", 4.5))
    assert failure_of(notebook, "02-producers", 1) is None
    assert cell_times(notebook, "02-producers", 1) == [
        CellTime("02-producers", 1, 0, 0.01),
        CellTime("02-producers", 1, 2, 4.5),  # the injected cell is not the lesson's
    ]


def test_the_failing_cell_is_named_by_its_index_in_the_lesson_with_the_errors_first_line() -> None:
    failing = cell("assert ok", 2.0, status="failed", exception=True)
    failing.outputs = [new_output("stream", name="stdout", text="before\n")]
    failing.outputs.append(error("AssertionError", "3 duplicates\nmore detail"))
    error_note = new_markdown_cell("An Exception was encountered")
    error_note.metadata.tags = ["papermill-error-cell-tag"]
    notebook = executed(cell("CI = False", 0.01), cell("setup()", 1.0), error_note, failing)
    notebook.cells.insert(0, error_note)  # papermill puts one at the top as well
    assert failure_of(notebook, "07-replication-and-failure", 2) == Failure(
        "07-replication-and-failure", 2, 2, "AssertionError: 3 duplicates"
    )


def test_a_cell_that_raised_without_an_error_output_or_was_still_running_is_named() -> None:
    raised = executed(cell("CI = False", 0.01), cell("slow()", 300.0, exception=True))
    assert failure_of(raised, "06", 1) == Failure("06", 1, 1, "the cell raised (no error output)")
    running = executed(cell("CI = False", 0.01), cell("stuck()", None, status="running"))
    stopped = Run(running, -2, timed_out=True)
    assert verdict(stopped, "06", 3, 1200) == Failure("06", 3, 1, "timed out after 1200 s")


def test_a_papermill_that_failed_outside_any_cell_names_no_cell() -> None:
    assert verdict(Run(None, 1, timed_out=False), "00", 1, 600) == Failure(
        "00", 1, None, "papermill exited with 1, no notebook written"
    )
    assert verdict(Run(None, None, timed_out=True), "00", 1, 600) == Failure(
        "00", 1, None, "timed out after 600 s"
    )
    clean = executed(cell("CI = False", 0.01))
    assert verdict(Run(clean, 0, timed_out=False), "00", 1, 600) is None


def test_the_report_lists_failures_by_lesson_and_the_ten_slowest_cells() -> None:
    failures = [
        Failure("02-producers", 1, 21, "AssertionError: x"),
        Failure("08-monitoring", 1, None, "timed out after 1200 s"),
        Failure("02-producers", 3, 21, "AssertionError: y"),
    ]
    times = [
        CellTime("06-performance-tuning", r, c, float(c * r)) for r in (1, 2) for c in range(8)
    ]
    lines = summary(failures, times, runs=24)
    assert lines[:4] == [
        "3 of 24 lesson runs failed:",
        "  02-producers  round 1  cell 21  AssertionError: x",
        "  02-producers  round 3  cell 21  AssertionError: y",
        "  08-monitoring  round 1  no cell  timed out after 1200 s",
    ]
    assert lines[4] == "the 10 slowest cells:"
    assert lines[5] == "  06-performance-tuning  cell 7  14.0 s  (round 2)"
    assert len(lines) == 15
    assert [t.seconds for t in slowest(times, 3)] == [14.0, 12.0, 10.0]
    assert summary([], [], runs=12) == ["0 of 12 lesson runs failed."]
