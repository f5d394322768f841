"""bdev's ``loop`` backend: the rootfs is a filesystem image file (``<container>/rootdev``)
mounted through a loop device, as LXC's ``loop:`` rootfs.

Registered through the ``bdev.plugins`` entry point like any third-party plugin.
"""

from bdev import hookimpl

from .backend import LoopBackend

__all__ = ["LoopBackend"]


@hookimpl
def bdev_backends():
    """Offer the loop backend."""
    return [LoopBackend]
