"""Helpers shared by the test suites: run the `lab` command as a user does, find free ports."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab_env.api import Lab

LAB = Path(sys.executable).with_name("lab")
STAMPED = re.compile(r"^ *\d+\.\ds (.+)$", re.MULTILINE)  # lab_env/steps.py's lines


@dataclass(frozen=True)
class Namespace:
    """The shared lab seen through a topic and group prefix of one test's own."""

    lab: Lab
    env: dict[str, str]  # the same prefix for a `lab` command the test runs


def run_lab(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The `lab` console script, as a user runs it."""
    return subprocess.run(
        [str(LAB), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def progress_lines(text: str) -> list[str]:
    """The progress lines in ``text`` (lab_env/steps.py: seconds since the operation began,
    then what it is doing), without their stamps, in order."""
    return STAMPED.findall(text)


def phases(text: str) -> list[str]:
    """The progress lines in ``text``, each phase's end without what follows its name (``run 1
    of 2, java: done in 3.1 s, ...`` is ``run 1 of 2, java``): what ran, in order."""
    return [line.split(": done in ")[0] for line in progress_lines(text)]


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def assert_sentence(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed command: non-zero exit, no traceback, and a message containing ``fragments``."""
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"expected a failure, got exit 0:\n{text}"
    assert "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} missing from:\n{text}"


@contextlib.contextmanager
def http_server(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def chromium_page(executable: str, width: int, height: int) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium (no browser is downloaded) for the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": width, "height": height})
        try:
            yield page
        finally:
            browser.close()
