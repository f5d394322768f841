"""Resizing a stopped container's rootfs (block-backed backends)."""

from __future__ import annotations

from ..errors import BdevError, Busy
from ..i18n import _
from ..store.layout import ContainerRef
from ..store.running import is_running
from .context import Context


def resize(ctx: Context, ref: ContainerRef, size: int) -> None:
    """Grow ``ref``'s rootfs to ``size`` bytes through its backend (refused while running)."""
    from ..units import format_size

    with ctx.locked(ref):
        ctx.store.require(ref)
        if is_running(ref):
            raise Busy(_("is running; stop it before resizing"), container=ref.name)
        rootfs = ctx.store.rootfs_of(ref)
        backend = ctx.registry.backend_for(rootfs)
        try:
            backend.resize(rootfs, size)
        except BdevError as exc:
            raise exc.about(container=ref.name, backend=backend.name)
    ctx.notify(_("resized {name} to {size}").format(name=ref.name, size=format_size(size)))
