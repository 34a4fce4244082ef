"""The case study benchmark's pure part: the steady ending rate."""

from __future__ import annotations

import pytest

from lab_env.benchmarks.orders import steady_rate


def test_steady_rate_is_the_offered_rate_when_the_pipeline_keeps_up() -> None:
    ends = [1_000 + i * 10 for i in range(1_000)]  # 100 per second, one every 10 ms
    ends += [50_000, 90_000]  # two stragglers do not drag the rate down
    assert steady_rate(ends) == pytest.approx(100, rel=0.01)


def test_steady_rate_of_too_few_endings_is_zero() -> None:
    assert steady_rate([]) == 0.0
    assert steady_rate([5.0] * 50) == 0.0  # all at once: no interval to divide by
