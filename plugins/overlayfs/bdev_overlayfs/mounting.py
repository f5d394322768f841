"""Mounting an overlay rootfs: its mounted lowers first, then the overlay itself.

Mount options are the kernel's defaults, as LXC mounts them (no ``metacopy``, no
``redirect_dir`` creation, no ``index``), so what bdev writes into an upper, real LXC reads
the same way.  ``userxattr`` is added inside a user namespace.  A read-only mount stacks the
upper as the topmost *lower* layer (no upper, no work directory): nothing in the rootfs can
change, not even the work directory.

Every failure undoes what was mounted before it, and says in one sentence what is wrong, such
as a lower layer that was removed behind bdev's back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bdev.command import run
from bdev.errors import BdevError
from bdev.mounts import mount_entries

from ._i18n import _
from ._util import in_initial_user_namespace, is_mount_point, needs_userxattr
from .layers import Lower
from .layout import OverlayPaths, check_usable
from .userns import mount_overlay, unmount

if TYPE_CHECKING:
    from bdev.registry import Registry

NAME = "overlay"


def options(paths: OverlayPaths, lowers: list[Lower], *, readonly: bool) -> str:
    """The ``-o`` text for mounting ``paths`` (``lowerdir=…,upperdir=…,workdir=…``)."""
    check_usable(paths)
    lower_dirs = [lower.path for lower in lowers]
    if readonly:
        return "lowerdir=" + ":".join([str(paths.upper), *lower_dirs])
    return f"lowerdir={':'.join(lower_dirs)},upperdir={paths.upper},workdir={paths.workdir}"


def missing_layer(paths: OverlayPaths, lowers: list[Lower]) -> str | None:
    """A sentence about the first layer directory that is gone, or None."""
    if not paths.upper.is_dir():
        return _("its upper layer {upper} is missing").format(upper=paths.upper)
    for lower in lowers:
        if not os.path.isdir(lower.path):
            if lower.role == "live":
                return _("its lower layer {path} is missing (was the origin container removed?)").format(
                    path=lower.path)
            return _("its lower layer {path} is missing").format(path=lower.path)
    return None


def mount_lowers(registry: "Registry | None", lowers: list[Lower], *, container: str | None = None) -> list[Lower]:
    """Mount, read-only, every lower that needs mounting (a frozen loop image) and return
    those mounted; on failure unmount them again.  Lowers already mounted (by another mount
    of the same rootfs) are left as they are."""
    done: list[Lower] = []
    try:
        for lower in lowers:
            if not lower.mount or is_mount_point(Path(lower.path)):
                continue
            storage = lower.storage
            if storage is None or registry is None:
                raise BdevError(_("its lower layer {path} needs mounting but its storage is not recorded").format(
                    path=lower.path), container=container, backend=NAME)
            if os.geteuid() != 0:
                raise BdevError(
                    _("its lower layer {path} is a {backend} rootfs that only root can mount").format(
                        path=lower.path, backend=storage.backend),
                    container=container, backend=NAME,
                )
            backend = registry.backend(storage.backend)
            if not backend.exists(storage):
                raise BdevError(_("the storage of its lower layer {path} ({storage}) is missing").format(
                    path=lower.path, storage=storage), container=container, backend=NAME)
            Path(lower.path).mkdir(parents=True, exist_ok=True)
            backend.mount(storage, Path(lower.path), readonly=True)
            done.append(lower)
    except BaseException:
        with contextlib.suppress(BdevError):
            unmount_lowers(registry, done)
        raise
    return done


@contextlib.contextmanager
def lowers_mounted(registry: "Registry | None", lowers: list[Lower], *, container: str | None = None) -> Iterator[None]:
    """Context manager: the lowers that need mounting are mounted inside it."""
    done = mount_lowers(registry, lowers, container=container)
    try:
        yield
    finally:
        unmount_lowers(registry, done)


def unmount_lowers(registry: "Registry | None", lowers: list[Lower]) -> None:
    """Unmount mounted lowers, last first; failures are collected into one error at the end."""
    problems = []
    for lower in reversed(lowers):
        if not lower.mount or not is_mount_point(Path(lower.path)):
            continue
        try:
            storage = lower.storage
            if registry is not None and storage is not None:
                registry.backend(storage.backend).umount(storage, Path(lower.path))
            else:
                run(["umount", lower.path], backend=NAME)
        except BdevError as exc:
            problems.append(str(exc))
    if problems:
        raise BdevError(_("cannot unmount its lower layers ({problems})").format(problems='; '.join(problems)),
                        backend=NAME)


def mount(
    registry: "Registry | None",
    paths: OverlayPaths,
    lowers: list[Lower],
    mountpoint: Path,
    *,
    readonly: bool,
    container: str | None = None,
) -> None:
    """Mount the lowers that need it, then the overlay on ``mountpoint`` (root, or a process
    privileged in a user namespace that owns its mount namespace: with ``userxattr``, by
    ``mount(2)`` itself)."""
    if not readonly:
        paths.workdir.mkdir(mode=0o755, exist_ok=True)  # LXC creates it on mount too
    done = mount_lowers(registry, lowers, container=container)
    try:
        problem = missing_layer(paths, lowers)
        if problem:
            raise BdevError(problem, container=container, backend=NAME)
        text = options(paths, lowers, readonly=readonly)
        if needs_userxattr():
            text += ",userxattr"
        if in_initial_user_namespace():
            argv = ["mount", "-t", "overlay", "overlay", "-o", ("ro," if readonly else "") + text, str(mountpoint)]
            run(argv, container=container, backend=NAME)
        else:
            _in_user_namespace(mount_overlay, str(mountpoint), text, readonly=readonly, container=container)
    except BaseException:
        with contextlib.suppress(BdevError):
            unmount_lowers(registry, done)
        raise


def umount(registry: "Registry | None", lowers: list[Lower], mountpoint: Path, *, container: str | None = None) -> None:
    """Unmount the overlay, then the lowers mounted for it."""
    if in_initial_user_namespace():
        run(["umount", str(mountpoint)], container=container, backend=NAME)
    else:
        _in_user_namespace(unmount, str(mountpoint), container=container)
    if not any(_still_used(lower) for lower in lowers):
        unmount_lowers(registry, lowers)


def _in_user_namespace(call: Callable[..., None], *args: object, container: str | None = None, **kwargs: object) -> None:
    """Run a mount system call from a user namespace; a refusal as one sentence."""
    try:
        call(*args, **kwargs)
    except OSError as exc:
        raise BdevError(_("{cause} (in a user namespace)").format(cause=exc.strerror),
                        container=container, backend=NAME) from None


def _still_used(lower: Lower) -> bool:
    """Whether a mounted lower is still a layer of another overlay mount (of the same rootfs)."""
    return lower.mount and overlay_using(lower.path) is not None


def overlay_using(layer: str | os.PathLike[str]) -> str | None:
    """Where an overlay that has ``layer`` as a lower or upper directory is mounted, or None."""
    wanted = os.fspath(layer)
    for entry in mount_entries():
        if entry.fstype != "overlay":
            continue
        lowerdir = entry.option("lowerdir")
        if entry.option("upperdir") == wanted or (lowerdir is not None and wanted in lowerdir.split(":")):
            return entry.mountpoint
    return None
