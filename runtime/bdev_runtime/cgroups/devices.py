"""Device access rules as the devices cgroup (and LXC's ``lxc.cgroup[2].devices.*``) write
them: ``TYPE MAJOR:MINOR ACCESS``, e.g. ``c 1:3 rwm`` (``/dev/null``: read, write, mknod).

``TYPE`` is ``c`` (character), ``b`` (block) or ``a`` (all devices, alone or as
``a *:* rwm``); ``MAJOR``/``MINOR`` are numbers or ``*``; ``ACCESS`` is any of ``r``,
``w``, ``m``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bdev.errors import InvalidInput
from .._i18n import _

_RULE = re.compile(r"^(?P<type>[abc])\s+(?P<major>\d+|\*):(?P<minor>\d+|\*)\s+(?P<access>[rwm]{1,3})$")
_MAX_NUMBER = (1 << 32) - 1


@dataclass(frozen=True)
class DeviceRule:
    """One rule.  ``major``/``minor`` None means ``*`` (any)."""

    type: str
    major: int | None
    minor: int | None
    access: str

    def __str__(self) -> str:
        if self.type == "a":
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def matches(self, kind: str, major: int, minor: int) -> bool:
        """Whether the rule covers device ``kind`` (``b``/``c``) ``major:minor``."""
        if self.type == "a":
            return True
        return (self.type == kind and (self.major is None or self.major == major)
                and (self.minor is None or self.minor == minor))


def parse_rule(text: str) -> DeviceRule:
    """A :class:`DeviceRule` from ``c 1:3 rwm`` (or ``a``); access letters are put in
    ``rwm`` order.

    :raises InvalidInput: one sentence saying what is wrong with the rule.
    """
    rule = " ".join(text.split())
    if rule in ("a", "a *:* rwm"):
        return DeviceRule("a", None, None, "rwm")
    match = _RULE.match(rule)
    if not match:
        kind = rule.split(" ", 1)[0] if rule else ""
        if kind not in ("a", "b", "c"):
            raise InvalidInput(_("device rule {text!r} does not start with a device type (c for character, b for "
                                 "block, a for all; example: c 1:3 rwm)").format(
                text=text))
        raise InvalidInput(_("device rule {text!r} is not 'TYPE MAJOR:MINOR ACCESS' (MAJOR and MINOR a number or *, "
                             "ACCESS some of r, w, m; example: c 1:3 rwm)").format(
            text=text))
    if len(set(match["access"])) != len(match["access"]):
        raise InvalidInput(_("device rule {text!r} repeats an access letter (use some of r, w, m once each)").format(
            text=text))
    numbers = []
    for part in ("major", "minor"):
        value = None if match[part] == "*" else int(match[part])
        if value is not None and value > _MAX_NUMBER:
            raise InvalidInput(_("device rule {text!r} has a {part} number above {max_number}").format(
                text=text, part=part, max_number=_MAX_NUMBER))
        numbers.append(value)
    if match["type"] == "a":
        raise InvalidInput(_("device rule {text!r}: type a (all devices) takes no numbers; write just 'a'").format(
            text=text))
    access = "".join(letter for letter in "rwm" if letter in match["access"])
    return DeviceRule(match["type"], numbers[0], numbers[1], access)


def parse_rules(text: str) -> tuple[DeviceRule, ...]:
    """The rules of a comma-separated list (``c 1:3 rwm, c 1:5 rwm``); an empty list or
    ``none`` allows no device at all.

    :raises InvalidInput: naming the first bad rule.
    """
    if text.strip().lower() in ("", "none"):
        return ()
    parts = [part.strip() for part in text.split(",")]
    if any(not part for part in parts):
        raise InvalidInput(_("device list {text!r} has an empty rule (separate rules with one comma)").format(
            text=text))
    return tuple(parse_rule(part) for part in parts)
