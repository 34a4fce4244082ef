"""The tuning engine's pure parts: settings checked in sentences, payloads, keys, tool output."""

from __future__ import annotations

from collections import Counter

import pytest

from lab_env import tuning
from lab_env.bench_cli import settings_from
from lab_env.tuning import InvalidSettings, ProduceSpec

PRODUCER_PERF = """\
171530 records sent, 34217.0 records/sec (3.26 MB/sec), 1284.7 ms avg latency, \
2428.0 ms max latency.

1000000 records sent, 74150.971378 records/sec (7.07 MB/sec), 2579.50 ms avg latency, \
4018.00 ms max latency, 2689 ms 50th, 3701 ms 95th, 3833 ms 99th, 3991 ms 99.9th.
"""
CONSUMER_PERF = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-27 11:24:08:689, 2026-11-27 11:24:11:747, 0.0954, 0.0312, 1000, 327.0111, 2610, 448, \
0.2129, 2232.1429
"""


def test_defaults_are_idempotent_with_acks_all() -> None:
    settings = tuning.producer_settings()
    assert settings["acks"] == "all"
    assert settings["enable.idempotence"] is True
    assert settings["max.in.flight.requests.per.connection"] == 5


def test_values_from_text_are_normalised() -> None:
    settings = tuning.producer_settings(
        {"acks": "-1", "enable.idempotence": "false", "linger.ms": "20", "batch.size": "65536"}
    )
    assert settings["acks"] == "all"
    assert settings["enable.idempotence"] is False
    assert settings["linger.ms"] == 20
    assert settings["batch.size"] == 65536


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"acks": "1"}, r"enable\.idempotence=true needs acks=all \(got acks=1\)"),
        ({"acks": "0"}, r"needs acks=all \(got acks=0\)"),
        (
            {"max.in.flight.requests.per.connection": 6},
            r"at most 5 requests in flight.*got max\.in\.flight\.requests\.per\.connection=6",
        ),
        ({"acks": "2"}, r"acks must be 0, 1 or all; got '2'"),
        ({"linger.ms": -1}, r"linger\.ms must be a number from 0 to 900,000; got -1"),
        ({"linger.ms": "soon"}, r"linger\.ms must be a whole number; got 'soon'"),
        ({"batch.size": 0}, r"batch\.size must be a number from 1"),
        ({"compression.type": "brotli"}, r"compression\.type must be one of none, gzip"),
        ({"enable.idempotence": "yes"}, r"enable\.idempotence must be true or false"),
    ],
)
def test_refusals_are_sentences(overrides: dict[str, object], sentence: str) -> None:
    with pytest.raises(InvalidSettings, match=sentence):
        tuning.producer_settings(overrides)


def test_acks_1_is_fine_without_idempotence() -> None:
    settings = tuning.producer_settings({"acks": "1", "enable.idempotence": False})
    assert settings["acks"] == "1"


def test_many_in_flight_is_fine_without_idempotence() -> None:
    settings = tuning.producer_settings(
        {"enable.idempotence": False, "max.in.flight.requests.per.connection": 100}
    )
    assert settings["max.in.flight.requests.per.connection"] == 100


def test_consumer_settings() -> None:
    assert tuning.consumer_settings() == {"fetch.min.bytes": 1, "fetch.wait.max.ms": 500}
    assert tuning.consumer_settings({"fetch.min.bytes": "65536"})["fetch.min.bytes"] == 65536
    with pytest.raises(InvalidSettings, match=r"fetch\.wait\.max\.ms must be a number"):
        tuning.consumer_settings({"fetch.wait.max.ms": -5})


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        ("records", 0, "records must be a number from 1"),
        (
            "message_bytes",
            2_000_000,
            r"message size \(bytes\) must be a number from 1 to 1,000,000",
        ),
        ("partitions", 0, "partitions must be"),
        ("processes", 9, "processes must be"),
        ("produce_batch", -1, r"produce_batch size \(0: produce\(\) per record\)"),
        ("keys", "zipf", "key distribution must be one of none, uniform, skewed; got 'zipf'"),
        ("payload", "avro", "payload must be one of random, orders"),
    ],
)
def test_spec_refusals(field: str, value: object, sentence: str) -> None:
    with pytest.raises(InvalidSettings, match=sentence):
        ProduceSpec(**{field: value}).check()  # type: ignore[arg-type]


def test_random_payload_is_letters_of_the_size_and_repeatable() -> None:
    spec = ProduceSpec(message_bytes=100)
    values = tuning.payloads(spec, 10_000)
    assert len(values) == 10_000
    assert {len(v) for v in values} == {100}
    assert set(b"".join(values)) <= set(range(65, 91))
    assert len(set(values)) == tuning.PAYLOAD_POOL  # distinct values, cycled
    assert values == tuning.payloads(spec, 10_000)
    assert tuning.payloads(spec, 10, offset=5) == values[5:15]


def test_order_payload_is_json() -> None:
    values = tuning.payloads(ProduceSpec(payload="orders"), 50)
    assert all(v.startswith(b"{") and b'"order_id"' in v for v in values)


def test_key_distributions() -> None:
    assert tuning.keys(ProduceSpec(keys="none"), 100) is None
    uniform = Counter(tuning.keys(ProduceSpec(keys="uniform"), 50_000))
    skewed = Counter(tuning.keys(ProduceSpec(keys="skewed"), 50_000))
    assert max(uniform.values()) < 120  # about 50 each of 1000 keys
    assert skewed.most_common(1)[0][1] > 5_000  # 1/H(1000) of the records: about 13%


def test_producer_perf_summary_is_the_last_total_line() -> None:
    figures = tuning.parse_producer_perf(PRODUCER_PERF)
    assert figures["records"] == 1_000_000
    assert figures["records/s"] == 74151
    assert figures["MB/s"] == round(7.07 * 1.048576, 2)  # the tool's MB are MiB
    assert (figures["p50 ms"], figures["p95 ms"], figures["p99 ms"]) == (2689, 3701, 3833)


def test_producer_perf_without_summary_says_so() -> None:
    with pytest.raises(tuning.LabError, match="printed no summary line"):
        tuning.parse_producer_perf("Exception in thread main ...")


def test_consumer_perf_uses_the_fetch_rate() -> None:
    figures = tuning.parse_consumer_perf(CONSUMER_PERF)
    assert figures["records"] == 1000
    assert figures["records/s"] == 2232  # without the group join
    assert figures["records/s with join"] == 327


def test_cli_settings() -> None:
    assert settings_from(["linger.ms=20", " acks = all "]) == {"linger.ms": "20", "acks": "all"}
    for bad in ("linger.ms", "=5", "acks="):
        with pytest.raises(InvalidSettings, match="--set takes KEY=VALUE"):
            settings_from([bad])
