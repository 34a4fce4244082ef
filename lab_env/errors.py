"""The one exception type learners see: its message is a sentence that says what to do."""


class LabError(Exception):
    """A problem the user can act on. The CLI prints the message and exits non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
