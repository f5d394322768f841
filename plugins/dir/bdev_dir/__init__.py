"""bdev's ``dir`` backend: the rootfs is a plain directory (LXC's default backend).

Registered through the ``bdev.plugins`` entry point like any third-party plugin.
"""

from bdev import hookimpl

from .backend import DirBackend

__all__ = ["DirBackend"]


@hookimpl
def bdev_backends():
    """Offer the dir backend."""
    return [DirBackend]
