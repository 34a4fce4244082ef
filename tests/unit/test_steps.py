"""Progress lines (lab_env/steps.py): the seconds since an operation began, then what it does;
a phase's end line with its own seconds and what it found; `lab orders place`'s line every
few seconds when stderr is not a terminal."""

from __future__ import annotations

import io
import types
from collections.abc import Iterator
from typing import Any

import pytest

from lab_env import orders_cli, steps
from lab_env.steps import Steps, stamp
from tests.helpers import progress_lines


class Clock:
    """time.monotonic for lab_env.steps, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(steps, "time", types.SimpleNamespace(monotonic=fake))
    return fake


def test_a_line_is_the_seconds_since_the_start_then_what_happens(clock: Clock) -> None:
    stream = io.StringIO()
    step = Steps(stream)
    step("producing 1,500 numbered records")
    clock.now += 12.34
    step("killed kafka-2, the leader of partition 1")
    assert stream.getvalue() == (
        "  0.0s producing 1,500 numbered records\n"
        " 12.3s killed kafka-2, the leader of partition 1\n"
    )
    assert progress_lines(stream.getvalue()) == [
        "producing 1,500 numbered records",
        "killed kafka-2, the leader of partition 1",
    ]


def test_lines_go_to_stdout_as_it_is_when_each_is_written(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    step = Steps()  # made before the capture is read: a notebook cell's stdout is swapped too
    step("waiting for your alert to fire (up to 45 s)")
    assert capsys.readouterr().out == "  0.0s waiting for your alert to fire (up to 45 s)\n"


def test_the_stamp_is_lab_up_s() -> None:
    assert stamp(3.04) == "  3.0s" and stamp(125.0) == "125.0s"


def test_a_phase_says_when_it_starts_and_ends_with_what_it_found(clock: Clock) -> None:
    stream = io.StringIO()
    step = Steps(stream)
    clock.now += 1.0
    with step.phase("round 1 of 3, python") as found:
        clock.now += 2.5
        found.append("212,345 rec/s")
    assert progress_lines(stream.getvalue()) == [
        "round 1 of 3, python",
        "round 1 of 3, python: done in 2.5 s, 212,345 rec/s",
    ]
    assert stream.getvalue().startswith("  1.0s ") and "\n  3.5s " in stream.getvalue()


def test_a_phase_that_fails_has_no_end_line(clock: Clock) -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Steps(stream).phase("run 1 of 2, java"):
        raise RuntimeError("the tool failed")
    assert progress_lines(stream.getvalue()) == ["run 1 of 2, java"]


def test_a_timed_run_ends_with_its_rate(clock: Clock) -> None:
    stream = io.StringIO()
    row = steps.timed(Steps(stream), "run 1 of 1, python producer", lambda: {"records/s": 1234})
    assert row == {"records/s": 1234}
    assert progress_lines(stream.getvalue())[-1] == (
        "run 1 of 1, python producer: done in 0.0 s, 1,234 records/s"
    )


def test_placing_says_how_many_of_how_many_and_the_rate() -> None:
    assert orders_cli.placing(1750, 3500, 5.0) == "placed 1,750 of 3,500 orders (350/s)"
    assert orders_cli.placing(0, 10, 0.0) == "placed 0 of 10 orders (0/s)"


def test_placing_without_a_terminal_prints_a_line_every_five_seconds(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    def orders() -> Iterator[dict[str, Any]]:
        for i in range(30):
            clock.now += 0.5  # paced at 2 per second
            yield {"order_id": f"o-{i}"}

    handed_out = list(orders_cli.with_progress(orders(), 30))
    assert [o["order_id"] for o in handed_out] == [f"o-{i}" for i in range(30)]
    err = capsys.readouterr().err  # captured: not a terminal, so no bar
    assert progress_lines(err) == [
        "placed 10 of 30 orders (2/s)",
        "placed 20 of 30 orders (2/s)",
        "placed 30 of 30 orders (2/s)",
    ]
    assert err.splitlines()[0].startswith("  5.0s ")
