"""Progress lines for the operations that take a while: what each phase starts, and when.

A learner who runs a check that kills a broker, a two-minute benchmark or ``lab orders place``
should see it move: one line as each phase starts (or ends, with what it found), stamped with
the seconds since the operation began, so that waiting for an election, a scrape or a
rebalance reads as a wait and not as a hang. ``lab up`` stamps its lines the same way.

    step = Steps()                        # a lab check: plain lines under the notebook cell
    step("producing 1,500 numbered records")
      0.0s producing 1,500 numbered records

    step = Steps(sys.stderr)              # a benchmark: stdout keeps its figures and RESULT
    with step.phase("round 1 of 3: python producer") as found:
        row = tuning.produce(lab, spec, settings)
        found.append(f"{row['records/s']:,} records/s")
      0.0s round 1 of 3: python producer
      9.4s round 1 of 3: python producer: done in 9.4 s, 212,345 records/s
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO


def stamp(seconds: float) -> str:
    """Seconds since an operation began, as every progress line starts: ``' 12.3s'``."""
    return f"{seconds:5.1f}s"


class Steps:
    """One operation's clock and its progress lines, written to ``stream`` (stdout, as it is
    when each line is written, by default: a notebook's cell, or whatever captures it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.start = time.monotonic()
        self._stream = stream

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, message: str) -> None:
        print(f"{stamp(self.elapsed())} {message}", file=self._stream or sys.stdout, flush=True)

    @contextlib.contextmanager
    def phase(self, what: str) -> Iterator[list[str]]:
        """A line as ``what`` starts, and one as it ends with its own seconds and what the block
        appended to the list it is given (a figure it found). A block that raises ends without
        the second line: its error says why."""
        found: list[str] = []
        began = self.elapsed()
        self(what)
        yield found
        self(", ".join([f"{what}: done in {self.elapsed() - began:.1f} s", *found]))


def timed(step: Steps, what: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A benchmark run's row (``run()``, a :mod:`lab_env.tuning` row), between a line as it
    starts and one as it ends with its rate: a long run on a busy machine is seen to move."""
    with step.phase(what) as found:
        row = run()
        rate = row.get("records/s")
        found.append(f"{rate:,} records/s" if isinstance(rate, int) else f"{rate} records/s")
    return row
