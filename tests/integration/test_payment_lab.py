"""Lab 11's pipeline check, on the real lab: the solution's payment service passes, and each broken
variant of it fails with the message that names its bug.

The variants are made from the solution notebook's own code (``solutions/11-payment-service``), one
line changed each, so they stay in step with the solution. Each run is a small pipeline of its own
(inventory, shipping and order processes) under a fresh prefix; everything is bounded in time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from lab_env.api import Lab
from lab_env.checks import LabCheckError
from lab_env.lab_checks.payment_service import check_payment_service
from tests.helpers import progress_lines

pytestmark = pytest.mark.cluster

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "11-payment-service.ipynb"
ORDERS = 40


def solution_source() -> str:
    """The solution's imports, ``decide`` and ``payment_loop``, as one module's source."""
    cells = nbformat.read(SOLUTION, as_version=4).cells
    wanted = ("from lab_env.lab_checks.payment_service import", "def decide(", "def payment_loop(")
    chosen = [
        c.source for c in cells if c.cell_type == "code" and any(w in c.source for w in wanted)
    ]
    assert len(chosen) == 3, "the solution's imports, decide and payment_loop cells moved"
    return "\n\n".join(chosen)


def payment_loop(change: tuple[str, str] | None = None) -> Callable[..., Any]:
    """The solution's payment_loop, with one line of it replaced (``(old, new)``) if given."""
    source = solution_source()
    if change is not None:
        old, new = change
        assert source.count(old) == 1, f"{old!r} is not once in the solution"
        source = source.replace(old, new)
    namespace: dict[str, Any] = {}
    exec(compile(source, str(SOLUTION), "exec"), namespace)
    return namespace["payment_loop"]


def test_the_solution_passes(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    check_payment_service(lab, payment_loop(), orders=ORDERS)
    out = capsys.readouterr().out
    assert "PASSED" in out and "lost 0" in out and "duplicated 0" in out, out
    # What the check is doing, as each phase starts, above its verdict.
    assert progress_lines(out.split("PASSED")[0]) == [
        "starting the lab's inventory, shipping and order services",
        "starting your payment_loop, placing 10 orders; the check fails its first "
        "send_offsets_to_transaction()",
        "placing 10 more orders, waiting for the first 20 to end",
        "writing a malformed record, placing the second wave of 20 orders; the check freezes "
        "your instance mid-transaction",
        "your instance is frozen; starting a replacement, waiting for every order to end",
        "stopping your instances, reconciling every order",
    ], out


BROKEN = {
    "no rewind after an abort": (
        ("rewind(consumer)  # back to", "pass  # back to"),
        "never ended",
    ),
    "a new transactional.id on every start": (
        (
            'producer = lab.producer({"transactional.id": member})',
            'producer = lab.producer({"transactional.id": member + "-" + str(id(stop))})',
        ),
        "transactional.id",
    ),
    "an abortable error ends the service": (
        ("if exc.args[0].fatal():", "if True:"),
        "abortable error",
    ),
    "a malformed record dropped": (
        ('fs.dead_letter(producer, prefix + ev.DEAD_LETTER, "payment", msg, exc)', "pass"),
        "dead-letter topic",
    ),
    "read_uncommitted": (
        ('"isolation.level": "read_committed",', '"isolation.level": "read_uncommitted",'),
        "read_committed",
    ),
}


@pytest.mark.parametrize("bug", list(BROKEN))
def test_each_broken_variant_fails_and_names_its_bug(lab: Lab, bug: str) -> None:
    change, message = BROKEN[bug]
    with pytest.raises(LabCheckError, match=message):
        check_payment_service(lab, payment_loop(change), orders=ORDERS)
