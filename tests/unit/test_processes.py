"""The process registry with real child processes (``sleep``, ``true``, a Python one-liner)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from lab_env import processes
from lab_env.processes import PAUSED, RUNNING, STARTED_MARK, STOPPED, ProcessRecord, Registry


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "run")
    spawned: list[ProcessRecord] = []
    original = registry.spawn

    def tracking_spawn(*args: object, **kwargs: object) -> ProcessRecord:
        record = original(*args, **kwargs)  # type: ignore[arg-type]
        spawned.append(record)
        return record

    registry.spawn = tracking_spawn  # type: ignore[method-assign]
    try:
        yield registry
    finally:
        for record in spawned:  # kill by pid only what this test started, if still that process
            proc = record.process()
            if proc is not None and proc.pid != os.getpid():
                with contextlib.suppress(psutil.Error):
                    proc.resume()
                    proc.kill()
                    proc.wait(5)


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def spawn_sleep(reg: Registry, tmp_path: Path, name: str = "sleeper") -> ProcessRecord:
    return reg.spawn(name, ["sleep", "30"], tmp_path / "logs" / f"{name}.out", [12345])


def test_spawn_writes_a_record(reg: Registry, tmp_path: Path) -> None:
    record = spawn_sleep(reg, tmp_path)
    data = json.loads((tmp_path / "run" / "sleeper.json").read_text())
    assert data["name"] == "sleeper"
    assert data["pid"] == record.pid
    assert data["argv"] == ["sleep", "30"]
    assert data["ports"] == [12345]
    assert data["log"] == str(tmp_path / "logs" / "sleeper.out")
    assert data["create_time"] == pytest.approx(psutil.Process(record.pid).create_time())
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_live_returns_a_running_record(reg: Registry, tmp_path: Path) -> None:
    record = spawn_sleep(reg, tmp_path)
    live = reg.live("sleeper")
    assert live == record
    assert live.state() == RUNNING
    assert live.rss() > 0
    assert [r.name for r in reg.all()] == ["sleeper"]


def test_spawned_process_runs_in_its_own_session(reg: Registry, tmp_path: Path) -> None:
    record = spawn_sleep(reg, tmp_path)
    assert os.getsid(record.pid) == record.pid != os.getsid(0)


def test_sigstop_pauses_and_sigcont_resumes(reg: Registry, tmp_path: Path) -> None:
    record = spawn_sleep(reg, tmp_path)
    assert reg.signal("sleeper", signal.SIGSTOP) == record
    assert wait_until(lambda: record.state() == PAUSED)
    assert reg.live("sleeper") is not None  # a paused process is still the lab's
    reg.signal("sleeper", signal.SIGCONT)
    assert wait_until(lambda: record.state() == RUNNING)


def test_stop_terminates_and_forgets(reg: Registry, tmp_path: Path) -> None:
    record = spawn_sleep(reg, tmp_path)
    assert reg.stop("sleeper", timeout=5) is True
    assert not psutil.pid_exists(record.pid)
    assert not (tmp_path / "run" / "sleeper.json").exists()
    assert reg.stop("sleeper") is False


def test_stop_of_a_paused_process_does_not_wait_for_the_timeout(
    reg: Registry, tmp_path: Path
) -> None:
    record = spawn_sleep(reg, tmp_path)
    reg.signal("sleeper", signal.SIGSTOP)
    assert wait_until(lambda: record.state() == PAUSED)
    started = time.monotonic()
    assert reg.stop("sleeper", timeout=10) is True
    assert time.monotonic() - started < 3
    assert not psutil.pid_exists(record.pid)


def test_stop_kills_a_process_that_ignores_sigterm(reg: Registry, tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)"
    )
    log = tmp_path / "stubborn.out"
    record = reg.spawn("stubborn", [sys.executable, "-c", code], log, [])
    assert wait_until(lambda: "ready" in log.read_text(), timeout=4)
    started = time.monotonic()
    assert reg.stop("stubborn", timeout=0.3) is True
    assert time.monotonic() - started < 3
    assert not psutil.pid_exists(record.pid)


def test_signal_to_an_unknown_name_returns_none(reg: Registry) -> None:
    assert reg.signal("nobody", signal.SIGSTOP) is None


def test_record_of_a_dead_process_is_stale(reg: Registry, tmp_path: Path) -> None:
    record = reg.spawn("brief", ["true"], tmp_path / "brief.out", [])
    reap(record.pid)
    assert reg.get("brief") == record
    assert reg.live("brief") is None
    assert not (tmp_path / "run" / "brief.json").exists()


def test_record_with_a_reused_pid_is_stale(reg: Registry, tmp_path: Path) -> None:
    """The pid is alive (it is this test), but it was not started when the record says."""
    reg.run_dir.mkdir(parents=True)
    impostor = ProcessRecord("kafka-1", os.getpid(), 1.0, ["java"], "x.out", [9092])
    (reg.run_dir / "kafka-1.json").write_text(json.dumps(impostor.__dict__))
    assert impostor.process() is None
    assert impostor.state() == STOPPED
    assert impostor.rss() == 0
    assert reg.live("kafka-1") is None
    assert not (reg.run_dir / "kafka-1.json").exists()
    assert psutil.pid_exists(os.getpid())


@pytest.mark.parametrize("text", ["{not json", '{"pid": 1}', "[1, 2]", "null"])
def test_unreadable_record_is_removed(reg: Registry, text: str) -> None:
    reg.run_dir.mkdir(parents=True)
    (reg.run_dir / "broken.json").write_text(text)
    assert reg.get("broken") is None
    assert not (reg.run_dir / "broken.json").exists()
    assert reg.all() == []


def test_all_skips_broken_records(reg: Registry, tmp_path: Path) -> None:
    spawn_sleep(reg, tmp_path, "b-sleeper")
    (reg.run_dir / "a-broken.json").write_text("{")
    assert [r.name for r in reg.all()] == ["b-sleeper"]


def test_all_of_a_missing_run_dir_is_empty(tmp_path: Path) -> None:
    assert Registry(tmp_path / "nothing-here").all() == []


def test_log_gets_a_start_marker_before_the_output(reg: Registry, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "echo.out"
    log.parent.mkdir()
    log.write_text("from an earlier run\n")
    record = reg.spawn("echo", ["sh", "-c", "echo hello $GREETING"], log, [], {"GREETING": "lab"})
    reap(record.pid)
    text = log.read_text()
    assert text.startswith(f"from an earlier run\n\n{STARTED_MARK}")
    assert text.count(STARTED_MARK) == 1
    assert text.endswith(" ---\nhello lab\n")
    assert processes.STARTED_MARK == "--- started by the lab at "


def test_each_start_appends_another_marker(reg: Registry, tmp_path: Path) -> None:
    log = tmp_path / "twice.out"
    for _ in range(2):
        reap(reg.spawn("twice", ["true"], log, []).pid)
    assert log.read_text().count(STARTED_MARK) == 2


def test_zombie_child_is_reported_stopped_and_reaped(reg: Registry, tmp_path: Path) -> None:
    # `sleep 0.2` outlives spawn(), so subprocess does not reap it when its Popen is dropped:
    # it becomes a zombie child of this process once it exits.
    record = reg.spawn("zombie", ["sleep", "0.2"], tmp_path / "zombie.out", [])
    time.sleep(0.5)
    assert psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE
    assert record.state() == STOPPED
    assert not psutil.pid_exists(record.pid)  # reaped by process()
    assert reg.live("zombie") is None


def test_stop_does_not_wait_for_a_zombie_whose_parent_lives_on(tmp_path: Path) -> None:
    """A lab started from a long-lived Python process (a notebook kernel, the test session) and
    stopped from another (`lab down`): the stopped process stays a zombie until its parent reaps
    it. stop() must see that it has stopped, not wait out its timeouts."""
    run_dir = tmp_path / "run"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from lab_env.processes import Registry;"
            f"Registry(Path({str(run_dir)!r})).spawn('child', ['sleep', '60'], "
            f"Path({str(tmp_path / 'child.log')!r}), []);"
            "print('spawned', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "spawned"
        registry = Registry(run_dir)
        record = registry.live("child")
        assert record is not None and record.state() == RUNNING
        start = time.monotonic()
        assert registry.stop("child", timeout=30) is True
        assert time.monotonic() - start < 5
        assert psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE  # parent never reaped
        assert registry.live("child") is None
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_child_spawned_to_die_with_its_parent_does_and_others_run_on(
    tmp_path: Path, die_with_parent: bool
) -> None:
    """A notebook's pipeline dies with the kernel, even a kernel that fails or is killed;
    `lab orders up` starts instances that outlive the command."""
    run_dir = tmp_path / "run"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from lab_env.processes import Registry;"
            f"Registry(Path({str(run_dir)!r})).spawn('child', ['sleep', '60'], "
            f"Path({str(tmp_path / 'child.log')!r}), [], die_with_parent={die_with_parent});"
            "print('spawned', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    registry = Registry(run_dir)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "spawned"
        record = registry.live("child")
        assert record is not None and record.state() == RUNNING
        parent.kill()  # SIGKILL: no clean-up code runs in the parent
        parent.wait()
        deadline = time.monotonic() + 5
        while record.state() != STOPPED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (record.state() == STOPPED) is die_with_parent
    finally:
        parent.kill()
        registry.stop("child", timeout=5)
