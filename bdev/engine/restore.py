"""Restoring snapshots: to a new name (a clone of the snapshot), or in place, atomically.

In place never destroys first (LXC's lxc/lxc#224): the snapshot is cloned into a hidden staged
rootfs beside the live one, the backend swaps the two atomically, the snapshot's config is
installed, and only then is the old tree destroyed.  A journal written before the first step
records the live rootfs's identity; after a crash the next command compares identities to
tell whether the swap happened, and completes or rolls back accordingly.  Either way the
container is whole.

An ordinary user's mapped (``lxc.idmap``) container is restored in its ids: staging, the swap
and removing the old tree run through :func:`bdev.engine.idshift.as_mapped_owner`, as clone
and destroy do.

A backend may restore natively instead (:meth:`Backend.restore_natively`: zfs rolls back to
its latest snapshot).  The journal then says ``method: native``, and ``native_started`` once
the core is about to call it.  A native restore keeps the live identity, so recovery never
compares identities for it: before ``native_started`` nothing changed (rolled back); after
it, the core calls the idempotent hook again and installs the config (completed).  When the
hook declines, the journal turns into an ordinary ``swap`` one and the restore goes on by
stage and swap.
"""

from __future__ import annotations

from pathlib import Path

from ..backend import Backend
from ..errors import AlreadyExists, BdevError, Busy, NotSupported
from ..i18n import _
from ..records import CreateOptions, Rootfs
from ..store.config import LxcConfig
from ..store.journal import Journal
from ..store.layout import JOURNAL, ContainerRef
from ..store.running import is_running
from . import faults
from .clone import clone_locked, execute_as_owner
from .context import Context
from .destroy import refuse_dependents
from .identity import clone_config, copy_container_files
from .idshift import as_mapped_owner, helper_idmap
from .plan import plan_clone, target_rootfs
from .snapshot import find_snapshot


def snapshot_restore(
    ctx: Context, ref: ContainerRef, snapname: str, newname: str | None, *, progress: object | None = None
) -> ContainerRef:
    """Restore ``snapname`` of ``ref`` in place (``newname`` None or ``ref.name``) or to
    ``newname`` in the same lxcpath; returns the restored container's ref.  A new name gets a
    new hostname and new MAC addresses (as LXC does: two containers must not share a MAC)."""
    if newname is None or newname == ref.name:
        _restore_in_place(ctx, ref, snapname, progress)
        return ref
    target = ctx.ref(newname, ref.lxcpath)
    with ctx.locked(ref, target):
        ctx.store.require(ref)
        snap = find_snapshot(ctx, ref, snapname)
        if ctx.store.exists(target):
            raise AlreadyExists(_(
                "container already exists in {lxcpath}"
            ).format(lxcpath=target.lxcpath), container=target.name)
        outcome = clone_locked(
            ctx, snap, target, op="restore", backend=None, snapshot=True, maybe_snapshot=True,
            keepname=False, keepmac=False, options=CreateOptions(), keep_backend=True, progress=progress,
        )
    ctx.notify(_(
        "restored {snapname} of {name} as {target}: {outcome}"
    ).format(snapname=snapname, name=ref.name, target=target.name, outcome=outcome.describe()))
    return target


def _restore_in_place(ctx: Context, ref: ContainerRef, snapname: str, progress: object | None) -> None:
    with ctx.locked(ref):
        ctx.store.require(ref)
        snap = find_snapshot(ctx, ref, snapname)
        refuse_dependents(ctx, ref, _(
            "clones use its rootfs ({names}); restoring would change it under them, restore to a new name instead"
        ))
        if is_running(ref):
            raise Busy(_("is running; stop it before restoring a snapshot in place"), container=ref.name)
        live_config = ctx.store.load_config(ref)
        live = ctx.store.rootfs_of(ref, live_config)
        backend = ctx.registry.backend_for(live)
        has_swap = type(backend).swap is not Backend.swap
        if not has_swap and not _offers_native_restore(backend):
            raise NotSupported(_(
                "cannot restore in place without an atomic swap; restore to a new name"
            ), container=ref.name, backend=backend.name)
        snap_config = ctx.store.load_config(snap)
        snap_rootfs = ctx.store.rootfs_of(snap, snap_config)
        snap_backend = ctx.registry.backend_for(snap_rootfs)
        staged_place = ref.placement.staged("restore", near=live.source)
        options = CreateOptions()
        try:
            plan = plan_clone(
                ctx.registry, snap_rootfs, snap_backend, backend.name, staged_place, options,
                snapshot=True, maybe_snapshot=True,
            )
        except BdevError as exc:
            raise exc.about(container=ref.name)
        staged = target_rootfs(plan, staged_place, options)
        new_config = clone_config(snap_config, snap, ref, live, keepname=True, keepmac=True)
        mapped = helper_idmap(live_config)  # an ordinary user's mapped rootfs: worked on in its ids
        native = _offers_native_restore(backend) and snap_rootfs.backend == backend.name
        journal = Journal.begin(
            ref.file(JOURNAL), "restore", snapshot=snapname, snapshot_dir=str(snap.directory), backend=backend.name,
            live=live.source, staged=staged.source, live_identity=backend.identity(live),
            config=new_config.render(), method=NATIVE if native else SWAP, snapshot_rootfs=snap_rootfs.source,
        )
        if native and _restore_natively(ctx, ref, backend, live, snap_rootfs, journal):
            ctx.notify(_(
                "restored {name} to {snapname} in place: natively, by the {backend} backend"
            ).format(name=ref.name, snapname=snapname, backend=backend.name))
            return
        if not has_swap:
            journal.finish()
            raise NotSupported(
                _(
                    "cannot restore {snapname} in place natively and has no atomic swap; restore to a new name"
                ).format(snapname=snapname),
                container=ref.name, backend=backend.name,
            )
        try:
            outcome = execute_as_owner(mapped, plan, snap_rootfs, snap_backend, staged_place, options, progress,
                                       container=ref.name)
        except BaseException as exc:
            rollback_or_finish_restore(ctx, ref, journal)
            if isinstance(exc, BdevError):
                raise exc.about(container=ref.name, backend=backend.name)
            raise
        faults.checkpoint("restore:after-stage")
        try:
            as_mapped_owner(mapped, lambda: backend.swap(live, outcome.rootfs), container=ref.name)
        except BaseException as exc:  # the backend's failure, whatever it is: undo, then explain
            rollback_or_finish_restore(ctx, ref, journal)
            if isinstance(exc, BdevError):
                raise exc.about(container=ref.name, backend=backend.name)
            if isinstance(exc, OSError):
                raise BdevError(
                    _(
                        "cannot swap the restored rootfs into place ({strerror}); the container is unchanged"
                    ).format(strerror=exc.strerror),
                    container=ref.name, backend=backend.name,
                ) from None
            raise
        faults.checkpoint("restore:after-swap")
        _install_config(journal, ref)
        faults.checkpoint("restore:after-config")
        as_mapped_owner(mapped, lambda: backend.destroy(outcome.rootfs), container=ref.name)
        journal.finish()
    ctx.notify(_(
        "restored {name} to {snapname} in place: {outcome}"
    ).format(name=ref.name, snapname=snapname, outcome=outcome.describe()))


NATIVE = "native"
SWAP = "swap"


def _offers_native_restore(backend: Backend) -> bool:
    return type(backend).restore_natively is not Backend.restore_natively


def _restore_natively(
    ctx: Context, ref: ContainerRef, backend: Backend, live: Rootfs, snapshot: Rootfs, journal: Journal
) -> bool:
    """Let the backend restore ``snapshot`` into ``live`` itself; False (journal switched to
    ``swap``, nothing changed) when it declines.  The marked steps keep their meaning for
    crash tests: ``after-stage`` changes nothing here, ``after-swap`` follows the native
    restore, before the config is installed."""
    faults.checkpoint("restore:after-stage")
    journal.update(native_started=True)
    try:
        done = backend.restore_natively(live, snapshot)
    except BdevError as exc:  # an expected failure of an atomic operation: nothing changed
        journal.finish()
        raise exc.about(container=ref.name, backend=backend.name)
    # anything else (an interrupt, a bug) leaves the journal: the next command finishes it
    if not done:
        journal.update(method=SWAP, native_started=False)
        return False
    faults.checkpoint("restore:after-swap")
    _install_config(journal, ref)
    faults.checkpoint("restore:after-config")
    journal.finish()
    return True


def _install_config(journal: Journal, ref: ContainerRef) -> None:
    """Install the snapshot's config recorded in the journal (and the files it names)."""
    config = LxcConfig.parse(journal.get("config"))
    snapshot_dir = Path(journal.get("snapshot_dir"))
    copy_container_files(config, ContainerRef(snapshot_dir.parent, snapshot_dir.name, owner=ref.name), ref)
    config.save(ref.config_path)


def rollback_or_finish_restore(ctx: Context, ref: ContainerRef, journal: Journal) -> str:
    """Bring an interrupted in-place restore to a consistent end; returns what was done.

    If the live rootfs is still the one recorded, the swap never happened: the staged copy is
    discarded (rolled back).  Otherwise the swap happened: the snapshot's config is installed
    and the staged name, which now holds the old tree, is destroyed (completed).  A native
    restore is finished by :func:`_finish_native_restore`.
    """
    backend = ctx.registry.backend(journal.get("backend"))
    live = Rootfs(backend.name, journal.get("live"))
    staged = Rootfs(backend.name, journal.get("staged"))
    if journal.get("method", SWAP) == NATIVE:
        return _finish_native_restore(ref, journal, backend, live)
    if not backend.exists(live):
        raise BdevError(
            _(
                "an interrupted restore left no rootfs at {source}; the previous tree is at {previous} and the "
                "journal {path} describes the step that failed"
            ).format(source=live.source, previous=staged.source, path=journal.path),
            container=ref.label, backend=backend.name,
        )
    swapped = backend.identity(live) != journal.get("live_identity")
    if swapped:
        _install_config(journal, ref)
    if backend.exists(staged):
        mapped = helper_idmap(ctx.store.load_config(ref)) if ref.config_path.exists() else None
        as_mapped_owner(mapped, lambda: backend.destroy(staged), container=ref.label)
    journal.finish()
    return "completed" if swapped else "rolled back"


def _finish_native_restore(ref: ContainerRef, journal: Journal, backend: Backend, live: Rootfs) -> str:
    """A native restore that was not about to start changed nothing (rolled back); one that
    was is done again (the hook is idempotent) and its config installed (completed).  If the
    backend now declines, nothing was changed by it and the container is left as it is."""
    if not journal.get("native_started"):
        journal.finish()
        return "rolled back"
    try:
        done = backend.restore_natively(live, Rootfs(backend.name, journal.get("snapshot_rootfs")))
    except BdevError as exc:
        raise exc.about(container=ref.label, backend=backend.name)
    if done:
        _install_config(journal, ref)
    journal.finish()
    return "completed" if done else "rolled back"
