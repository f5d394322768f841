"""``bdev-squashfs``: a third-party bdev backend whose rootfs is an immutable, compressed
squashfs image (``<container>/rootfs.squashfs``) mounted read-only through a loop device.

bdev finds it only through the ``bdev.plugins`` entry point declared in this distribution's
``pyproject.toml``; it depends on nothing but ``bdev``.
"""

from bdev import hookimpl

from .backend import SquashfsBackend

__all__ = ["SquashfsBackend"]


@hookimpl
def bdev_backends() -> list[type]:
    """Offer the squashfs backend."""
    return [SquashfsBackend]
