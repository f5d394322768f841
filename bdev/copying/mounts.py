"""Which entries below a directory are mount points, so a copy does not descend into them."""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(r"\\([0-7]{3})")
MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_points_below(top: str, mountinfo: str = MOUNTINFO) -> frozenset[str] | None:
    """Paths of the mount points strictly below ``top``, relative to it.

    Bind mounts of the same filesystem are found too (their ``st_dev`` does not change).
    Returns None when ``mountinfo`` cannot be read (no ``/proc``).
    """
    real = os.path.realpath(top)
    prefix = real.rstrip("/") + "/"
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    below = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point.startswith(prefix):
            below.add(point[len(prefix):])
    return frozenset(below)


class MountBoundary:
    """Answers "is this entry a mount point?" during a walk of ``top``.

    With ``/proc`` the answer comes from the mount table, so bind mounts of the same
    filesystem are recognised and a btrfs subvolume (which has its own ``st_dev`` but is
    no mount) is copied like any directory.  Without ``/proc`` a change of ``st_dev`` marks
    a mount point, as ``rsync -x`` does.
    """

    def __init__(self, top: str):
        self.points = mount_points_below(top)

    def is_mount(self, relpath: str, dev: int, parent_dev: int) -> bool:
        """Whether the entry ``relpath`` (relative to the top; ``dev`` its ``st_dev``, and
        ``parent_dev`` its directory's) is a mount point."""
        if self.points is None:
            return dev != parent_dev
        return bool(self.points) and relpath in self.points
