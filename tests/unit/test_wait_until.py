"""consuming.wait_until: a probe that fails for a moment (a coordinator moving) is "not yet"."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from lab_env.consuming import wait_until
from lab_env.errors import LabError


def test_a_probe_that_fails_for_a_moment_is_waited_out() -> None:
    answers = iter([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, True])

    def probe() -> bool:
        answer = next(answers)
        if answer is True:
            return True
        raise KafkaException(KafkaError(answer))

    assert wait_until("the group to settle", probe, timeout=5, interval=0.01) >= 0


def test_a_probe_that_keeps_failing_names_its_last_error() -> None:
    def probe() -> bool:
        raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))

    with pytest.raises(LabError, match=r"did not happen within 0\.2 s \(last error: .*oordinator"):
        wait_until("the group to settle", probe, timeout=0.2, interval=0.01)


def test_other_errors_are_not_swallowed() -> None:
    def probe() -> bool:
        raise ValueError("a bug in the probe")

    with pytest.raises(ValueError, match="a bug"):
        wait_until("anything", probe, timeout=5)
