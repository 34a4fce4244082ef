"""JupyterLab as a learner uses it: a real Chromium, driven by Playwright, against a JupyterLab
served on loopback and the real lab cluster.

Chromium is Debian's (``/usr/bin/chromium``; `.ci/run` installs it); Playwright downloads no
browser. Notebooks are copied to a temporary root first, so nothing a run does is saved into the
repository. A screenshot of every step is kept in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

from lab_env import labs
from lab_env.api import Lab
from lab_env.cli import JUPYTER_QUIET
from lab_env.kernel import KERNEL_NAME, kernelspec
from lab_env.waiting import wait_for
from tests.helpers import chromium_page, free_ports

pytestmark = [pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("KAFKA_LAB_CHROMIUM", "/usr/bin/chromium")
CELL_TIMEOUT_MS = int(os.environ.get("KAFKA_LAB_BROWSER_TIMEOUT_MS", "180000"))

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is a pinned dependency
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not Path(CHROMIUM).is_file():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium) and "
        "the playwright package; neither is downloaded by the tests",
        allow_module_level=True,
    )


EXPLORER = "explorer.ipynb"
# Lessons with Mermaid diagrams in their Markdown, opened (not run) to see JupyterLab draw them.
DIAGRAM_LESSONS = ("03-consumer-groups.ipynb", "09-security.ipynb")
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook in front
RECORDS = 3000


def explorer_notebook(path: Path) -> None:
    """Module 06's explorer in a notebook of its own, sized for a quick run."""
    cells = [
        "from lab_env import lab\nfrom lab_env.explorer import Explorer",
        f"explorer = Explorer(lab)\nexplorer.configure({{'records': {RECORDS}, 'partitions': 3}})"
        "\nexplorer",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = kernelspec()
    nbformat.write(notebook, path)


class Server:
    def __init__(self, root: Path, port: int, token: str) -> None:
        self.root, self.port, self.token = root, port, token
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        # reset: a fresh workspace, so the notebook opened is the only tab and has the focus
        return f"{self.base}/lab/tree/{path}?reset&token={self.token}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("jupyter-root")
    (root / "notebooks").mkdir()
    shutil.copy(labs.START, root / "notebooks" / labs.START.name)
    for lesson in DIAGRAM_LESSONS:
        shutil.copy(REPO / "notebooks" / lesson, root / "notebooks" / lesson)
    explorer_notebook(root / "notebooks" / EXPLORER)
    port, token = free_ports(1)[0], secrets.token_hex(16)
    log = (root / "jupyter.log").open("w")
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.port_retries=0"]
    argv += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}"]
    argv += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *JUPYTER_QUIET]
    # A workspace of its own: JupyterLab would otherwise restore tabs of an earlier run.
    argv.append(f"--LabApp.workspaces_dir={root / '.workspaces'}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    server = Server(root, port, token)
    try:
        wait_for(
            "JupyterLab to answer",
            lambda: requests.get(f"{server.base}/api/status?token={token}", timeout=2).ok,
            timeout=60,
            interval=0.5,
            fail=lambda: (
                f"JupyterLab exited: {(root / 'jupyter.log').read_text()[-2000:]}"
                if proc.poll() is not None
                else None
            ),
            transient=lambda e: isinstance(e, requests.ConnectionError),
        )
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser_page(server: Server) -> Iterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(CHROMIUM, 1400, 1000) as page:
        yield page


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def open_notebook(page: Page, server: Server, path: str) -> None:
    page.goto(server.url(path))
    page.locator(CURRENT).first.wait_for(timeout=60_000)
    page.locator(f"{CURRENT} .jp-Cell").first.click()  # focus: the Run menu acts on this one
    # The kernel the notebook names is the lab's; the status bar shows it once it is idle.
    expect(page.get_by_text(f"{kernelspec()['display_name']} | Idle")).to_be_visible(timeout=60_000)


def run_all(page: Page, name: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_timeout(1000)
    try:
        _wait_until_every_cell_ran(page)
    except Exception:
        shot(page, f"{name}-did-not-finish")
        raise


def _wait_until_every_cell_ran(page: Page) -> None:
    page.wait_for_function(
        """(current) => {
            const code = `${current} .jp-CodeCell .jp-InputArea-prompt`;
            const prompts = [...document.querySelectorAll(code)];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        arg=CURRENT,
        timeout=CELL_TIMEOUT_MS,
    )


def no_errors(page: Page) -> None:
    text = page.locator(CURRENT).first.inner_text()
    assert "Traceback (most recent call last)" not in text, text[-3000:]


def test_the_start_page_runs_and_shows_the_cluster(browser_page: Page, server: Server) -> None:
    page = browser_page
    open_notebook(page, server, f"notebooks/{labs.START.name}")
    # The curriculum table is there before anything runs.
    expect(page.get_by_role("link", name="Producers", exact=True)).to_be_visible()
    shot(page, "00-opened")
    run_all(page, "00")
    no_errors(page)
    brokers = page.locator("table.dataframe", has_text="127.0.0.1").first
    expect(brokers).to_be_visible()
    brokers.scroll_into_view_if_needed()
    assert brokers.locator("tbody tr").count() == 3  # one row per broker
    shot(page, "00-cluster-table")
    # Each chart is drawn from the bundled JavaScript (no CDN is reachable here).
    chart = page.locator(".vega-embed").first
    chart.scroll_into_view_if_needed()
    expect(chart.locator("canvas, svg").first).to_be_visible(timeout=30_000)
    shot(page, "00-chart")


def test_the_kernel_is_named_for_the_lab(server: Server) -> None:
    specs = requests.get(f"{server.base}/api/kernelspecs?token={server.token}", timeout=10).json()
    assert KERNEL_NAME in specs["kernelspecs"]
    spec = nbformat.read(server.root / "notebooks" / labs.START.name, as_version=4)
    assert spec.metadata["kernelspec"]["name"] == KERNEL_NAME


def test_the_tuning_explorer_runs_from_the_page(browser_page: Page, server: Server) -> None:
    page = browser_page
    open_notebook(page, server, f"notebooks/{EXPLORER}")
    run_all(page, "06")
    no_errors(page)
    slider = page.locator(".widget-slider", has=page.locator("label", has_text="linger.ms"))
    expect(slider).to_be_visible(timeout=30_000)
    readout = slider.locator(".widget-readout")
    before = int(readout.inner_text())
    # Move the slider as a learner does: grab its handle, then nudge it with the arrow keys.
    slider.locator(".noUi-handle").click()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(readout).not_to_have_text(str(before))
    moved = int(readout.inner_text())
    assert moved > before
    shot(page, "06-slider-moved")
    page.locator("button.widget-button", has_text="Run").click()
    # The run's row names the new linger.ms, in the table and beside the chart.
    row = page.locator(".widget-output table tbody tr", has_text=f"linger.ms={moved}")
    expect(row).to_be_visible(timeout=CELL_TIMEOUT_MS)
    assert row.locator("td").count() >= 6
    expect(
        page.locator(".widget-output .vega-embed canvas, .widget-output .vega-embed svg").first
    ).to_be_visible(timeout=30_000)
    expect(page.get_by_text("1 run(s) added, 1 in all.")).to_be_visible()
    page.locator(".widget-output").first.scroll_into_view_if_needed()
    shot(page, "06-results")


# Every control of the explorer and its parts, as boxes in the page; the problems a reader would
# see: a part running out of its control or off the output area, a label cut short, two
# controls on top of each other.
LAYOUT_PROBLEMS = """(root) => {
    const controls = ['.widget-inline-hbox', '.widget-checkbox', '.widget-toggle-buttons',
        '.widget-button'].join(', ');
    const box = [...document.querySelectorAll(root)].find(
        b => b.querySelector('.widget-toggle-buttons'));
    if (!box) return ['no explorer on the page'];
    const area = box.closest('.jp-OutputArea-output').getBoundingClientRect();
    const els = [...box.querySelectorAll(controls)].filter(
        e => !e.parentElement.closest(controls) && e.offsetParent !== null);
    const name = e => (e.querySelector('label, .widget-label')?.textContent
        || e.textContent || e.className).trim().slice(0, 40);
    const inside = (r, o) => r.left >= o.left - 1 && r.right <= o.right + 1
        && r.top >= o.top - 1 && r.bottom <= o.bottom + 1;
    const problems = [];
    const boxes = els.map(e => [e, e.getBoundingClientRect()]);
    for (const [e, r] of boxes) {
        if (!inside(r, area)) problems.push(`off the output area: ${name(e)}`);
        const parts = 'input, select, label, .widget-readout, .noUi-target';
        for (const part of e.querySelectorAll(parts)) {
            const p = part.getBoundingClientRect();
            if (p.width && !inside(p, r)) problems.push(`runs out of its control: ${name(e)}`);
            if (part.scrollWidth > part.clientWidth + 1 && part.tagName === 'LABEL')
                problems.push(`label cut short: ${name(e)}`);
        }
    }
    for (let i = 0; i < boxes.length; i++)
        for (let j = i + 1; j < boxes.length; j++) {
            const [a, ra] = boxes[i], [b, rb] = boxes[j];
            const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
            const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
            if (w > 1 && h > 1) problems.push(`overlap: ${name(a)} / ${name(b)}`);
        }
    return problems;
}"""


def test_the_explorers_controls_are_all_visible_at_laptop_width(
    browser_page: Page, server: Server
) -> None:
    """At 1280 px (a common laptop), with JupyterLab's side panel open: no control of module
    06's explorer covers another, runs off the page or has its label cut short."""
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    try:
        open_notebook(page, server, f"notebooks/{EXPLORER}")
        run_all(page, "06-layout")
        explorer = page.locator(".widget-toggle-buttons").first
        expect(explorer).to_be_visible(timeout=30_000)
        explorer.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the widgets' own layout pass
        shot(page, "06-controls-1280")
        problems = page.evaluate(LAYOUT_PROBLEMS, f"{CURRENT} .widget-vbox")
        assert problems == [], "\n".join(problems)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


@pytest.mark.parametrize("lesson", DIAGRAM_LESSONS)
def test_jupyterlab_draws_a_lessons_diagrams_offline(
    browser_page: Page, server: Server, lesson: str
) -> None:
    """JupyterLab renders Mermaid in Markdown cells with the copy it bundles: no network."""
    page = browser_page
    open_notebook(page, server, f"notebooks/{lesson}")
    source = nbformat.read(server.root / "notebooks" / lesson, as_version=4)
    expected = sum(c.source.count("```mermaid") for c in source.cells if c.cell_type == "markdown")
    assert expected >= 1
    drawn = page.locator(f"{CURRENT} .jp-RenderedMermaid svg, {CURRENT} .jp-RenderedMermaid img")
    drawn.first.scroll_into_view_if_needed(timeout=60_000)
    expect(drawn.first).to_be_visible(timeout=60_000)
    assert page.locator(f"{CURRENT} .jp-RenderedMermaid.jp-mod-warning").count() == 0
    assert drawn.count() >= expected
    shot(page, f"{lesson.removesuffix('.ipynb')}-diagram")
