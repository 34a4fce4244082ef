"""Build the course site from the executed notebooks (see the package's docstring).

Pages, by their place in the repository:

- ``notebooks/NN-*.ipynb`` -> ``lessons/NN-*.html``: the lesson as the suite executed it;
- ``labs/NN-*.ipynb`` -> ``labs/NN-*.html``: the exercise, as a learner gets it (not executed);
- ``solutions/NN-*.ipynb`` -> ``solutions/NN-*.html``: the solved lab as the suite executed it,
  with the answers to the lesson's questions;
- ``README.md`` -> ``reference.html``; ``index.html``: the curriculum.

A link between notebooks (``../labs/03-....ipynb``) becomes a link between pages; a link to a
file of the repository that is not a page (``lab_env/...``) becomes its path, unlinked.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import mistune
import nbformat
from jupyter_core.paths import jupyter_path
from nbconvert import HTMLExporter

from coursesite import assets
from lab_env import labs
from lab_env.config import KAFKA_VERSION, REPO, LabConfig, load_config
from lab_env.errors import LabError

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
ARTIFACTS = REPO / "test-artifacts" / "notebooks"
OUT = REPO / "build" / "site"
WIDGET = "application/vnd.jupyter.widget-view+json"
SVG = "image/svg+xml"
MANIFEST = "manifest.json"  # what each page should show, for tests/site


@dataclass(frozen=True)
class Page:
    source: str  # its file in the repository, e.g. "notebooks/03-consumer-groups.ipynb"
    href: str  # its place on the site, e.g. "lessons/03-consumer-groups.html"
    kind: str  # lesson, lab, solution, reference, index
    title: str

    @property
    def root(self) -> str:
        """The way from this page back to the site's root."""
        return "../" * self.href.count("/")

    @property
    def executed(self) -> bool:
        return self.kind in ("lesson", "solution")

    @property
    def module(self) -> str | None:
        """The module a lesson, lab or solution belongs to (``"03"``); None for the others."""
        if self.kind not in ("lesson", "lab", "solution"):
            return None
        return self.source.rsplit("/", 1)[-1][:2]


def pages(repo: Path = REPO) -> list[Page]:
    out = [Page("index", "index.html", "index", "Kafka Microservices Lab")]
    for folder, kind, place in (
        ("notebooks", "lesson", "lessons"),
        ("labs", "lab", "labs"),
        ("solutions", "solution", "solutions"),
    ):
        for path in sorted((repo / folder).glob("[0-9][0-9]-*.ipynb")):
            title = f"{path.name[:2]} · {labs.title(path)}"
            out.append(Page(f"{folder}/{path.name}", f"{place}/{path.stem}.html", kind, title))
    out.append(Page("README.md", "reference.html", "reference", "Reference"))
    return out


# -- links ---------------------------------------------------------------------------------------

_ANCHOR = re.compile(r"<a\b([^>]*?)\bhref=\"([^\"]*)\"([^>]*)>(.*?)</a>", re.DOTALL)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#|//)", re.IGNORECASE)


def _relative(target: str, page: Page) -> str:
    return os.path.relpath(target, os.path.dirname(page.href) or ".")


def rewrite_links(text: str, page: Page, site: dict[str, Page]) -> str:
    """Links of ``page`` (rendered from ``page.source``) as links between the site's pages."""

    def one(match: re.Match[str]) -> str:
        before, href, after, inner = match.groups()
        if _EXTERNAL.match(href):
            return match.group(0)
        path, _, fragment = unquote(href).partition("#")
        base = os.path.dirname(page.source) if page.source != "index" else ""
        target = os.path.normpath(os.path.join(base, path))
        found = site.get(target)
        if found is None:  # a file of the repository, not a page: say which, link nothing
            return f'<span class="repo-path" title="{html.escape(target)}">{inner}</span>'
        link = _relative(found.href, page) + (f"#{fragment}" if fragment else "")
        return f'<a{before}href="{html.escape(link)}"{after}>{inner}</a>'

    return _ANCHOR.sub(one, text)


# -- notebooks -----------------------------------------------------------------------------------


def for_the_page(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy a static page can show: widget views (which need a live kernel) give way to the
    other representations of their output, and the saved widget state goes."""
    notebook = nbformat.from_dict(notebook)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET in data and len(data) > 1:
                del data[WIDGET]
    return notebook


def errors_in(notebook: nbformat.NotebookNode) -> list[int]:
    """The cells of an executed notebook that show an error."""
    return [
        i
        for i, cell in enumerate(notebook.cells)
        if any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    ]


def charts(notebook: nbformat.NotebookNode) -> int:
    """How many charts (SVG images) the executed notebook's outputs hold."""
    return sum(SVG in o.get("data", {}) for cell in notebook.cells for o in cell.get("outputs", []))


def diagrams(notebook: nbformat.NotebookNode) -> int:
    """How many Mermaid diagrams its Markdown cells hold."""
    return sum(
        cell.source.count("```mermaid") for cell in notebook.cells if cell.cell_type == "markdown"
    )


def objectives(path: Path) -> tuple[str, str]:
    """A lesson's outcomes (as an HTML list) and its time, from its objectives cell."""
    for cell in nbformat.read(path, as_version=4).cells:
        if "objectives" in cell.metadata.get("tags", []):
            outcomes, _, rest = cell.source.partition("**Time**")
            outcomes = outcomes.replace("**What you will be able to do**", "")
            minutes = re.match(r": (about \d+ minutes)", rest)
            return str(mistune.html(outcomes)).strip(), minutes.group(1) if minutes else ""
    return "", ""


@dataclass
class Run:
    """Where the executed notebooks come from, and what the site says about that run."""

    artifacts: Path
    execute_missing: Callable[[Path, Path], None] | None = None

    def executed_copy(self, page: Page, repo: Path) -> Path:
        folder, name = page.source.split("/")
        copy = self.artifacts / folder / name
        if not copy.is_file():
            if self.execute_missing is None:
                raise LabError(
                    f"No executed copy of {page.source} in {self.artifacts}. Run the suite "
                    "(`make test`), or `make site` with the lab up to execute what is missing."
                )
            self.execute_missing(repo / page.source, copy)
        return copy

    def describe(self, repo: Path) -> str:
        copies = list(self.artifacts.glob("*/*.ipynb"))
        newest = max((p.stat().st_mtime for p in copies), default=time.time())
        when = time.strftime("%Y-%m-%d", time.gmtime(newest))
        commit = _commit(repo)
        return (
            f"Executed on {when} (UTC) against Apache Kafka {KAFKA_VERSION}: three KRaft nodes "
            f"of the lab's embedded backend, with the test suite's sizes"
            + (f", at commit {commit}." if commit else ".")
        )


def _commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _links(page: Page, all_pages: list[Page]) -> list[dict[str, str]]:
    """The navigation of a module's pages: its lesson, lab and solution; the reference."""
    out = []
    for other in all_pages:
        same_module = page.module is not None and other.module == page.module
        if same_module or other.kind == "reference":
            label = other.kind.capitalize() if same_module else other.title
            out.append({"href": _relative(other.href, page), "text": label})
    return out


def render_notebook(
    page: Page, notebook: nbformat.NotebookNode, all_pages: list[Page], executed: str
) -> str:
    exporter = HTMLExporter(template_name="course", extra_template_basedirs=[str(TEMPLATES)])
    exporter.mermaid_js_url = f"{page.root}_static/mermaid/{assets.ENTRY}"
    exporter.mermaid_layout_elk_js_url = ""
    course = {
        "root": page.root,
        "links": _links(page, all_pages),
        "executed": executed if page.executed else "An exercise: run it in the lab to do it.",
    }
    notebook.metadata["title"] = page.title
    body, _ = exporter.from_notebook_node(
        notebook, resources={"course": course, "metadata": {"name": page.title}}
    )
    return body


def _shell(page: Page, title: str, body: str, all_pages: list[Page], footer: str) -> str:
    """A page that is not a notebook (the curriculum, the reference) in the site's frame."""
    nav = "".join(
        f' <span class="sep">·</span> <a href="{html.escape(link["href"])}">'
        f"{html.escape(link['text'])}</a>"
        for link in _links(page, all_pages)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{page.root}_static/course.css">\n</head>\n'
        f'<body class="course-page">\n<nav class="course-nav"><a href="{page.root}index.html">'
        f"Kafka Microservices Lab</a>{nav}</nav>\n<main>\n{body}\n</main>\n"
        f'<footer class="course-footer">{html.escape(footer)}</footer>\n</body>\n</html>\n'
    )


def render_index(page: Page, all_pages: list[Page], repo: Path, executed: str) -> str:
    by_module: dict[str, dict[str, Page]] = {}
    for other in all_pages:
        if other.module is not None:
            by_module.setdefault(other.module, {})[other.kind] = other
    rows = []
    for number, kinds in sorted(by_module.items()):
        lesson = kinds.get("lesson")
        if lesson is None:
            continue
        outcomes, minutes = objectives(repo / lesson.source)
        lab, solution = kinds.get("lab"), kinds.get("solution")
        cells = [
            f"<td>{number}</td>",
            f'<td><a href="{lesson.href}">{html.escape(lesson.title[5:])}</a>'
            + (f'<div class="minutes">{html.escape(minutes)}</div>' if minutes else "")
            + outcomes
            + "</td>",
            f'<td><a href="{lab.href}">{html.escape(lab.title[5:])}</a></td>'
            if lab
            else "<td>-</td>",
            f'<td><a href="{solution.href}">solution</a></td>' if solution else "<td>-</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = (
        "<h1>Kafka Microservices Lab</h1>\n"
        "<p>Apache Kafka for event-driven microservices, taught on a real three-node KRaft "
        "cluster: every output below was produced by the cluster when the course was executed. "
        "Work through the modules in order: read the lesson, then do its lab, whose checks test "
        "your code against the cluster. The solutions come after.</p>\n"
        f'<p class="executed">{html.escape(executed)}</p>\n'
        '<table class="curriculum">\n<thead><tr><th>module</th><th>lesson</th><th>lab</th>'
        "<th>solved</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
        '<p><a href="reference.html">Reference</a>: installing the lab, its commands, its '
        "configuration and its tests.</p>"
    )
    return _shell(page, page.title, body, all_pages, executed)


def render_reference(page: Page, all_pages: list[Page], repo: Path, executed: str) -> str:
    body = mistune.html((repo / page.source).read_text())
    return _shell(page, "Reference · Kafka Microservices Lab", body, all_pages, executed)


# -- the build -----------------------------------------------------------------------------------


@dataclass
class Built:
    out: Path
    pages: int
    errors: dict[str, list[int]]  # executed pages whose cells show an error


def build(out: Path, run: Run, cfg: LabConfig, repo: Path = REPO, report=print) -> Built:
    """Write the whole site into ``out`` (replacing what was there)."""
    all_pages = pages(repo)
    site = {p.source: p for p in all_pages}
    mermaid = assets.fetch_mermaid(cfg)
    executed = run.describe(repo)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "_static").mkdir(parents=True)
    shutil.copytree(mermaid, staging / "_static" / "mermaid")
    shutil.copy(STATIC / "course.css", staging / "_static" / "course.css")
    (staging / "_static" / "jupyterlab").mkdir()
    for css in ("index.css", "theme-light.css"):
        shutil.copy(lab_template_static() / css, staging / "_static" / "jupyterlab" / css)
    errors: dict[str, list[int]] = {}
    manifest: dict[str, object] = {"executed": executed, "pages": {}}
    for page in all_pages:
        shows = {"charts": 0, "diagrams": 0}
        if page.kind == "index":
            text = render_index(page, all_pages, repo, executed)
        elif page.kind == "reference":
            text = render_reference(page, all_pages, repo, executed)
        else:
            path = run.executed_copy(page, repo) if page.executed else repo / page.source
            notebook = nbformat.read(path, as_version=4)
            if page.executed and errors_in(notebook):
                errors[page.source] = errors_in(notebook)
            text = render_notebook(page, for_the_page(notebook), all_pages, executed)
            shows = {"charts": charts(notebook), "diagrams": diagrams(notebook)}
        manifest["pages"][page.href] = shows  # type: ignore[index]
        target = staging / page.href
        target.parent.mkdir(parents=True, exist_ok=True)
        # The index links pages already; every other page links files of the repository.
        target.write_text(text if page.kind == "index" else rewrite_links(text, page, site))
        report(f"  {page.href}")
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return Built(out, len(all_pages), errors)


def lab_template_static() -> Path:
    """The folder of nbconvert's lab template that holds JupyterLab's styles."""
    for folder in jupyter_path("nbconvert", "templates", "lab", "static"):
        if (Path(folder) / "index.css").is_file():
            return Path(folder)
    raise LabError("nbconvert's lab template is not installed (no lab/static/index.css).")


def _execute_with_papermill(source: Path, copy: Path) -> None:
    """Execute a notebook the suite has not, as the suite does (CI sizes, static charts)."""
    from papermill.exceptions import PapermillExecutionError

    from lab_env import health
    from tests.notebooks.catalog import run_papermill

    if health.cluster_view(load_config(), timeout=5.0) is None:
        raise LabError(
            f"No executed copy of {source.relative_to(REPO)}, and no lab answers to execute it "
            "on: start it (`lab up`) and run `make site` again, or run the suite (`make test`)."
        )
    print(f"  executing {source.relative_to(REPO)} (no executed copy yet)", flush=True)
    try:
        run_papermill(source, copy)
    except PapermillExecutionError as exc:
        copy.unlink(missing_ok=True)  # a half-executed copy is not a page
        raise LabError(
            f"{source.relative_to(REPO)} failed at cell {exc.cell_index}: {exc.ename}: {exc.evalue}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursesite", description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="executed notebooks")
    parser.add_argument("--out", type=Path, default=OUT, help="where the site is written")
    parser.add_argument(
        "--no-execute",
        action="store_true",
        help="fail on a notebook with no executed copy instead of executing it on the lab",
    )
    args = parser.parse_args(argv)
    run = Run(args.artifacts, None if args.no_execute else _execute_with_papermill)
    started = time.monotonic()
    try:
        built = build(args.out, run, load_config())
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{built.pages} pages in {built.out} ({time.monotonic() - started:.0f} s)")
    for source, cells in built.errors.items():
        print(f"error: {source} was executed with errors in cells {cells}", file=sys.stderr)
    return 1 if built.errors else 0
