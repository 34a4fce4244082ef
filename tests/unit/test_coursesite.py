"""The course site's builder, in parts that need no browser and no executed run."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from coursesite import assets, build
from lab_env.errors import LabError

REPO = Path(__file__).resolve().parents[2]
PAGES = build.pages(REPO)
SITE = {p.source: p for p in PAGES}
LESSON = SITE["notebooks/03-consumer-groups.ipynb"]


def test_every_lesson_lab_and_solution_has_a_page() -> None:
    kinds = {kind: [p for p in PAGES if p.kind == kind] for kind in ("lesson", "lab", "solution")}
    assert len(kinds["lesson"]) == len(list((REPO / "notebooks").glob("[0-9][0-9]-*.ipynb")))
    assert len(kinds["lab"]) == len(kinds["solution"]) == len(list((REPO / "labs").glob("*.ipynb")))
    assert LESSON.href == "lessons/03-consumer-groups.html" and LESSON.root == "../"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("../labs/03-at-least-once-group.ipynb", 'href="../labs/03-at-least-once-group.html"'),
        ("04-exactly-once.ipynb#fencing", 'href="04-exactly-once.html#fencing"'),
        (
            "../solutions/03-at-least-once-group.ipynb",
            'href="../solutions/03-at-least-once-group.html"',
        ),
        ("../README.md", 'href="../reference.html"'),
        (
            "https://kafka.apache.org/documentation/",
            'href="https://kafka.apache.org/documentation/"',
        ),
        ("#a-heading", 'href="#a-heading"'),
    ],
)
def test_links_between_notebooks_become_links_between_pages(href: str, expected: str) -> None:
    page = f'<p>see <a href="{href}">there</a></p>'
    assert expected in build.rewrite_links(page, LESSON, SITE)


def test_a_link_to_a_file_that_is_not_a_page_keeps_its_text_and_names_the_file() -> None:
    page = '<a href="../lab_env/consuming.py">the code</a>'
    out = build.rewrite_links(page, LESSON, SITE)
    assert out == '<span class="repo-path" title="lab_env/consuming.py">the code</span>'


def test_a_widget_view_gives_way_to_its_other_representations() -> None:
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("chart")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", {build.WIDGET: {"model_id": "x"}, "text/plain": "a chart"}
        ),
        nbformat.v4.new_output("display_data", {build.SVG: "<svg/>"}),
    ]
    notebook.cells = [cell]
    notebook.metadata["widgets"] = {"state": {}}
    page = build.for_the_page(notebook)
    assert "widgets" not in page.metadata
    assert [set(o.data) for o in page.cells[0].outputs] == [{"text/plain"}, {build.SVG}]
    assert build.charts(page) == 1 and build.WIDGET in notebook.cells[0].outputs[0].data


def test_a_lessons_objectives_come_out_as_a_list_and_a_time() -> None:
    outcomes, minutes = build.objectives(REPO / LESSON.source)
    assert outcomes.startswith("<ul>") and outcomes.count("<li>") >= 3
    assert minutes.startswith("about ") and minutes.endswith(" minutes")


def test_a_missing_executed_copy_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(
        LabError, match=re.escape("No executed copy of notebooks/03-consumer-groups.ipynb")
    ):
        build.Run(tmp_path).executed_copy(LESSON, REPO)


def test_npm_integrity_is_sha512_in_base64() -> None:
    # The published value for the empty input is well known.
    assert assets.integrity(b"") == (
        "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="
    )
