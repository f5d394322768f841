"""Plain text tables and JSON output for ``bdev`` (``lxc-ls`` has its own, LXC-exact format).

Tables are aligned columns separated by two spaces with no trailing blanks: fast to import,
stable to parse with ``awk``, readable in a terminal.  JSON is one document with documented,
stable keys (each command's help lists them), two-space indented, keys in a fixed order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import click

from ..i18n import N_, option

FORMATS = ("text", "json")


def format_option(function: Any) -> Any:
    """The ``--format [text|json]`` option shared by listing commands."""
    return option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help=N_("Output format; JSON keys are documented in this help and stay stable."),
    )(function)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (wide East Asian characters count two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1 for ch in text)


def clean(value: object) -> str:
    """A table cell: ``-`` for None or empty, control characters made visible."""
    if value is None or value == "" or value == []:
        return "-"
    text = str(value)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render an aligned table (header line first); the last column is not padded."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [display_width(h) for h in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], display_width(cell))
    lines = []
    for row in [list(headers), *cells]:
        parts = [cell + " " * (widths[i] - display_width(cell)) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def emit_json(document: Any) -> None:
    """Print ``document`` as JSON on standard output."""
    import json  # only JSON output needs it: not loaded at every start-up

    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))
