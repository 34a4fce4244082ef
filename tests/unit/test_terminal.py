"""What the CLIs print is text, never Rich markup: a learner's input comes back as typed."""

from __future__ import annotations

import pytest
from rich.table import Table

from lab_env import cli, terminal


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench", "produce", "--set", "acks=[all]"], "got '[all]'"),
        (["bench", "produce", "--set", "[/x]=1"], "[/x]: not a producer setting"),
        (["bench", "produce", "--set", "acks=:smile:"], "got ':smile:'"),
    ],
)
def test_bad_input_is_quoted_back_as_typed(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert "Traceback" not in err


def test_tables_and_lines_print_brackets_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    table = Table()
    table.add_column("topic")
    table.add_row("orders.[eu]")
    terminal.out.print(table)
    terminal.out.print("[red]not red[/] [/x]")
    terminal.out.print(terminal.styled(("ok", "green"), " [b]"))
    printed = capsys.readouterr().out
    assert "orders.[eu]" in printed and "[red]not red[/] [/x]" in printed and "ok [b]" in printed
