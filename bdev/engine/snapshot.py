"""Container snapshots (``lxc-snapshot``): ``snaps/snapN`` clones with LXC's ``ts`` and
``comment`` files, listing, and destroying them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import BdevError, Busy, HasDependents, InvalidInput, NotFound, NotSupported
from ..i18n import _
from ..naming import validate_snapshot_name
from ..records import CreateOptions
from ..store.layout import COMMENT, TIMESTAMP, ContainerRef, snapshot_number, snapshot_ref, snapshots_dir
from ..store.running import is_running
from .clone import clone_locked
from .context import Context
from .destroy import after_snapshots, destroy_locked, refuse_busy


def snapshot(
    ctx: Context,
    ref: ContainerRef,
    *,
    comment: str | None = None,
    comment_file: str | os.PathLike[str] | None = None,
    progress: object | None = None,
) -> str:
    """Snapshot ``ref`` into its first free ``snapN`` and return that name.

    A native snapshot where the backend has one, else a full copy (reflinked where possible);
    the config keeps the container's name and MAC addresses, as LXC's snapshots do.
    """
    if comment is not None and comment_file is not None:
        raise InvalidInput(_("give a comment or a comment file, not both"), container=ref.name)
    if comment_file is not None:
        try:
            comment = Path(comment_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(_(
                "cannot read the comment file {path}: {exc}"
            ).format(path=os.fspath(comment_file), exc=exc), container=ref.name) from None
    with ctx.locked(ref):
        ctx.store.require(ref)
        rootfs = ctx.store.rootfs_of(ref)
        backend = ctx.registry.backend_for(rootfs)
        if not backend.capabilities.can_backup:
            raise NotSupported(_(
                "its backend cannot be snapshotted (LXC's can_backup is off)"
            ), container=ref.name, backend=backend.name)
        if is_running(ref):
            raise Busy(_("is running; stop it before snapshotting"), container=ref.name)
        directory = snapshots_dir(ref)  # made (0755) by new_container, and removed if this fails
        name = _first_free(directory)
        target = ContainerRef(directory, name, owner=ref.name)
        files = {TIMESTAMP: time.strftime("%Y:%m:%d %H:%M:%S")}
        if comment:  # lxc-snapshot -L -C prints the file verbatim: end it with a newline
            files[COMMENT] = comment if comment_file is not None or comment.endswith("\n") else comment + "\n"
        outcome = clone_locked(
            ctx, ref, target, op="snapshot", backend=None, snapshot=True, maybe_snapshot=True,
            keepname=True, keepmac=True, options=CreateOptions(), keep_backend=True, extra_files=files,
            progress=progress,
        )
    ctx.notify(_(
        "snapshot {name} of {container}: {outcome}"
    ).format(name=name, container=ref.name, outcome=outcome.describe()))
    return name


def _first_free(directory: Path) -> str:
    """``snapN`` with the smallest N not present (LXC's numbering)."""
    try:
        taken = {snapshot_number(n) for n in os.listdir(directory)}
    except FileNotFoundError:
        taken = set()
    number = 0
    while number in taken:
        number += 1
    return f"snap{number}"


def snapshot_list(ctx: Context, ref: ContainerRef) -> list:
    """``ref``'s snapshots as :class:`bdev.api.SnapshotInfo` records, ``snap0`` first."""
    from ..api import SnapshotInfo

    ctx.repair(ref)
    ctx.store.require(ref)
    infos = []
    for snap in ctx.store.snapshot_refs(ref):
        try:
            rootfs = ctx.store.rootfs_of(snap)
        except BdevError:
            rootfs = None
        infos.append(
            SnapshotInfo(
                name=snap.name,
                lxcpath=snap.lxcpath,
                timestamp=_read(snap.file(TIMESTAMP)) or "",
                comment=_read(snap.file(COMMENT)),
                rootfs=rootfs,
            )
        )
    return infos


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def find_snapshot(ctx: Context, ref: ContainerRef, snapname: str) -> ContainerRef:
    """The ref of ``ref``'s snapshot ``snapname``.

    :raises NotFound: no such snapshot.
    """
    validate_snapshot_name(snapname)
    snap = snapshot_ref(ref, snapname)
    if not ctx.store.is_defined(snap):
        raise NotFound(_("has no snapshot {snapname!r}").format(snapname=snapname), container=ref.name)
    return snap


def snapshot_destroy(ctx: Context, ref: ContainerRef, snapname: str) -> None:
    """Destroy one snapshot; refused while a clone depends on it."""
    with ctx.locked(ref):
        ctx.store.require(ref)
        snap = find_snapshot(ctx, ref, snapname)
        destroy_locked(ctx, snap)
        _prune_legacy_dir(ref)
    ctx.notify(_("destroyed snapshot {snapname} of {name}").format(snapname=snapname, name=ref.name))


def snapshot_destroy_all(ctx: Context, ref: ContainerRef) -> None:
    """Destroy every snapshot of ``ref`` (LXC's ``lxc-snapshot -d ALL``), refusing before
    destroying any if one of them has dependents."""
    with ctx.locked(ref):
        ctx.store.require(ref)
        destroy_snapshots_locked(ctx, ref)


def destroy_snapshots_locked(ctx: Context, ref: ContainerRef, *, keeping: ContainerRef | None = None) -> list[str]:
    """Destroy all of ``ref``'s snapshots and return their names, refusing before destroying
    any if one has dependents or its backend would refuse it (mounted elsewhere).

    :param keeping: a container to be destroyed next (``ref`` itself for ``destroy -s``): its
        backend is asked again before each snapshot goes, so that one mounted meanwhile
        stops the destroy while its remaining snapshots still exist.
    :raises Busy: a refusal found midway, naming the snapshots already destroyed.
    """
    snaps = ctx.store.snapshot_refs(ref)
    for snap in snaps:
        dependents = ctx.store.dependents(snap)
        if dependents:
            names = ", ".join(n for _, n in dependents)
            raise HasDependents(_(
                "its snapshot {name} has clones that depend on it ({names})"
            ).format(name=snap.name, names=names), container=ref.name)
    refuse_busy(ctx, snaps)
    destroyed: list[str] = []
    try:
        for snap in snaps:
            if keeping is not None:
                refuse_busy(ctx, [keeping])
            destroy_locked(ctx, snap)
            destroyed.append(snap.name)
            ctx.notify(_("destroyed snapshot {snapname} of {name}").format(snapname=snap.name, name=ref.name))
    except Busy as exc:
        raise after_snapshots(exc, destroyed) from None
    _prune_legacy_dir(ref)
    return destroyed


def _prune_legacy_dir(ref: ContainerRef) -> None:
    """Remove an empty ``snaps`` directory (LXC removes LXC 1.0's ``<lxcpath>snaps/<name>`` too)."""
    directory = snapshots_dir(ref)
    try:
        directory.rmdir()
    except OSError:
        pass
