"""Read-only questions about a container: usage and a summary for ``bdev info``."""

from __future__ import annotations

from ..records import Usage
from ..store.layout import ContainerRef
from .context import Context


def usage(ctx: Context, ref: ContainerRef) -> Usage:
    """Space used by ``ref``'s rootfs, as its backend measures it."""
    ctx.store.require(ref)
    rootfs = ctx.store.rootfs_of(ref)
    return ctx.registry.backend_for(rootfs).usage(rootfs)
