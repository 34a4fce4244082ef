"""Bad input and broken states: a clear sentence, a non-zero exit, no traceback, nothing lost.

Each test runs the real `lab` command against an isolated lab home on free ports, so the shared
lab keeps running. The shared download cache is reused unless a test needs its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from lab_env import artifacts, kafka_nodes
from lab_env.config import load_config
from tests.helpers import LAB, assert_sentence, run_lab


def no_process_under(home: Path) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(home) in part for part in proc.info["cmdline"] or []):
            return False
    return True


def test_busy_port_names_port_and_holder(isolated: dict[str, str], tmp_path: Path) -> None:
    port = int(isolated["KAFKA_LAB_BROKER_PORTS"].split(",")[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        proc = run_lab("up", env=isolated)
    assert_sentence(proc, f"port {port}", "kafka-2 broker listener", f"pid {os.getpid()}")
    assert no_process_under(tmp_path / "home")  # nothing was started


def test_java_too_old(isolated: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    fake.chmod(0o755)
    proc = run_lab("up", env={**isolated, "KAFKA_LAB_JAVA": str(fake)})
    assert_sentence(proc, "Java 11.0.21", "needs Java 17 or newer", "openjdk-17")


def test_java_missing(isolated: dict[str, str], tmp_path: Path) -> None:
    proc = run_lab("up", env={**isolated, "KAFKA_LAB_JAVA": str(tmp_path / "no-such-java")})
    assert_sentence(proc, "cannot be run", "Install one")


def test_kafka_tool_with_missing_java(isolated: dict[str, str], tmp_path: Path) -> None:
    proc = run_lab(
        "kafka", "topics", "--list", env={**isolated, "KAFKA_LAB_JAVA": "/nonexistent/java"}
    )
    assert_sentence(proc, "cannot be run")


def test_maven_failure_leaves_cache_clean(isolated: dict[str, str], tmp_path: Path) -> None:
    env = {
        **isolated,
        "KAFKA_LAB_CACHE": str(tmp_path / "cache"),
        "KAFKA_LAB_MAVEN_REPO": str(tmp_path / "m2"),  # empty, and
        "KAFKA_LAB_MAVEN_ARGS": "-o",  # offline: as if the network were down
    }
    proc = run_lab("fetch", "exporter", env=env)
    assert_sentence(
        proc,
        "Maven could not fetch the exporter closure",
        "jmx_prometheus_javaagent",
        "Nothing was written",
    )
    leftovers = sorted(p.name for p in (tmp_path / "cache" / "artifacts").iterdir())
    assert leftovers == [".lock"]


def start_fetch(env: dict[str, str]) -> subprocess.Popen[str]:
    """`lab fetch broker`, returned once files are arriving from Maven Central."""
    proc = subprocess.Popen(
        [str(LAB), "fetch", "broker"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "broker:" in line:
            break
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_download_leaves_nothing_half_written(
    isolated: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    """A real download from Maven Central into an empty repository, interrupted mid-way.

    Ctrl-C or a polite kill clean up at once; after SIGKILL nothing can, but the half-written
    folder is never published and the next fetch sweeps it away.
    """
    cache = tmp_path / "cache"
    env = {**isolated, "KAFKA_LAB_CACHE": str(cache), "KAFKA_LAB_MAVEN_REPO": str(tmp_path / "m2")}
    proc = start_fetch(env)
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    root = cache / "artifacts"
    assert not any(p.is_dir() and not p.name.startswith(".tmp-") for p in root.iterdir()), (
        "an incomplete closure was published"
    )
    if sig != signal.SIGKILL:
        assert proc.returncode == 130, rest
        assert "Interrupted" in rest and "Traceback" not in rest
        assert not list(root.glob(".tmp-*")), "a half-written download was left behind"

    again = run_lab("fetch", "broker", env=env)
    assert again.returncode == 0, again.stderr
    assert not list(root.glob(".tmp-*"))
    cfg = load_config({**os.environ, **env})
    assert artifacts.problems(artifacts.closure_dir(cfg, "broker"), deep=True) == []


def test_stale_pid_file_is_recovered(isolated: dict[str, str], tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_dir = tmp_path / "home" / "run"
    run_dir.mkdir(parents=True)
    record = {
        "name": "kafka-1",
        "pid": dead.pid,
        "create_time": time.time(),
        "argv": ["java"],
        "log": "x",
        "ports": [1],
    }
    (run_dir / "kafka-1.json").write_text(json.dumps(record))
    proc = run_lab("status", "--json", env=isolated)
    assert proc.returncode == 0, proc.stderr
    states = {c["name"]: c["state"] for c in json.loads(proc.stdout)["components"]}
    assert states["kafka-1"] == "stopped"
    assert not (run_dir / "kafka-1.json").exists()


def test_pid_reused_by_another_process_is_not_ours(
    isolated: dict[str, str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "home" / "run"
    run_dir.mkdir(parents=True)
    # Our own pid, but a start time that is not ours: after a reboot a pid means nothing.
    record = {
        "name": "kafka-2",
        "pid": os.getpid(),
        "create_time": 1.0,
        "argv": ["java"],
        "log": "x",
        "ports": [1],
    }
    (run_dir / "kafka-2.json").write_text(json.dumps(record))
    proc = run_lab("kill", "2", env=isolated)
    assert_sentence(proc, "kafka-2 is not running")  # and this test process is still alive


def test_corrupted_data_directory(isolated: dict[str, str], tmp_path: Path) -> None:
    cfg = load_config({**os.environ, **isolated})
    kafka_nodes.identity(cfg)
    junk = cfg.home / "data" / "kafka-2"
    junk.mkdir(parents=True)
    (junk / "00000000000000000000.log").write_bytes(b"\x00garbage")
    proc = run_lab("up", env=isolated, timeout=120)
    assert_sentence(proc, "kafka-2", "corrupted", "lab reset")
    assert no_process_under(cfg.home)
    assert (junk / "00000000000000000000.log").exists()  # nothing deleted behind the user's back


def test_corrupted_cluster_identity(isolated: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "cluster.json").write_text("{not json")
    proc = run_lab("up", env=isolated, timeout=120)
    assert_sentence(proc, "cluster.json is corrupted", "lab reset")
    assert no_process_under(home)


def test_down_with_nothing_running(isolated: dict[str, str]) -> None:
    proc = run_lab("down", env=isolated)
    assert proc.returncode == 0, proc.stderr
    assert "Nothing was running." in proc.stdout


def test_reset_asks_for_confirmation(isolated: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "home" / "data").mkdir(parents=True)
    proc = run_lab("reset", env=isolated)
    assert_sentence(proc, "--yes")
    assert (tmp_path / "home" / "data").exists()


def test_reset_yes_wipes_data(isolated: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "home" / "data" / "kafka-1").mkdir(parents=True)
    proc = run_lab("reset", "--yes", env=isolated)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "home" / "data").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("kill", "7"), ("no node '7'", "kafka-1, kafka-2, kafka-3")),
        (("start", "kafka-9"), ("no node 'kafka-9'",)),
        (("pause", "2"), ("kafka-2 is not running",)),
        (("kafka", "no-such-tool"), ("Unknown Kafka tool", "topics")),
        (("fetch", "kafka-ui"), ("Nothing called kafka-ui",)),
        (("logs", "registry"), ("has no log yet",)),
    ],
)
def test_wrong_arguments(
    isolated: dict[str, str], args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert_sentence(run_lab(*args, env=isolated), *fragments)


def test_bad_configuration_values(isolated: dict[str, str]) -> None:
    assert_sentence(
        run_lab("status", env={**isolated, "KAFKA_LAB_BROKER_PORTS": "9092,x,9094"}),
        "KAFKA_LAB_BROKER_PORTS",
    )
    assert_sentence(
        run_lab("status", env={**isolated, "KAFKA_LAB_BACKEND": "k8s"}), "backend must be one of"
    )
    assert_sentence(
        run_lab("up", env={**isolated, "KAFKA_LAB_BACKEND": "external"}), "KAFKA_LAB_BOOTSTRAP"
    )
