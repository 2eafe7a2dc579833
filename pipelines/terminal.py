"""Text from files, the config or the command line, printed through rich as it came in."""

from __future__ import annotations

import re

from rich.markup import escape

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and line feed, DEL, C1


def printable(value: object) -> str:
    """``value`` as text a rich console prints as it is: brackets as brackets, not markup (a
    category ``[/x]`` stopped ``features build`` with a MarkupError after its outputs were written,
    and ``[link=...]`` made a link), and control characters as escapes (``\\x1b``, ``\\x0d``), so
    that no escape sequence of a data file reaches the terminal. Every job prints text that is not
    its own through it."""
    return escape(CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(value)))
