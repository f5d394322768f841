"""bdev's generic full-copy engine: what ``rsync -aHAXS --numeric-ids`` keeps, with reflinks.

:func:`copytree` copies the contents of one directory into another and gives the target the
source's top-level metadata.  Kept: numeric owners, modes (set-user-ID, set-group-ID, sticky),
access and modification times to the nanosecond, hard links, symlinks (as links, never
followed), every extended attribute (POSIX ACLs, ``security.capability``, ``trusted.*``),
device nodes, fifos, sockets, and holes of sparse files.  Not kept, as with rsync: inode
flags (``chattr``), change and birth times.

Mount points below the source are not descended: each is copied as an empty directory (or
an empty file, for a bind-mounted file) carrying the mounted root's metadata, logged as a
warning, listed in :attr:`TreeCopier.mount_points` and counted in ``CopyStats.mount_points``
(besides being counted as a directory or file).  Bind mounts of the same filesystem are recognised from the mount table;
a btrfs subvolume, which is no mount, is copied like any directory.

Data is cloned (``FICLONE``) when both sides are on one filesystem that can share extents
(btrfs, XFS with reflink), else copied with ``copy_file_range``, else read and written.
"""

from __future__ import annotations

from pathlib import Path

from ..records import CopyStats
from .errors import CopyError
from .progress import NullProgress, Progress, terminal_progress

__all__ = ["CopyError", "NullProgress", "Progress", "copytree", "terminal_progress"]


def copytree(source: Path, target: Path, *, progress: Progress | None = None, reflink: bool = True) -> CopyStats:
    """Copy the contents of the directory ``source`` into the existing directory ``target``.

    ``target`` should be empty (it may be a mount point; a ``lost+found`` directory already
    there is reused) and ends up with ``source``'s own owner, mode, extended attributes and
    times.  A symlink given as ``source`` itself is followed; none below it is.

    :param progress: told the totals (from a quick ``lstat`` pre-walk, done only when a real
        progress object is given) and the advance of the copy.
    :param reflink: share data extents with ``FICLONE`` where both sides allow it.  When
        False no clone is requested, though ``copy_file_range`` may still let btrfs or XFS
        share extents.
    :returns: counts of what was copied; ``reflinked_files`` counts files cloned with
        ``FICLONE``.
    :raises CopyError: naming the entry and the cause (``the target disk is full`` ...);
        whatever was copied before stays in ``target``.
    """
    from .engine import TreeCopier

    return TreeCopier(Path(source), Path(target), progress=progress, reflink=reflink).run()
