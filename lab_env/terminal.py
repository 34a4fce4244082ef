"""The CLIs' consoles: Rich for tables and colour, never for interpreting text.

Every message the lab prints can hold a learner's input (a setting's value, a topic name, a file
path) or an error Kafka wrote, so no console here reads Rich markup (``[red]``, ``[/x]``) or
emoji codes (``:smile:``) in what it prints: ``acks=[all]`` is printed as typed, and ``[/x]``
cannot crash the printer. Colour is given explicitly, with :func:`styled`.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text


def console(stderr: bool = False, wide: bool = False) -> Console:
    """A console that prints text as it is. ``wide``: 160 columns when not a terminal (tables
    in a log or a notebook's output are not wrapped at 80)."""
    stream = sys.stderr if stderr else sys.stdout
    width = 160 if wide and not stream.isatty() else None
    return Console(
        stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=not wide, width=width
    )


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (text, style) pairs as one line:
    ``styled(("error:", "red"), " ", message)``."""
    return Text.assemble(*parts)


out = console()
err = console(stderr=True)
