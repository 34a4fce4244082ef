"""Closures, their POMs, cache verification and the failure paths of ``fetch`` (no network)."""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from lab_env import artifacts
from lab_env import config as C
from lab_env.artifacts import CLOSURES, MANIFEST, Closure
from lab_env.errors import LabError

NS = "{http://maven.apache.org/POM/4.0.0}"


@pytest.fixture
def cfg(tmp_path: Path) -> C.LabConfig:
    return replace(C.LabConfig(), home=tmp_path / "home", cache=tmp_path / "cache")


# --- closures and POMs --------------------------------------------------------------------------


def dependencies(closure: Closure) -> list[str]:
    """The POM's dependencies, back in ``group:artifact:version[:type[:classifier]]`` form."""
    root = ET.fromstring(artifacts.pom(closure))
    out = []
    for dep in root.iter(f"{NS}dependency"):
        parts = [dep.findtext(f"{NS}{tag}") for tag in ("groupId", "artifactId", "version")]
        parts += [t for tag in ("type", "classifier") if (t := dep.findtext(f"{NS}{tag}"))]
        out.append(":".join(p or "" for p in parts))
    return out


@pytest.mark.parametrize("name", sorted(CLOSURES))
def test_pom_is_well_formed_and_lists_every_coordinate(name: str) -> None:
    closure = CLOSURES[name]
    root = ET.fromstring(artifacts.pom(closure))
    assert root.tag == f"{NS}project"
    assert root.findtext(f"{NS}artifactId") == name
    assert root.findtext(f"{NS}packaging") == "pom"
    assert dependencies(closure) == list(closure.coords)


def test_registry_pom_asks_for_the_tar_gz_distribution() -> None:
    root = ET.fromstring(artifacts.pom(CLOSURES["registry"]))
    (dep,) = root.iter(f"{NS}dependency")
    assert dep.findtext(f"{NS}artifactId") == "apicurio-registry-app"
    assert dep.findtext(f"{NS}version") == C.APICURIO_VERSION
    assert dep.findtext(f"{NS}type") == "tar.gz"
    assert dep.findtext(f"{NS}classifier") == "all"


def test_plain_jar_dependency_has_no_type_or_classifier() -> None:
    root = ET.fromstring(artifacts.pom(CLOSURES["exporter"]))
    (dep,) = root.iter(f"{NS}dependency")
    assert dep.find(f"{NS}type") is None
    assert dep.find(f"{NS}classifier") is None


def test_broker_and_tools_pin_the_kafka_version_and_the_log4j_binding() -> None:
    binding = f"org.apache.logging.log4j:log4j-slf4j-impl:{C.LOG4J_VERSION}"
    broker, tools = CLOSURES["broker"].coords, CLOSURES["tools"].coords
    assert f"org.apache.kafka:kafka_{C.SCALA_VERSION}:{C.KAFKA_VERSION}" in broker
    assert f"org.apache.kafka:kafka-tools:{C.KAFKA_VERSION}" in tools
    assert binding in broker
    assert binding in tools


def test_closure_flags() -> None:
    assert CLOSURES["broker"].transitive and not CLOSURES["broker"].unpack
    assert not CLOSURES["exporter"].transitive
    assert CLOSURES["exporter"].coords == (
        f"io.prometheus.jmx:jmx_prometheus_javaagent:{C.JMX_EXPORTER_VERSION}",
    )
    assert CLOSURES["registry"].unpack and not CLOSURES["registry"].transitive


def test_closure_key_follows_the_coordinates() -> None:
    one = Closure("x", ("g:a:1",))
    assert one.key == Closure("x", ("g:a:1",)).key
    assert one.key != Closure("x", ("g:a:2",)).key
    assert one.key.startswith("x-")
    assert len(one.key) == len("x-") + 12
    assert len({c.key for c in CLOSURES.values()}) == len(CLOSURES)


def test_closure_dir_and_derived_paths(cfg: C.LabConfig) -> None:
    exporter = cfg.cache / "artifacts" / CLOSURES["exporter"].key
    assert artifacts.closure_dir(cfg, "exporter") == exporter
    assert artifacts.classpath(cfg, "tools") == str(
        cfg.cache / "artifacts" / CLOSURES["tools"].key / "lib" / "*"
    )
    registry = cfg.cache / "artifacts" / CLOSURES["registry"].key
    assert artifacts.registry_jar(cfg) == registry / "app" / "quarkus-run.jar"


# --- verification -------------------------------------------------------------------------------

JAR = b"PK\x03\x04 not really a jar, but bytes with a checksum"


def make_closure(path: Path, files: dict[str, bytes]) -> Path:
    """A cached closure as ``fetch`` leaves it: the files plus a manifest of their hashes."""
    manifest = {}
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
        manifest[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (path / MANIFEST).write_text(json.dumps({"coords": ["g:a:1"], "files": manifest}))
    return path


def test_sound_closure_has_no_problems(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR, "app/x/y.txt": b"hello"})
    assert artifacts.problems(path) == []
    assert artifacts.problems(path, deep=True) == []


def test_missing_file_is_reported(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR, "lib/b.jar": JAR})
    (path / "lib/b.jar").unlink()
    assert artifacts.problems(path) == ["lib/b.jar is missing"]


def test_wrong_size_is_reported(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR})
    (path / "lib/a.jar").write_bytes(JAR[:-1])
    assert artifacts.problems(path) == ["lib/a.jar has the wrong size"]


def test_checksum_mismatch_is_found_only_by_a_deep_check(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR})
    (path / "lib/a.jar").write_bytes(JAR.upper())  # same size, other bytes
    assert artifacts.problems(path) == []
    assert artifacts.problems(path, deep=True) == ["lib/a.jar fails its SHA-256 check"]


def test_missing_manifest_is_reported(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR})
    (path / MANIFEST).unlink()
    assert artifacts.problems(path) == [f"{path} has no {MANIFEST}"]


def test_missing_closure_dir_is_reported(tmp_path: Path) -> None:
    assert artifacts.problems(tmp_path / "absent") == [f"{tmp_path / 'absent'} has no {MANIFEST}"]


def test_truncated_manifest_is_unreadable(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR})
    (path / MANIFEST).write_text('{"files": {"lib/a')
    assert artifacts.problems(path) == [f"{path / MANIFEST} is unreadable"]


def test_manifest_of_the_wrong_shape_is_unreadable(tmp_path: Path) -> None:
    path = make_closure(tmp_path / "c", {"lib/a.jar": JAR})
    (path / MANIFEST).write_text("[]")
    assert artifacts.problems(path) == [f"{path / MANIFEST} is unreadable"]


def test_is_cached_needs_a_sound_closure(cfg: C.LabConfig) -> None:
    assert artifacts.is_cached(cfg, "exporter") is False
    make_closure(artifacts.closure_dir(cfg, "exporter"), {"lib/agent.jar": JAR})
    assert artifacts.is_cached(cfg, "exporter") is True


# --- fetch without Maven ------------------------------------------------------------------------


@pytest.fixture
def no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def artifacts_listing(cfg: C.LabConfig) -> list[str]:
    return sorted(p.name for p in (cfg.cache / "artifacts").iterdir())


@pytest.mark.usefixtures("no_maven")
def test_fetch_without_maven_names_maven_and_leaves_only_the_lock(cfg: C.LabConfig) -> None:
    with pytest.raises(LabError) as info:
        artifacts.fetch(cfg, "broker")
    message = str(info.value)
    assert message.startswith("Maven (`mvn`) is needed to fetch Kafka from Maven Central")
    assert "apt-get install maven" in message
    assert artifacts_listing(cfg) == [".lock"]


@pytest.mark.usefixtures("no_maven")
def test_fetch_removes_leftovers_of_an_interrupted_fetch(cfg: C.LabConfig) -> None:
    stale = cfg.cache / "artifacts" / f".tmp-{CLOSURES['tools'].key}-abc123"
    (stale / "lib").mkdir(parents=True)
    (stale / "lib" / "half.jar").write_bytes(JAR)
    with pytest.raises(LabError, match="Maven"):
        artifacts.fetch(cfg, "tools")
    assert artifacts_listing(cfg) == [".lock"]


@pytest.mark.usefixtures("no_maven")
def test_fetch_of_a_sound_closure_is_a_no_op(cfg: C.LabConfig) -> None:
    final = make_closure(artifacts.closure_dir(cfg, "exporter"), {"lib/agent.jar": JAR})
    assert artifacts.fetch(cfg, "exporter") == final
    assert (final / "lib" / "agent.jar").read_bytes() == JAR


@pytest.mark.usefixtures("no_maven")
def test_fetch_discards_a_damaged_closure(cfg: C.LabConfig) -> None:
    final = make_closure(artifacts.closure_dir(cfg, "exporter"), {"lib/agent.jar": JAR})
    (final / "lib" / "agent.jar").write_bytes(b"truncated")
    with pytest.raises(LabError, match="Maven"):
        artifacts.fetch(cfg, "exporter")
    assert artifacts_listing(cfg) == [".lock"]


# --- fetch with a real Maven, offline -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("mvn") is None, reason="needs Maven (`mvn`) on PATH")
def test_offline_fetch_into_an_empty_repository_fails_cleanly(
    cfg: C.LabConfig, tmp_path: Path
) -> None:
    """Maven runs offline (-o) against an empty local repository: no network, a clear error."""
    offline = replace(cfg, maven_repo=tmp_path / "m2", maven_args=("-o",))
    reported: list[str] = []
    with pytest.raises(LabError) as info:
        artifacts.fetch(offline, "exporter", reported.append)
    message = str(info.value)
    assert message.startswith("Maven could not fetch the exporter closure (")
    assert f"io.prometheus.jmx:jmx_prometheus_javaagent:{C.JMX_EXPORTER_VERSION}" in message
    assert "offline" in message
    assert "Traceback" not in message
    assert reported == []  # nothing was downloaded
    assert artifacts_listing(offline) == [".lock"]
