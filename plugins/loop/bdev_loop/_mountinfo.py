"""Reading ``/proc/self/mountinfo``: what is mounted where, and from which device."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of mountinfo: the mount point, the filesystem type and the source."""

    mountpoint: str
    fstype: str
    source: str


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def entries() -> list[MountEntry]:
    """Every mount of this mount namespace, in mount order."""
    try:
        text = MOUNTINFO.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        out.append(MountEntry(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2])))
    return out


def source_of(mountpoint: Path) -> MountEntry | None:
    """The mount on top at ``mountpoint``, or None when nothing is mounted there."""
    wanted = os.path.realpath(mountpoint)
    found = None
    for entry in entries():
        if entry.mountpoint == wanted:
            found = entry
    return found


def mountpoints_of(device: Path) -> list[str]:
    """Where ``device`` (``/dev/loop3``) is mounted."""
    wanted = str(device)
    return [e.mountpoint for e in entries() if e.source == wanted]
