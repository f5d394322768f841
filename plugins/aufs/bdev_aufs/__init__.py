"""bdev's ``aufs`` backend: LXC 1.0's aufs clones, ``aufs:<lower>:<upper>``.

No mainline kernel has aufs, so on most machines this backend is listed as unavailable and
an aufs container cannot be mounted; the backend still reads its branches, so
``bdev convert NAME -B overlay`` turns it into an overlayfs container with the same files.
Registered through the ``bdev.plugins`` entry point.
"""

from bdev import hookimpl

from .backend import AufsBackend

__all__ = ["AufsBackend"]


@hookimpl
def bdev_backends():
    """Offer the aufs backend."""
    return [AufsBackend]
