"""The filesystems a logical volume can hold (``--fstype``): bdev's table of filesystems on
block devices (:mod:`bdev.blockfs`), bound to the lvm backend's name and to what a snapshot
volume needs (a UUID of its own without unsharing its blocks)."""

from __future__ import annotations

from bdev import blockfs
from bdev.blockfs import FILESYSTEMS, MiB, Filesystem, usable

BACKEND = "lvm"
DEFAULT = blockfs.DEFAULT_FSTYPE

__all__ = ["BACKEND", "DEFAULT", "FILESYSTEMS", "MiB", "Filesystem", "chosen", "give_new_uuid", "make", "probe", "usable"]


def chosen(fstype: str | None) -> Filesystem:
    """The filesystem for ``--fstype`` (default ext4), whether or not it can be made here
    (the caller asks :meth:`Filesystem.problem`).

    :raises InvalidInput: a type the backend does not make.
    """
    name = (fstype or DEFAULT).strip().lower()
    if name not in FILESYSTEMS:
        blockfs.chosen(name, holder="a logical volume", backend=BACKEND)
    return FILESYSTEMS[name]


def make(fs: Filesystem, device: str) -> None:
    """Format ``device`` with ``fs`` (an ext4 volume loses its empty ``lost+found``)."""
    blockfs.make(fs, device, backend=BACKEND)


def probe(device: str) -> str | None:
    """The filesystem type on ``device``, or None (also when it cannot be read)."""
    try:
        return blockfs.probe(device)
    except OSError:
        return None


def give_new_uuid(device: str) -> None:
    """Give the unmounted filesystem on the snapshot ``device`` a UUID of its own where a
    duplicate would break mounting (xfs refuses a second mount of one UUID; btrfs takes two
    devices with one fsid for one filesystem); ext4 keeps its UUID, as LXC leaves it."""
    fs = FILESYSTEMS.get(probe(device) or "")
    if fs is not None:
        blockfs.new_uuid(fs, device, backend=BACKEND, copy_on_write=True)
