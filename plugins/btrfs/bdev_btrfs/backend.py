"""The btrfs backend: the rootfs is a btrfs subvolume, ``btrfs:<lxcpath>/<name>/rootfs``,
as LXC makes it.  Snapshots and clones on the same filesystem are instant copy-on-write
snapshots that include nested subvolumes; restore in place exchanges two subvolumes
atomically.

What works for an unprivileged user (in a directory they own on btrfs): create, snapshot,
clone, full copies, restore in place, usage.  Deleting a subvolume is done by the kernel for
root, or for its owner when the filesystem is mounted with ``user_subvol_rm_allowed``; without
that option the owner's subvolume is emptied file by file and removed with ``rmdir`` (Linux
4.18 allows that), which fails only on files the user may not delete, and the error then says
which mount option would have done it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from bdev.command import run
from bdev.errors import AlreadyExists, BdevError, Busy, InvalidInput, explain
from bdev.fsops import mounted_inside, remove_tree, rename_exchange
from bdev.mounts import mount_entries, mount_holding, mount_points_below
from bdev.naming import validate_path
from bdev.requirements import KernelFilesystem, PythonModule, Tool
from bdev.units import format_size

from . import _fs, _ops, _tree
from ._i18n import _, N_
from ._pool import LoopPool, pool_from

log = logging.getLogger("bdev.btrfs")


class BtrfsBackend(Backend):
    """A rootfs that is a btrfs subvolume, by default ``<lxcpath>/<name>/rootfs``.

    The work is done through the ``btrfsutil`` Python binding, or the ``btrfs`` command where
    the binding is missing; ``BDEV_BTRFS_IMPL=cli`` (or ``implementation="cli"``) forces the
    command.

    :param settings: the global ``lxc.conf`` values; ``lxc.bdev.btrfs.pool`` names a loop-file
        pool (see :mod:`bdev_btrfs._pool`) used where the target is not on btrfs.
    :param implementation: ``cli`` or ``btrfsutil`` to force one; None follows
        ``BDEV_BTRFS_IMPL`` and otherwise prefers the binding.
    """

    name = "btrfs"
    description = N_("a btrfs subvolume; instant snapshots that include nested subvolumes")
    capabilities = Capabilities(
        native_snapshot=True, copy_by_snapshot=True, unprivileged=True, can_backup=True,
        unprivileged_note=N_("subvolumes in a directory the user owns on btrfs; the kernel deletes them for "
                            "their owner only with the user_subvol_rm_allowed mount option, else file by file"),
    )
    requires = (
        KernelFilesystem("btrfs"),
        PythonModule("btrfsutil", package="python3-btrfsutil", optional=True),
        Tool("btrfs", package="btrfs-progs", optional=True),
    )
    detect_priority = 10
    best_priority = 10

    def __init__(self, settings: Mapping[str, str] | None = None, *, implementation: str | None = None):
        super().__init__(settings)
        self._forced = implementation

    # ------------------------------------------------------------------ availability

    @property
    def ops(self) -> _ops.SubvolumeOps:
        """The implementation doing the work (chosen again on each use, so the environment
        variable can switch it)."""
        return _ops.choose(self._forced)

    def _wanted_implementation(self) -> str:
        return (self._forced or os.environ.get(_ops.IMPL_ENV, "") or "auto").strip().lower()

    def unavailable_reasons(self) -> list[str]:
        """Missing kernel support, or neither the binding nor the ``btrfs`` command (or the one
        that ``BDEV_BTRFS_IMPL`` forces) is installed; a configured pool that cannot be used."""
        reasons = super().unavailable_reasons()
        wanted = self._wanted_implementation()
        has_lib, has_cli = _ops.binding_available(), _ops.cli_available()
        if wanted == "cli" and not has_cli:
            reasons.append(_("btrfs is not installed (install btrfs-progs), and BDEV_BTRFS_IMPL=cli asks for it"))
        elif wanted in ("btrfsutil", "lib") and not has_lib:
            reasons.append(_("Python module btrfsutil is missing (install python3-btrfsutil), and BDEV_BTRFS_IMPL "
                             "asks for it"))
        elif wanted not in ("cli", "btrfsutil", "lib", "auto"):
            reasons.append(_("BDEV_BTRFS_IMPL={wanted!r} is neither 'cli' nor 'btrfsutil'").format(wanted=wanted))
        elif not has_lib and not has_cli:
            reasons.append(_("neither the Python module btrfsutil (python3-btrfsutil) nor btrfs (btrfs-progs) is "
                             "installed"))
        return reasons

    def implementation(self) -> str:
        """``btrfsutil 6.2`` or ``btrfs-progs CLI 6.2``, and the loop-file pool if one is set."""
        try:
            text = self.ops.version()
        except (ImportError, BdevError):
            return ""
        pool = self._pool(CreateOptions())
        if pool is not None:
            text += f"; {pool.describe()}"
        return text

    # ------------------------------------------------------------------ naming

    def detect(self, source: str) -> bool:
        """A bare path (LXC 1.0 configs) is btrfs when it is a subvolume: a directory with
        inode 256 on btrfs."""
        return _fs.is_subvolume(source)

    def parse(self, source: str) -> Rootfs:
        """Accept an absolute path without control characters."""
        if not source.startswith("/"):
            raise InvalidInput(_("btrfs rootfs {source!r} is not an absolute path").format(source=source),
                               backend=self.name)
        return Rootfs(self.name, str(validate_path(source, "btrfs rootfs")))

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``--dir`` if given, else ``<lxcpath>/<name>/rootfs``, or its place in the loop-file
        pool when one is configured and the target is not on btrfs.  A staged rootfs (restore)
        goes beside the live one it will be swapped with: ``<dir of live>/.<leaf>.bdev-<stage>``."""
        custom = options.extra.get("dir")
        if placement.stage is not None:
            staged = placement.staged_beside(placement.near or custom)
            if staged:
                return staged
        elif custom:
            return os.path.normpath(os.path.abspath(custom))
        pool = self._pool(options)
        if pool is not None and not _fs.is_btrfs(_fs.nearest_existing(placement.directory)):
            return str(pool.place(placement))
        return str(placement.rootfs_dir)

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuse a target directory that is not on btrfs (``/var/lib/lxc is on ext4, not
        btrfs``) or is mounted read-only; a configured pool is checked instead where it is used."""
        target = Path(self.default_source(placement, options))
        pool = self._pool(options)
        if pool is not None and pool.contains(target):
            return pool.problem()
        anchor = _fs.nearest_existing(target.parent)
        if not _fs.is_btrfs(anchor):
            return (
                _("{anchor} is on {fstype}, not btrfs (for instant snapshots anyway, set lxc.bdev.btrfs.pool = DIR "
                  "in lxc.conf: a loop-file btrfs pool)").format(
                    anchor=anchor, fstype=_fs.filesystem_name(anchor))
            )
        mount = mount_holding(anchor)
        if mount is not None and mount.options[:1] == ("ro",):
            return _("{anchor} is on a read-only mount ({users})").format(anchor=anchor, users=mount.describe())
        return None

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """Make an empty subvolume (mode 0755, as LXC) at the default source."""
        path = Path(self.default_source(placement, options))
        self._mount_pool_for(path, options)
        if os.path.lexists(path):
            raise AlreadyExists(_("{path} already exists").format(path=path), backend=self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.ops.create(path)
        except OSError as exc:
            self._prune_pool(path.parent)
            raise self._failure(_("creating the subvolume"), path, exc) from None
        try:
            os.chmod(path, 0o755)
        except OSError as exc:
            with contextlib.suppress(OSError):
                _tree.delete_tree(self.ops, path)
            self._prune_pool(path.parent)
            raise self._failure(_("creating the subvolume"), path, exc) from None
        return Rootfs(self.name, str(path))

    def destroy(self, rootfs: Rootfs) -> None:
        """Delete the subvolume with every subvolume nested in it (children first, read-only
        ones made writable first); a plain directory under a ``btrfs:`` locator is removed as
        a tree.  Refused, before anything is deleted, while something is mounted inside."""
        path = Path(rootfs.source)
        self._mount_pool_for(path)
        if not os.path.lexists(path):
            return
        refusal = self.destroy_refusal(rootfs)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)
        if not _fs.is_subvolume(path):
            remove_tree(path)
            return
        try:
            _tree.delete_tree(self.ops, path)
        except _tree.DeleteNeedsPrivilege as exc:
            raise self._delete_refused(exc) from None
        except OSError as exc:
            raise self._failure(_("deleting the subvolume"), path, exc) from None
        self._prune_pool(path.parent)

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse now: something is mounted inside the subvolume
        (or inside a plain directory under a ``btrfs:`` locator), or the subvolume is mounted
        elsewhere too (the kernel would delete it under that mount).  A pool that is not
        mounted has nothing mounted inside, so it is not mounted to ask."""
        path = Path(rootfs.source)
        if not os.path.lexists(path):
            return None
        if not _fs.is_subvolume(path):
            return mounted_inside(path)
        inside = sorted(mount_points_below(path) or ())  # nested subvolumes are no mounts: no walk
        if inside:
            return _("{mounted} is mounted inside {path}; unmount it before destroying").format(
                mounted=path / inside[0], path=path)
        return _shown_elsewhere(path)

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether something exists at the locator (mounting the pool first if it is there)."""
        self._mount_pool_for(Path(rootfs.source))
        return os.path.lexists(rootfs.source)

    def identity(self, rootfs: Rootfs) -> str:
        """``<filesystem UUID>:<subvolume id>``: every subvolume's root is inode 256, so
        device and inode cannot tell two subvolumes apart; the id is never reused while
        the filesystem is mounted.  A plain directory falls back to device and inode."""
        path = Path(rootfs.source)
        self._mount_pool_for(path)
        if _fs.is_subvolume(path):
            try:
                return f"{_fs.filesystem_uuid(path)}:{self.ops.subvolume_id(path)}"
            except OSError as exc:
                raise self._failure(_("reading the subvolume id"), path, exc) from None
        st = os.lstat(path)
        return f"{st.st_dev}:{st.st_ino}"

    def data_path(self, rootfs: Rootfs) -> Path:
        """The subvolume itself: no mount needed (nested subvolumes are plain directories to
        whoever reads it)."""
        self._mount_pool_for(Path(rootfs.source))
        return Path(rootfs.source)

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Bind-mount the subvolume (read-only if asked), as LXC does."""
        self._mount_pool_for(Path(rootfs.source))
        argv = ["mount", "--bind"] + (["-o", "ro"] if readonly else [])
        run([*argv, rootfs.source, str(mountpoint)], backend=self.name)

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Undo :meth:`mount`."""
        run(["umount", str(mountpoint)], backend=self.name)

    def usage(self, rootfs: Rootfs) -> Usage:
        """Referenced bytes of the subvolume and its nested subvolumes from btrfs quotas (the
        qgroups in sysfs, readable by any user), with the limit if one is set; the note gives
        the exclusive bytes (what destroying it frees).  With quotas off: no number, and the
        note says how to turn them on."""
        path = Path(rootfs.source)
        self._mount_pool_for(path)
        if not _fs.is_subvolume(path):
            return Usage(None, note=_("{path} is not a btrfs subvolume").format(path=path))
        mount = mount_holding(path)
        where = mount.mountpoint if mount else str(path)
        qdir = _fs.quotas_dir(path)
        if qdir is None:
            return Usage(
                None,
                note=_("btrfs quotas are off on {where}; enable them with 'btrfs quota enable {where}' (as root) to "
                       "measure each container").format(
                    where=where),
            )
        _fs.syncfs(path)
        ops = self.ops
        try:
            subvolumes = [path, *(path / rel for rel, _ in ops.nested(path))]
            groups = [_fs.qgroup(qdir, ops.subvolume_id(p)) for p in subvolumes]
        except OSError as exc:
            raise self._failure(_("reading the subvolume ids"), path, exc) from None
        if any(g is None for g in groups):
            return Usage(None, note=_("btrfs quotas on {where} have no numbers for {path} yet (a rescan may be "
                                      "running)").format(
                where=where, path=path))
        used = sum(g.referenced for g in groups)  # type: ignore[union-attr]
        exclusive = sum(g.exclusive for g in groups)  # type: ignore[union-attr]
        note = f"{format_size(exclusive)} exclusive to it (freed by destroying it)"
        if len(groups) > 1:
            note += f", over {len(groups)} subvolumes"
        if _fs.quotas_inconsistent(qdir):
            note += f"; the quota numbers are marked inconsistent: run 'btrfs quota rescan {where}'"
        return Usage(used, limit_bytes=groups[0].max_referenced, note=note)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self,
        source_path: Path,
        placement: Placement,
        options: CreateOptions,
        progress: "object | None" = None,
    ) -> CloneOutcome:
        """A full copy into a new subvolume (the copy engine, reflinking when the source is on
        the same btrfs filesystem).  Nested subvolumes of a btrfs source, and any directory of
        another backend, arrive as plain directories of the one new subvolume."""
        return super().copy_from(source_path, placement, options, progress)

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """A snapshot needs a btrfs source that is a subvolume and a target directory on the
        same btrfs filesystem; otherwise the core copies where that is allowed."""
        if source_backend.name != self.name:
            return super().snapshot_refusal(source, source_backend, placement)
        src = Path(source.source)
        self._mount_pool_for(src)
        if not _fs.is_subvolume(src):
            return _("{src} is not a btrfs subvolume").format(src=src) if os.path.lexists(src) else _("{src} does not exist").format(
                src=src)
        target = Path(self.default_source(placement, CreateOptions()))
        self._mount_pool_for(target)
        anchor = _fs.nearest_existing(target.parent)
        if not _fs.is_btrfs(anchor):
            return _("{anchor} is on {fstype}, not btrfs").format(anchor=anchor, fstype=_fs.filesystem_name(anchor))
        if not _fs.same_btrfs(src, anchor):
            return _("{src} and {anchor} are on different btrfs filesystems").format(src=src, anchor=anchor)
        return None

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """A writable snapshot of the source subvolume and of every subvolume nested in it
        (each keeping its read-only flag), at the default source.  Independent of the origin."""
        target = self._snapshot_to(Path(source.source), placement, options, readonly=False)
        return CloneOutcome(Rootfs(self.name, str(target)), "snapshot")

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs | None:
        """A read-only snapshot (nested subvolumes included, all read-only) at
        ``default_source(placement)``, i.e. ``placement.rootfs_dir`` (``--dir`` and pools
        aside): give it a placement of its own.  None when ``placement`` is not on the same
        btrfs filesystem.  :meth:`destroy` removes it."""
        if self.snapshot_refusal(rootfs, self, placement) is not None:
            return None
        target = self._snapshot_to(Path(rootfs.source), placement, CreateOptions(), readonly=True)
        return Rootfs(self.name, str(target))

    def _snapshot_to(self, source: Path, placement: Placement, options: CreateOptions, *, readonly: bool) -> Path:
        target = Path(self.default_source(placement, options))
        if os.path.lexists(target):
            raise AlreadyExists(_("{target} already exists").format(target=target), backend=self.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            count = _tree.snapshot_tree(self.ops, source, target, readonly=readonly)
        except OSError as exc:
            self._prune_pool(target.parent)
            if exc.errno == errno.EPERM and not _fs.is_host_root():
                raise BdevError(
                    _("snapshotting {filename} was refused: btrfs lets other users snapshot only subvolumes they "
                      "own; root can snapshot it").format(
                        filename=exc.filename or source),
                    backend=self.name,
                ) from None
            raise self._failure(_("snapshotting {source}").format(source=source), target, exc) from None
        if count:
            log.info("snapshotted %s with %d nested subvolume(s) to %s", source, count, target)
        return target

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the two subvolumes with one ``renameat2(RENAME_EXCHANGE)`` (btrfs exchanges
        subvolume roots like directories); nested subvolumes travel with their parents."""
        rename_exchange(Path(live.source), Path(staged.source))

    # ------------------------------------------------------------------ helpers

    def _failure(self, action: str, path: Path, exc: OSError) -> BdevError:
        """One sentence for a failed kernel or btrfs command operation."""
        if exc.errno == errno.ENOSPC:
            mount = mount_holding(_fs.nearest_existing(path))
            where = mount.mountpoint if mount else str(path)
            return BdevError(_("{action} failed: the btrfs filesystem at {where} is full (no space left on device)").format(
                action=action, where=where), backend=self.name)
        where = exc.filename if exc.filename else path
        return BdevError(_("{action} failed: {cause}: {where}").format(
            action=action, cause=explain(exc), where=where), backend=self.name)

    def _delete_refused(self, exc: _tree.DeleteNeedsPrivilege) -> BdevError:
        mount = mount_holding(_fs.nearest_existing(exc.subvolume))
        where = mount.mountpoint if mount else "its filesystem"
        cause = f"{explain(exc.cause)}: {exc.cause.filename}" if exc.cause.filename else explain(exc.cause)
        if mount is not None and mount.has_option("user_subvol_rm_allowed"):
            return BdevError(
                _("cannot delete the subvolume {subvolume} as uid {uid}: {cause} (its root directory must be "
                  "writable by you even with user_subvol_rm_allowed on {where})").format(
                    subvolume=exc.subvolume, uid=os.geteuid(), cause=cause, where=where),
                backend=self.name,
            )
        return BdevError(
            _("cannot delete the subvolume {subvolume} as uid {uid}: deleting a btrfs subvolume needs root or the "
              "user_subvol_rm_allowed mount option, which {where} lacks, and emptying it file by file failed "
              "({cause}); run 'mount -o remount,user_subvol_rm_allowed {where}' as root").format(
                subvolume=exc.subvolume, uid=os.geteuid(), where=where, cause=cause),
            backend=self.name,
        )

    def _pool(self, options: CreateOptions) -> LoopPool | None:
        return pool_from(self.settings, options)

    def _prune_pool(self, directory: Path) -> None:
        """Remove the empty directories a rootfs in the pool leaves behind."""
        pool = self._pool(CreateOptions())
        if pool is not None and pool.contains(directory):
            pool.prune(directory)

    def _mount_pool_for(self, path: Path, options: CreateOptions | None = None) -> None:
        """Mount the loop-file pool again if ``path`` lies in it and it is not mounted."""
        pool = self._pool(options or CreateOptions())
        if pool is not None and pool.contains(path):
            pool.ensure_mounted()


def _shown_elsewhere(path: Path) -> str | None:
    """Why the subvolume ``path`` must not be deleted now: a mount shows it, or a directory in
    it, somewhere else (a bind or ``subvol=`` mount, whose root in the filesystem is inside
    it); None when none does."""
    holder = mount_holding(path)
    if holder is None or holder.fstype != "btrfs":
        return None
    inner = os.path.normpath(os.path.join(holder.root, os.path.relpath(os.path.realpath(path), holder.mountpoint)))
    for entry in mount_entries():
        if entry.fstype == "btrfs" and entry.source == holder.source and (
            entry.root == inner or entry.root.startswith(inner + "/")
        ):
            return _("{path} is also mounted on {where}; unmount it before destroying").format(
                path=path, where=entry.mountpoint)
    return None
