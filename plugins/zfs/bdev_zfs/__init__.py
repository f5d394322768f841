"""bdev's ``zfs`` backend: the rootfs is a ZFS dataset ``<root>/<name>`` mounted at
``<lxcpath>/<name>/rootfs`` (LXC's zfs backend), with snapshot clones named after their
container, destroy that keeps origins of live clones hidden until their last clone goes, and
mounts through ``zfs mount`` so zfs-fuse works as well as kernel ZFS.
"""

from bdev import hookimpl

from .backend import ZfsBackend

__all__ = ["ZfsBackend"]


@hookimpl
def bdev_backends():
    """Offer the zfs backend."""
    return [ZfsBackend]
