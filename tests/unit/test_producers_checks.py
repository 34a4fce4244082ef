"""Pure parts of lab 02 and of ``lab_env.producing``: counting what a topic holds, judging a
learner's report and exception, parsing Kafka's tools and librdkafka's statistics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab_env.checks import LabCheckError
from lab_env.errors import LabError
from lab_env.lab_checks.producers import (
    Tally,
    _require_exactly_once,
    exception_text,
    names_size_error,
    order_events,
    report_counts,
    tally,
)
from lab_env.producing import (
    Run,
    log_dir_sizes,
    order_event,
    order_values,
    parse_producer_state,
    paused_follower,
    percentile,
    produce_requests,
    records_resent,
)


def stored(events: list[dict[str, Any]], partition: int = 0) -> list[dict[str, Any]]:
    """``read_all`` rows for ``events`` written in this order to one partition."""
    return [
        {"partition": partition, "offset": i, "key": e["order_id"], "value": json.dumps(e)}
        for i, e in enumerate(events)
    ]


# -- tally --------------------------------------------------------------------------------------


def test_tally_of_a_perfect_topic_is_clean() -> None:
    events = order_events(50)
    found = tally(stored(events), events)
    assert (found.records, found.duplicates, found.missing) == (50, 0, [])
    assert found.unexpected == found.wrong_keys == found.out_of_order == []


def test_tally_counts_duplicates_and_missing_events() -> None:
    events = order_events(10)
    written = [*events[:8], events[2], events[2], events[5]]  # 8 and 9 never arrived
    found = tally(stored(written), events)
    assert found.duplicates == 3
    assert found.duplicated_events == 2
    assert found.missing == [8, 9]


def test_tally_finds_reordering_within_an_order_but_not_across_orders() -> None:
    events = [order_event(i, orders=2) for i in range(6)]  # o-0: 0, 2, 4; o-1: 1, 3, 5
    across = [events[1], events[0], events[3], events[2], events[5], events[4]]
    assert tally(stored(across), events).out_of_order == []
    within = [events[0], events[4], events[2], events[1], events[3], events[5]]
    assert tally(stored(within), events).out_of_order == ["o-0"]


def test_tally_judges_order_by_offset_per_partition() -> None:
    events = [order_event(i, orders=1) for i in range(4)]
    rows = stored(events)
    rows.reverse()  # read back in any order: the offsets decide
    assert tally(rows, events).out_of_order == []


def test_tally_names_foreign_records_and_wrong_keys() -> None:
    events = order_events(3)
    rows = stored(events)
    rows[0]["key"] = None
    rows.append({"partition": 0, "offset": 3, "key": "x", "value": "not json"})
    rows.append({"partition": 0, "offset": 4, "key": "x", "value": json.dumps({"event_id": 99})})
    found = tally(rows, events)
    assert found.wrong_keys == [0]
    assert len(found.unexpected) == 2


# -- the learner's report and exceptions ----------------------------------------------------------


def test_report_counts_reads_a_good_report() -> None:
    assert report_counts({"delivered": 3, "failed": []}) == (3, [])
    assert report_counts({"delivered": 0, "failed": ("a",)}) == (0, ["a"])


@pytest.mark.parametrize(
    ("report", "fragment"),
    [
        (None, "return a dict"),
        ({"delivered": 3}, "return a dict"),
        ({"delivered": "3", "failed": []}, "an int"),
        ({"delivered": True, "failed": []}, "an int"),
        ({"delivered": 3, "failed": "none"}, "a list"),
    ],
)
def test_report_counts_says_what_is_wrong(report: object, fragment: str) -> None:
    with pytest.raises(LabCheckError, match=fragment):
        report_counts(report)


def test_size_errors_are_recognised_by_name_or_words() -> None:
    assert names_size_error('KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str="Broker: ..."}')
    assert names_size_error("Broker: Message size too large")
    assert not names_size_error("KafkaError{code=REQUEST_TIMED_OUT}")


def test_exception_text_follows_the_cause() -> None:
    try:
        try:
            raise ValueError("MSG_SIZE_TOO_LARGE")
        except ValueError as inner:
            raise RuntimeError("2 deliveries failed") from inner
    except RuntimeError as exc:
        text = exception_text(exc)
    assert "2 deliveries failed" in text
    assert names_size_error(text)


# -- producing helpers ---------------------------------------------------------------------------


def test_order_events_are_deterministic_and_small() -> None:
    assert order_values(20) == order_values(20)
    assert order_values(5, seed=1) != order_values(5)
    sizes = [len(v) for v in order_values(200)]
    assert 120 < sum(sizes) / len(sizes) < 300
    assert [e["event_id"] for e in order_events(4)] == [0, 1, 2, 3]
    assert order_event(1)["order_id"] == order_event(501)["order_id"] == "o-1"


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.95) == 95
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_run_row_has_rates_and_percentiles() -> None:
    run = Run(config={"linger.ms": 5}, records=4, delivered=4, seconds=2.0, delivered_bytes=4e6)
    run.latencies_ms = [1.0, 2.0, 3.0, 4.0]
    row = run.row()
    assert row["linger.ms"] == 5
    assert (row["records/s"], row["MB/s"], row["p50 ms"]) == (2, 2.0, 2.0)
    assert "produce requests" not in row  # no statistics were asked for


STATS = {
    "brokers": {
        "a:9092/1": {"req": {"Produce": 4, "Metadata": 2}, "txretries": 0},
        "a:9093/2": {"req": {"Produce": 1}},
    },
    "topics": {
        "t": {
            "partitions": {
                "0": {"msgs": 100, "txmsgs": 500},
                "1": {"msgs": 10, "txmsgs": 10},
                "-1": {"msgs": 0, "txmsgs": 0},
            }
        }
    },
}


def test_statistics_give_requests_and_resent_records() -> None:
    assert produce_requests(STATS) == 5
    assert records_resent(STATS) == 400
    assert produce_requests({}) == records_resent({}) == 0


def test_describe_producers_output_is_parsed() -> None:
    text = (
        "ProducerId\tProducerEpoch\tLatestCoordinatorEpoch\tLastSequence\tLastTimestamp\t"
        "CurrentTransactionStartOffset\t\n"
        "115001    \t0            \t-1                    \t19999       \t1795766271430\t"
        "None                         \t\n"
    )
    assert parse_producer_state(text) == [
        {"producer_id": 115001, "epoch": 0, "last_sequence": 19999}
    ]
    assert parse_producer_state("ProducerId\tProducerEpoch\tLastSequence\t\n") == []
    assert parse_producer_state("") == []


def test_log_dir_sizes_take_one_replica_per_partition() -> None:
    described = {
        "brokers": [
            {
                "broker": b,
                "logDirs": [
                    {
                        "partitions": [
                            {"partition": "a.b-0", "size": 100, "isFuture": False},
                            {"partition": "a.b-1", "size": 50 + b, "isFuture": False},
                            {"partition": "other-0", "size": 7, "isFuture": False},
                        ]
                    }
                ],
            }
            for b in (1, 2, 3)
        ]
    }
    assert log_dir_sizes(described, ["a.b", "missing"]) == {"a.b": 153, "missing": 0}


def test_a_long_pause_is_refused_before_touching_the_cluster() -> None:
    with pytest.raises(LabError, match="0-5 s"), paused_follower(None, "t", seconds=30):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize(
    ("found", "fragment"),
    [
        (Tally(duplicates=3, duplicated_events=2), "is enable.idempotence on?"),
        (Tally(missing=[4, 5]), "flush()"),
        (Tally(wrong_keys=[1]), "key=event['order_id']"),
        (Tally(unexpected=["x"]), "json.dumps(event)"),
    ],
)
def test_exactly_once_failures_say_how_to_fix_them(found: Tally, fragment: str) -> None:
    with pytest.raises(LabCheckError) as raised:
        _require_exactly_once(found, order_events(6), "t")
    assert fragment in str(raised.value)
    _require_exactly_once(Tally(records=6), order_events(6), "t")  # a clean tally passes
