"""Lab 07's pure parts: settings that survive a broker loss, and counting a numbered stream."""

from __future__ import annotations

import json

import pytest

from lab_env.checks import LabCheckError
from lab_env.lab_checks.replication import check_settings, producer_problems, topic_problems
from lab_env.replication import (
    Deliveries,
    consumer_values,
    count,
    first_ack_after,
    numbers,
    parse_events,
    producer_events,
)

GOOD_TOPIC = {"partitions": 3, "replication_factor": 3, "min.insync.replicas": 2}
GOOD_PRODUCER = {"acks": "all", "enable.idempotence": True}


def test_good_settings_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert topic_problems(GOOD_TOPIC) == []
    assert producer_problems(GOOD_PRODUCER) == []
    assert producer_problems({"enable.idempotence": "true", "acks": -1}) == []
    check_settings(GOOD_TOPIC, GOOD_PRODUCER)
    assert "PASSED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"replication_factor": 1}, "use 3"),
        ({"replication_factor": 2}, "use 3"),
        ({"replication_factor": 4}, "at most 3"),
        ({"min.insync.replicas": 1}, "use 2"),
        ({"min.insync.replicas": 3}, "NOT_ENOUGH_REPLICAS"),
        ({"partitions": 0}, "at least 1"),
        ({"partitions": "many"}, "whole number"),
    ],
)
def test_topic_problems_name_the_setting(change: dict[str, object], fragment: str) -> None:
    problems = topic_problems({**GOOD_TOPIC, **change})
    assert len(problems) == 1 and fragment in problems[0]


def test_topic_shape_is_explained() -> None:
    assert "exactly the keys" in topic_problems({"partitions": 3})[0]
    assert "exactly the keys" in topic_problems([3, 3, 2])[0]


@pytest.mark.parametrize(
    ("producer", "fragment"),
    [
        ({"acks": "1", "enable.idempotence": True}, "acks='all'"),
        ({"acks": 0, "enable.idempotence": True}, "acks='all'"),
        ({"acks": "all"}, "enable.idempotence"),
        ({"acks": "all", "enable.idempotence": False}, "enable.idempotence"),
        ({**GOOD_PRODUCER, "message.timeout.ms": 5000}, "at least 30000"),
        ({**GOOD_PRODUCER, "delivery.timeout.ms": "soon"}, "at least 30000"),
    ],
)
def test_producer_problems_name_the_setting(producer: dict[str, object], fragment: str) -> None:
    problems = producer_problems(producer)
    assert len(problems) == 1 and fragment in problems[0]


def test_the_stub_fails_the_settings_check_with_every_reason() -> None:
    stub_topic = {"partitions": 3, "replication_factor": 1, "min.insync.replicas": 1}
    with pytest.raises(LabCheckError) as raised:
        check_settings(stub_topic, {"acks": "1", "linger.ms": 5})
    message = str(raised.value)
    for fragment in ("replication_factor=1", "min.insync.replicas=1", "acks='1'", "idempotence"):
        assert fragment in message
    assert "must be a dict" in producer_problems("acks=all")[0]


def test_count_finds_lost_duplicated_and_unacknowledged() -> None:
    tally = count(sent=6, acked=[0, 1, 2, 3], failed=[4, 5], read=[0, 1, 1, 3, 5])
    assert tally.lost == 1 and tally.lost_examples == (2,)
    assert tally.duplicated == 1
    assert tally.unacknowledged_present == 1  # 5 failed, yet it is there
    assert tally.row()["acknowledged"] == 4 and "lost_examples" not in tally.row()
    clean = count(3, [0, 1, 2], [], [2, 0, 1])
    assert (clean.lost, clean.duplicated, clean.failed) == (0, 0, 0)


def stream(epoch: int | None) -> Deliveries:
    """Records 0-3 acknowledged before a fault at 1.0 s, 4-5 after it."""
    run = Deliveries(fault_at=1.0, fault_after=3, producer_id=7, producer_epoch=epoch)
    run.acked = {n: (0.5 if n < 4 else 2.0, 0) for n in range(6)}
    return run


def test_only_an_epoch_bump_explains_duplicates_of_records_in_flight_at_the_fault() -> None:
    assert stream(0).acked_before_fault() == {0, 1, 2, 3}
    assert stream(0).epoch_bump_explains([0, 1, 2, 3, 4, 5])  # no duplicate: nothing to explain
    assert not stream(0).epoch_bump_explains([0, 1, 2, 3, 4, 4, 5])  # same epoch: a real fault
    assert not stream(None).epoch_bump_explains([0, 1, 2, 3, 4, 4, 5])  # not idempotent
    assert stream(1).epoch_bump_explains([0, 1, 2, 3, 4, 4, 5])  # resent after the bump
    assert not stream(1).epoch_bump_explains([0, 1, 1, 2, 3, 4, 5])  # acknowledged before it
    assert Deliveries(producer_epoch=1).acked_before_fault() == set()  # no fault: all, none here


def test_numbers_with_and_without_the_verifiable_prefix() -> None:
    values = ["0", b"1", "1.7", "1.8", "2.9", "x", None, "12"]
    assert numbers(values) == [0, 1, 12]
    assert numbers(values, prefix="1") == [7, 8]


def test_verifiable_tool_output_is_parsed() -> None:
    lines = [
        "SLF4J: a warning that is not JSON",
        json.dumps({"name": "startup_complete"}),
        json.dumps({"name": "producer_send_success", "value": "1.0", "partition": 0}),
        json.dumps({"name": "producer_send_success", "value": "1.1", "partition": 1}),
        json.dumps(
            {
                "name": "producer_send_error",
                "value": "1.2",
                "exception": "class org.apache.kafka.common.errors.TimeoutException",
            }
        ),
        "{not json",
        json.dumps({"name": "tool_data", "sent": 3, "acked": 2}),
        json.dumps({"name": "record_data", "value": "1.0"}),
    ]
    events = parse_events("\n".join(lines))
    assert len(events) == 6
    witness = producer_events(events, "1")
    assert witness == {"acked": [0, 1], "failed": [2], "errors": {"TimeoutException": 1}, "sent": 3}
    assert consumer_values(events) == ["1.0"]


class FakeMessage:
    def __init__(self, value: str, partition: int) -> None:
        self._value, self._partition = value.encode(), partition

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition


def test_first_ack_after_the_fault_counts_only_later_records() -> None:
    run = Deliveries(started=0.0)
    run.acked = {0: (0.1, 0), 1: (0.2, 1), 2: (5.05, 0), 3: (9.2, 0), 4: (7.0, 1)}
    run.fault_at, run.fault_after = 5.0, 2  # record 2 was acknowledged just after the fault
    assert first_ack_after(run) == [
        {"partition": 0, "first_ack_after_fault_s": 4.2},
        {"partition": 1, "first_ack_after_fault_s": 2.0},
    ]
    assert first_ack_after(Deliveries()) == []


def test_delivery_reports_are_recorded() -> None:
    run = Deliveries()

    class Error:
        def name(self) -> str:
            return "NOT_ENOUGH_REPLICAS"

    run.on_delivery(None, FakeMessage("3", 2))  # type: ignore[arg-type]
    run.on_delivery(Error(), FakeMessage("4", 2))  # type: ignore[arg-type]
    assert set(run.acked) == {3} and run.acked[3][1] == 2
    assert run.failed == {4: "NOT_ENOUGH_REPLICAS"}
    assert run.timeline()[0]["record"] == 3
