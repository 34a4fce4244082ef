"""Lab 04's pure parts: the output verdict and its messages, the worker's command line and
bookkeeping. No cluster needed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lab_env.checks import LabCheckError
from lab_env.lab_checks.exactly_once import (
    MARKER_KEY,
    FailHook,
    InjectedFailure,
    Verdict,
    WorkerLab,
    explain,
    input_records,
    poison_records,
    verdict,
)
from lab_env.transactional_worker import caught_up, parse_args, transform


def outputs(pairs: list[tuple[str, str]]) -> list[tuple[str | None, str | None]]:
    return [(k, transform(v.encode()).decode()) for k, v in pairs]


INPUTS = input_records(12)
ABORTED = poison_records(3)


def test_input_records_are_unique_and_keyed() -> None:
    assert len({v for _, v in INPUTS}) == len(INPUTS)
    assert {k for k, _ in INPUTS} <= {f"customer-{i}" for i in range(7)}
    assert not {v for _, v in ABORTED} & {v for _, v in INPUTS}


def test_transform_is_deterministic_and_total() -> None:
    assert transform(b"order 17") == b"ORDER 17"
    assert transform(None) == b""


def test_exact_output_is_exact() -> None:
    report = verdict(INPUTS, ABORTED, outputs(INPUTS))
    assert report.exact
    assert (report.expected, report.committed) == (12, 12)
    explain(report, "two failures")  # raises nothing


def test_exact_in_any_order() -> None:
    assert verdict(INPUTS, ABORTED, list(reversed(outputs(INPUTS)))).exact


def test_duplicates_are_counted_per_record() -> None:
    report = verdict(INPUTS, ABORTED, outputs(INPUTS + INPUTS[:2] + INPUTS[:1]))
    assert report.duplicates == {
        outputs(INPUTS[:1])[0]: 2,
        outputs(INPUTS[1:2])[0]: 1,
    }
    with pytest.raises(LabCheckError, match="3 duplicate output record"):
        explain(report, "a crash")


def test_missing_records_point_at_the_rewind() -> None:
    report = verdict(INPUTS, ABORTED, outputs(INPUTS[4:]))
    assert len(report.missing) == 4
    with pytest.raises(LabCheckError, match=r"4 of 12 input records have no output.*seek"):
        explain(report, "two failures")


def test_markers_of_failed_transactions_mean_no_abort() -> None:
    report = verdict(INPUTS, ABORTED, [*outputs(INPUTS), (MARKER_KEY, "x")])
    assert report.markers == 1 and not report.exact
    with pytest.raises(LabCheckError, match="abort_transaction"):
        explain(report, "two failures")


def test_outputs_of_aborted_input_point_at_isolation_level() -> None:
    report = verdict(INPUTS, ABORTED, outputs(INPUTS + ABORTED[:2]))
    assert report.from_aborted == 2
    assert not report.foreign  # counted once, as aborted input, not also as unexpected
    with pytest.raises(LabCheckError, match=r"isolation\.level=read_committed"):
        explain(report, "two failures")


def test_untransformed_output_is_foreign() -> None:
    report = verdict(INPUTS, ABORTED, [(k, v) for k, v in INPUTS])
    assert len(report.foreign) == len(INPUTS) and len(report.missing) == len(INPUTS)
    with pytest.raises(LabCheckError, match=r"transform\(msg.value\(\)\)"):
        explain(report, "two failures")


def test_wrong_key_is_foreign_and_missing() -> None:
    wrong = [("other", v) for _, v in outputs(INPUTS[:1])] + outputs(INPUTS[1:])
    report = verdict(INPUTS, ABORTED, wrong)
    assert report.foreign == [("other", "ORDER 0")]
    assert report.missing == outputs(INPUTS[:1])


def test_the_first_problem_is_reported_first() -> None:
    # Markers committed explain the duplicates and gaps that come with them: they come first.
    report = Verdict(expected=3, committed=3, markers=1, missing=[("k", "V")])
    with pytest.raises(LabCheckError, match="visible to read_committed"):
        explain(report, "x")


def test_null_keys_and_values_are_compared_not_crashed_on() -> None:
    report = verdict(INPUTS[:1], [], [(None, None)])
    assert report.foreign == [("", "")]


@pytest.mark.parametrize(
    ("committed", "ends", "expected"),
    [
        ({0: 5, 1: 7}, {0: 5, 1: 7}, True),
        ({0: 6, 1: 7}, {0: 5, 1: 7}, True),  # past a transaction marker
        ({0: 4, 1: 7}, {0: 5, 1: 7}, False),
        ({1: 7}, {0: 5, 1: 7}, False),  # partition 0 has no committed offset yet
        ({1: 7}, {0: 0, 1: 7}, True),  # an empty partition needs none
    ],
)
def test_caught_up(committed: dict[int, int], ends: dict[int, int], expected: bool) -> None:
    assert caught_up(committed, ends) is expected


def test_worker_arguments() -> None:
    args = parse_args(["--input", "a", "--output", "b", "--group", "g", "--transactional-id", "t"])
    assert (args.input, args.output, args.group, args.transactional_id) == ("a", "b", "g", "t")
    assert (args.batch, args.delay_ms, args.no_transactions) == (10, 0, False)
    plain = parse_args(["--input", "a", "--output", "b", "--group", "g", "--no-transactions"])
    assert plain.no_transactions and plain.transactional_id is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--input", "a", "--output", "b", "--group", "g"],  # neither mode
        [
            "--input",
            "a",
            "--output",
            "b",
            "--group",
            "g",
            "--no-transactions",
            "--transactional-id",
            "t",
        ],
        ["--input", "a", "--output", "b", "--group", "g", "--no-transactions", "--batch", "0"],
        ["--output", "b", "--group", "g", "--no-transactions"],  # no input
    ],
)
def test_bad_worker_arguments_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- the lab the checked worker gets, and the hook (real clients, never connected) ----------------


class FakeLab:
    """Just enough of Lab for WorkerLab: client settings pointing nowhere (clients are created,
    never used)."""

    bootstrap_servers = "127.0.0.1:1"

    def client_config(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **(config or {})}


def test_worker_lab_records_clients_and_passes_the_rest_through() -> None:
    clients = WorkerLab(FakeLab())  # type: ignore[arg-type]
    producer = clients.producer({"transactional.id": "t"})
    consumer = clients.consumer("g", {"enable.auto.commit": False})
    assert clients.producers == [producer] and clients.consumers == [consumer]
    assert clients.transactional_producer(threading.get_ident()) is producer
    assert consumer.learner == {"enable.auto.commit": False}  # what the learner asked for
    assert clients.bootstrap_servers == "127.0.0.1:1"  # anything else is the real lab's


def test_worker_lab_makes_consumers_static_members_when_asked() -> None:
    static = WorkerLab(FakeLab(), static_id="worker-1")  # type: ignore[arg-type]
    consumer = static.consumer("g", {"enable.auto.commit": False})
    assert consumer.config["group.instance.id"] == "worker-1"
    assert consumer.config["session.timeout.ms"] == 6000
    mine = static.consumer("g", {"group.instance.id": "mine"})
    assert mine.config["group.instance.id"] == "mine"  # the learner's own choice is kept
    with pytest.raises(LabCheckError, match=r"group\.protocol=consumer"):
        static.consumer("g", {"group.protocol": "consumer"})
    plain = WorkerLab(FakeLab())  # type: ignore[arg-type]
    plain.consumer("g", {"group.protocol": "consumer"})  # no replacement, no objection


def test_non_transactional_producers_are_not_the_hooks() -> None:
    clients = WorkerLab(FakeLab())  # type: ignore[arg-type]
    clients.producer({"enable.idempotence": True})
    assert clients.transactional_producer(threading.get_ident()) is None


def test_fail_hook_fails_the_chosen_calls() -> None:
    hook = FailHook(WorkerLab(FakeLab()), "out", fail_on=(1, 3))  # type: ignore[arg-type]
    with pytest.raises(InjectedFailure):
        hook()
    hook()
    with pytest.raises(InjectedFailure, match="transaction 3"):
        hook()
    hook()
    assert (hook.calls, hook.failures, hook.markers) == (4, 2, 0)  # no producer: no marker


def test_fail_hook_freezes_until_released() -> None:
    hook = FailHook(WorkerLab(FakeLab()), "out", freeze_on=2)  # type: ignore[arg-type]
    hook()
    frozen = threading.Thread(target=hook)
    frozen.start()
    assert hook.frozen.wait(5)
    assert frozen.is_alive()
    hook.release.set()
    frozen.join(5)
    assert not frozen.is_alive()
