"""Pure pieces of lab 03's checks and of lab_env.consuming: no cluster needed."""

from __future__ import annotations

import pytest

from lab_env.checks import LabCheckError
from lab_env.consuming import Recorder, balanced, owner_at, rebalance_pauses
from lab_env.lab_checks.consumers import (
    CHECK_SETTINGS,
    SimulatedCrash,
    _partitions_named,
    _validate,
    commits_ahead,
    first_unprocessed,
    offsets_text,
    repeated,
    unprocessed,
)


def test_first_unprocessed_is_the_lowest_gap() -> None:
    assert first_unprocessed({0, 1, 2, 4}, 6) == 3
    assert first_unprocessed(set(), 5) == 0
    assert first_unprocessed({0, 1, 2}, 3) == 3  # all processed: the end


def test_a_commit_at_the_processed_frontier_is_not_ahead() -> None:
    processed = {0: {0, 1, 2}, 1: {0, 1}}
    assert commits_ahead({0: 3, 1: 2}, processed) == []
    assert commits_ahead({0: 2, 1: None}, processed) == []  # behind, or no commit yet


def test_a_commit_beyond_an_unprocessed_record_is_ahead() -> None:
    processed = {0: {0, 1, 2}, 1: {0, 2}}
    # partition 0 committed 5 with 3 and 4 never processed; partition 1 skips offset 1
    assert commits_ahead({0: 5, 1: 3}, processed) == [(0, 5, 3), (1, 3, 1)]
    assert commits_ahead({2: 1}, processed) == [(2, 1, 0)]  # a partition nobody processed


def test_unprocessed_lists_every_missing_offset() -> None:
    assert unprocessed({0: {0, 1}, 1: {1}}, {0: 2, 1: 3, 2: 0}) == {1: [0, 2]}
    assert unprocessed({0: {0, 1}}, {0: 2}) == {}


def test_repeated_counts_only_processing_before_the_cutoff() -> None:
    log = [
        ("w1", 0, 5, 1.0),
        ("w2", 0, 5, 2.0),  # twice before 3.0
        ("w1", 1, 7, 2.5),
        ("w2", 1, 7, 4.0),  # the second time is after the cutoff
        ("w1", 0, 6, 0.5),
    ]
    assert repeated(log, before=3.0) == [(0, 5)]
    assert repeated(log, before=10.0) == [(0, 5), (1, 7)]


def test_offsets_text_shortens_long_lists() -> None:
    assert offsets_text([3, 4, 5]) == "3, 4, 5"
    assert offsets_text(list(range(10))) == "0, 1, 2, 3, 4 and 5 more"


class _Message:
    def __init__(self, partition: int) -> None:
        self._partition = partition

    def partition(self) -> int:
        return self._partition


class _TP:
    def __init__(self, partition: int) -> None:
        self.partition = partition


def test_partitions_named_by_a_commit_call() -> None:
    assert _partitions_named((), {}) == set()  # commit(): the stored offsets
    assert _partitions_named((), {"message": _Message(2)}) == {2}
    assert _partitions_named((), {"offsets": [_TP(0), _TP(4)]}) == {0, 4}
    assert _partitions_named((_Message(1),), {}) == {1}  # positional message


def test_bad_input_is_a_sentence() -> None:
    with pytest.raises(LabCheckError, match="must be a dict"):
        _validate(["enable.auto.commit"], lambda *a: None)
    with pytest.raises(LabCheckError, match="must be a function"):
        _validate({}, "work")
    assert _validate({"enable.auto.commit": False}, lambda *a: None) == {
        "enable.auto.commit": False
    }


def test_the_crash_is_not_an_exception_a_worker_catches() -> None:
    assert not issubclass(SimulatedCrash, Exception)
    assert issubclass(SimulatedCrash, BaseException)


def test_check_settings_are_valid_for_librdkafka() -> None:
    # librdkafka refuses max.poll.interval.ms < session.timeout.ms, and the broker refuses a
    # session below group.min.session.timeout.ms (6000 in Kafka's defaults).
    assert CHECK_SETTINGS["max.poll.interval.ms"] >= CHECK_SETTINGS["session.timeout.ms"] >= 6000
    assert CHECK_SETTINGS["heartbeat.interval.ms"] < CHECK_SETTINGS["session.timeout.ms"]
    assert CHECK_SETTINGS["group.protocol"] == "classic"


# -- lab_env.consuming --------------------------------------------------------------------------


def _recorder(events: list[tuple[float, str, str, dict]]) -> Recorder:
    recorder = Recorder()
    for t, kind, member, fields in events:
        recorder.add(kind, member, t=t, **fields)
    return recorder


def test_ownership_intervals_and_idle_members() -> None:
    recorder = _recorder(
        [
            (0.0, "owns", "c1", {"partitions": [0, 1]}),
            (1.0, "owns", "c1", {"partitions": [0]}),
            (1.1, "owns", "c2", {"partitions": [1]}),
            (1.2, "owns", "c3", {"partitions": []}),
            (2.0, "closed", "c1", {}),
        ]
    )
    rows = recorder.ownership(end=3.0)
    got = {(r["member"], r["partition"]): (r["start"], r["end"]) for r in rows}
    assert got == {
        ("c1", 0): (0.0, 2.0),
        ("c1", 1): (0.0, 1.0),
        ("c2", 1): (1.1, 3.0),
        ("c3", None): (1.2, 3.0),  # idle: owns nothing
    }


def test_owner_at() -> None:
    events = _recorder(
        [
            (0.0, "owns", "c1", {"partitions": [0, 1]}),
            (2.0, "owns", "c1", {"partitions": [0]}),
            (2.5, "owns", "c2", {"partitions": [1]}),
            (4.0, "closed", "c2", {}),
        ]
    ).events
    assert owner_at(events, 1, 1.0) == "c1"
    assert owner_at(events, 1, 2.2) is None  # revoked, not yet assigned
    assert owner_at(events, 1, 3.0) == "c2"
    assert owner_at(events, 1, 5.0) is None  # its owner closed


def test_rebalance_pauses_eager_versus_incremental() -> None:
    # c1 owns 0 and 1; c2 joins at t=10. Eager: both revoked at 11, 0 back to c1 and 1 to c2
    # at 12. Each partition was consumed every 0.1 s when it had an owner.
    def consumed(partition: int, member: str, start: float, end: float) -> list:
        steps = round((end - start) / 0.1)
        return [
            (start + i * 0.1, "consumed", member, {"partition": partition, "records": 1})
            for i in range(steps + 1)
        ]

    eager = _recorder(
        [
            (0.0, "owns", "c1", {"partitions": [0, 1]}),
            (11.0, "revoke", "c1", {"partitions": [0, 1]}),
            (11.0, "owns", "c1", {"partitions": []}),
            (12.0, "assign", "c1", {"partitions": [0]}),
            (12.0, "owns", "c1", {"partitions": [0]}),
            (12.0, "owns", "c2", {"partitions": [1]}),
            *consumed(0, "c1", 0.0, 10.9),
            *consumed(1, "c1", 0.0, 10.9),
            *consumed(0, "c1", 12.1, 14.0),
            *consumed(1, "c2", 12.2, 14.0),
        ]
    ).events
    rows = {r["partition"]: r for r in rebalance_pauses(eager, 10.0, 13.0, 2)}
    assert rows[0]["stopped"] and not rows[0]["moved"]
    assert rows[1]["stopped"] and rows[1]["moved"]
    assert rows[0]["paused_s"] == pytest.approx(1.2)
    assert rows[1]["paused_s"] == pytest.approx(1.3)
    assert rows[1]["resumed_s"] == pytest.approx(2.2)

    incremental = _recorder(
        [
            (0.0, "owns", "c1", {"partitions": [0, 1]}),
            (11.0, "revoke", "c1", {"partitions": [1]}),
            (11.0, "owns", "c1", {"partitions": [0]}),
            (12.0, "owns", "c2", {"partitions": [1]}),
            *consumed(0, "c1", 0.0, 14.0),
            *consumed(1, "c1", 0.0, 10.9),
            *consumed(1, "c2", 12.1, 14.0),
            (20.0, "revoke", "c1", {"partitions": [0]}),  # shutdown, after the window
        ]
    ).events
    rows = {r["partition"]: r for r in rebalance_pauses(incremental, 10.0, 13.0, 2)}
    assert not rows[0]["stopped"] and rows[0]["paused_s"] == 0.0
    assert rows[1]["stopped"] and rows[1]["moved"]


class _Member:
    def __init__(self, *owned: int) -> None:
        self.owned = set(owned)


def test_balanced() -> None:
    assert balanced([_Member(0, 1, 2), _Member(3, 4, 5)], 6)
    assert not balanced([_Member(0, 1, 2, 3), _Member(4, 5)], 6)  # uneven
    assert not balanced([_Member(0, 1, 2), _Member(2, 3, 4)], 6)  # 2 twice, 5 nowhere
    assert balanced([_Member(p) for p in range(6)] + [_Member()], 6)  # the 7th is idle
