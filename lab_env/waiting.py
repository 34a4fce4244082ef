"""Waiting for a condition: the lab's one way to do it, and its one list of transient Kafka errors.

    wait_for("every partition back in sync", in_sync, timeout=60)
    seconds = time_until("the group to settle", lambda: balanced(members, 6), timeout=30)
    offsets = until_answered("the group's committed offsets", ask, timeout=10)

A probe returns something truthy when the condition holds (that value is returned), something
falsy while it does not (``NotYet("kafka-2 is at offset 120 of 125")`` says why), or raises. A
transient Kafka error (``TRANSIENT``: a coordinator, a leader or the controller moving, a request
that did not come back) counts as "not yet"; any other exception is raised at once. When the
deadline passes, a WaitTimeout (a LabError) names what was waited for and the last reason or
error seen; ``eventually`` answers True or False instead, for a check whose own message explains.

Nothing here retries on top of a mechanism that is wrong: a condition that should already hold
(a topic just created, an ACL just granted) is made to hold by the metadata barrier
(``lab_env.metadata_barrier``), not waited for with another loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from lab_env.errors import LabError

T = TypeVar("T")

# Errors a cluster that works gives for a moment while something moves; asking again after a
# short pause gets the answer. Nothing that means "no such thing" or "not allowed" is here.
TRANSIENT = frozenset(
    {
        # A group's coordinator is the leader of its __consumer_offsets partition: it moves when
        # that leader does (a broker stops, or the preferred-leader election moves it home).
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        # A partition's leader is moving, or a new leader's high watermark has not caught up.
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.OFFSET_NOT_AVAILABLE,
        # The KRaft controller is moving.
        KafkaError.NOT_CONTROLLER,
        # The request did not come back: the broker it went to stopped, or is busy.
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)


def error_code(exc: BaseException) -> int | None:
    """The KafkaError code a KafkaException carries, if it carries one."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


def describe(exc: BaseException) -> str:
    """A KafkaException's own sentence (``KafkaError.str()``), or the exception's text."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].str()
    return str(exc) or type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a Kafka error that passes by itself (``TRANSIENT``)."""
    return error_code(exc) in TRANSIENT


class WaitTimeout(LabError):
    """A condition that did not hold in time; the message says what was waited for."""


@dataclass(frozen=True)
class NotYet:
    """A probe's "not yet", with the reason a timeout should report."""

    reason: str

    def __bool__(self) -> bool:
        return False


def pauses(interval: float, max_interval: float | None = None) -> Iterator[float]:
    """The pauses between a wait's probes: ``interval`` each time, or, with ``max_interval``,
    ``interval`` doubling up to ``max_interval``."""
    pause = interval
    while True:
        yield pause
        if max_interval is not None:
            pause = min(pause * 2, max(max_interval, interval))


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.1,
    max_interval: float | None = None,
    fail: Callable[[], str | None] | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
    hint: str = "",
) -> T:
    """Call ``probe`` every ``interval`` s until it returns something truthy, and return that.

    A falsy answer, or an exception ``transient`` accepts, is "not yet". ``fail`` may end the
    wait early with a reason (a process that died). After ``timeout`` s, a LabError names
    ``what``, the last reason or error, and ``hint``.

    With ``max_interval``, the pause doubles after each probe up to it: for a probe that costs
    the thing it waits on (a scrape of a broker's exporter makes the broker collect every metric),
    a short wait stays short and a long one does not load the machine it is waiting for.
    """
    deadline = time.monotonic() + timeout
    last = ""
    schedule = pauses(interval, max_interval)
    while True:
        try:
            answer = probe()
        except Exception as exc:
            if not transient(exc):
                raise
            last = f"last error: {describe(exc)}"
        else:
            if answer:
                return answer
            if isinstance(answer, NotYet):
                last = answer.reason
        reason = fail() if fail is not None else None
        if reason:
            raise LabError(reason)
        if time.monotonic() >= deadline:
            detail = f" ({last})" if last else ""
            tail = f" {hint}" if hint else ""
            raise WaitTimeout(f"Timed out after {timeout:g} s waiting for {what}{detail}.{tail}")
        time.sleep(min(next(schedule), max(0.0, deadline - time.monotonic())))


def eventually(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Whether ``condition`` holds within ``timeout`` s: for a caller whose own message (a lab
    check's) says what it means when it does not."""
    try:
        wait_for("the condition", condition, timeout, interval=interval)
    except WaitTimeout:
        return False
    return True


def time_until(what: str, condition: Callable[[], object], timeout: float, interval=0.05) -> float:
    """``wait_for`` that returns the seconds the condition took to hold."""
    start = time.monotonic()
    wait_for(what, condition, timeout, interval=interval)
    return time.monotonic() - start


@dataclass(frozen=True)
class _Answer:
    value: object

    def __bool__(self) -> bool:
        return True


def until_answered(what: str, call: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """``call()``'s result, asked again while it raises a transient Kafka error (a coordinator
    moving), for at most ``timeout`` s. Only for requests that change nothing."""
    return wait_for(what, lambda: _Answer(call()), timeout, interval=interval).value  # type: ignore[return-value]
