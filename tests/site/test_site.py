"""The course site as a reader meets it: Debian's Chromium, driven by Playwright, over HTTP on
loopback, page by page.

Reads the site `make site` built (build/site/, from the notebooks the suite executed), so it runs
after the suite, not in it: `make site` builds and then runs `pytest --site tests/site`. Each
lesson's first chart is kept as a screenshot in test-artifacts/site/.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from coursesite import build
from lab_env.config import KAFKA_VERSION
from tests.helpers import chromium_page, http_server

REPO = Path(__file__).resolve().parents[2]
SITE = build.OUT
SHOTS = REPO / "test-artifacts" / "site"
CHROMIUM = os.environ.get("KAFKA_LAB_CHROMIUM", "/usr/bin/chromium")
SVG = build.SVG

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - playwright is a pinned test dependency
    sync_playwright = None  # type: ignore[assignment]

PAGES = build.pages(REPO)
DIAGRAMS_DRAWN = """() => [...document.querySelectorAll('.jp-Mermaid')]
    .every(e => e.classList.contains('jp-RenderedMermaid'))"""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no site in {SITE}: build it with `make site` (or python -m coursesite)")
    with http_server(functools.partial(QuietHandler, directory=str(SITE))) as url:
        yield url + "/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    if sync_playwright is None or not Path(CHROMIUM).is_file():
        pytest.fail(f"the site's test needs Debian's Chromium at {CHROMIUM} and playwright")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(CHROMIUM, 1280, 900) as page:
        yield page


def shows(site_page: build.Page) -> dict[str, int]:
    """What the build says the page holds (its charts and diagrams)."""
    manifest = json.loads((SITE / build.MANIFEST).read_text())
    return manifest["pages"][site_page.href]


@pytest.mark.parametrize("site_page", PAGES, ids=lambda p: p.href)
def test_a_page_loads_cleanly_and_its_links_resolve(
    browser_page: Page, base_url: str, site_page: build.Page
) -> None:
    page = browser_page
    url = urljoin(base_url, site_page.href)
    problems: list[str] = []
    on_console = lambda m: problems.append(m.text) if m.type == "error" else None  # noqa: E731
    on_error = lambda e: problems.append(str(e))  # noqa: E731
    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{site_page.href}: not served"
        page.wait_for_load_state("networkidle")
        # Mermaid draws after load: every diagram becomes an image, none an error.
        page.wait_for_function(DIAGRAMS_DRAWN, timeout=30_000)
        failed = page.locator(".jp-Mermaid.jp-mod-warning")
        assert failed.count() == 0, (
            f"{site_page.href}: a diagram failed: {failed.first.inner_text()}"
        )
        drawn = page.locator(".jp-Mermaid figure img")
        assert drawn.count() == shows(site_page)["diagrams"], f"{site_page.href}: diagrams"
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_error)
    assert problems == [], f"{site_page.href}: console errors {problems}"
    text = page.inner_text("body")
    assert "Traceback (most recent call last)" not in text, f"{site_page.href} shows a traceback"
    assert f"Apache Kafka {KAFKA_VERSION}" in text or site_page.kind == "lab"
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
        target = urlparse(urljoin(url, href))
        if target.netloc != urlparse(base_url).netloc:
            continue  # outside the site (Kafka's documentation, a KIP): not a page of ours
        path = SITE / target.path.lstrip("/")
        assert path.is_file(), f"{site_page.href}: link {href} leads nowhere"
        if target.fragment and path.suffix == ".html":
            assert f'id="{target.fragment}"' in path.read_text(), (
                f"{site_page.href}: link {href}: no #{target.fragment} there"
            )


@pytest.mark.parametrize(
    "site_page", [p for p in PAGES if p.kind == "lesson"], ids=lambda p: p.href
)
def test_a_lessons_charts_are_visible(
    browser_page: Page, base_url: str, site_page: build.Page
) -> None:
    expected = shows(site_page)["charts"]
    assert expected >= 1, f"{site_page.href}: the executed lesson kept no chart (static charts?)"
    page = browser_page
    page.goto(urljoin(base_url, site_page.href), wait_until="load")
    charts = page.locator(f'.jp-OutputArea-output[data-mime-type="{SVG}"]')
    assert charts.count() == expected, f"{site_page.href}: {charts.count()} of {expected} charts"
    for i in range(expected):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert box and box["width"] > 50 and box["height"] > 50, f"chart {i} is not visible"
    if expected:
        charts.first.screenshot(path=str(SHOTS / f"{Path(site_page.href).stem}-chart.png"))


def test_the_index_links_every_lesson_lab_and_solution() -> None:
    index = (SITE / "index.html").read_text()
    linked = set(re.findall(r'<a href="([^"]+)"', index))
    missing = [p.href for p in PAGES if p.kind not in ("index",) and p.href not in linked]
    assert missing == [], f"the curriculum does not link {missing}"


def test_the_site_loads_nothing_from_another_host() -> None:
    remote = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")
    for page in PAGES:
        text = (SITE / page.href).read_text()
        for match in remote.finditer(text):
            tag = text[text.rfind("<", 0, match.start()) : match.end() + 60]
            assert tag.startswith("<a "), f"{page.href} loads from another host: {tag}"
