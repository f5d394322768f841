"""An aufs rootfs as LXC 1.0 wrote it, and the mount options that put it together.

``lxc.rootfs = aufs:<lower>:<upper>`` (LXC 2.1+: ``lxc.rootfs.path``): one read-only lower
branch (the origin's rootfs) and one writable upper branch, ``<container>/delta0`` in LXC's
layout.  LXC mounted it ``br=<upper>=rw:<lower>=ro,xino=/dev/shm/aufs.xino``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import InvalidInput
from bdev.naming import validate_path
from bdev.records import Placement
from ._i18n import _

UPPER = "delta0"
"""LXC 1.0's name for a clone's writable branch, ``<container>/delta0``."""

FORBIDDEN = (":", ",", "=")
"""Characters no branch path may hold: ``:`` separates branches (in LXC's value and in
``br=``), ``,`` separates mount options and ``=`` separates a branch from its permission."""

XINO_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class AufsPaths:
    """The two branches of an aufs rootfs.

    :param lower: the read-only branch (LXC: the origin container's rootfs).
    :param upper: the writable branch (LXC: ``<container>/delta0``).
    """

    lower: Path
    upper: Path

    @classmethod
    def parse(cls, source: str, backend: str = "aufs") -> "AufsPaths":
        """Read ``<lower>:<upper>`` of absolute paths, as LXC 1.0 writes it.

        :raises InvalidInput: one sentence saying what is malformed.
        """
        parts = source.split(":")
        if len(parts) != 2 or not all(parts):
            raise InvalidInput(_("aufs rootfs {source!r} is not <lower>:<upper>").format(source=source),
                               backend=backend)
        paths = []
        for part in parts:
            if not part.startswith("/"):
                raise InvalidInput(_("aufs branch {part!r} in {source!r} is not an absolute path").format(
                    part=part, source=source), backend=backend)
            for char in FORBIDDEN[1:]:
                if char in part:
                    raise InvalidInput(
                        _("aufs branch {part!r} contains {char!r}, which aufs mount options cannot carry").format(
                            part=part, char=char),
                        backend=backend,
                    )
            paths.append(validate_path(part, "aufs branch"))
        return cls(paths[0], paths[1])

    @property
    def value(self) -> str:
        """The text after ``aufs:`` in ``lxc.rootfs.path``."""
        return f"{self.lower}:{self.upper}"

    @property
    def container_dir(self) -> Path:
        """The container directory the upper branch belongs to (``<lxcpath>/<name>``)."""
        return self.upper.parent

    @property
    def container_name(self) -> str:
        """The name of the container that owns the upper branch, as LXC lays it out."""
        return self.container_dir.name

    @property
    def xino(self) -> Path:
        """This rootfs's own xino file (aufs's table of its inode numbers), on tmpfs as LXC
        kept it.

        LXC 1.0 gave every container the same ``/dev/shm/aufs.xino``.  One aufs mount then
        truncates the table another one is using (aufs keeps it open and unlinked), so two
        running containers could see inode numbers change under them, which breaks hard-link
        detection (tar, rsync) and NFS exports.  A file per upper branch keeps each table to
        one mount and still lives in memory.
        """
        digest = hashlib.sha256(str(self.upper).encode()).hexdigest()[:16]
        return XINO_DIR / f"aufs.bdev-{digest}.xino"

    def mount_options(self, *, readonly: bool = False) -> str:
        """``br=<upper>=rw:<lower>=ro,xino=...`` (both branches read-only when ``readonly``)."""
        upper_mode = "ro" if readonly else "rw"
        return f"br={self.upper}={upper_mode}:{self.lower}=ro,xino={self.xino}"


def new_paths(placement: Placement, lower: Path) -> AufsPaths:
    """The branches of a new rootfs at ``placement`` over ``lower``: its upper is
    ``<container>/delta0`` (hidden ``.delta0.bdev-<stage>`` when staged)."""
    return AufsPaths(lower, placement.path(UPPER))
