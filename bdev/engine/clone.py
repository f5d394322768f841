"""Cloning a container (``lxc-clone``, ``lxc-copy``): any backend into any other, by native
snapshot, layer or full copy as :mod:`bdev.engine.plan` decides."""

from __future__ import annotations

import os
from pathlib import Path

from ..backend import Backend
from ..errors import AlreadyExists, BdevError, Busy
from ..i18n import _
from ..idmap import IdMap
from ..records import CloneOutcome, CreateOptions, Placement, Rootfs
from ..store import deps
from ..store.layout import DEPENDENTS, ORIGIN, ContainerRef
from ..store.running import is_running
from . import faults
from .context import Context
from .idshift import adopt_own_files, as_mapped_owner, helper_idmap
from .identity import clone_config, copy_container_files, rewrite_hostname
from .newdir import NewContainer, new_container
from .plan import ClonePlan, execute, plan_clone, target_rootfs


def clone(
    ctx: Context,
    source: ContainerRef,
    newname: str,
    *,
    lxcpath: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    snapshot: bool = False,
    maybe_snapshot: bool = False,
    keepname: bool = False,
    keepmac: bool = False,
    options: CreateOptions | None = None,
    progress: object | None = None,
) -> tuple[ContainerRef, CloneOutcome]:
    """Clone ``source`` to ``newname``; returns the new container's ref and how it was made.

    :raises AlreadyExists: ``newname`` exists (nothing is changed).
    """
    target = ctx.ref(newname, lxcpath if lxcpath is not None else source.lxcpath)
    if (target.lxcpath, target.name) == (source.lxcpath, source.name):
        raise AlreadyExists(_("cannot clone a container onto itself"), container=source.name)
    with ctx.locked(source, target):
        ctx.store.require(source)
        if ctx.store.exists(target):
            raise AlreadyExists(_(
                "container already exists in {lxcpath}"
            ).format(lxcpath=target.lxcpath), container=target.name)
        outcome = clone_locked(
            ctx, source, target, op="clone", backend=backend, snapshot=snapshot, maybe_snapshot=maybe_snapshot,
            keepname=keepname, keepmac=keepmac, options=options or CreateOptions(), progress=progress,
        )
    ctx.notify(_(
        "cloned {label} to {name}: {outcome}"
    ).format(label=source.label, name=target.name, outcome=outcome.describe()))
    return target, outcome


def clone_locked(
    ctx: Context,
    source: ContainerRef,
    target: ContainerRef,
    *,
    op: str,
    backend: str | None,
    snapshot: bool,
    maybe_snapshot: bool,
    keepname: bool,
    keepmac: bool,
    options: CreateOptions,
    keep_backend: bool = False,
    progress: object | None = None,
    extra_files: dict[str, str] | None = None,
) -> CloneOutcome:
    """The clone itself, with both containers already locked.  Shared by clone, snapshot and
    restore-to-a-new-name.  ``extra_files`` are written into the new directory (``ts``,
    ``comment``) before it stops being partial."""
    source_config = ctx.store.load_config(source)
    source_rootfs = ctx.store.rootfs_of(source, source_config)
    source_backend = ctx.registry.backend_for(source_rootfs)
    if is_running(source):
        raise Busy(_("is running; stop it before cloning or snapshotting"), container=source.label)
    try:  # its files are read (or snapshotted) through its backend: one that cannot work here is its problem
        ctx.registry.usable_backend(source_backend.name)
    except BdevError as exc:
        raise exc.about(container=source.label)
    try:
        plan = plan_clone(
            ctx.registry, source_rootfs, source_backend, backend, target.placement, options,
            snapshot=snapshot, maybe_snapshot=maybe_snapshot, keep_backend=keep_backend,
        )
    except BdevError as exc:
        raise exc.about(container=target.label)
    intended = target_rootfs(plan, target.placement, options)
    try:  # the new config is checked (name length, values) before anything is created
        config = clone_config(source_config, source, target, intended, keepname=keepname, keepmac=keepmac)
    except BdevError as exc:
        raise exc.about(container=target.label)
    mapped = helper_idmap(source_config)  # an ordinary user's mapped rootfs: worked on in its ids
    with new_container(ctx, target, op, rootfs=intended, origin=source, idmap=mapped) as new:

        try:
            outcome = execute_as_owner(mapped, plan, source_rootfs, source_backend, target.placement, options,
                                       progress, container=target.label)
        except BdevError as exc:
            raise exc.about(container=target.label, backend=plan.target.name)
        faults.checkpoint(f"{op}:after-rootfs")
        config.set_rootfs(outcome.rootfs.config_value)
        copy_container_files(config, source, target)
        if not keepname:
            def rename() -> None:
                with plan.target.accessed(outcome.rootfs) as path:
                    rewrite_hostname(path, source_config.uts_name() or source.name, target.name)

            as_mapped_owner(mapped, rename, container=target.label)
        config.save(target.config_path)
        for leaf, text in (extra_files or {}).items():
            _write_plain(target.file(leaf), text)
        if outcome.depends_on_origin:
            _record_dependency(new, source, target)
        faults.checkpoint(f"{op}:before-commit")
    return outcome


def execute_as_owner(
    mapped: IdMap | None, plan: ClonePlan, source_rootfs: Rootfs, source_backend: Backend, placement: Placement,
    options: CreateOptions, progress: object | None, *, container: str,
) -> CloneOutcome:
    """Execute ``plan`` at ``placement``; for an ordinary user's mapped container (``mapped``
    not None) in its ids (:func:`as_mapped_owner`), a full copy then given back to the
    container's root, as the files the user wrote are the user's own."""

    def fill() -> CloneOutcome:
        made = execute(plan, source_rootfs, source_backend, placement, options, progress)
        if mapped is not None and not made.depends_on_origin:  # the user's copy: the container's again
            with plan.target.accessed(made.rootfs) as path:
                adopt_own_files(Path(path), mapped)
        return made

    return as_mapped_owner(mapped, fill, container=container)


def _record_dependency(new: NewContainer, origin: ContainerRef, clone: ContainerRef) -> None:
    new.intend_dependency(origin)
    deps.add_pair(origin.file(DEPENDENTS), (clone.lxcpath, clone.name))
    deps.write_pairs(clone.file(ORIGIN), [(origin.lxcpath, origin.name)])


def _write_plain(path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o644)
