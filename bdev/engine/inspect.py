"""Read-only questions about a container: usage and its diff against its origin."""

from __future__ import annotations

from ..records import Change, Usage
from ..store.layout import ContainerRef
from .context import Context


def usage(ctx: Context, ref: ContainerRef) -> Usage:
    """Space used by ``ref``'s rootfs, as its backend measures it."""
    ctx.store.require(ref)
    rootfs = ctx.store.rootfs_of(ref)
    return ctx.registry.backend_for(rootfs).usage(rootfs)


def diff(ctx: Context, ref: ContainerRef) -> list[Change]:
    """What changed in ``ref``'s rootfs relative to its origin, sorted by path."""
    ctx.store.require(ref)
    rootfs = ctx.store.rootfs_of(ref)
    try:
        changes = ctx.registry.backend_for(rootfs).diff(rootfs)
    except Exception as exc:
        from ..errors import BdevError

        if isinstance(exc, BdevError):
            raise exc.about(container=ref.label, backend=rootfs.backend)
        raise
    return sorted(changes, key=lambda c: c.path)
