"""Option values shared by ``bdev`` and the ``lxc-*`` programs, turned into API arguments.

Everything here checks the user's input *before* anything is created, so a bad value leaves
nothing behind and is reported as one :class:`~bdev.errors.InvalidInput` sentence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..i18n import N_, _

if TYPE_CHECKING:
    from ..records import CreateOptions


_BARE_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


def parse_fssize(text: str | None, *, what: str = "--fssize", default_unit: str = "") -> int | None:
    """Bytes for a size option, None when not given.

    :param default_unit: appended to a bare number: ``""`` (bytes, bdev's rule) or ``"M"``
        (LXC's ``--fssize`` and ``-L``: a bare number is MiB).
    :raises InvalidInput: garbage, zero or a negative size.
    """
    if text is None:
        return None
    from ..units import parse_size

    if default_unit and _BARE_NUMBER.match(text):
        try:
            return parse_size(text.strip() + default_unit, what=what)
        except InvalidInput:
            parse_size(text, what=what)  # raises the same complaint quoting what the user typed
            raise
    return parse_size(text, what=what)


def parse_backend(text: str | None) -> str | list[str] | None:
    """``-B`` as the API takes it: one name, ``best``, or a comma list tried in order."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise InvalidInput(_(
            "backend {text!r} is not a backend name or a comma-separated list of them"
        ).format(text=text))
    return names[0] if len(names) == 1 else names


def create_options(fstype: str | None, fssize: int | None, extra: Mapping[str, str | None]) -> "CreateOptions":
    """A :class:`~bdev.records.CreateOptions` holding only the options that were given."""
    from ..records import CreateOptions

    given = {k: v for k, v in extra.items() if v is not None}
    for key, value in given.items():
        if not value.strip():
            raise InvalidInput(_("--{key} must not be empty").format(key=key))
    if fstype is not None and not fstype.strip():
        raise InvalidInput(_("--fstype must not be empty"))
    return CreateOptions(fstype=fstype, fssize=fssize, extra=given)


def backend_option(_ctx: object, _param: object, values: tuple[str, ...]) -> dict[str, str]:
    """Click callback for ``-O KEY=VALUE`` (repeatable): backend settings the fixed options do
    not cover (``-O btrfspool=/srv/pool``), passed to the backend in ``CreateOptions.extra``."""
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_.-]*", key) or not value.strip():
            raise InvalidInput(_(
                "-O {item!r} is not KEY=VALUE (a lower-case key and a non-empty value)"
            ).format(item=item))
        found[key] = value
    return found


BACKEND_OPTION_HELP = N_(
    "A backend setting KEY=VALUE (repeatable), e.g. -O btrfspool=/srv/pool; see the backend's docs."
)


def read_config_file(path: str) -> list[tuple[str, str]]:
    """``key = value`` entries of an extra config file (``lxc-create -f``), in order.

    Comments and blank lines are skipped; one pair of matching outer quotes is removed from a
    value, as LXC reads it.

    :raises InvalidInput: the file cannot be read or holds a line that is not an entry.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(_("cannot read config file {path}: {reason}").format(path=path, reason=reason)) from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InvalidInput(_(
                "config file {path} line {number} is not a 'key = value' entry"
            ).format(path=path, number=number))
        if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]:
            value = value[1:-1]
        entries.append((key, value))
    return entries


def existing_file(path: str, what: str) -> str:
    """``path`` if it names a readable file.

    :raises InvalidInput: naming ``what``.
    """
    if not os.path.isfile(path):
        raise InvalidInput(_("{what} {path} does not exist or is not a file").format(what=what, path=path))
    if not os.access(path, os.R_OK):
        raise InvalidInput(_("{what} {path} is not readable").format(what=what, path=path))
    return path
