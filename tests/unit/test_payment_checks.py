"""Lab 11's decide check (pure): the lab's own payment decision passes, and each wrong decision
fails with a message that says what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab_env import fulfilment_events as ev
from lab_env import fulfilment_services as fs
from lab_env.checks import LabCheckError
from lab_env.lab_checks.payment_service import RISK_THRESHOLD, check_decide

Decide = Callable[[dict[str, Any]], list[tuple[str, dict[str, Any]]]]


def right(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return fs.Payment(RISK_THRESHOLD).handle(ev.INVENTORY_RESERVED, 0, event)


def altered(change: Callable[[str, dict[str, Any]], dict[str, Any] | None]) -> Decide:
    """``right``, its event passed through ``change`` (None: keep it)."""

    def decide(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        topic, value = right(event)[0]
        return [(topic, change(topic, dict(value)) or value)]

    return decide


def pay_everything(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return right({**event, "risk_score": 0.0})


def decline_at_the_threshold(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return fs.Payment(RISK_THRESHOLD - 1e-9).handle(ev.INVENTORY_RESERVED, 0, event)


def released_nothing(topic: str, value: dict[str, Any]) -> dict[str, Any] | None:
    return {**value, "items": []} if topic == ev.PAYMENT_FAILED else None


def clock_in_seconds(topic: str, value: dict[str, Any]) -> dict[str, Any] | None:
    field = "failed_at_ms" if topic == ev.PAYMENT_FAILED else "paid_at_ms"
    return {**value, field: value[field] // 1000}


def test_the_lab_payment_decision_passes(capsys: pytest.CaptureFixture[str]) -> None:
    check_decide(right)
    assert "0.97 -> payment.failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("decide", "message"),
    [
        (pay_everything, "so the event is 'payment.failed'"),
        (decline_at_the_threshold, "so the event is 'payment.completed'"),
        (altered(released_nothing), "carry the reserved items"),
        (altered(lambda t, v: {**v, "order_id": "o-other"}), "order_id must be"),
        (
            altered(lambda t, v: {**v, "amount_cents": 1} if "amount_cents" in v else None),
            "charges the reserved amount",
        ),
        (altered(lambda t, v: {**v, "note": "x"}), "fields the schema does not"),
        (altered(lambda t, v: {k: x for k, x in v.items() if k != "created_at_ms"}), "schema"),
        (altered(clock_in_seconds), "before the order was created"),
        (lambda event: right(event)[0], "one \\(topic, event\\) pair"),
        (lambda event: right(event) * 2, "one \\(topic, event\\) pair"),
        (lambda event: event["no such field"], "KeyError"),
    ],
    ids=[
        "pays everything",
        "declines at the threshold",
        "releases nothing",
        "another order",
        "wrong amount",
        "extra field",
        "missing field",
        "seconds",
        "not a list",
        "two events",
        "raises",
    ],
)
def test_each_wrong_decision_fails_and_says_why(decide: Decide, message: str) -> None:
    with pytest.raises(LabCheckError, match=message):
        check_decide(decide)


def test_not_a_function_is_named() -> None:
    with pytest.raises(LabCheckError, match="function itself"):
        check_decide(None)  # type: ignore[arg-type]
