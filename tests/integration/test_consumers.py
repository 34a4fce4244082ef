"""Lab 03's checks on the real cluster: right workers pass, each typical mistake fails with the
sentence that names it. A check that cannot fail is a defect, so the failures are tested too."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition

from lab_env.api import Lab
from lab_env.checks import LabCheckError
from lab_env.lab_checks.consumers import check_commits_follow_processing, check_rebalances
from tests.tiers import SERIAL

pytestmark = pytest.mark.cluster

MANUAL = {"enable.auto.commit": False}


def commit_after_processing(consumer, topic, process, stop) -> None:
    """The lab's solution: commit after each batch, on_revoke commits, on_lost forgets."""
    done: dict[int, int] = {}

    def commit(partitions) -> None:
        offsets = [TopicPartition(topic, p, done.pop(p)) for p in partitions if p in done]
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)

    def on_revoke(consumer, partitions) -> None:
        with contextlib.suppress(KafkaException):
            commit([tp.partition for tp in partitions])
        for tp in partitions:
            done.pop(tp.partition, None)

    def on_lost(consumer, partitions) -> None:
        for tp in partitions:
            done.pop(tp.partition, None)

    consumer.subscribe([topic], on_revoke=on_revoke, on_lost=on_lost)
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=100, timeout=0.2):
                if msg.error() is None:
                    process(msg)
                    done[msg.partition()] = msg.offset() + 1
            try:
                commit(list(done))
            except KafkaException:
                done.clear()
        commit(list(done))
    finally:
        consumer.close()


def store_after_processing(consumer, topic, process, stop) -> None:
    """librdkafka's idiom: enable.auto.offset.store=false, store_offsets after processing."""
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=100, timeout=0.2):
                if msg.error() is None:
                    process(msg)
                    consumer.store_offsets(message=msg)
    finally:
        consumer.close()


def naive(consumer, topic, process, stop) -> None:
    """The lab's stub: the client's defaults, auto-commit of whatever poll() returned."""
    consumer.subscribe([topic])
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            process(msg)
    consumer.close()


def commit_before_processing(consumer, topic, process, stop) -> None:
    consumer.subscribe([topic])
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            consumer.commit(message=msg, asynchronous=False)
            process(msg)
    consumer.close()


def every_50_without_on_revoke(consumer, topic, process, stop) -> None:
    consumer.subscribe([topic])
    count = 0
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            process(msg)
            count += 1
            if count % 50 == 0:
                with contextlib.suppress(KafkaException):
                    consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def keeps_revoked_offsets(consumer, topic, process, stop) -> None:
    done: dict[int, int] = {}
    consumer.subscribe([topic], on_revoke=lambda c, partitions: None)
    try:
        while not stop.is_set():
            for msg in consumer.consume(num_messages=20, timeout=0.2):
                if msg.error() is None:
                    process(msg)
                    done[msg.partition()] = msg.offset() + 1
            if done:
                offsets = [TopicPartition(topic, p, o) for p, o in done.items()]
                with contextlib.suppress(KafkaException):
                    consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def commit_errors_kill_it(consumer, topic, process, stop) -> None:
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            batch = [m for m in consumer.consume(num_messages=100, timeout=0.2) if not m.error()]
            for msg in batch:
                process(msg)
            if batch:
                consumer.commit(asynchronous=False)  # raises once the partitions are lost
    finally:
        consumer.close()


Work = Callable[..., None]


@pytest.mark.parametrize(
    ("config", "work"),
    [
        (MANUAL, commit_after_processing),
        ({"enable.auto.offset.store": False}, store_after_processing),
    ],
    ids=["manual-commit", "store-offsets"],
)
# The checks stall a worker 8 s against max.poll.interval.ms = 6 s: a busy neighbour moves that.
@SERIAL
def test_at_least_once_workers_pass(lab: Lab, config: dict[str, Any], work: Work) -> None:
    check_commits_follow_processing(lab, config, work)
    check_rebalances(lab, config, work)


@pytest.mark.parametrize(
    ("config", "work", "fragment"),
    [
        ({}, naive, "had not been processed"),
        (MANUAL, commit_before_processing, "had not been processed"),
    ],
    ids=["auto-commit", "commit-first"],
)
def test_commits_ahead_of_processing_fail_the_crash_check(
    lab: Lab, config: dict[str, Any], work: Work, fragment: str
) -> None:
    with pytest.raises(LabCheckError, match=fragment):
        check_commits_follow_processing(lab, config, work)


@pytest.mark.parametrize(
    ("config", "work", "fragment"),
    [
        ({}, naive, "had not been processed"),
        (MANUAL, every_50_without_on_revoke, "processed twice although no worker had failed"),
        (MANUAL, keeps_revoked_offsets, "after they were revoked"),
        (MANUAL, commit_errors_kill_it, "raised"),
    ],
    ids=["auto-commit", "no-on-revoke", "stale-offsets", "commit-errors"],
)
@SERIAL  # as above
def test_rebalance_mistakes_fail_the_rebalance_check(
    lab: Lab, config: dict[str, Any], work: Work, fragment: str
) -> None:
    with pytest.raises(LabCheckError, match=fragment):
        check_rebalances(lab, config, work)


def test_bad_input_is_a_sentence(lab: Lab) -> None:
    with pytest.raises(LabCheckError, match="must be a dict"):
        check_commits_follow_processing(lab, "enable.auto.commit=false", naive)  # type: ignore[arg-type]
