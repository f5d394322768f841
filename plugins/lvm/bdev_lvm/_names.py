"""LVM's rules for volume group and logical volume names (lvm(8), "VALID NAMES"; lvm2's
``lib/misc/lvm-string.c``), checked before any LVM command runs, and the ``/dev/<vg>/<lv>``
locator the backend writes in ``lxc.rootfs.path``."""

from __future__ import annotations

import re

from ._i18n import _

_CHARS = re.compile(r"^[A-Za-z0-9+_.-]+$")
RESERVED_LV_NAMES = (".", "..")
RESERVED_LV_PREFIXES = ("snapshot", "pvmove")
RESERVED_LV_PARTS = (
    "_cdata", "_cmeta", "_corig", "_iorig", "_mimage", "_mlog", "_pmspare",
    "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
)
NAME_LEN = 127
"""Longest VG or LV name LVM accepts (its ``NAME_LEN`` is 128 with the terminating NUL)."""
DM_NAME_ROOM = 127 - len("-cow")
"""Room for the device-mapper name ``<vg>-<lv>`` (each ``-`` doubled), keeping space for the
``-real``/``-cow`` layers a thick snapshot adds."""


def _common_problem(name: str, what: str) -> str | None:
    if not name:
        return _("{what} name is empty").format(what=what)
    if not _CHARS.match(name):
        return _("{what} name {name!r} is not valid for LVM (it allows only letters, digits and '+', '_', '.', '-')").format(
            what=what, name=name)
    if name.startswith("-"):
        return _("{what} name {name!r} is not valid for LVM (it must not begin with '-')").format(what=what, name=name)
    if name in RESERVED_LV_NAMES:
        return _("{what} name {name!r} is reserved by LVM").format(what=what, name=name)
    if len(name) > NAME_LEN:
        return _("{what} name {name!r}... is {count} characters long, more than LVM's {name_len}").format(
            what=what, name=name[:20], count=len(name), name_len=NAME_LEN)
    return None


def vg_problem(name: str) -> str | None:
    """Why LVM would reject ``name`` as a volume group name, or None."""
    return _common_problem(name, _("volume group"))


def lv_problem(name: str, vg: str = "") -> str | None:
    """Why LVM would reject ``name`` as a new logical volume name (in volume group ``vg``),
    or None."""
    problem = _common_problem(name, _("logical volume"))
    if problem:
        return problem
    for prefix in RESERVED_LV_PREFIXES:
        if name.startswith(prefix):
            return _("logical volume name {name!r} is not valid for LVM (names beginning with {prefix!r} are "
                     "reserved)").format(
                name=name, prefix=prefix)
    for part in RESERVED_LV_PARTS:
        if part in name:
            return _("logical volume name {name!r} is not valid for LVM (it contains {part!r}, reserved for LVM's "
                     "own volumes)").format(
                name=name, part=part)
    if vg and len(dm_name(vg, name)) > DM_NAME_ROOM:
        return _("logical volume name {name!r} is too long for a device-mapper name in volume group {vg!r}").format(
            name=name, vg=vg)
    return None


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM gives ``vg/lv`` (``-`` doubled in each part)."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def locator(vg: str, lv: str) -> str:
    """``/dev/<vg>/<lv>``, the rootfs source LXC writes."""
    return f"/dev/{vg}/{lv}"


def split_locator(source: str) -> tuple[str, str] | None:
    """``(vg, lv)`` from ``/dev/<vg>/<lv>``, or None when ``source`` is not of that form."""
    parts = source.split("/")
    if len(parts) != 4 or parts[0] or parts[1] != "dev" or not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]
