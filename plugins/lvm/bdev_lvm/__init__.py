"""bdev's ``lvm`` backend: the rootfs is a logical volume ``/dev/<vg>/<lv>`` holding an ext4,
xfs or btrfs filesystem, thin in the thin pool when there is one, thick otherwise (LXC's lvm
backend), with thin or thick snapshot clones named after their container, an atomic restore
through renames, and warnings before a thin pool fills up.
"""

from bdev import hookimpl

from .backend import LvmBackend

__all__ = ["LvmBackend"]


@hookimpl
def bdev_backends():
    """Offer the lvm backend."""
    return [LvmBackend]
