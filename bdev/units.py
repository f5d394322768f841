"""Sizes as users type them (``500M``, ``1G``, ``1.5GiB``) and as bdev prints them."""

from __future__ import annotations

import re

from .errors import InvalidInput
from .i18n import _

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from ``text``: a number with an optional K/M/G/T/P/E suffix (powers of 1024,
    as LXC's ``--fssize``); a bare number is bytes.  Zero, negatives and garbage are refused.

    :raises InvalidInput: naming ``what`` and the text given.
    """
    match = _SIZE.match(text or "")
    if not match:
        raise InvalidInput(_(
            "{what} {text!r} is not a size (use a number with an optional K, M, G or T suffix)"
        ).format(what=what, text=text))
    number, unit, _suffix = match.groups()
    value = int(float(number) * (1024 ** _POWERS[unit.lower()]))
    if value <= 0:
        raise InvalidInput(_("{what} {text!r} must be greater than zero").format(what=what, text=text))
    return value


def format_size(value: int | None) -> str:
    """``1.5 GiB``-style rendering; ``unknown`` for None."""
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
