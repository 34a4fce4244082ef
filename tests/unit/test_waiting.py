"""lab_env.waiting: the lab's one way to wait for a condition."""

from __future__ import annotations

from itertools import islice

import pytest
from confluent_kafka import KafkaError, KafkaException

from lab_env.errors import LabError
from lab_env.waiting import NotYet, pauses, time_until, until_answered, wait_for


def kafka_error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


def test_a_probe_that_fails_for_a_moment_is_waited_out() -> None:
    answers = iter([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, True])

    def probe() -> bool:
        answer = next(answers)
        if answer is True:
            return True
        raise kafka_error(answer)

    assert time_until("the group to settle", probe, timeout=5, interval=0.01) >= 0


def test_the_probes_answer_is_returned() -> None:
    answers = iter([None, 0, {"leader": 2}])
    assert wait_for("a leader", lambda: next(answers), timeout=5, interval=0.01) == {"leader": 2}


def test_a_probe_that_keeps_failing_names_its_last_error() -> None:
    def probe() -> bool:
        raise kafka_error(KafkaError.NOT_COORDINATOR)

    with pytest.raises(
        LabError, match=r"Timed out after 0\.2 s waiting for the group to settle \(last error: "
    ):
        wait_for("the group to settle", probe, timeout=0.2, interval=0.01)


def test_a_timeout_names_the_last_reason_and_the_hint() -> None:
    with pytest.raises(LabError) as raised:
        wait_for(
            "every broker",
            lambda: NotYet("kafka-2 at offset 120"),
            timeout=0.1,
            interval=0.01,
            hint="See `lab status`.",
        )
    assert str(raised.value) == (
        "Timed out after 0.1 s waiting for every broker (kafka-2 at offset 120). See `lab status`."
    )


def test_errors_that_do_not_pass_are_raised_at_once() -> None:
    calls = []

    def denied() -> bool:
        calls.append(1)
        raise kafka_error(KafkaError.TOPIC_AUTHORIZATION_FAILED)

    with pytest.raises(KafkaException):
        wait_for("a record", denied, timeout=5, interval=0.01)
    assert len(calls) == 1

    def bug() -> bool:
        raise ValueError("a bug in the probe")

    with pytest.raises(ValueError, match="a bug"):
        wait_for("anything", bug, timeout=5)


def test_fail_ends_the_wait_early_with_its_reason() -> None:
    with pytest.raises(LabError, match=r"^kafka-2 exited$"):
        wait_for("kafka-2", lambda: False, timeout=5, fail=lambda: "kafka-2 exited")


def test_until_answered_returns_falsy_answers_and_asks_again_on_transient_errors() -> None:
    answers = iter([kafka_error(KafkaError.NOT_COORDINATOR), {}])

    def ask() -> dict[str, int]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert until_answered("committed offsets", ask, timeout=5, interval=0.01) == {}


def test_pauses_are_fixed_or_double_up_to_their_bound() -> None:
    assert list(islice(pauses(0.5), 4)) == [0.5, 0.5, 0.5, 0.5]
    assert list(islice(pauses(0.02, 0.5), 7)) == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
    assert list(islice(pauses(1.0, 0.5), 3)) == [1.0, 1.0, 1.0]  # a bound below the start


def test_a_backed_off_wait_probes_less_and_still_meets_its_deadline() -> None:
    calls = []

    def never() -> bool:
        calls.append(1)
        return False

    with pytest.raises(LabError, match=r"Timed out after 1 s"):
        wait_for("nothing", never, timeout=1, interval=0.01, max_interval=0.2)
    # 0.01 + 0.02 + 0.04 + 0.08 + 0.16 + 0.2 * 3 = 0.91 s: about ten probes, not a hundred
    assert 2 <= len(calls) <= 12
