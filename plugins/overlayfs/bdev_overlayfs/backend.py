"""The overlay backend's public operations (the contract of :class:`bdev.backend.Backend`).

Layout (LXC's): ``lxc.rootfs.path = overlay:<lower>[:<lower2>...]:<upper>`` with the upper at
``<container>/overlay/delta`` and the work directory ``<container>/overlay/work``; LXC 1.x's
``<container>/delta0`` with ``olwork`` is read too.  How clones are built is described in
:mod:`bdev_overlayfs.cloning`; what each lower is, in :mod:`bdev_overlayfs.layers`.

Restore in place: a container snapshot has the container's lowers and a copy of its upper;
the snapshot's upper is copied beside the live one and :meth:`OverlayBackend.swap` exchanges
the two upper directories with one ``renameat2(RENAME_EXCHANGE)``.

Unprivileged use: :meth:`OverlayBackend.accessed` (every copy, template run and hostname
rewrite goes through it) mounts in a helper process's private user namespace with
``userxattr``.  :meth:`OverlayBackend.mount` on a caller's mount point needs root (or a process
already inside a user namespace), and a lower that is itself a mounted image (a frozen loop
rootfs) needs root.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from bdev.errors import AlreadyExists, BdevError, Busy
from bdev.fsops import rename_exchange, tree_usage
from bdev.records import Change
from bdev.requirements import KernelFilesystem, Tool

from . import cloning, mounting, removal
from ._i18n import _, N_
from ._util import (
    UNSUITABLE_UPPER_FS,
    can_mount_here,
    filesystem_type,
    in_initial_user_namespace,
    user_namespaces_problem,
)
from .diff import diff as upper_diff
from .layers import LAYER, LIVE, Lower, all_known, describe, keys
from .layout import FORBIDDEN, OverlayPaths, check_usable, new_paths, private_dir
from .userns import namespace_mount


class OverlayBackend(Backend):
    """Copy-on-write clones as overlayfs layers over any backend's rootfs."""

    name = "overlay"
    aliases = ("overlayfs",)
    description = N_("overlayfs layers: snapshot clones over any backend (frozen lowers where the origin can freeze)")
    capabilities = Capabilities(
        native_snapshot=True,
        snapshot_depends_on_origin=True,
        layers_over=("*",),
        needs_mount=True,
        unprivileged=True,
        can_backup=True,
        unprivileged_note=N_("mounts in a private user namespace with userxattr (Linux 5.11+); an ordinary user's "
                            "mapped (lxc.idmap) containers mount as their own root; lowers that are mounted images "
                            "(frozen loop rootfs) need root"),
    )
    requires = (Tool("mount", "mount"), Tool("umount", "mount"), KernelFilesystem("overlay"))
    detect_priority = None  # LXC always writes the overlay: prefix
    best_priority = None

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """The tools and kernel filesystem, and for an ordinary user, user namespaces."""
        reasons = super().unavailable_reasons()
        if not can_mount_here():
            problem = user_namespaces_problem()
            if problem:
                reasons.append(_("an ordinary user mounts overlays in a user namespace, but {problem}").format(
                    problem=problem))
        return reasons

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuse an upper on a filesystem that cannot hold one (overlayfs itself, NFS ...),
        and container paths holding ``:`` or ``,`` (they cannot appear in mount options)."""
        directory = placement.directory
        for char in FORBIDDEN:
            if char in str(directory):
                return _("{directory} contains {char!r}, which overlay mount options cannot carry").format(
                    directory=directory, char=char)
        fstype = filesystem_type(directory)
        if fstype in UNSUITABLE_UPPER_FS:
            return _("{directory} is on {fstype}: {reason}").format(
                directory=directory, fstype=fstype, reason=UNSUITABLE_UPPER_FS[fstype])
        return None

    def implementation(self) -> str:
        """Kernel overlayfs through mount(8); for ordinary users, a private user namespace."""
        how = "kernel overlayfs, mount(8)"
        if not can_mount_here():
            how += "; unprivileged: mounts in a private user namespace (userxattr)"
        elif not in_initial_user_namespace():
            how += " with userxattr (inside a user namespace)"
        return how

    # ------------------------------------------------------------------ identity

    def parse(self, source: str) -> Rootfs:
        """Accept ``<lower>[:<lower2>...]:<upper>`` of absolute paths (``overlayfs:`` values
        arrive here too: the registry resolves the alias)."""
        return Rootfs(self.name, OverlayPaths.parse(source, self.name).value)

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``<container>/rootfs:<container>/overlay/delta`` as ``lxc-create -B overlay`` makes it.

        A staged rootfs (restore in place) uses the live rootfs's lowers and its own upper in
        ``<container>/.overlay.bdev-<stage>/delta``.  A clone's lowers depend on its source
        and are known only once made, so the locator the engine journals before a clone names
        the clone's upper with the default lower; :meth:`exists`, :meth:`identity` and
        :meth:`destroy` go by the upper (and the layer record beside it), so it serves.
        """
        if placement.stage is not None and placement.near:
            live = OverlayPaths.parse(placement.near, self.name)
            lowers = cloning.staged_lowers(describe(live), private_dir(placement))
            paths = new_paths(placement, [Path(lower.path) for lower in lowers])
        else:
            paths = new_paths(placement, [placement.rootfs_dir])
        check_usable(paths, self.name)
        return paths.value

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """An empty container as LXC makes one: the lower ``<container>/rootfs`` (an empty
        directory, owned by the container) and an empty upper ``overlay/delta``."""
        paths = OverlayPaths.parse(self.default_source(placement, options), self.name)
        if os.path.lexists(paths.upper):
            raise AlreadyExists(_("{upper} already exists").format(upper=paths.upper), backend=self.name)
        new = cloning.NewRootfs(self, placement)
        new.start()
        try:
            if placement.stage is not None and placement.near:
                live = OverlayPaths.parse(placement.near, self.name)
                new.borrow(cloning.staged_lowers(describe(live), new.private))
            else:
                lower_dir = placement.rootfs_dir
                if lower_dir.exists() and (not lower_dir.is_dir() or any(lower_dir.iterdir())):
                    raise AlreadyExists(_("{lower_dir} already exists and is not empty").format(lower_dir=lower_dir),
                                        backend=self.name)
                new.record(Lower(str(lower_dir), LAYER, owned=True, home=str(lower_dir)))
                lower_dir.mkdir(mode=0o755, exist_ok=True)
                os.chmod(lower_dir, 0o755)
        except BaseException:
            new.abandon()
            raise
        return new.rootfs

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove the upper, the work directory, the layer record and the layers this rootfs
        owns (copied layers, frozen copies, its empty ``rootfs`` lower), never an origin's
        data or a layer it shares with its container."""
        paths, lowers = self._layers(rootfs)
        refusal = removal.refusal(self.registry, paths, lowers)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)
        try:
            removal.teardown(self.registry, paths, lowers)
        except OSError as exc:
            raise BdevError(_("cannot remove {filename}: {cause}").format(
                filename=exc.filename or paths.upper, cause=exc.strerror), backend=self.name) from None

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse now: the overlay is mounted, or something is
        mounted on or inside what it would remove, or a frozen layer's backend refuses it."""
        return removal.refusal(self.registry, *self._layers(rootfs))

    def _layers(self, rootfs: Rootfs) -> tuple[OverlayPaths, list[Lower]]:
        """The paths of ``rootfs`` and its lowers (guessed when the record is unreadable)."""
        paths = OverlayPaths.parse(rootfs.source, self.name)
        try:
            return paths, all_known(paths)
        except BdevError:
            return paths, describe_without_record(paths)

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the upper directory exists."""
        return os.path.lexists(OverlayPaths.parse(rootfs.source, self.name).upper)

    def identity(self, rootfs: Rootfs) -> str:
        """Device and inode of the upper directory (what :meth:`swap` exchanges)."""
        st = os.lstat(OverlayPaths.parse(rootfs.source, self.name).upper)
        return f"{st.st_dev}:{st.st_ino}"

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Mount the lowers that need it (read-only), then the overlay on ``mountpoint``.

        Read-only stacks the upper as the topmost lower: nothing can change.  Needs root (or a
        process inside a user namespace); ordinary users get their files through
        :meth:`accessed`.
        """
        if not can_mount_here():
            raise BdevError(
                _("mounting an overlay on a host mount point needs root; bdev reaches an ordinary user's overlay "
                  "through a private user namespace instead"),
                backend=self.name,
            )
        paths = OverlayPaths.parse(rootfs.source, self.name)
        mounting.mount(self.registry, paths, describe(paths), mountpoint, readonly=readonly)

    @contextlib.contextmanager
    def running(self, rootfs: Rootfs, *, container: str, readonly: bool = False) -> Iterator[None]:
        """Hold, for ``container``'s life, what each lower that needs mounting needs (its
        backend's ``running``, read-only): a zfs-fuse dataset mounted on the host, an RBD
        image attached from the host's namespaces.  The container's init then mounts them."""
        with contextlib.ExitStack() as held:
            for lower in describe(OverlayPaths.parse(rootfs.source, self.name)):
                storage = lower.storage
                if lower.mount and storage is not None and self.registry is not None:
                    held.enter_context(self.registry.backend(storage.backend).running(
                        storage, container=container, readonly=True))
            yield

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount the overlay, then the lowers mounted for it."""
        paths = OverlayPaths.parse(rootfs.source, self.name)
        mounting.umount(self.registry, describe(paths), mountpoint)

    @contextlib.contextmanager
    def accessed(self, rootfs: Rootfs, *, readonly: bool = False) -> Iterator[Path]:
        """The merged files of ``rootfs``: a temporary mount (root), or for an ordinary user a
        mount in a private user namespace reached through ``/proc/<helper>/root``."""
        if can_mount_here():
            with super().accessed(rootfs, readonly=readonly) as path:
                yield path
            return
        paths = OverlayPaths.parse(rootfs.source, self.name)
        lowers = describe(paths)
        mounted = [lower.path for lower in lowers if lower.mount]
        if mounted:
            raise BdevError(
                _("its lower layer {mounted} is a mounted image, which only root can mount").format(
                    mounted=mounted[0]), backend=self.name
            )
        problem = mounting.missing_layer(paths, lowers)
        if problem:
            raise BdevError(problem, backend=self.name)
        if not readonly:
            paths.workdir.mkdir(mode=0o755, exist_ok=True)
        with namespace_mount(mounting.options(paths, lowers, readonly=readonly), readonly=readonly) as path:
            yield path

    def usage(self, rootfs: Rootfs) -> Usage:
        """Bytes in the upper and the layers this rootfs owns; shared lowers are not counted."""
        paths = OverlayPaths.parse(rootfs.source, self.name)
        total = tree_usage(paths.upper) if paths.upper.exists() else 0
        for lower in describe(paths):
            if lower.owned and lower.role == LAYER and os.path.isdir(lower.path):
                total += tree_usage(Path(lower.path))
        return Usage(total, note=_("the upper layer and the layers this container owns; shared lowers are not "
                                   "counted"))

    def diff(self, rootfs: Rootfs) -> list[Change]:
        """Changes against the lowers, read from the upper: added, modified, metadata,
        deleted (whiteouts), opaque directories and renamed directories (redirects)."""
        paths = OverlayPaths.parse(rootfs.source, self.name)
        lowers = describe(paths)
        if not paths.upper.is_dir():
            raise BdevError(_("its upper layer {upper} is missing").format(upper=paths.upper), backend=self.name)
        with mounting.lowers_mounted(self.registry, lowers):
            problem = mounting.missing_layer(paths, lowers)
            if problem:
                raise BdevError(problem, backend=self.name)
            return upper_diff(paths.upper, [Path(lower.path) for lower in lowers])

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self, source_path: Path, placement: Placement, options: CreateOptions, progress: "object | None" = None
    ) -> CloneOutcome:
        """A full copy into a new overlay rootfs (``-B overlay`` without a snapshot): create,
        then copy into the merged mount."""
        if placement.stage is not None:
            raise BdevError(
                _("a full copy cannot be restored in place over an overlay rootfs (its lowers would show through); "
                  "restore it to a new name"),
                backend=self.name,
            )
        return super().copy_from(source_path, placement, options, progress)

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """Overlay clones layer over any backend; an ordinary user cannot layer over storage
        that must be mounted."""
        refusal = super().snapshot_refusal(source, source_backend, placement, options)
        if refusal:
            return refusal
        if source_backend.name != self.name and not can_mount_here() and source_backend.data_path(source) is None:
            return _("an ordinary user cannot layer over a {name} rootfs (it must be mounted, which needs root)").format(
                name=source_backend.name)
        return None

    def snapshot(self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions) -> CloneOutcome:
        """A copy-on-write clone of ``source`` at ``placement``; see :mod:`bdev_overlayfs.cloning`
        for each case (layer over another backend, stacked clone, container snapshot, staged
        restore)."""
        if placement.stage is not None:
            return cloning.staged_copy(self, source, source_backend, placement)
        if source_backend.name != self.name:
            return cloning.layer_over(self, source, source_backend, placement)
        if placement.owner is not None:
            return cloning.container_snapshot(self, source, placement)
        return cloning.stack_clone(self, source, placement)

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the two upper directories with one ``renameat2(RENAME_EXCHANGE)``; both
        rootfs must have the same lowers.

        :raises OSError: EINVAL when the lowers differ (the engine then rolls back and says so).
        """
        live_paths = OverlayPaths.parse(live.source, self.name)
        staged_paths = OverlayPaths.parse(staged.source, self.name)
        if keys(describe(live_paths)) != keys(describe(staged_paths)):
            raise OSError(errno.EINVAL, "the two overlay rootfs have different lower layers")
        times = {path: os.lstat(path) for path in (live_paths.upper, staged_paths.upper)}
        rename_exchange(live_paths.upper, staged_paths.upper)
        # Moving a directory to another parent rewrites its "..", which XFS counts as a
        # modification: give each upper root (the merged root's times) its own times back.
        for old, new in ((staged_paths.upper, live_paths.upper), (live_paths.upper, staged_paths.upper)):
            with contextlib.suppress(OSError):
                os.utime(new, ns=(times[old].st_atime_ns, times[old].st_mtime_ns), follow_symlinks=False)


def describe_without_record(paths: OverlayPaths) -> list[Lower]:
    """With an unreadable layer record, treat every lower as not owned: a destroy then removes
    only the upper and work directory, never data it cannot prove is its own."""
    return [Lower(str(lower), LIVE, owned=False) for lower in paths.lowers]
