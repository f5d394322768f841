"""Destroying containers and snapshots.

Refused, with nothing changed, while the container has snapshots (unless asked to take them)
or clones that depend on it, or while the backend of its rootfs or of a snapshot's would
refuse to destroy it (mounted elsewhere: :meth:`~bdev.backend.Backend.destroy_refusal`, asked
of every one before any is destroyed).  Snapshots go before the container, because their
storage may depend on the container's (zfs and rbd clones, LVM snapshots, overlay layers); the
container is asked again before each, so one mounted meanwhile stops the destroy with the
rest intact, and a refusal found late names the snapshots already gone.  Once started, a
destroy is journaled and *rolled forward*: a crash midway leaves a journal that the next
command uses to finish the job, so a half-deleted container never poses as a usable one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from ..errors import BdevError, Busy, HasDependents, from_os_error
from ..fsops import remove_tree
from ..i18n import _
from ..records import Rootfs
from ..store import deps
from ..store.journal import Journal
from ..store.layout import DEPENDENTS, JOURNAL, ContainerRef, legacy_snapshots_dir
from ..store.running import is_running
from . import faults
from .context import Context
from .idshift import as_mapped_owner, helper_idmap


def destroy(ctx: Context, ref: ContainerRef, *, with_snapshots: bool = False, force: bool = False) -> None:
    """Destroy ``ref`` (and its snapshots if ``with_snapshots``).

    :param force: stop it first if it runs, as ``lxc-destroy -f`` does (killed at once,
        through bdev-runtime; without the runtime a running container is refused).  An
        ephemeral container that its monitor destroys on stopping is then simply gone.
    :raises Busy: it runs (without ``force``, or it was started again meanwhile).
    """
    from .snapshot import destroy_snapshots_locked

    if force and is_running(ref):
        ctx.store.require(ref)
        _stop_for_destroy(ctx, ref)  # outside the lock: the monitor takes it to clean up
        if not ctx.store.is_defined(ref):  # ephemeral: destroyed by its monitor
            ctx.notify(_("destroyed {name}").format(name=ref.name))
            return
    with ctx.locked(ref):
        ctx.store.require(ref)
        if is_running(ref):
            raise Busy(_("is running; stop it first (or destroy it with -f / --force)"), container=ref.name)
        snaps = ctx.store.snapshot_refs(ref)
        if snaps and not with_snapshots:
            names = ", ".join(s.name for s in snaps)
            raise HasDependents(_(
                "has {count} snapshot(s) ({names}); destroy them too with -s"
            ).format(count=len(snaps), names=names), container=ref.name)
        refuse_dependents(ctx, ref)
        destroyed = destroy_snapshots_locked(ctx, ref, keeping=ref) if snaps else []
        try:
            destroy_locked(ctx, ref)
        except Busy as exc:  # mounted since it was asked: its snapshots are gone, it is whole
            raise after_snapshots(exc, destroyed) from None
        with contextlib.suppress(OSError):
            legacy_snapshots_dir(ref).rmdir()
    ctx.notify(_("destroyed {name}").format(name=ref.name))


def _stop_for_destroy(ctx: Context, ref: ContainerRef) -> None:
    """Kill the running ``ref`` through bdev-runtime (bdev's monitor or real LXC's).

    :raises Busy: bdev-runtime is not installed, or the container did not stop.
    """
    from ..runtime import runtime_module

    status = runtime_module("status")
    if status is None:
        raise Busy(_(
            "is running and bdev-runtime, which stops containers, is not installed: stop it with lxc-stop first"
        ),
                   container=ref.name)
    try:
        status.stop_now(ctx, ref)
    except BdevError as exc:
        raise Busy(_(
            "is running and could not be stopped: {cause}"
        ).format(cause=exc.cause), container=ref.name) from None


def refuse_dependents(ctx: Context, ref: ContainerRef, sentence: str | None = None) -> None:
    """Refuse while clones depend on ``ref``'s rootfs (LXC's ``lxc_rdepends``).

    :param sentence: why that stops the operation, translated, with ``{names}`` for the
        clones; by default destroy's "clones depend on its rootfs ({names}); destroy them first".
    :raises HasDependents: clones depend on it.
    """
    dependents = ctx.store.dependents(ref)
    if dependents:
        sentence = sentence or _("clones depend on its rootfs ({names}); destroy them first")
        names = ", ".join(n for _, n in dependents)
        raise HasDependents(sentence.format(names=names), container=ref.label)


def refuse_busy(ctx: Context, refs: Sequence[ContainerRef]) -> None:
    """Ask the backend of each of ``refs`` (a container, its snapshots) whether destroying its
    rootfs now would be refused, changing nothing.

    :raises Busy: one would be; the sentence names it, its backend and the backend's cause.
    """
    for ref in refs:
        rootfs = ctx.store.rootfs_of(ref)
        backend = ctx.registry.backend_for(rootfs)
        cause = backend.destroy_refusal(rootfs)
        if cause is not None:
            raise Busy(cause, container=ref.label, backend=backend.name)


def after_snapshots(exc: Busy, destroyed: Sequence[str]) -> Busy:
    """``exc`` (a refusal found after some snapshots were destroyed: something mounted a
    rootfs meanwhile) saying which snapshots are gone; everything else is intact."""
    if destroyed:
        exc.cause = _(
            "{cause} (found after destroying its snapshots {names}; everything else is intact)"
        ).format(cause=str(exc.cause).rstrip(".。"), names=", ".join(destroyed))
    return exc


def destroy_locked(ctx: Context, ref: ContainerRef) -> None:
    """Destroy one container or snapshot directory, its rootfs and its dependency records."""
    try:
        _destroy_locked(ctx, ref)
    except BdevError as exc:
        raise exc.about(container=ref.label)
    except OSError as exc:
        raise from_os_error(exc, container=ref.label) from exc


def _destroy_locked(ctx: Context, ref: ContainerRef) -> None:
    refuse_dependents(ctx, ref)
    refuse_busy(ctx, [ref])  # a refusal now, before the journal, leaves nothing to finish
    rootfs = ctx.store.rootfs_of(ref)
    origin = ctx.store.origin(ref)
    journal = Journal.begin(
        ref.file(JOURNAL),
        "destroy",
        backend=rootfs.backend,
        source=rootfs.source,
        origin_lxcpath=str(origin[0]) if origin else None,
        origin_name=origin[1] if origin else None,
    )
    try:
        finish_destroy(ctx, ref, journal)
    except Busy:
        # the backend refused before removing anything (Backend.destroy's rule): the
        # container is whole, so the destroy is abandoned, not finished by the next command
        journal.finish()
        raise


def finish_destroy(ctx: Context, ref: ContainerRef, journal: Journal) -> None:
    """Complete a (possibly interrupted) destroy from its journal; safe to repeat."""
    rootfs = Rootfs(journal.get("backend"), journal.get("source"))
    backend = ctx.registry.backend(rootfs.backend)
    if backend.exists(rootfs):  # an ordinary user's mapped rootfs is removed in its ids
        mapped = helper_idmap(ctx.store.load_config(ref)) if ref.config_path.exists() else None
        as_mapped_owner(mapped, lambda: backend.destroy(rootfs), container=ref.label)
    faults.checkpoint("destroy:after-rootfs")
    if journal.get("origin_name"):
        origin_dir = Path(journal.get("origin_lxcpath")) / journal.get("origin_name")
        deps.remove_pair(origin_dir / DEPENDENTS, (ref.lxcpath, ref.name))
    remove_tree(ref.directory)
