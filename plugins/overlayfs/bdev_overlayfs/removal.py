"""Taking an overlay rootfs apart: its upper, work directory, layer record and the layers it
owns (copied layers, frozen copies made by other backends), never anything it only uses (an
origin's live rootfs, a container's layers shared by its snapshots).

Nothing outside the rootfs's own container directory is ever removed, whatever a layer record
says, and a mount point found on the way is unmounted (a lower left mounted by a crash) or
refused, never descended into.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bdev.errors import BdevError, NotFound
from bdev.fsops import remove_tree
from bdev.mounts import mount_points_below

from ._i18n import _
from ._util import is_mount_point
from .layers import FROZEN, Lower
from .layout import OverlayPaths
from .mounting import overlay_using, unmount_lowers

if TYPE_CHECKING:
    from bdev.registry import Registry

NAME = "overlay"


def teardown(registry: "Registry | None", paths: OverlayPaths, lowers: list[Lower]) -> None:
    """Remove what ``paths`` owns among ``lowers``, then its upper, work directory and record.
    Safe to repeat: whatever is already gone is skipped."""
    unmount_lowers(registry, [lower for lower in lowers if lower.mount])
    for lower in lowers:
        if lower.owned and lower.role == FROZEN:
            _destroy_frozen(registry, lower)
    for path in _removed(paths, lowers):
        _remove(path)
    if not paths.legacy:
        with contextlib.suppress(FileNotFoundError):
            paths.record.unlink()
        with contextlib.suppress(OSError):
            paths.private_dir.rmdir()  # only if nothing else is left in it


def refusal(registry: "Registry | None", paths: OverlayPaths, lowers: list[Lower]) -> str | None:
    """Why :func:`teardown` would refuse now, found without changing anything: the overlay or
    a layer it would unmount is in use by an overlay mount, something is mounted on or inside
    what it would remove, or a frozen layer's backend refuses.  None otherwise."""
    unmounted = {os.path.realpath(lower.path) for lower in lowers if lower.mount}
    for layer in (paths.upper, *(lower.path for lower in lowers if lower.mount)):
        where = overlay_using(layer)
        if where is not None:
            return _("{layer} is a layer of the overlay mounted on {where}; unmount it before destroying the "
                     "rootfs").format(layer=layer, where=where)
    for path in _removed(paths, lowers):
        real = os.path.realpath(path)
        below = sorted(os.path.join(real, p) for p in mount_points_below(real) or ())
        mounted = [p for p in ([real] if is_mount_point(path) else []) + below if p not in unmounted]
        if mounted:
            return _("{path} is still mounted; unmount it before destroying the rootfs").format(path=mounted[0])
    for lower in lowers:  # one mounted as this overlay's lower is unmounted first: not asked
        storage = lower.storage if lower.owned and lower.role == FROZEN else None
        if storage is None or registry is None or (lower.mount and is_mount_point(Path(lower.path))):
            continue
        with contextlib.suppress(NotFound):  # not installed: teardown says so
            cause = registry.backend(storage.backend).destroy_refusal(storage)
            if cause is not None:
                return cause
    return None


def _removed(paths: OverlayPaths, lowers: list[Lower]) -> Iterator[Path]:
    """What :func:`teardown` removes after unmounting the lowers: the layers' homes and owned
    copies inside the container, then the upper and the work directory."""
    for lower in lowers:
        for candidate in (lower.home, lower.path if lower.owned and lower.role != FROZEN else None):
            if candidate and paths.inside_container(candidate):
                yield Path(candidate)
    yield paths.upper
    yield paths.workdir


def _destroy_frozen(registry: "Registry | None", lower: Lower) -> None:
    storage = lower.storage
    if storage is None or registry is None:
        return
    try:
        backend = registry.backend(storage.backend)
    except NotFound:
        raise BdevError(
            _("its frozen lower layer {storage} belongs to the {backend} backend, which is not installed").format(
                storage=storage, backend=storage.backend),
            backend=NAME,
        ) from None
    if backend.exists(storage):
        backend.destroy(storage)


def _remove(path: Path) -> None:
    if is_mount_point(path):
        raise BdevError(_("{path} is still mounted; unmount it before destroying the rootfs").format(path=path),
                        backend=NAME)
    if os.path.lexists(path):
        remove_tree(path)
