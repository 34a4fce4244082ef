"""Lag arithmetic (the exporter's live behaviour is in tests/integration/test_lag_and_alerts.py)."""

from __future__ import annotations

import pytest

from lab_env.lag_exporter import PartitionLag


@pytest.mark.parametrize(
    ("committed", "start", "end", "lag"),
    [
        (40, 0, 100, 60),  # committed 40 of 100
        (100, 0, 100, 0),  # caught up
        (-1, 0, 100, 100),  # never committed: everything from the start
        (-1, 30, 100, 70),  # never committed, retention removed the first 30
        (120, 0, 100, 0),  # a commit beyond the end (topic recreated) is not negative lag
    ],
)
def test_lag(committed: int, start: int, end: int, lag: int) -> None:
    assert PartitionLag("g", "t", 0, committed, start, end).lag == lag
