"""What a lab check raises: a specific, teaching sentence, never a bare assert."""

from __future__ import annotations


class LabCheckError(AssertionError):
    """The learner's work is not right yet; the message says what is wrong and hints at the fix."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise LabCheckError(message)


def passed(what: str) -> None:
    print(f"PASSED: {what}")
