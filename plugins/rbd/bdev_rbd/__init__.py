"""bdev's ``rbd`` backend: the rootfs is a Ceph RBD image (``rbd:/dev/rbd/<pool>/<image>``, as
LXC writes it) holding a filesystem, driven through librbd, mounted through the kernel (``rbd
map``), ``rbd-nbd`` or ``rbd-fuse`` and a loop device, whichever the host has; plus ``bdev rbd``
commands to flatten a clone and to move a container between hosts sharing the cluster.
"""

from bdev import hookimpl

from .backend import RbdBackend

__all__ = ["RbdBackend"]


@hookimpl
def bdev_backends():
    """Offer the rbd backend."""
    return [RbdBackend]


@hookimpl
def bdev_commands():
    """``bdev rbd`` (flatten, publish, adopt, status, break-lock)."""
    from .commands import rbd_group

    return [rbd_group]
