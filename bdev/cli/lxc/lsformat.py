"""``lxc-ls`` output, byte for byte as LXC 5's ``lxc_ls.c`` prints it.

Widths are counted in bytes (LXC pads with ``printf("%-*s")``); columns start at LXC's
header widths (NAME 4, STATE 5, PID 3, RAM 3, SWAP 4, AUTOSTART 9, GROUPS 6, INTERFACE 9,
IPV4 4, IPV6 4, UNPRIVILEGED 12) and grow to the longest value; every cell, the last
included, is followed by one blank.  Plain output packs names in rows as wide as the
terminal (one per line when standard output, error and input are not terminals).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import InvalidInput
from ...i18n import _

COLUMNS = ("NAME", "STATE", "PID", "RAM", "SWAP", "AUTOSTART", "GROUPS", "INTERFACE", "IPV4", "IPV6", "UNPRIVILEGED")
DEFAULT_FANCY = ("NAME", "STATE", "AUTOSTART", "GROUPS", "IPV4", "IPV6", "UNPRIVILEGED")
_MIN_WIDTH = {"NAME": 4, "STATE": 5, "PID": 3, "RAM": 3, "SWAP": 4, "AUTOSTART": 9, "GROUPS": 6,
              "INTERFACE": 9, "IPV4": 4, "IPV6": 4, "UNPRIVILEGED": 12}


@dataclass(frozen=True)
class Row:
    """One container as ``lxc-ls`` shows it (runtime fields stay None until a runtime exists)."""

    name: str
    state: str = "STOPPED"
    autostart: bool = False
    groups: str | None = None
    unprivileged: bool = False
    pid: int | None = None
    interface: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    ram_mb: float | None = None
    swap_mb: float | None = None

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "FROZEN")


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _pad(value: bytes, width: int) -> bytes:
    return value + b" " * max(0, width - len(value))


def term_width() -> int:
    """The terminal's width from standard output, error or input (LXC's order); 0 if none."""
    for fd in (1, 2, 0):
        try:
            return os.get_terminal_size(fd).columns
        except (OSError, ValueError):
            continue
    return 0


def parse_columns(text: str) -> list[str]:
    """The columns of ``-F`` (comma-separated, case-insensitive, blanks trimmed).

    :raises InvalidInput: an unknown or missing column.
    """
    columns = [c.strip().upper() for c in text.split(",") if c.strip()]
    for column in columns:
        if column not in COLUMNS:
            raise InvalidInput(_(
                "unknown column {column!r} for --fancy-format (valid: {columns})"
            ).format(column=column, columns=', '.join(COLUMNS)))
    if not columns:
        raise InvalidInput(_("--fancy-format names no column"))
    return columns


def names(rows: Sequence[Row], *, termwidth: int, one_per_line: bool) -> bytes:
    """Plain output: names padded to the longest (at least 4), packed into rows that fit
    ``termwidth``; ``one_per_line`` (``-1``) prints bare names."""
    if not rows:
        return b""
    width = max([_MIN_WIDTH["NAME"], *(len(_b(r.name)) for r in rows)])
    out = bytearray()
    used = 0
    for row in rows:
        if one_per_line:
            out += _b(row.name) + b"\n"
            continue
        out += _pad(_b(row.name), width)
        used += width
        if used + width >= termwidth:
            out += b"\n"
            used = 0
        else:
            out += b" "
            used += 1
    if used > 0:
        out += b"\n"
    return bytes(out)


def _widths(rows: Sequence[Row]) -> dict[str, int]:
    widths = dict(_MIN_WIDTH)
    for row in rows:
        for column, value in (("NAME", row.name), ("STATE", row.state), ("INTERFACE", row.interface),
                              ("GROUPS", row.groups), ("IPV4", row.ipv4), ("IPV6", row.ipv6)):
            if value is not None:
                widths[column] = max(widths[column], len(_b(value)))
        widths["RAM"] = max(widths["RAM"], len(f"{row.ram_mb or 0.0:.2f}"))
        widths["SWAP"] = max(widths["SWAP"], len(f"{row.swap_mb or 0.0:.2f}"))
        if row.pid is not None:
            widths["PID"] = max(widths["PID"], len(str(row.pid)))
    return widths


def _cell(row: Row, column: str, widths: dict[str, int]) -> bytes:
    width = widths[column]
    if column in ("RAM", "SWAP"):
        value = row.ram_mb if column == "RAM" else row.swap_mb
        if value is not None and row.running:
            return _b(f"{value:>{width}.2f}MB ")
        return _pad(b"-", width) + b"   "
    if column == "AUTOSTART":
        text = "1" if row.autostart else "0"
    elif column == "UNPRIVILEGED":
        text = "true" if row.unprivileged else "false"
    elif column == "PID":
        text = str(row.pid) if row.pid is not None and row.pid > 0 else "-"
    else:
        value = {"NAME": row.name, "STATE": row.state, "GROUPS": row.groups, "INTERFACE": row.interface,
                 "IPV4": row.ipv4, "IPV6": row.ipv6}[column]
        text = value if value is not None else "-"
    return _pad(_b(text), width) + b" "


def fancy(rows: Sequence[Row], columns: Sequence[str] = DEFAULT_FANCY) -> bytes:
    """``-f`` output (``-F`` picks ``columns``): a header line, then one line per container."""
    if not rows:
        return b""
    widths = _widths(rows)
    header = bytearray()
    for column in columns:
        width = widths[column] + (2 if column in ("RAM", "SWAP") else 0)
        header += _pad(_b(column), width) + b" "
    out = bytearray(header + b"\n")
    for row in rows:
        for column in columns:
            out += _cell(row, column, widths)
        out += b"\n"
    return bytes(out)
