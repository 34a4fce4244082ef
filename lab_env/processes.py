"""The supervisor's memory: which process the lab started, and whether it is still that process.

Each started process gets a record in ``<home>/run/<name>.json`` (pid, start time, command line,
ports, log file). A pid alone is not proof: after a crash or a reboot the pid may belong to
someone else, so a record only counts while a process with that pid *and* that start time exists.
Anything else is a stale record, which the lab removes and reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from lab_env import artifacts
from lab_env.waiting import eventually

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"
STARTED_MARK = "--- started by the lab at "


@dataclass
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    argv: list[str]
    log: str
    ports: list[int]

    def process(self) -> psutil.Process | None:
        """The live process this record describes, or None when it is gone (or a zombie)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None  # the pid was reused by another process
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, os.WNOHANG)  # reap our own child
                return None
            return proc
        except psutil.Error:
            return None

    def state(self) -> str:
        proc = self.process()
        if proc is None:
            return STOPPED
        try:
            return PAUSED if proc.status() == psutil.STATUS_STOPPED else RUNNING
        except psutil.Error:
            return STOPPED

    def rss(self) -> int:
        proc = self.process()
        try:
            return proc.memory_info().rss if proc else 0
        except psutil.Error:
            return 0


class Registry:
    """Records of the processes started for one lab home."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def get(self, name: str) -> ProcessRecord | None:
        path = self._path(name)
        try:
            return ProcessRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)  # unreadable: as good as stale
            return None

    def all(self) -> list[ProcessRecord]:
        names = sorted(p.stem for p in self.run_dir.glob("*.json")) if self.run_dir.is_dir() else []
        return [r for r in (self.get(n) for n in names) if r is not None]

    def live(self, name: str) -> ProcessRecord | None:
        """The record if its process runs (or is paused); a stale record is removed."""
        record = self.get(name)
        if record is not None and record.state() == STOPPED:
            self.forget(name)
            return None
        return record

    def forget(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def spawn(
        self,
        name: str,
        argv: list[str],
        log: Path,
        ports: list[int],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> ProcessRecord:
        """Start ``argv`` detached from this process (own session), output appended to ``log``.
        With ``die_with_parent`` it is still killed when this process ends (Linux), however it
        ends: for processes that only serve their starter (a notebook's pipeline, a test's)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"\n{STARTED_MARK}{time.strftime('%F %T')} ---\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                preexec_fn=artifacts.die_with_parent if die_with_parent else None,
            )
        record = ProcessRecord(
            name=name,
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            argv=argv,
            log=str(log),
            ports=ports,
        )
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        tmp.rename(self._path(name))
        return record

    def signal(self, name: str, sig: signal.Signals) -> ProcessRecord | None:
        record = self.live(name)
        if record is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)
        return record

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """Graceful stop: SIGTERM (after SIGCONT if paused), SIGKILL after ``timeout``.

        Returns whether a process was running.
        """
        record = self.live(name)
        if record is None:
            return False
        proc = record.process()
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                proc.resume()  # a stopped process cannot act on SIGTERM
                proc.terminate()
            if not _wait_stopped(record, timeout):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                _wait_stopped(record, 10)
        self.forget(name)
        return True

    def stop_all(self, timeout: float = 30.0) -> list[str]:
        """Stop every live process at once: SIGTERM to all first, so each finishes its work
        in parallel, then ``stop`` each. Returns their names."""
        names = [r.name for r in self.all() if self.live(r.name) is not None]
        for name in names:
            self.signal(name, signal.SIGTERM)
        for name in names:
            self.stop(name, timeout)
        return names


def _wait_stopped(record: ProcessRecord, timeout: float) -> bool:
    """Poll until the process is gone. Not ``psutil.wait()``: a process that another Python
    process started (a notebook kernel, the test session) lingers as a zombie until that parent
    reaps it, and a zombie has stopped for every purpose of the lab."""
    return eventually(lambda: record.state() == STOPPED, timeout, interval=0.1)
