"""The lvm backend: the rootfs is the logical volume ``/dev/<vg>/<lv>``
(``lxc.rootfs.path = lvm:/dev/<vg>/<lv>``) holding an ext4, xfs or btrfs filesystem, mounted at
``<lxcpath>/<name>/rootfs``, as LXC makes it.

* The volume group is ``--vgname``, else ``lxc.bdev.lvm.vg``, else ``lxc``; the LV is
  ``--lvname``, else the placement's ``storage_name`` (``web1``, ``web1.snap0``: two
  containers' ``snap0`` never collide).
* A new volume is thin when the thin pool (``--thinpool``, ``lxc.bdev.lvm.thin_pool``, ``lxc``)
  exists in the volume group, thick otherwise; ``--fssize`` (default 1 GiB), ``--fstype``
  (default ext4).
* Snapshot clones of a thin volume are thin snapshots (independent of their origin). Those of
  a thick volume are thick snapshots sized ``100%ORIGIN``, so they cannot be invalidated; they
  die with their origin, so they depend on it, and container snapshots and restores of a
  thick volume are full copies instead.
* Restore in place exchanges the live and the staged volume's names by three renames through
  ``<live>.bdev-swap``; a crash in between is finished by the next operation on either name.
* A thin pool that is 80% full draws a warning after each new volume; at 95% new volumes in
  it are refused (writes to every volume of a full pool fail).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage, blockfs
from bdev.command import run, which
from bdev.errors import AlreadyExists, BdevError, Busy, CommandError, HasDependents, InvalidInput, NotFound
from bdev.mounts import mount_at, mountpoints_of
from bdev.requirements import KernelFilesystem, PythonModule, Tool
from bdev.units import format_size

from . import _devices, _filesystems as fsys, _lvm, _names
from ._i18n import _, N_
from ._lvm import LogicalVolume, lvm

log = logging.getLogger("bdev.lvm")
GiB = 1 << 30
DEFAULT_SIZE = 1 * GiB  # LXC's default --fssize
WARN_PERCENT = 80.0
FULL_PERCENT = 95.0
SNAPSHOT_TAG = "bdev-container-snapshot"
SWAP_TAG = "bdev-swap-with="
SWAP_SUFFIX = ".bdev-swap"
REMOVE_TRIES = 25
REMOVE_DELAY = 0.2


def _requirements() -> tuple[Tool | KernelFilesystem | PythonModule, ...]:
    lvm2 = tuple(Tool(t, "lvm2") for t in ("lvcreate", "lvremove", "lvrename", "lvchange", "lvs", "vgs"))
    filesystems = tuple(
        dataclasses.replace(req, optional=fs.name != fsys.DEFAULT)
        for fs in fsys.FILESYSTEMS.values()
        for req in fs.requirements()
    )
    return (
        *lvm2,
        Tool("thin_check", "thin-provisioning-tools", optional=True),
        Tool("blkid", "util-linux"),
        Tool("debugfs", "e2fsprogs"),
        Tool("mount", "mount"),
        PythonModule("pyudev", "python3-pyudev"),
        *filesystems,
    )


@dataclass(frozen=True)
class NewVolume:
    """What :meth:`LvmBackend.create` will make, all checked."""

    vg: str
    name: str
    fs: fsys.Filesystem
    size: int
    pool: LogicalVolume | None

    @property
    def path(self) -> str:
        return _names.locator(self.vg, self.name)


class LvmBackend(Backend):
    """A rootfs on an LVM logical volume, thin or thick, with native snapshot clones."""

    name = "lvm"
    description = N_("an LVM logical volume (thin in the thin pool if there is one, else thick); snapshot clones")
    capabilities = Capabilities(
        native_snapshot=True,
        snapshot_depends_on_origin=True,  # thick snapshots die with their origin
        block_backed=True,
        needs_pool=True,
        needs_mount=True,
        sized=True,
        can_backup=True,
    )
    requires = _requirements()
    detect_priority = 30
    best_priority = 30

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """Missing lvm2 tools, pyudev or mkfs.ext4, and a kernel without device-mapper."""
        reasons = super().unavailable_reasons()
        problem = _lvm.device_mapper_problem()
        if problem:
            reasons.append(problem)
        return reasons

    def implementation(self) -> str:
        """Which volume group and thin pool new volumes go to, and the usable fstypes."""
        return (
            _("lvm2 CLI with JSON reports; volume group {vg}, thin pool {pool} when it exists (else thick volumes); "
              "fstypes: {fstypes}").format(
                vg=self.volume_group_name(), pool=self.thin_pool_name(), fstypes=', '.join(fsys.usable()) or 'none')
        )

    def volume_group_name(self, options: CreateOptions | None = None) -> str:
        """``--vgname``, else ``lxc.bdev.lvm.vg``, else ``lxc``."""
        extra = options.extra if options is not None else {}
        return extra.get("vgname") or self.settings.get("lxc.bdev.lvm.vg") or "lxc"

    def thin_pool_name(self, options: CreateOptions | None = None) -> str:
        """``--thinpool``, else ``lxc.bdev.lvm.thin_pool``, else ``lxc``."""
        extra = options.extra if options is not None else {}
        return extra.get("thinpool") or self.settings.get("lxc.bdev.lvm.thin_pool") or "lxc"

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuses a name LVM rejects, a missing volume group (or an explicit ``--thinpool``
        that is not there), an existing volume, an unsupported ``--fstype``, a ``--fssize``
        below the type's minimum or beyond the volume group's free space (thick), and a thin
        pool that is full."""
        try:
            self._new_volume(placement, options)
        except BdevError as exc:
            return exc.cause
        return None

    # ------------------------------------------------------------------ naming

    def detect(self, source: str) -> bool:
        """An unprefixed rootfs path is lvm when it is a block device whose device-mapper
        UUID starts with ``LVM-`` (LXC's test)."""
        return _devices.is_logical_volume(source)

    def parse(self, source: str) -> Rootfs:
        """Accept ``/dev/<vg>/<lv>`` with names LVM accepts."""
        parts = _names.split_locator(source)
        if parts is None:
            raise InvalidInput(_("lvm rootfs {source!r} is not of the form /dev/<vg>/<lv>").format(source=source),
                               backend=self.name)
        problem = _names.vg_problem(parts[0]) or _names.lv_problem(parts[1])
        if problem:
            raise InvalidInput(problem, backend=self.name)
        return Rootfs(self.name, source)

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``/dev/<vg>/<lvname or storage_name>``; a staged volume goes beside the live one:
        ``/dev/<vg>/<live lv>.bdev-<stage>``."""
        if placement.stage is not None and placement.near:
            parts = _names.split_locator(placement.near)
            if parts is not None:
                return _names.locator(parts[0], f"{parts[1]}.bdev-{placement.stage}")
        lv = options.extra.get("lvname") if placement.stage is None else None
        return _names.locator(self.volume_group_name(options), lv or placement.storage_name)

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """``lvcreate`` a thin volume in the thin pool when it exists, else a thick one, then
        ``mkfs``; the mount point directory is made as LXC does.  Everything is checked first
        and a failure removes what was made."""
        new = self._new_volume(placement, options)
        tags = ["--addtag", SNAPSHOT_TAG] if placement.owner else []
        with self._undo_on_failure(new.vg, new.name, placement) as undo:
            if new.pool is not None:
                lvm("lvcreate", "-q", "-y", "-V", f"{new.size}b", "-T", f"{new.vg}/{new.pool.name}", "-n", new.name, *tags)
            else:
                lvm("lvcreate", "-q", "-y", "-Wy", "-L", f"{new.size}b", "-n", new.name, *tags, new.vg)
            undo.created = True
            fsys.make(new.fs, new.path)
        self._warn_if_filling(new.vg, new.pool.name if new.pool else None)
        return Rootfs(self.name, new.path)

    def destroy(self, rootfs: Rootfs) -> None:
        """``lvremove`` the volume; one that is gone is fine.  Refused while it is mounted, and
        while thick snapshots of it exist (LVM would remove them with it)."""
        vg, name = self._split(rootfs)
        self._repair(vg, name)
        existing = _lvm.volumes(vg)
        lv = existing.get(name)
        if lv is None:
            return
        if lv.thin_pool:
            raise BdevError(_("{vg}/{name} is a thin pool, not a container's volume; it was left alone").format(
                vg=vg, name=name), backend=self.name)
        snapshots = sorted(v.name for v in existing.values() if v.thick_snapshot and v.origin == name)
        if snapshots:
            raise HasDependents(
                _("the thick snapshots {snapshots} of {vg}/{name} would be destroyed with it; destroy them first").format(
                    snapshots=', '.join(snapshots), vg=vg, name=name),
                backend=self.name,
            )
        self._refuse_if_mounted(lv, _("removing it"))
        self._remove(vg, name)

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse with Busy now: the volume is mounted."""
        vg, name = self._split(rootfs)
        lv = _lvm.volume(vg, name)
        return None if lv is None else self._mounted(lv, _("removing it"))

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the logical volume exists."""
        vg, name = self._split(rootfs)
        self._repair(vg, name)
        return _lvm.volume(vg, name) is not None

    def identity(self, rootfs: Rootfs) -> str:
        """The logical volume's UUID: a swap of names changes it."""
        return self._existing(rootfs).uuid

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Activate the volume if needed (``lvchange -ay -K``: LXC's thin snapshots skip
        activation) and mount its filesystem."""
        lv = self._existing(rootfs)
        self._activate(lv)
        fstype = fsys.probe(lv.path)
        if fstype is None:
            raise BdevError(_("{path} holds no filesystem (damaged, or never formatted)").format(path=lv.path),
                            backend=self.name)
        try:
            run(["mount", "-t", fstype, "-o", "ro" if readonly else "rw", lv.path, str(mountpoint)], backend=self.name)
        except CommandError as exc:
            raise BdevError(_("cannot mount the {fstype} filesystem on {path} ({detail})").format(
                fstype=fstype, path=lv.path, detail=_last_line(exc.stderr)), backend=self.name) from None

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount ``mountpoint``; nothing mounted there is fine."""
        if mount_at(mountpoint) is None:
            return
        try:
            run(["umount", str(mountpoint)], backend=self.name)
        except CommandError as exc:
            raise BdevError(_("cannot unmount {mountpoint} ({detail})").format(
                mountpoint=mountpoint, detail=_last_line(exc.stderr)), backend=self.name) from None

    def usage(self, rootfs: Rootfs) -> Usage:
        """A thin volume: the bytes it holds in its pool, of its virtual size; a thick volume:
        its size, all allocated."""
        lv = self._existing(rootfs)
        if not lv.thin:
            return Usage(lv.size, lv.size, note=_("thick volume: all {size} allocated in {vg}").format(
                size=format_size(lv.size), vg=lv.vg))
        pool = _lvm.volume(lv.vg, lv.pool)
        fill = _("; its pool {vg}/{pool} is filled to {percent:.0f}%").format(
            vg=lv.vg, pool=lv.pool, percent=pool.data_percent or 0) if pool else ""
        if lv.data_percent is None:
            return Usage(None, lv.size, note=_("thin volume of {size}, inactive, so LVM does not say how much it "
                                               "holds{fill}").format(
                size=format_size(lv.size), fill=fill))
        return Usage(int(lv.size * lv.data_percent / 100), lv.size, note=_("thin volume of {size}{fill}").format(
            size=format_size(lv.size), fill=fill))

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self, source_path: Path, placement: Placement, options: CreateOptions, progress: "object | None" = None
    ) -> CloneOutcome:
        """A new volume filled by bdev's copy engine.  Without ``--fssize`` it is as big as
        the source's filesystem when the source is a mounted block device (a copy of a volume
        or an image keeps its size), else the default, and in any case big enough for the tree
        (its usage plus a quarter and 64 MiB).  A copy that fails because the thin pool filled
        up says so."""
        if options.fssize is None:
            base = _block_filesystem_size(source_path) or self._new_volume(placement, options).size
            options = dataclasses.replace(options, fssize=blockfs.size_for_tree(source_path, base, align=1))
        new = self._new_volume(placement, options)
        try:
            return super().copy_from(source_path, placement, options, progress)
        except (BdevError, OSError):
            full = self._pool_problem(new.vg, new.pool.name) if new.pool else None
            if full:
                raise BdevError(_("the copy into {path} failed because {full}").format(path=new.path, full=full),
                                backend=self.name) from None
            raise

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """An lvm snapshot needs an lvm origin in the new volume's volume group; a thin origin
        needs room in its pool; a thick origin must not be a thick snapshot itself, must have
        room for a ``100%ORIGIN`` snapshot, and is copied rather than snapshotted for container
        snapshots, restores and clones of container snapshots (a thick snapshot dies with
        its origin)."""
        if source_backend.name != self.name:
            return super().snapshot_refusal(source, source_backend, placement)
        try:
            origin = self._existing(source)
        except BdevError as exc:
            return exc.cause
        target_vg = (_names.split_locator(self.default_source(placement, options or CreateOptions())) or ("", ""))[0]
        if target_vg != origin.vg:
            return _("{vg}/{name} is in volume group {vg}, the new volume would be in {target_vg}").format(
                vg=origin.vg, name=origin.name, target_vg=target_vg)
        if origin.thin:
            return self._pool_problem(origin.vg, origin.pool)
        if origin.thick_snapshot:
            return _("{vg}/{name} is a thick snapshot, and LVM cannot snapshot a thick snapshot").format(
                vg=origin.vg, name=origin.name)
        if placement.owner is not None or placement.stage is not None:
            return _("{vg}/{name} is thick, and a thick snapshot dies with its origin, so snapshots and restores of "
                     "it are copies").format(
                vg=origin.vg, name=origin.name)
        if SNAPSHOT_TAG in origin.tags:
            return _("{vg}/{name} is a container snapshot; a thick snapshot of it would keep it from being "
                     "destroyed").format(
                vg=origin.vg, name=origin.name)
        group = _lvm.volume_group(origin.vg)
        if group is not None and group.free < origin.size:
            return (
                _("a thick snapshot of {vg}/{name} needs {size} and volume group {vg} has {size2} free").format(
                    vg=origin.vg, name=origin.name, size=format_size(origin.size), size2=format_size(group.free))
            )
        return None

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """A thin snapshot of a thin origin (``lvcreate -s -kn``: it activates like any
        volume and needs nothing of its origin), or a thick one sized ``100%ORIGIN`` of a
        thick origin (it depends on the origin).  The copy's xfs or btrfs filesystem gets a
        new UUID."""
        origin = self._existing(source)
        vg, name = self._split(Rootfs(self.name, self.default_source(placement, options)))
        problem = _names.lv_problem(name, vg)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        if _lvm.volume(vg, name) is not None:
            raise AlreadyExists(_("logical volume {vg}/{name} already exists").format(vg=vg, name=name),
                                backend=self.name)
        tags = ["--addtag", SNAPSHOT_TAG] if placement.owner else []
        self._activate(origin)
        with self._undo_on_failure(vg, name, placement) as undo:
            if origin.thin:
                lvm("lvcreate", "-q", "-y", "-s", "-kn", "-ay", "-n", name, *tags, f"{vg}/{origin.name}")
            else:
                lvm("lvcreate", "-q", "-y", "-s", "-l", "100%ORIGIN", "-n", name, *tags, f"{vg}/{origin.name}")
            undo.created = True
            fsys.give_new_uuid(_names.locator(vg, name))
        self._warn_if_filling(vg, origin.pool if origin.thin else None)
        return CloneOutcome(Rootfs(self.name, _names.locator(vg, name)), "snapshot", depends_on_origin=not origin.thin)

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the two volumes' names by three ``lvrename`` through ``<live>.bdev-swap``.
        ``live`` first carries a tag naming ``staged``, so a crash between the renames is
        rolled back (the first rename only) or finished (after the second) by the next
        operation on the live name."""
        vg, a = self._split(live)
        vg_b, b = self._split(staged)
        if vg_b != vg:
            raise BdevError(_("cannot swap {source} and {source2}: they are in different volume groups").format(
                source=live.source, source2=staged.source), backend=self.name)
        self._repair(vg, a)
        existing = _lvm.volumes(vg)
        for name in (a, b):
            if name not in existing:
                raise NotFound(_("logical volume {vg}/{name} does not exist").format(vg=vg, name=name),
                               backend=self.name)
            self._refuse_if_mounted(existing[name], _("swapping it"))
        tmp = a + SWAP_SUFFIX
        lvm("lvchange", "-q", "--addtag", SWAP_TAG + b, f"{vg}/{a}")
        lvm("lvrename", "-q", vg, a, tmp)
        lvm("lvrename", "-q", vg, b, a)
        lvm("lvrename", "-q", vg, tmp, b)
        lvm("lvchange", "-q", "--deltag", SWAP_TAG + b, f"{vg}/{b}")

    # ------------------------------------------------------------------ helpers

    def _split(self, rootfs: Rootfs) -> tuple[str, str]:
        parts = _names.split_locator(rootfs.source)
        if parts is None:
            raise InvalidInput(_("lvm rootfs {source!r} is not of the form /dev/<vg>/<lv>").format(
                source=rootfs.source), backend=self.name)
        return parts

    def _existing(self, rootfs: Rootfs) -> LogicalVolume:
        vg, name = self._split(rootfs)
        self._repair(vg, name)
        lv = _lvm.volume(vg, name)
        if lv is None:
            raise NotFound(_("logical volume {vg}/{name} does not exist").format(vg=vg, name=name), backend=self.name)
        return lv

    def _new_volume(self, placement: Placement, options: CreateOptions) -> NewVolume:
        """Everything :meth:`create` needs, or the refusal (before anything exists).  A staged
        volume (restore in place) takes the live volume's filesystem type and size."""
        vg, name = self._split(Rootfs(self.name, self.default_source(placement, options)))
        problem = _names.vg_problem(vg)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        problem = _names.lv_problem(name, vg)
        if problem:
            hint = "" if options.extra.get("lvname") or placement.stage else "; choose another with --lvname"
            raise InvalidInput(problem + hint, backend=self.name)
        live = self._live_beside(placement)
        fs = fsys.chosen(options.fstype or (fsys.probe(live.path) if live is not None and live.active else None))
        problem = fs.problem()
        if problem:
            raise BdevError(_("cannot make a {name} filesystem: {problem}").format(name=fs.name, problem=problem),
                            backend=self.name)
        group = _lvm.volume_group(vg)
        if group is None:
            raise NotFound(
                _("volume group {vg!r} does not exist (create it with vgcreate, or name another with --vgname or "
                  "lxc.bdev.lvm.vg)").format(
                    vg=vg),
                backend=self.name,
            )
        existing = _lvm.volumes(vg)
        if name in existing:
            raise AlreadyExists(_("logical volume {vg}/{name} already exists").format(vg=vg, name=name),
                                backend=self.name)
        size = options.fssize or (live.size if live is not None else DEFAULT_SIZE)
        size = -(-size // group.extent_size) * group.extent_size
        if size < fs.minimum:
            raise InvalidInput(
                _("{size} is too small for {name} (the smallest is {size2})").format(
                    size=format_size(size), name=fs.name, size2=format_size(fs.minimum)), backend=self.name
            )
        pool_name = self.thin_pool_name(options)
        pool = existing.get(pool_name)
        if pool is not None and not pool.thin_pool:
            raise InvalidInput(_("{vg}/{pool_name} is not a thin pool").format(vg=vg, pool_name=pool_name),
                               backend=self.name)
        if pool is None and options.extra.get("thinpool"):
            raise NotFound(_("thin pool {vg}/{pool_name} does not exist").format(vg=vg, pool_name=pool_name),
                           backend=self.name)
        if pool is not None:
            full = self._pool_problem(vg, pool_name, pool)
            if full:
                raise BdevError(full, backend=self.name)
        elif size > group.free:
            raise InvalidInput(
                _("{size} is more than the {size2} free in volume group {vg}").format(
                    size=format_size(size), size2=format_size(group.free), vg=vg), backend=self.name
            )
        return NewVolume(vg, name, fs, size, pool)

    @staticmethod
    def _live_beside(placement: Placement) -> LogicalVolume | None:
        """For a staged placement, the live volume it stands beside (``near``), if any."""
        parts = _names.split_locator(placement.near) if placement.stage and placement.near else None
        return _lvm.volume(*parts) if parts else None

    def _pool_problem(self, vg: str, pool_name: str, pool: LogicalVolume | None = None) -> str | None:
        """Why the thin pool ``vg/pool_name`` takes no new volume (it is missing or full), or None."""
        pool = pool or _lvm.volume(vg, pool_name)
        if pool is None:
            return _("thin pool {vg}/{pool_name} does not exist").format(vg=vg, pool_name=pool_name)
        data, meta = pool.data_percent or 0.0, pool.metadata_percent or 0.0
        if max(data, meta) >= FULL_PERCENT:
            return (
                _("thin pool {vg}/{pool_name} is full (data {data:.0f}%, metadata {meta:.0f}%); extend it with "
                  "'lvextend' or remove volumes from it first").format(
                    vg=vg, pool_name=pool_name, data=data, meta=meta)
            )
        return None

    def _warn_if_filling(self, vg: str, pool_name: str | None) -> None:
        """Warn when the thin pool is filling up: once it is full, writes fail in every volume
        it holds (canonical/lxd#3082)."""
        pool = _lvm.volume(vg, pool_name) if pool_name else None
        if pool is None:
            return
        data, meta = pool.data_percent or 0.0, pool.metadata_percent or 0.0
        if max(data, meta) >= WARN_PERCENT:
            log.warning(
                "thin pool %s/%s is %.0f%% full (metadata %.0f%%); when it fills up, writes fail in every volume "
                "it holds: extend it with 'lvextend -L +SIZE %s/%s'",
                vg, pool_name, data, meta, vg, pool_name,
            )

    def _activate(self, lv: LogicalVolume) -> None:
        if not lv.active:
            lvm("lvchange", "-q", "-ay", "-K", f"{lv.vg}/{lv.name}")

    def _refuse_if_mounted(self, lv: LogicalVolume, doing: str) -> None:
        refusal = self._mounted(lv, doing)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)

    @staticmethod
    def _mounted(lv: LogicalVolume, doing: str) -> str | None:
        """Why ``lv`` cannot be changed by ``doing`` now (it is mounted), or None."""
        where = mountpoints_of(lv.path) + mountpoints_of(f"/dev/mapper/{_names.dm_name(lv.vg, lv.name)}")
        if not where:
            return None
        return _("{path} is mounted on {where}; unmount it before {doing}").format(
            path=lv.path, where=', '.join(where), doing=doing)

    def _remove(self, vg: str, name: str) -> None:
        """``lvremove``, retrying while the volume is briefly held (udev probing a new or
        just-unmounted device)."""
        for attempt in range(REMOVE_TRIES):
            try:
                lvm("lvremove", "-q", "-y", "-f", f"{vg}/{name}")
                return
            except BdevError as exc:
                if "in use" not in exc.cause or attempt == REMOVE_TRIES - 1:
                    raise
            if which("udevadm"):
                run(["udevadm", "settle"], check=False, backend=self.name)
            time.sleep(REMOVE_DELAY)

    def _repair(self, vg: str, name: str) -> None:
        """Finish a swap that a crash interrupted (see :meth:`swap`): with only the first
        rename done, roll it back; after the second, finish the third."""
        tmp = name + SWAP_SUFFIX
        if name.endswith(SWAP_SUFFIX):
            return
        existing = _lvm.volumes(vg)
        held = existing.get(tmp)
        if held is None:
            return
        if name not in existing:
            lvm("lvrename", "-q", vg, tmp, name)
            partner = next((t[len(SWAP_TAG):] for t in held.tags if t.startswith(SWAP_TAG)), None)
            if partner:
                lvm("lvchange", "-q", "--deltag", SWAP_TAG + partner, f"{vg}/{name}")
            return
        partner = next((t[len(SWAP_TAG):] for t in held.tags if t.startswith(SWAP_TAG)), None)
        if partner and partner not in existing:
            lvm("lvrename", "-q", vg, tmp, partner)
            lvm("lvchange", "-q", "--deltag", SWAP_TAG + partner, f"{vg}/{partner}")

    @contextlib.contextmanager
    def _undo_on_failure(self, vg: str, name: str, placement: Placement) -> Iterator["_Undo"]:
        """Make the ``rootfs`` mount directory (as LXC) for a new volume; if the body fails,
        remove the volume once the body marked it created (``undo.created``; a volume that
        was there already is never removed) and that directory."""
        made = None
        if placement.stage is None and not placement.rootfs_dir.exists():
            placement.rootfs_dir.mkdir(mode=0o755)
            made = placement.rootfs_dir
        undo = _Undo()
        try:
            yield undo
        except BaseException:
            if undo.created:
                with contextlib.suppress(BdevError):
                    self._remove(vg, name)
            if made is not None:
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise


@dataclass
class _Undo:
    """Whether a new volume exists yet, for :meth:`LvmBackend._undo_on_failure`."""

    created: bool = False


def _block_filesystem_size(path: Path) -> int | None:
    """The size of the filesystem mounted exactly at ``path`` from a block device, or None
    (``path`` is a plain directory, or a mount of something else)."""
    entry = mount_at(path)
    if entry is None or not entry.source.startswith("/dev/"):
        return None
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no message").rstrip(".")
