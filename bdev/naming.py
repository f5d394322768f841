"""Validation of the names and paths users give: container and snapshot names, lxcpaths.

A name becomes a directory name under the lxcpath, part of lock file names and of pool
object names, and an argument to external tools, so it is checked before anything is done
with it.  Each refusal is one sentence that quotes the name with ``repr()`` (a newline shows
as ``\\n``) and says what is wrong.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from .errors import InvalidInput
from .i18n import N_, _

NAME_MAX_BYTES = 255
"""Longest name in bytes (UTF-8): a directory entry on Linux filesystems."""


def _control_char(text: str) -> str | None:
    """The first control character of ``text`` (C0, DEL or C1), or None."""
    for char in text:
        if unicodedata.category(char) == "Cc":
            return char
    return None


def _describe(char: str) -> str:
    if char == "\0":
        return "a NUL byte"
    if char == "\n":
        return "a newline"
    return f"the control character {char!r}"


def _check_text(text: str, label: str) -> int:
    """Refuse control characters and text that is not valid UTF-8; returns the UTF-8 size."""
    bad = _control_char(text)
    if bad is not None:
        raise InvalidInput(_("{label} {text!r} contains {bad}").format(label=label, text=text, bad=_describe(bad)))
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(_("{label} {text!r} is not valid UTF-8").format(label=label, text=text)) from None


def validate_name(name: str, what: str = N_("container")) -> str:
    """Return ``name`` if it can name a container (or whatever ``what`` says).

    Refused: empty, ``/``, ``.`` or ``..``, a leading ``.`` (bdev keeps hidden files beside
    containers), a leading ``-`` (it would be taken for an option), control characters
    (NUL, newline, any C0, DEL, C1), leading or trailing whitespace, more than 255 bytes in
    UTF-8, text that is not valid Unicode (undecodable bytes from the command line).

    :raises InvalidInput: one sentence naming the problem.
    """
    if not isinstance(name, str):
        raise InvalidInput(_("{what} name must be text, not {kind}").format(what=what, kind=type(name).__name__))
    if not name:
        raise InvalidInput(_("{what} name is empty").format(what=what))
    size = _check_text(name, f"{what} name")
    if "/" in name:
        raise InvalidInput(_("{what} name {name!r} contains '/'").format(what=what, name=name))
    if name in (".", ".."):
        raise InvalidInput(_(
            "{what} name {name!r} is not allowed (it names a directory itself)"
        ).format(what=what, name=name))
    if name.startswith("."):
        raise InvalidInput(_(
            "{what} name {name!r} starts with '.' (bdev keeps hidden files beside containers)"
        ).format(what=what, name=name))
    if name.startswith("-"):
        raise InvalidInput(_(
            "{what} name {name!r} starts with '-' and would be taken for an option"
        ).format(what=what, name=name))
    if name != name.strip():
        raise InvalidInput(_("{what} name {name!r} begins or ends with whitespace").format(what=what, name=name))
    if size > NAME_MAX_BYTES:
        raise InvalidInput(
            _(
                "{what} name {name!r}... is {size} bytes long in UTF-8, more than the limit of {limit}"
            ).format(what=what, name=name[:40], size=size, limit=NAME_MAX_BYTES)
        )
    return name


def validate_snapshot_name(name: str) -> str:
    """Return ``name`` if it can name a snapshot: the same rules as :func:`validate_name`.

    :raises InvalidInput: one sentence naming the problem.
    """
    return validate_name(name, what=N_("snapshot"))


def validate_path(path: str | os.PathLike[str], what: str = "path") -> Path:
    """``path`` made absolute and normalised (``..`` and ``.`` resolved lexically, repeated
    slashes collapsed; symlinks are not followed and the path need not exist).

    Refused: empty, bytes, a leading ``-`` (as given, before it is made absolute), NUL,
    newline or any other control character, text that is not valid Unicode.

    :raises InvalidInput: one sentence naming the problem.
    """
    try:
        text = os.fspath(path)
    except TypeError:
        raise InvalidInput(_("{what} must be a path, not {kind}").format(what=what, kind=type(path).__name__)) from None
    if not isinstance(text, str):
        raise InvalidInput(_("{what} {text!r} must be text, not bytes").format(what=what, text=text))
    if not text:
        raise InvalidInput(_("{what} is empty").format(what=what))
    _check_text(text, what)
    if text.startswith("-"):
        raise InvalidInput(_(
            "{what} {text!r} starts with '-' and would be taken for an option"
        ).format(what=what, text=text))
    return normalize_path(text)


def normalize_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute with ``os.path.abspath``, and a leading ``//`` (which POSIX
    lets ``normpath`` keep) collapsed to ``/``."""
    text = os.path.abspath(os.fspath(path))
    if text.startswith("//"):
        text = "/" + text.lstrip("/")
    return Path(text)
