"""Asking the cluster again while its answer is an error known to pass (a coordinator moving, a
broker that has not applied a new topic yet), within a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


def error_code(exc: KafkaException) -> int | None:
    """The KafkaError code a KafkaException carries, if it carries one."""
    return exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None


def until(deadline: float, transient: Collection[int], call: Callable[[], T], interval: float) -> T:
    """``call()``, called again after ``interval`` while it raises a KafkaException whose code
    is in ``transient`` and ``deadline`` (time.monotonic()) has not passed; any other error, or
    the last one, is raised."""
    while True:
        try:
            return call()
        except KafkaException as e:
            if error_code(e) not in transient or time.monotonic() >= deadline:
                raise
        time.sleep(interval)
