"""Every notebook runs once per suite run, headless, against the real lab.

- Lessons (notebooks/): once, under nbval (``pytest --nbval-lax`` in a subprocess), over a copy
  that papermill has parameterized (CI sizes injected, nothing executed) and whose cells marked
  ``# NBVAL_CHECK_OUTPUT`` carry the expected outputs committed in tests/notebooks/expected/
  (``python -m tests.notebooks.expected`` writes them): every cell must run without error, and
  each marked cell must print exactly what is expected. The executed copy is left in
  test-artifacts/notebooks/notebooks/; a failure shows nbval's report (the cell, its source, the
  traceback or the difference).
- Solutions (solutions/): once, with papermill. The labs a workshop learner runs confined to
  their namespace (``catalog.CONFINED_LABS``) run once as that learner, in
  tests/integration/test_workshop.py, instead of here.
- Unsolved learner copies (labs/): once, with nbclient; each must fail at every check with the
  lab's own LabCheckError, and nowhere else.

Executed copies are kept in test-artifacts/notebooks/ for inspection. Notebooks that kill, pause
or restart brokers (``catalog.DISRUPTIVE``) are marked ``disruptive``, so they run after the
others. The tests that read the notebooks without running them need no cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from lab_env import labs
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.kernel import KERNEL_NAME
from tests.helpers import progress_lines
from tests.notebooks import expected as expected_outputs
from tests.notebooks.catalog import (
    ARTIFACTS,
    CONFINED_LABS,
    DISRUPTIVE,
    LABS,
    LESSONS,
    NBVAL_MARK,
    NBVAL_TIMEOUT_S,
    REPO,
    SOLUTIONS,
    ci_parameters,
    label,
    marked_cells,
    marks,
    run_nbval,
    run_papermill,
)

ALL = LESSONS + SOLUTIONS + LABS
CHECK_CALL = re.compile(r"^\s*(?:\w+\s*=\s*)?check_\w+\(", re.MULTILINE)
# The checks that take more than a few seconds say what they are doing as each phase starts
# (lab_env/steps.py): a line of this phase must show under the cell of each.
CHECK_PROGRESS = {
    "check_latest_status": "waiting for the log cleaner to compact",
    "check_fast_and_complete": "timing produce_orders on",
    "check_idempotent_producer": "asking the partition's leader which producers it knows",
    "check_no_duplicates_under_retries": "reading the topic back",
    "check_commits_follow_processing": "worker-1 died; worker-2 processes the rest",
    "check_rebalances": "worker-2 joins the group: a rebalance",
    "check_abort_path": "starting run_worker; fail_hook fails its 1st and 3rd transactions",
    "check_crash_recovery": "worker 1 is frozen; starting worker 2 with the same transactional.id",
    "check_tuned_producer": "records with your settings (run 1 of at most 3)",
    "check_survives_broker_loss": "killed kafka-",
    "check_messages_in_rate": "waiting for Prometheus to scrape them",
    "check_broker_down_alert": "waiting for your alert to fire",
    "check_payment_service": "your instance is frozen; starting a replacement",
}


def execute(path: Path) -> Path:
    """Run ``path`` with papermill into ARTIFACTS (other test modules call this, and may point
    ARTIFACTS elsewhere)."""
    return run_papermill(path, ARTIFACTS / path.parent.name / path.name)


def run(paths: list[Path]) -> list[Any]:
    """Parameters for the notebooks' runs: named by folder and stem, marked for their tier."""
    return [pytest.param(p, id=label(p), marks=marks(p.stem)) for p in paths]


# The test's own limit leaves room to end with nbval's report rather than pytest-timeout's.
@pytest.mark.cluster
@pytest.mark.timeout(NBVAL_TIMEOUT_S + 120)
@pytest.mark.parametrize("path", run(LESSONS))
def test_lesson_runs_and_prints_its_expected_facts(lab: Lab, path: Path) -> None:
    """nbval, lax mode, over the parameterized lesson: every cell runs without error, and each
    cell marked ``# NBVAL_CHECK_OUTPUT`` prints its committed expected output."""
    problems = expected_outputs.problems(path)
    assert not problems, " ".join(problems)
    out = ARTIFACTS / path.parent.name / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(expected_outputs.nbval_copy(path), out)
    try:
        result = run_nbval(out)
    except subprocess.TimeoutExpired as stopped:
        pytest.fail(
            f"nbval over {label(path)} did not end within {NBVAL_TIMEOUT_S} s:\n"
            f"{_text(stopped.stdout)[-6000:]}{_text(stopped.stderr)[-2000:]}"
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


@pytest.mark.cluster
@pytest.mark.parametrize("path", run([p for p in SOLUTIONS if p.stem not in CONFINED_LABS]))
def test_solution_runs_headless(lab: Lab, path: Path) -> None:
    require_progress(execute(path))


def check_cells(notebook: nbformat.NotebookNode) -> list[int]:
    return [
        i
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and CHECK_CALL.search(c.source)
    ]


def require_progress(executed: Path) -> None:
    """Under each cell of the executed notebook that calls a check of CHECK_PROGRESS, that
    check's progress lines, with the phase it names."""
    notebook = nbformat.read(executed, as_version=4)
    for i in check_cells(notebook):
        cell = notebook.cells[i]
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        for check, phase in CHECK_PROGRESS.items():
            if f"{check}(" in cell.source:
                assert any(phase in line for line in progress_lines(text)), (
                    f"{label(executed)}: cell {i} ({check}) shows no progress line "
                    f"with {phase!r}:\n{text}"
                )


@pytest.mark.cluster
@pytest.mark.parametrize("path", run(LABS))
def test_unsolved_lab_fails_every_check(lab: Lab, path: Path) -> None:
    """Run the learner copy to the end, errors allowed: every check cell must fail with the
    lab's own LabCheckError, and no other cell may fail (stubs keep the notebook runnable)."""
    out = ARTIFACTS / path.parent.name / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    notebook = parameterize_notebook(load_notebook_node(str(path)), ci_parameters(path))
    NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=300,
        allow_errors=True,
        resources={"metadata": {"path": str(REPO)}},
    ).execute()
    nbformat.write(notebook, out)
    checks = check_cells(notebook)
    assert checks, f"{label(path)} has no cell that calls a check_ function"
    errors = {
        i: o
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    }
    for i in checks:
        assert i in errors, f"{label(path)}: check cell {i} passed on the unsolved lab"
        assert errors[i].ename == "LabCheckError", (
            f"{label(path)}: check cell {i} failed with {errors[i].ename}: {errors[i].evalue}; an "
            "unsolved lab must reach its check and fail there (give the solution region a # STUB:)"
        )
    others = {i: f"{o.ename}: {o.evalue}" for i, o in errors.items() if i not in checks}
    assert not others, f"{label(path)}: cells other than checks failed: {others}"


# -- what can be checked without running anything ----------------------------------------------


def test_labs_are_generated_from_solutions() -> None:
    assert labs.stale() == [], "run `python -m lab_env.labs` to regenerate labs/"


@pytest.mark.parametrize("path", ALL, ids=label)
def test_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert dirty == [], f"{label(path)}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", ALL, ids=label)
def test_has_a_parameters_cell(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{label(path)} needs exactly one cell tagged 'parameters'"
    assert "CI = False" in tagged[0].source


def test_every_lab_has_a_solution_region_and_a_check() -> None:
    for path in SOLUTIONS:
        text = path.read_text()
        assert labs.BEGIN in text, f"{label(path)} has no solution region"
        assert "check_" in text, f"{label(path)} calls no check"
        assert json.loads(text)["metadata"]["kernelspec"]["name"] == KERNEL_NAME


def test_the_catalog_names_real_notebooks_and_checks() -> None:
    stems = {p.stem for p in ALL}
    assert stems >= DISRUPTIVE, f"DISRUPTIVE names no notebook: {sorted(DISRUPTIVE - stems)}"
    called = "".join(p.read_text() for p in SOLUTIONS)
    stale = [check for check in CHECK_PROGRESS if f"{check}(" not in called]
    assert not stale, f"CHECK_PROGRESS names checks no solution calls: {stale}"
    for stem, checks in CONFINED_LABS.items():
        solution = REPO / "solutions" / f"{stem}.ipynb"
        assert solution.exists(), f"CONFINED_LABS names no solution: {stem}"
        text = solution.read_text()
        missing = sorted(c for c in checks if c not in text)
        assert checks and not missing, f"solutions/{stem} never calls {missing}"


def test_strip_solutions_keeps_stubs_and_indentation() -> None:
    source = "\n".join(
        [
            "x = 1",
            "    ### BEGIN SOLUTION",
            "    y = 2",
            "    # STUB: y = None",
            "    ### END SOLUTION",
            "z = 3",
        ]
    )
    assert labs.strip_solutions(source) == "x = 1\n    # YOUR CODE HERE\n    y = None\nz = 3"


def test_a_learner_copy_leaves_out_the_answers() -> None:
    solution = nbformat.v4.new_notebook()
    solution.cells = [
        nbformat.v4.new_markdown_cell("# Lab"),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n# STUB: x = None\n### END SOLUTION"),
        nbformat.v4.new_markdown_cell("## Answers\n\n1. 42", metadata={"tags": [labs.ANSWERS]}),
    ]
    copy = labs.learner_copy(solution)
    assert [c.source for c in copy.cells] == ["# Lab", "# YOUR CODE HERE\nx = None"]


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.metadata.get("tags", []))


@pytest.mark.parametrize("path", LESSONS, ids=label)
def test_a_lesson_opens_with_objectives_and_ends_with_questions(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    assert "objectives" in _tags(cells[1]), f"{label(path)}: cell 2 is not the objectives"
    assert "**What you will be able to do**" in cells[1].source
    assert re.search(r"\*\*Time\*\*: about \d+ minutes", cells[1].source)
    assert "check-yourself" in _tags(cells[-1]), f"{label(path)}: no questions at the end"
    questions = re.findall(r"^\d+\. ", cells[-1].source, re.MULTILINE)
    assert len(questions) >= 3, f"{label(path)}: fewer than three questions"
    (solution,) = re.findall(r"`solutions/([^`]+\.ipynb)`", cells[-1].source)
    answers = nbformat.read(REPO / "solutions" / solution, as_version=4).cells[-1]
    assert labs.ANSWERS in _tags(answers), f"solutions/{solution} does not end with the answers"
    assert len(re.findall(r"^\d+\. ", answers.source, re.MULTILINE)) == len(questions)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_malformed_solution_regions_are_named(source: str, fragment: str) -> None:
    with pytest.raises(LabError, match=fragment):
        labs.strip_solutions(source, "lab.ipynb, cell 3")


@pytest.mark.parametrize("path", LESSONS, ids=label)
def test_lesson_marks_a_deterministic_output(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    assert marked_cells(notebook), (
        f"{label(path)}: mark a cell that prints deterministic facts with {NBVAL_MARK}"
    )


@pytest.mark.parametrize("path", LESSONS, ids=label)
def test_expected_outputs_fit_the_marked_cells(path: Path) -> None:
    """Every marked cell has a committed expected output, and no expected output is left for a
    cell that is no longer marked (tests/notebooks/expected/<lesson>.json)."""
    problems = expected_outputs.problems(path)
    assert not problems, " ".join(problems)
