"""The start page (lesson 00's curriculum table) and the lab's kernel in every notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat

from lab_env import labs
from lab_env.config import REPO
from lab_env.kernel import KERNEL_NAME, kernelspec


def notebook(path: Path, heading: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(heading)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_titles_drop_the_number_prefix(tmp_path: Path) -> None:
    for heading, expected in [
        ("# 02 · Producers", "Producers"),
        ("# Lab 08 · PromQL and an alert", "PromQL and an alert"),
        ("# Module 08 · Monitoring", "Monitoring"),
        ("# Something else", "Something else"),
    ]:
        notebook(tmp_path / "n.ipynb", heading)
        assert labs.title(tmp_path / "n.ipynb") == expected


def test_curriculum_lists_lessons_in_order_with_their_labs(tmp_path: Path) -> None:
    notebook(tmp_path / "notebooks" / "01-b.ipynb", "# 01 · Second")
    notebook(tmp_path / "notebooks" / "00-a.ipynb", "# 00 · First")
    notebook(tmp_path / "labs" / "01-lab.ipynb", "# Lab 01 · Its lab")
    table = labs.curriculum(tmp_path).splitlines()
    assert table[0] == labs.CURRICULUM_HEADING
    assert table[-2:] == [
        "| 00 | [First](00-a.ipynb) | - |",
        "| 01 | [Second](01-b.ipynb) | [Its lab](../labs/01-lab.ipynb) |",
    ]


def test_start_page_cell_is_inserted_once_and_then_updated(tmp_path: Path) -> None:
    notebook(tmp_path / "notebooks" / "00-a.ipynb", "# 00 · First")
    nb = nbformat.read(tmp_path / "notebooks" / "00-a.ipynb", as_version=4)
    once = labs.with_start_page(nb, tmp_path)
    twice = labs.with_start_page(once, tmp_path)
    assert [c.source.startswith(labs.CURRICULUM_HEADING) for c in twice.cells] == [False, True]


def test_every_stored_notebook_names_the_lab_kernel() -> None:
    for path in [*labs.stored_notebooks(REPO), *sorted((REPO / "labs").glob("*.ipynb"))]:
        spec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
        assert spec.get("name") == KERNEL_NAME, f"{path.name}: run `make labs`"
    assert kernelspec()["name"] == KERNEL_NAME


def test_the_start_page_lists_every_lesson() -> None:
    text = (REPO / "notebooks" / labs.START.name).read_text()
    for lesson in sorted((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        assert f"]({lesson.name})" in text, f"{lesson.name} missing: run `make labs`"
