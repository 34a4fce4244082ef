"""What a lab check raises: a specific, teaching sentence, never a bare assert.

Every attempt is recorded for the instructor (lab_env/progress.py): ``passed`` records the
passes, and inside IPython a cell that ends in a check's exception records the failure.

A check that takes more than a few seconds (it produces thousands of records, kills a broker,
waits for an alert) says what it is doing as each phase starts, with ``lab_env.steps.Steps``:
``step = Steps()`` at the top, then ``step("killed kafka-2, the leader of partition 1")``, a
plain line under the cell with the seconds since the check began.
"""

from __future__ import annotations

from lab_env import progress


class LabCheckError(AssertionError):
    """The learner's work is not right yet; the message says what is wrong and hints at the fix."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise LabCheckError(message)


def passed(what: str) -> None:
    print(f"PASSED: {what}")
    progress.record_pass(what)


progress.watch_notebook()
