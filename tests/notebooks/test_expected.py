"""The expected-outputs machinery on a small notebook of its own, run on the lab's kernel with no
cluster: what the generator keeps, the sentences when marks and file disagree, and nbval passing
the copy whose marked cells print what is expected and failing the one that does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import find_kernel_specs
from nbformat.v4 import new_code_cell, new_notebook, new_output

from lab_env.kernel import KERNEL_NAME
from tests.notebooks import expected
from tests.notebooks.catalog import run_nbval, run_papermill

SOURCES = {
    "params": "CI = False\nFACTS = 3",
    "facts": "# NBVAL_CHECK_OUTPUT\nimport sys\n\nprint(f'{FACTS} facts')\n"
    "print('and a warning', file=sys.stderr)\n{'facts': FACTS}",
    "noise": "import random\n\nprint(random.random())  # not marked: never compared",
    "table": "# NBVAL_CHECK_OUTPUT\nimport pandas as pd\n\n"
    "pd.DataFrame({'setting': ['a'], 'value': [FACTS]})",
}


@pytest.fixture
def lesson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lesson with two marked cells, CI parameters in its metadata, expected outputs kept in
    tmp_path."""
    monkeypatch.setattr(expected, "EXPECTED", tmp_path / "expected")
    cells = [new_code_cell(source, id=cell_id) for cell_id, source in SOURCES.items()]
    cells[0].metadata.tags = ["parameters"]
    notebook = new_notebook(cells=cells)
    notebook.metadata.kafka_lab = {"ci_parameters": {"FACTS": 2}}
    notebook.metadata.kernelspec = {"name": KERNEL_NAME, "display_name": "", "language": "python"}
    path = tmp_path / "notebooks" / "99-demo.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)
    return path


def test_marks_without_expected_outputs_and_outputs_without_marks_name_the_generator(
    lesson: Path,
) -> None:
    assert expected.problems(lesson) == [
        f"notebooks/99-demo has no expected outputs ({expected.file_for(lesson)}): run "
        "`python -m tests.notebooks.expected 99-demo` with the lab up to write them."
    ]
    expected.write(lesson, {"facts": [], "gone": []})
    missing, stale = expected.problems(lesson)
    assert "cells table are marked # NBVAL_CHECK_OUTPUT but have no expected output" in missing
    assert "has outputs for cells gone, which notebooks/99-demo no longer marks" in stale
    assert all("`python -m tests.notebooks.expected 99-demo`" in p for p in (missing, stale))


def test_rich_output_in_a_marked_cell_is_refused_in_a_sentence() -> None:
    shown = new_output("display_data", data={"text/plain": "chart"})
    with pytest.raises(expected.NotComparable, match="produced a display_data output"):
        expected.kept(shown, "notebooks/99-demo, cell x")
    chart = new_output("execute_result", data={"application/vnd.vegalite.v5+json": {}})
    with pytest.raises(expected.NotComparable, match="a value shown as application"):
        expected.kept(chart, "notebooks/99-demo, cell x")


def test_the_generated_outputs_pass_nbval_and_a_changed_fact_fails_it(
    lesson: Path, tmp_path: Path
) -> None:
    assert KERNEL_NAME in find_kernel_specs(), "install the lab's kernel: python -m lab_env.kernel"
    executed = run_papermill(lesson, tmp_path / "executed" / lesson.name)  # as the generator does
    cells = expected.extract(nbformat.read(executed, as_version=4), "notebooks/99-demo")
    assert list(cells) == ["facts", "table"]
    assert cells["facts"][:2] == [
        {"output_type": "stream", "name": "stdout", "text": ["2 facts\n"]},
        {"output_type": "stream", "name": "stderr", "text": ["and a warning\n"]},
    ]
    assert cells["facts"][2] == {
        "output_type": "execute_result",
        "data": {"text/plain": ["{'facts': 2}"]},
    }
    assert sorted(cells["table"][0]["data"]) == ["text/html", "text/plain"]
    expected.write(lesson, cells)
    assert expected.problems(lesson) == []
    assert "execution_count" not in expected.file_for(lesson).read_text()

    copy = tmp_path / "copy" / lesson.name
    copy.parent.mkdir()
    nbformat.write(expected.nbval_copy(lesson), copy)
    result = run_nbval(copy, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    kept = nbformat.read(copy, as_version=4)  # the executed copy, for inspection
    noise = next(c for c in kept.cells if c.get("id") == "noise")
    assert noise.outputs and noise.outputs[0].text.strip()

    document = json.loads(expected.file_for(lesson).read_text())
    document["cells"]["facts"][0]["text"] = ["3 facts\n"]
    expected.file_for(lesson).write_text(json.dumps(document))
    nbformat.write(expected.nbval_copy(lesson), copy)
    result = run_nbval(copy, timeout=300)
    assert result.returncode != 0 and "Cell outputs differ" in result.stdout, result.stdout[-4000:]
