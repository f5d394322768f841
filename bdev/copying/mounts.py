"""Which entries below a directory are mount points, so a copy does not descend into them."""

from __future__ import annotations

import os

from ..mounts import mount_points_below


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
