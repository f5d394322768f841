"""bdev's ``overlay`` backend (alias ``overlayfs``): copy-on-write clones as overlayfs layers.

A clone's rootfs is ``overlay:<lower>[:<lower2>...]:<upper>`` exactly as LXC writes it: the
lowers in kernel order (topmost first), the upper at ``<container>/overlay/delta`` and the work
directory beside it.  Clones layer over any backend: over a read-only frozen copy where the
origin's backend can make one (btrfs, loop), else over the origin's live rootfs as LXC does,
with the dependency recorded.  Registered through the ``bdev.plugins`` entry point.
"""

from bdev import hookimpl

from .backend import OverlayBackend

__all__ = ["OverlayBackend"]


@hookimpl
def bdev_backends():
    """Offer the overlay backend."""
    return [OverlayBackend]
