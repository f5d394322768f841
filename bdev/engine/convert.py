"""Converting a container's rootfs to another backend in place (``bdev convert NAME -B BACKEND``).

Any pair the registry can copy works: the old rootfs is read (mounted read-only where it
must be) and the target backend makes a full copy, as a clone would.  A source backend may
instead convert *natively* (:meth:`Backend.convert_into`): the aufs backend reads its branches
directly, because no current kernel can mount aufs, and gives overlay an upper layer with the
whiteouts translated, or any other backend the merged tree.

Like a restore in place, a conversion never loses the container:

1. Everything is checked first: the container is stopped, no clone depends on its rootfs, no
   snapshot shares a layer with it, the target backend can work here, and the new rootfs
   does not need a place the old one uses.
2. A journal (``op: convert``) records the old and new locators and the new config.
3. The new rootfs is built beside the old one, invisible to LXC (the config still names the
   old one): at the target's usual place when that is free (an empty mount-point directory
   counts as free and is put back on rollback), else, when both backends keep the rootfs at
   the same path (``dir`` and ``btrfs`` both use ``<container>/rootfs``), at a hidden staged
   sibling that the target backend's atomic ``swap`` then exchanges with the old tree.
4. The new config is written atomically (legacy keys upgraded, ``lxc.rootfs.path`` naming the
   new rootfs); that write is the commit.
5. Only then is the old rootfs destroyed (a native conversion keeps the layers the new one
   still uses), LXC's dependency records are brought in line with the new rootfs (dropped
   when it no longer depends on its origin; written when it does, the origin found by its
   rootfs path for LXC 1.0 clones that never recorded one), and the journal removed.

After a crash the next command that locks the container finishes or rolls back
(:func:`rollback_or_finish_convert`): a swap that happened (the final locator's identity
changed) or a config that already names the new rootfs means finish; anything else means the
new rootfs is destroyed and the container is exactly as before.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backend import Backend
from ..errors import BdevError, Busy, HasDependents, InvalidInput, NotSupported, explain
from ..fsops import remove_tree
from ..i18n import _
from ..records import CloneOutcome, CreateOptions, Placement, Rootfs
from ..store import deps
from ..store.config import LxcConfig
from ..store.journal import Journal
from ..store.layout import DEPENDENTS, JOURNAL, ORIGIN, ContainerRef
from ..store.legacy import upgrade_in_place
from ..store.running import is_running
from . import faults
from .destroy import refuse_dependents
from .plan import choose_backend

if TYPE_CHECKING:
    from .context import Context

OP = "convert"
STAGE = "convert"
SCRATCH = ".bdev-convert-scratch"
"""A directory inside the container a native conversion may use; removed when it ends."""


def converts_natively(backend: Backend) -> bool:
    """Whether ``backend`` converts its rootfs by its own means (:meth:`Backend.convert_into`)."""
    return type(backend).convert_into is not Backend.convert_into


def convert(
    ctx: "Context", ref: ContainerRef, target_spec: str, *, options: CreateOptions | None = None, progress: object | None = None
) -> CloneOutcome:
    """Convert ``ref``'s rootfs to the backend ``target_spec`` (a name, ``best`` or a list);
    returns how the new rootfs was made.

    :raises Busy: the container runs.
    :raises HasDependents: clones depend on its rootfs, or snapshots share its layers.
    :raises InvalidInput: it already uses that backend.
    :raises NotSupported: the new rootfs would need a place the old one uses.
    """
    options = options or CreateOptions()
    with ctx.locked(ref):
        ctx.store.require(ref)
        if is_running(ref):
            raise Busy(_("is running; stop it before converting its rootfs"), container=ref.name)
        try:
            plan = _plan(ctx, ref, target_spec, options)
        except BdevError as exc:
            raise exc.about(container=ref.name)
        journal = Journal.begin(ref.file(JOURNAL), OP, **plan.record)
        try:
            if plan.emptied:
                plan.emptied.rmdir()
            outcome = _build(plan, options, ref, progress)
            journal.update(depends=outcome.depends_on_origin)
            faults.checkpoint("convert:after-build")
            if plan.swap:
                plan.target.swap(plan.final, outcome.rootfs)
                faults.checkpoint("convert:after-swap")
        except BaseException as exc:
            with contextlib.suppress(BdevError, OSError):
                rollback_or_finish_convert(ctx, ref, journal)
            raise _explained(exc, ref, plan.target, "the container is unchanged") from None
        try:
            _finish(ctx, ref, journal)
        except (BdevError, OSError) as exc:
            raise _explained(exc, ref, plan.old_backend, "it is converted; the next command removes the old rootfs") from None
    ctx.notify(_(
        "converted {name} from {old} to {new}: {outcome}"
    ).format(name=ref.name, old=plan.old_backend.name, new=plan.target.name, outcome=outcome.describe()))
    return outcome


@dataclass(frozen=True)
class _Plan:
    """What a conversion will do, decided before anything changes."""

    old: Rootfs
    old_backend: Backend
    target: Backend
    native: Backend | None
    final: Rootfs
    swap: bool
    emptied: Path | None
    place: Placement
    record: dict[str, Any]


def _plan(ctx: "Context", ref: ContainerRef, target_spec: str, options: CreateOptions) -> _Plan:
    """Check everything and decide where the new rootfs is built; nothing is changed."""
    config = ctx.store.load_config(ref)
    old = ctx.store.rootfs_of(ref, config)
    old_backend = ctx.registry.backend_for(old)
    refuse_dependents(ctx, ref, _(
        "clones depend on its rootfs ({names}); converting would change it under them: destroy them, or "
        "convert them to a backend that does not layer over it, first"
    ))
    _refuse_shared_snapshots(ctx, ref, old)
    _refuse_same_backend(ctx, target_spec, old_backend)
    target = choose_backend(ctx.registry, target_spec, ref.placement, options)
    _refuse_same_backend(ctx, target.name, old_backend)
    native = old_backend if converts_natively(old_backend) else None
    final = _locator(native, old, target, ref.placement, options)
    swap, emptied = _where_to_build(ref, old, final, target, native is not None)
    place = ref.placement.staged(STAGE, near=final.source) if swap else ref.placement
    build = _locator(native, old, target, place, options) if swap else final
    new_config = config.copy()
    upgrade_in_place(new_config)  # LXC 5 refuses LXC 1.0 keys
    new_config.set_rootfs(final.config_value)
    origin = ctx.store.origin(ref) or _origin_by_path(ctx, ref, final)
    record = {
        "old_backend": old_backend.name, "old_source": old.source, "target": target.name, "final": final.source,
        "build": build.source, "swap": swap, "final_identity": target.identity(final) if swap else None,
        "emptied": str(emptied) if emptied else None, "config": new_config.render(),
        "origin_lxcpath": str(origin[0]) if origin else None, "origin_name": origin[1] if origin else None,
        "depends": None,
    }
    return _Plan(old, old_backend, target, native, final, swap, emptied, place, record)


def _origin_by_path(ctx: "Context", ref: ContainerRef, final: Rootfs) -> tuple[Path, str] | None:
    """The container of ``ref``'s lxcpath whose rootfs directory the new rootfs names as a
    layer, for a container that depends on it without saying so (LXC 1.0 kept only a count
    in ``lxc_snapshots``, and no ``lxc_rdepends``)."""
    layers = [p for p in _paths(final) if not _inside(p, ref.directory)]
    if not layers:
        return None
    for other in ctx.store.list_refs(ref.lxcpath):
        if other.name == ref.name:
            continue
        try:
            rootfs = ctx.store.rootfs_of(other)
            path = ctx.registry.backend_for(rootfs).data_path(rootfs)
        except BdevError:
            continue
        if path is not None and Path(os.path.normpath(path)) in layers:
            return other.lxcpath, other.name
    return None


def _explained(exc: BaseException, ref: ContainerRef, backend: Backend, state: str) -> BaseException:
    """``exc`` as one sentence naming the container, saying what state it is left in."""
    if isinstance(exc, BdevError):
        exc.about(container=ref.name, backend=backend.name)
        exc.cause = f"{exc.cause.rstrip('.')}; {state}"
        return exc
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return BdevError(f"{explain(exc)}{where}; {state}", container=ref.name, backend=backend.name)
    return exc


def _locator(
    native: Backend | None, old: Rootfs, target: Backend, placement: Placement, options: CreateOptions
) -> Rootfs:
    """The rootfs the conversion will make at ``placement``."""
    if native is not None:
        return target.parse(native.conversion_source(old, target, placement, options))
    return target.parse(target.default_source(placement, options))


def _refuse_same_backend(ctx: "Context", spec: str, old_backend: Backend) -> None:
    """Refuse a conversion to the backend the container already uses (checked on the name
    first, so an unusable backend such as aufs on a kernel without it is not blamed)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) == 1 and names[0].lower() != "best" and ctx.registry.canonical(names[0]) == old_backend.name:
        raise InvalidInput(_("already uses the {name} backend").format(name=old_backend.name), backend=old_backend.name)


def _paths(rootfs: Rootfs) -> list[Path]:
    """The host paths a locator names (``lower:upper`` has two)."""
    return [Path(os.path.normpath(part)) for part in rootfs.source.split(":") if part.startswith("/")]


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _refuse_shared_snapshots(ctx: "Context", ref: ContainerRef, old: Rootfs) -> None:
    """Snapshots of a layered container use the container's own layers (an overlay
    snapshot's lower is the container's ``rootfs``): destroying the old rootfs would break them."""
    for snap in ctx.store.snapshot_refs(ref):
        try:
            snap_rootfs = ctx.store.rootfs_of(snap)
        except BdevError:
            continue
        shared = [p for p in _paths(snap_rootfs) if _inside(p, ref.directory) and not _inside(p, snap.directory)]
        if shared:
            raise HasDependents(
                _(
                    "its snapshot {name} uses {shared}, part of its rootfs; restore the snapshots you need to new "
                    "names and destroy them (bdev snapshot destroy {container} --all) before converting"
                ).format(name=snap.name, shared=shared[0], container=ref.name),
                container=ref.name,
            )


def _where_to_build(
    ref: ContainerRef, old: Rootfs, final: Rootfs, target: Backend, native: bool
) -> tuple[bool, Path | None]:
    """``(swap, emptied)``: whether the new rootfs is built at a staged sibling and swapped
    in (both backends keep the rootfs at the same path), and the empty mount-point directory
    removed to make room for it, if any.

    :raises NotSupported: the new rootfs would need a place the old one uses.
    """
    if final.source == old.source:
        if type(target).swap is Backend.swap:
            raise NotSupported(
                _(
                    "the {name} backend cannot swap a rootfs into {source} atomically; clone the container with -B "
                    "{name} instead"
                ).format(name=target.name, source=final.source),
                container=ref.name, backend=target.name,
            )
        return True, None
    old_paths = [p for p in _paths(old) if _inside(p, ref.directory)]
    layered = len(_paths(final)) > 1
    for path in _paths(final):
        if native and layered and path in old_paths:
            continue  # a layer the native conversion keeps using (aufs's lower under overlay)
        clash = next((p for p in old_paths if _inside(p, path) or _inside(path, p)), None)
        if clash is not None and _inside(path, ref.directory):
            raise NotSupported(
                _(
                    "its {backend} rootfs uses {clash}, where the {name} rootfs would go; clone the container with -B "
                    "{name} (or -s for a layer) instead"
                ).format(backend=old.backend, clash=clash, name=target.name),
                container=ref.name, backend=target.name,
            )
    if not target.exists(final):
        return False, None
    spot = Path(final.source)
    if not layered and spot.is_dir() and not spot.is_symlink() and not any(spot.iterdir()):
        return False, spot  # LXC's empty mount point for a mounted rootfs (overlay, aufs, loop)
    raise NotSupported(_(
        "{source} already exists, where the {name} rootfs would go"
    ).format(source=final.source, name=target.name), container=ref.name, backend=target.name)


def _build(plan: _Plan, options: CreateOptions, ref: ContainerRef, progress: object | None) -> CloneOutcome:
    """Make the new rootfs at ``plan.place``."""
    if plan.native is None:
        with plan.old_backend.accessed(plan.old, readonly=True) as files:
            return plan.target.copy_from(files, plan.place, options, progress)
    scratch = ref.file(SCRATCH)
    remove_tree(scratch)
    scratch.mkdir(mode=0o700)
    try:
        return plan.native.convert_into(plan.old, plan.target, plan.place, options, scratch, progress)
    finally:
        remove_tree(scratch)


def _finish(ctx: "Context", ref: ContainerRef, journal: Journal) -> None:
    """Commit (write the new config), then drop what the old rootfs held; safe to repeat."""
    config = LxcConfig.parse(journal.get("config"))
    config.save(ref.config_path)
    faults.checkpoint("convert:after-config")
    if journal.get("origin_name"):
        origin = (Path(journal.get("origin_lxcpath")), journal.get("origin_name"))
        if journal.get("depends"):  # recorded as a clone records it (found by path for LXC 1.0's)
            deps.add_pair(origin[0] / origin[1] / DEPENDENTS, (ref.lxcpath, ref.name))
            deps.write_pairs(ref.file(ORIGIN), [origin])
        else:
            deps.remove_pair(origin[0] / origin[1] / DEPENDENTS, (ref.lxcpath, ref.name))
            deps.write_pairs(ref.file(ORIGIN), [])
    old_backend = ctx.registry.backend(journal.get("old_backend"))
    target = ctx.registry.backend(journal.get("target"))
    leftover = Rootfs(old_backend.name, journal.get("build") if journal.get("swap") else journal.get("old_source"))
    if converts_natively(old_backend):
        old_backend.discard_converted(leftover, Rootfs(target.name, journal.get("final")))
    elif old_backend.exists(leftover):
        old_backend.destroy(leftover)
    if target.capabilities.needs_mount:
        ref.placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)  # LXC's mount point
    faults.checkpoint("convert:after-old-removed")
    remove_tree(ref.file(SCRATCH))
    journal.finish()


def _roll_back(ctx: "Context", ref: ContainerRef, journal: Journal) -> None:
    """Destroy the new rootfs and put back the mount point it replaced."""
    target = ctx.registry.backend(journal.get("target"))
    build = Rootfs(target.name, journal.get("build"))
    if target.exists(build):
        target.destroy(build)
    emptied = journal.get("emptied")
    if emptied and not os.path.lexists(emptied):
        os.mkdir(emptied, 0o755)
    remove_tree(ref.file(SCRATCH))
    journal.finish()


def rollback_or_finish_convert(ctx: "Context", ref: ContainerRef, journal: Journal) -> str:
    """Bring an interrupted conversion to a consistent end; returns what was done.

    Finished when the new rootfs was already committed: swapped into place (the final
    locator's identity changed) or named by the config on disk.  Rolled back otherwise.
    """
    target = ctx.registry.backend(journal.get("target"))
    final = Rootfs(target.name, journal.get("final"))
    if journal.get("swap"):
        committed = target.exists(final) and target.identity(final) != journal.get("final_identity")
    else:
        current, _ = ctx.store.load_config(ref).rootfs_value()
        committed = current == final.config_value
    if committed:
        _finish(ctx, ref, journal)
        return "finished"
    _roll_back(ctx, ref, journal)
    return "rolled back"
