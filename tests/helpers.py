"""Helpers shared by the test suites: run the `lab` command as a user does, find free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab_env.api import Lab

LAB = Path(sys.executable).with_name("lab")


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
