"""bdev's ``btrfs`` backend: the rootfs is a btrfs subvolume (LXC's btrfs backend), with
instant snapshots that include nested subvolumes and an atomic restore in place.

Registered through the ``bdev.plugins`` entry point like any third-party plugin.
"""

from bdev import hookimpl

from .backend import BtrfsBackend

__all__ = ["BtrfsBackend"]


@hookimpl
def bdev_backends():
    """Offer the btrfs backend."""
    return [BtrfsBackend]
