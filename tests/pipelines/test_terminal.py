"""Text from files, the config or the command line, printed through rich as it came in."""

from __future__ import annotations

import io

import pytest
import typer
from rich.console import Console

from pipelines.cli import _fail
from pipelines.terminal import printable

HOSTILE = {
    "[/x]": "[/x]",  # a closing tag with nothing open: rich's MarkupError
    "[link=https://evil.example]click[/link]": "[link=https://evil.example]click[/link]",
    "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07": "\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07",
    "\x1b[2J\x9b31mred": "\\x1b[2J\\x9b31mred",  # clear the screen; C1's CSI
    "总计\r女装": "总计\\x0d女装",  # a carriage return would print 女装 over 总计
}


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=200)


def test_markup_and_control_characters_of_data_are_printed_as_text():
    console = terminal()
    for text in HOSTILE:
        console.print(printable(text), highlight=False)
    printed = console.file.getvalue()
    assert printed.splitlines() == list(HOSTILE.values())
    assert "\x1b" not in printed and "\x9b" not in printed and "\r" not in printed  # no link, no sequence


def test_plain_text_tabs_and_line_breaks_are_left_as_they_are():
    text = "曹县 371721\t0.39\n南浔区 (a belt in 2015): 28.9% of all belts"
    assert printable(text) == text
    console = terminal()
    console.print(printable(text), highlight=False)
    assert console.file.getvalue().splitlines()[1] == "南浔区 (a belt in 2015): 28.9% of all belts"


def test_an_error_naming_a_value_with_an_escape_sequence_prints_it_as_text(capsys):
    with pytest.raises(typer.Exit):
        _fail("category '\x1b[2J[/x]' maps to no mode")
    assert capsys.readouterr().err == "error: category '\\x1b[2J[/x]' maps to no mode\n"
