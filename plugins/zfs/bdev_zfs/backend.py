"""The zfs backend: the rootfs is the dataset ``<root>/<name>`` (``zfs:<root>/<name>``) with
``mountpoint=<lxcpath>/<name>/rootfs`` and ``canmount=noauto``, as LXC writes it.

* The root is ``--zfsroot``, else ``lxc.bdev.zfs.root``, else ``lxc``.
* Snapshot clones (and container snapshots) are ``zfs snapshot <src>@<new name>`` plus
  ``zfs clone``, and the new dataset is named from the placement's ``storage_name``
  (``web1.snap0``), so two containers' ``snap0`` never collide.  Container snapshots are
  ``readonly=on``; so are the frozen lowers of overlay clones, with kernel ZFS.
* Restore in place rolls back (``zfs rollback``, never ``-r``) when the container snapshot is
  the live dataset's latest and unchanged; otherwise the core stages a clone and swaps.
* Destroying a dataset whose snapshots still have clones renames it under
  ``<root>/.bdev-deleted/`` (unmountable) and it is destroyed when its last clone goes.
* Mounting goes through ``zfs mount`` and the ``mountpoint`` property when the kernel has no
  zfs filesystem (zfs-fuse); ``mount -t zfs -o zfsutil`` otherwise.
* Exists, snapshot, clone, destroy and rollback go through libzfs_core (pyzfs) where it works,
  the ``zfs`` command otherwise (:mod:`bdev_zfs._ops`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from bdev.command import run, which
from bdev.errors import AlreadyExists, BdevError, Busy, InvalidInput
from bdev.mounts import mountpoints_of
from bdev.requirements import PythonModule, Tool

from . import _cli, _ops
from ._cli import zfs
from ._i18n import _, N_

log = logging.getLogger("bdev.zfs")
DELETED = ".bdev-deleted"
HOME_PROP = "bdev:mountpoint"
SWAP_PROP = "bdev:swap-with"
PRISTINE_PROP = "bdev:pristine-used"  # a container snapshot's ``used`` right after its clone


def _kernel_zfs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["zfs"] for line in f)
    except OSError:
        return False


class ZfsBackend(Backend):
    """A rootfs that is a ZFS dataset under a configurable root dataset."""

    name = "zfs"
    description = N_("a ZFS dataset under lxc.bdev.zfs.root; snapshot clones, kernel ZFS or zfs-fuse")
    capabilities = Capabilities(native_snapshot=True, needs_pool=True, needs_mount=True, can_backup=True)
    requires = (
        Tool("zfs", package="zfs-fuse"),
        Tool("zpool", package="zfs-fuse"),
        PythonModule("libzfs_core", package="python3-pyzfs", optional=True),
        Tool("fuser", package="psmisc", optional=True),  # tells a busy dataset before destroying it
    )
    detect_priority = 20
    best_priority = 20
    time_granularity_ns = 1_000_000_000  # zfs-fuse keeps whole seconds; kernel ZFS: see __init__

    def __init__(self, settings=None):
        super().__init__(settings)
        if _kernel_zfs():
            self.time_granularity_ns = 1

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """The zfs tools are missing, no ZFS (kernel module or zfs-fuse daemon) answers, or
        ``BDEV_ZFS_IMPL`` asks for what cannot work."""
        reasons = super().unavailable_reasons()
        if not reasons:
            problem = _cli.probe() or _ops.problem()
            if problem is None:
                try:
                    self.ops
                except BdevError as exc:
                    problem = exc.cause
            if problem:
                reasons.append(problem)
        return reasons

    @property
    def ops(self) -> _ops.DatasetOps:
        """The implementation of the dataset operations: libzfs_core where it works, else the
        ``zfs`` command (chosen on each use, so ``BDEV_ZFS_IMPL`` can switch it)."""
        return _ops.choose(self._pool())[0]

    def implementation(self) -> str:
        """Kernel ZFS or zfs-fuse, and libzfs_core (pyzfs) or the zfs command, with why not
        pyzfs: ``kernel ZFS; libzfs_core (pyzfs 2.1.11)``."""
        kind = "kernel ZFS; mounts with mount -t zfs -o zfsutil" if _kernel_zfs() else "zfs-fuse; mounts through zfs mount"
        try:
            ops, why_not = _ops.choose(self._pool())
        except BdevError as exc:
            return f"{kind}; {exc.cause}"
        return f"{kind}; {ops.describe()}" + (f" ({why_not})" if why_not else "")

    def _pool(self) -> str:
        return self.root().split("/", 1)[0]

    def root(self, options: CreateOptions | None = None) -> str:
        """The parent dataset of new rootfs: ``--zfsroot``, ``lxc.bdev.zfs.root``, or ``lxc``."""
        extra = options.extra if options is not None else {}
        value = extra.get("zfsroot") or self.settings.get("lxc.bdev.zfs.root") or "lxc"
        return value.strip("/")

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuse when ZFS does not answer, the pool or root dataset is missing, or the new
        dataset's name is one ZFS rejects."""
        problem = _cli.probe()
        if problem:
            return problem
        target = self.default_source(placement, options)
        bad = _cli.name_problem(target)
        if bad:
            return bad
        parent = target.rsplit("/", 1)[0]
        pool = parent.split("/", 1)[0]
        try:
            if not _cli.pool_exists(pool):
                return _("zfs pool {pool!r} does not exist (set lxc.bdev.zfs.root or --zfsroot to a dataset of an "
                         "imported pool)").format(
                    pool=pool)
            if not self.ops.exists(parent):
                return _("zfs root dataset {parent!r} does not exist (create it with 'zfs create -o mountpoint=none "
                         "{parent}')").format(
                    parent=parent)
        except BdevError as exc:
            return exc.cause
        return None

    # ------------------------------------------------------------------ naming

    def detect(self, source: str) -> bool:
        """An unprefixed value is zfs when it names an existing dataset (not a path)."""
        if source.startswith("/") or _cli.name_problem(source):
            return False
        try:
            return _cli.probe() is None and self.ops.exists(source)
        except BdevError:
            return False

    def parse(self, source: str) -> Rootfs:
        """Accept a dataset name ZFS would accept (``pool/lxc/web1``)."""
        source = source.strip("/") if not source.startswith("/") else source
        problem = _cli.name_problem(source)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        return Rootfs(self.name, source)

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``<root>/<storage_name>`` (``lxc/web1``, ``lxc/web1.snap0``); a staged rootfs goes
        beside the live one (same parent dataset)."""
        if placement.stage is not None and placement.near:
            return f"{placement.near.rsplit('/', 1)[0]}/{placement.storage_name}"
        return f"{self.root(options)}/{placement.storage_name}"

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """``zfs create -o canmount=noauto -o mountpoint=<rootfs dir>`` (and ``refquota`` for
        ``--fssize``); the mount point directory is made as LXC does."""
        dataset = self.default_source(placement, options)
        self._check_new(dataset)
        home = str(placement.rootfs_dir)
        args = ["create", "-o", "canmount=noauto", "-o", f"mountpoint={home}", "-o", f"{HOME_PROP}={home}"]
        if options.fssize:
            args += ["-o", f"refquota={options.fssize}"]
        zfs(*args, dataset)
        try:
            placement.rootfs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            with contextlib.suppress(BdevError):
                self.destroy(Rootfs(self.name, dataset))
            raise BdevError(_("cannot make the mount point {home}: {cause}").format(home=home, cause=exc.strerror),
                            backend=self.name) from None
        return Rootfs(self.name, dataset)

    def destroy(self, rootfs: Rootfs) -> None:
        """Destroy the dataset and its snapshots; if a snapshot still has clones, hide the
        dataset under ``<root>/.bdev-deleted/`` instead.  Then remove its origin snapshot when
        no other clone uses it, and a hidden origin dataset when nothing depends on it any more."""
        dataset = rootfs.source
        self._repair(dataset)
        if not self.ops.exists(dataset):
            return
        refusal = self.destroy_refusal(rootfs)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)
        pool = dataset.split("/", 1)[0]
        clones = _cli.origins(pool)
        origin = clones.get(dataset)
        self._unmount(dataset, restore=False)
        home = _cli.get(dataset, HOME_PROP) or ""
        if ".bdev-" in os.path.basename(home) and os.path.basename(home).startswith("."):
            with contextlib.suppress(OSError):
                os.rmdir(home)  # a staged sibling's mount point (zfs-fuse makes it when mounting)
        used = {o.split("@", 1)[0] for c, o in clones.items() if c != dataset}
        if dataset in used:
            self._hide(dataset, clones)
        else:
            self.ops.destroy(dataset)
        if origin:
            self._collect(origin)

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse now: the dataset is mounted and a process uses
        the mount (its working directory or open files are there: ``fuser -m``), which
        ``zfs umount`` and ``zfs destroy`` cannot get past.  A mount nobody uses is no
        refusal: :meth:`destroy` unmounts it, as ``zfs destroy`` does."""
        dataset = rootfs.source
        for where in mountpoints_of(dataset):  # the mount table: no zfs command for the usual unmounted dataset
            users = _processes_using(where)
            if users:
                return _("dataset {dataset} is mounted on {where} and in use by {users}; stop them or unmount it "
                         "before destroying").format(dataset=dataset, where=where, users=", ".join(users))
        return None

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the dataset exists."""
        self._repair(rootfs.source)
        return self.ops.exists(rootfs.source)

    def identity(self, rootfs: Rootfs) -> str:
        """The dataset's ``guid``."""
        self._repair(rootfs.source)
        guid = _cli.get(rootfs.source, "guid")
        if guid is None:
            raise BdevError(_("dataset {source} does not exist").format(source=rootfs.source), backend=self.name)
        return guid

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """``mount -t zfs`` with kernel ZFS; on zfs-fuse, point the ``mountpoint`` property
        at ``mountpoint`` and ``zfs mount`` (the property goes back on :meth:`umount`)."""
        dataset = rootfs.source
        self._repair(dataset)
        if _kernel_zfs():
            opts = "zfsutil,ro" if readonly else "zfsutil"
            run(["mount", "-t", "zfs", "-o", opts, dataset, str(mountpoint)], backend=self.name)
            return
        if _cli.get(dataset, "mounted") == "yes":  # in use (a running container): bind its mount
            current = _cli.get(dataset, "mountpoint") or ""
            run(["mount", "--bind", *(["-o", "ro"] if readonly else []), current, str(mountpoint)], backend=self.name)
            return
        self._remember_home(dataset)
        zfs("set", f"mountpoint={mountpoint}", dataset)
        try:
            zfs("mount", *(["-o", "ro"] if readonly else []), dataset)
        except BdevError:
            self._restore_home(dataset)
            raise

    @contextlib.contextmanager
    def running(self, rootfs: Rootfs, *, container: str, readonly: bool = False) -> Iterator[None]:
        """On zfs-fuse, mount the dataset in the host's mount namespace for the container's
        life (the daemon mounts there, whoever asks: never in the container's namespace), so
        the container's init binds that mount; unmount it after.  Kernel ZFS mounts in the
        init's namespace itself, so nothing is held."""
        if _kernel_zfs():
            yield
            return
        with self.accessed(rootfs, readonly=readonly):
            yield

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Undo :meth:`mount`."""
        dataset = rootfs.source
        if _kernel_zfs():
            run(["umount", str(mountpoint)], backend=self.name)
            return
        if _cli.get(dataset, "mountpoint") != str(mountpoint):
            run(["umount", str(mountpoint)], backend=self.name)
            return
        _cli.retry_busy(["umount", dataset], dataset)
        try:
            self._restore_home(dataset)
        except BdevError as exc:  # a full pool refuses property changes: repaired on next use
            log.warning("%s: mountpoint property not restored yet: %s", dataset, exc)

    def usage(self, rootfs: Rootfs) -> Usage:
        """``used`` bytes and the ``refquota`` limit, if set."""
        used = _cli.get(rootfs.source, "used")
        if used is None:
            return Usage(None, note=_("dataset {source} does not exist").format(source=rootfs.source))
        quota = _cli.get(rootfs.source, "refquota")
        referenced = _cli.get(rootfs.source, "referenced")
        limit = int(quota) if quota and quota.isdigit() and int(quota) > 0 else None
        return Usage(int(used), limit_bytes=limit, note=_("{referenced} bytes referenced").format(
            referenced=referenced))

    def resize(self, rootfs: Rootfs, size: int) -> None:
        """Set ``refquota``, refusing one below what the dataset references now."""
        referenced = _cli.get(rootfs.source, "referenced")
        if referenced is None:
            raise BdevError(_("dataset {source} does not exist").format(source=rootfs.source), backend=self.name)
        if size < int(referenced):
            raise InvalidInput(_("{size} bytes is less than the {referenced} bytes {source} holds").format(
                size=size, referenced=referenced, source=rootfs.source), backend=self.name)
        zfs("set", f"refquota={size}", rootfs.source)

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self,
        source_path: Path,
        placement: Placement,
        options: CreateOptions,
        progress: "object | None" = None,
        *,
        source: Rootfs | None = None,
        source_backend: Backend | None = None,
    ) -> CloneOutcome:
        """A full copy into a new dataset: ``zfs send | zfs recv`` of a temporary snapshot when
        the core copies a zfs rootfs (``source``), into this pool or another (independent of
        the source, holes kept); otherwise bdev's copy engine into a new empty dataset."""
        if source is None or source.backend != self.name:
            return super().copy_from(source_path, placement, options, progress)
        return self._send_receive(source.source, placement, options)

    def _send_receive(self, source: str, placement: Placement, options: CreateOptions) -> CloneOutcome:
        dataset = self.default_source(placement, options)
        self._check_new(dataset)
        snap = self._free_snapshot_name(source, placement.storage_name)
        self.ops.snapshot(snap)
        try:
            run(["sh", "-c", 'zfs send "$1" | zfs recv "$2"', "zfs-send", snap, dataset], backend=self.name)
        except BdevError as exc:
            with contextlib.suppress(BdevError):
                self.destroy(Rootfs(self.name, dataset))
            raise BdevError(_("'zfs send {snap} | zfs recv {dataset}' failed: {detail}").format(
                snap=snap, dataset=dataset, detail=getattr(exc, 'stderr', '').strip() or exc.cause), backend=self.name) from None
        finally:
            with contextlib.suppress(BdevError):
                self.ops.destroy(snap)
        try:
            received = f"{dataset}@{snap.split('@', 1)[1]}"
            home = str(placement.rootfs_dir)
            self._unmount(dataset)
            zfs("set", "canmount=noauto", dataset)
            zfs("set", f"{HOME_PROP}={home}", dataset)
            zfs("set", f"mountpoint={home}", dataset)
            self._unmount(dataset)
            self.ops.destroy(received)
            if options.fssize:
                zfs("set", f"refquota={options.fssize}", dataset)
            placement.rootfs_dir.mkdir(parents=True, exist_ok=True)
        except (BdevError, OSError):
            with contextlib.suppress(BdevError):
                self.destroy(Rootfs(self.name, dataset))
            raise
        return CloneOutcome(Rootfs(self.name, dataset), "copy", note=_("the source is a zfs dataset, so zfs send | "
                                                                       "zfs recv copied it"))

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """A zfs clone needs a zfs source in the same pool as the new dataset."""
        if source_backend.name != self.name:
            return super().snapshot_refusal(source, source_backend, placement)
        target = self.default_source(placement, options or CreateOptions())
        if source.source.split("/", 1)[0] != target.split("/", 1)[0]:
            return _("{source} and {target} are in different zfs pools").format(source=source.source, target=target)
        return None

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """``zfs snapshot <src>@<new storage name>`` then ``zfs clone`` it to the new dataset;
        a container snapshot's clone is ``readonly=on`` (it must not drift from its ZFS
        snapshot: see :meth:`restore_natively`).  The clone does not block destroying its origin
        (see :meth:`destroy`)."""
        dataset = self.default_source(placement, options)
        container_snapshot = placement.owner is not None and placement.stage is None
        self._clone(source.source, dataset, placement, readonly=container_snapshot)
        if container_snapshot:  # kernel ZFS: 1024 (the clone's zeroed ZIL header); zfs-fuse: 0
            try:
                zfs("set", f"{PRISTINE_PROP}={_cli.get(dataset, 'used')}", dataset)
            except BdevError:
                with contextlib.suppress(BdevError):
                    self.destroy(Rootfs(self.name, dataset))
                raise
        with contextlib.suppress(OSError):
            if placement.stage is None:
                placement.rootfs_dir.mkdir(parents=True, exist_ok=True)
            else:
                placement.rootfs_dir.rmdir()  # the clone's mount made it; staged trees are never mounted there
        return CloneOutcome(Rootfs(self.name, dataset), "snapshot")

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs | None:
        """A clone of a new snapshot of ``rootfs`` at ``default_source(placement)``
        (``<root>/web1.overlay.lower0``), for an overlay clone to layer over; only ever
        mounted read-only, and ``readonly=on`` with kernel ZFS.  (zfs-fuse fails every xattr
        read of an overlay mount once it has copied a file up from a ``readonly=on`` lower.)
        None when the placement is in another pool (a clone cannot leave its pool): the overlay
        then uses the live rootfs.  :meth:`destroy` removes it, its snapshot, and an origin
        hidden since."""
        dataset = self.default_source(placement, CreateOptions())
        if dataset.split("/", 1)[0] != rootfs.source.split("/", 1)[0]:
            return None
        self._clone(rootfs.source, dataset, placement, readonly=_kernel_zfs())
        return Rootfs(self.name, dataset)

    def _clone(self, source: str, dataset: str, placement: Placement, *, readonly: bool) -> None:
        """Snapshot ``source`` as ``@<storage name>`` and clone it, unmounted, to ``dataset``
        with the placement's mount point; on failure nothing is left."""
        self._check_new(dataset)
        snap = self._free_snapshot_name(source, placement.storage_name)
        self.ops.snapshot(snap)
        home = str(placement.rootfs_dir)
        props = {"canmount": "noauto", "mountpoint": home, HOME_PROP: home}
        if readonly:
            props["readonly"] = "on"
        try:
            self.ops.clone(snap, dataset, props)
        except BdevError:
            with contextlib.suppress(BdevError):
                self.ops.destroy(snap)
            raise
        try:
            self._unmount(dataset)  # zfs-fuse's clone mounts it despite canmount=noauto
        except BdevError:
            with contextlib.suppress(BdevError):
                self.destroy(Rootfs(self.name, dataset))
            raise

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange two datasets by three renames through ``<live>.bdev-swap`` (a crash in
        between is finished by the next operation on either), then exchange their mount points."""
        a, b = live.source, staged.source
        home_a, home_b = _cli.get(a, HOME_PROP), _cli.get(b, HOME_PROP)
        tmp = f"{a}.bdev-swap"
        self._unmount(a)
        self._unmount(b)
        zfs("set", f"{SWAP_PROP}={b}", a)  # travels to the intermediate name: lets _repair finish
        _cli.retry_busy(["rename", a, tmp], a)
        _cli.retry_busy(["rename", b, a], b)
        _cli.retry_busy(["rename", tmp, b], tmp)
        for dataset, home in ((a, home_a), (b, home_b)):
            if home and home != "-":
                zfs("set", f"{HOME_PROP}={home}", dataset)
                zfs("set", f"mountpoint={home}", dataset)
        zfs("inherit", SWAP_PROP, b)

    def restore_natively(self, live: Rootfs, snapshot: Rootfs) -> bool:
        """``zfs rollback`` (never ``-r``) of the live dataset to the ZFS snapshot the container
        snapshot's dataset was cloned from, when that clone is unchanged and the ZFS snapshot
        is the live dataset's latest.  Otherwise False, having changed nothing, and the core
        stages and swaps; rollback itself refuses when newer snapshots exist, so none is ever
        lost.  Running it again after it succeeded rolls back to the same snapshot: a no-op.

        Unchanged means: the clone is not mounted (so nothing is pending) and its ``used`` is
        what it was right after it was made (``bdev:pristine-used``; 0 when not recorded): any
        change to a ZFS clone allocates blocks of its own.  Pool version 23 (zfs-fuse) has no
        ``written``, and kernel ZFS's ``written`` counts the clone's new ZIL header too."""
        dataset = live.source
        self._repair(dataset)
        origin, why_not = self._rollback_target(dataset, snapshot.source)
        if origin is None:
            log.info("%s: restoring by stage and swap, not rollback: %s", dataset, why_not)
            return False
        self._unmount(dataset)
        if not self.ops.rollback(origin):
            log.info("%s: restoring by stage and swap, not rollback: snapshots newer than %s exist", dataset, origin)
            return False
        return True

    def _rollback_target(self, dataset: str, snapshot_dataset: str) -> tuple[str | None, str]:
        """The ZFS snapshot of ``dataset`` that the unchanged clone ``snapshot_dataset`` was made
        from, or None and why there is none."""
        origin = _cli.get(snapshot_dataset, "origin")
        if origin is None:
            return None, _("{snapshot_dataset} does not exist").format(snapshot_dataset=snapshot_dataset)
        if origin.split("@", 1)[0] != dataset:
            return None, _("{snapshot_dataset} is not a clone of a snapshot of {dataset}").format(
                snapshot_dataset=snapshot_dataset, dataset=dataset)
        if _cli.get(snapshot_dataset, "mounted") != "no":
            return None, _("{snapshot_dataset} is mounted, so it may be changing").format(
                snapshot_dataset=snapshot_dataset)
        used, pristine = _cli.get(snapshot_dataset, "used"), _cli.get(snapshot_dataset, PRISTINE_PROP)
        if used != (pristine if pristine and pristine.isdigit() else "0"):
            return None, _("{snapshot_dataset} has changed since {origin} ({used} bytes of its own)").format(
                snapshot_dataset=snapshot_dataset, origin=origin, used=used)
        return origin, ""

    # ------------------------------------------------------------------ helpers

    def _check_new(self, dataset: str) -> None:
        problem = _cli.name_problem(dataset)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        if self.ops.exists(dataset):
            raise AlreadyExists(_("dataset {dataset} already exists").format(dataset=dataset), backend=self.name)

    def _free_snapshot_name(self, source: str, name: str) -> str:
        candidate, n = f"{source}@{name}", 1
        while self.ops.exists(candidate):
            n += 1
            candidate = f"{source}@{name}.{n}"
        return candidate

    def _unmount(self, dataset: str, *, restore: bool = True) -> None:
        if _cli.get(dataset, "mounted") == "yes":
            _cli.retry_busy(["umount", dataset], dataset)
        if restore:
            self._restore_home(dataset)

    def _remember_home(self, dataset: str) -> None:
        if _cli.get(dataset, HOME_PROP) in (None, "-", ""):
            home = _cli.get(dataset, "mountpoint")
            if home and home.startswith("/"):
                zfs("set", f"{HOME_PROP}={home}", dataset)

    def _restore_home(self, dataset: str) -> None:
        """Point the mountpoint property back at the container's rootfs directory."""
        home = _cli.get(dataset, HOME_PROP)
        if home and home != "-" and _cli.get(dataset, "mountpoint") != home:
            zfs("set", f"mountpoint={home}", dataset)

    def _repair(self, dataset: str) -> None:
        """Finish a swap that a crash interrupted (see :meth:`swap`), and put back a
        mountpoint property left pointing at a temporary mount of a dead process."""
        tmp = f"{dataset}.bdev-swap"
        if dataset.endswith(".bdev-swap") or not self.ops.exists(tmp):
            if self.ops.exists(dataset) and _cli.get(dataset, "mounted") == "no":
                with contextlib.suppress(BdevError):  # a full pool refuses it; destroy must still work
                    self._restore_home(dataset)
            return
        if not self.ops.exists(dataset):
            _cli.retry_busy(["rename", tmp, dataset], tmp)  # before the second rename: roll back
            zfs("inherit", SWAP_PROP, dataset)
            return
        staged = _cli.get(tmp, SWAP_PROP)
        if staged and staged != "-" and not self.ops.exists(staged):
            _cli.retry_busy(["rename", tmp, staged], tmp)  # after the second rename: roll forward
            home_live, home_staged = _cli.get(staged, HOME_PROP), _cli.get(dataset, HOME_PROP)
            for name, home in ((dataset, home_live), (staged, home_staged)):
                if home and home != "-":
                    zfs("set", f"{HOME_PROP}={home}", name)
                    zfs("set", f"mountpoint={home}", name)
            zfs("inherit", SWAP_PROP, staged)

    def _hide(self, dataset: str, clones: dict[str, str]) -> None:
        """Rename ``dataset`` (which clones depend on) under ``<parent>/.bdev-deleted/``,
        unmountable, and drop its snapshots no clone uses."""
        used = set(clones.values())
        for snap in _cli.snapshots(dataset):
            if snap not in used:
                self.ops.destroy(snap)
        parent, leaf = dataset.rsplit("/", 1)
        if parent.endswith("/" + DELETED):
            return
        hidden_parent = f"{parent}/{DELETED}"
        if not self.ops.exists(hidden_parent):
            zfs("create", "-o", "mountpoint=none", "-o", "canmount=off", hidden_parent)
        guid = _cli.get(dataset, "guid")
        zfs("set", "canmount=noauto", dataset)  # zfs-fuse sets one property per command
        zfs("inherit", HOME_PROP, dataset)
        zfs("set", "mountpoint=none", dataset)
        _cli.retry_busy(["rename", dataset, f"{hidden_parent}/{leaf}.{guid}"], dataset)

    def _collect(self, origin: str) -> None:
        """Destroy the origin snapshot ``origin`` if no clone uses it any more, then its dataset
        if that is hidden and has no snapshots left (and so on up the chain)."""
        dataset = origin.split("@", 1)[0]
        pool = dataset.split("/", 1)[0]
        clones = _cli.origins(pool)
        if origin in clones.values() or not self.ops.exists(origin):
            return
        self.ops.destroy(origin)
        parent = dataset.rsplit("/", 1)[0]
        if parent.endswith("/" + DELETED) and not _cli.snapshots(dataset):
            own_origin = clones.get(dataset)
            self.ops.destroy(dataset)
            if not zfs("list", "-H", "-r", "-d", "1", "-o", "name", parent).strip("\n").count("\n"):
                self.ops.destroy(parent)
            if own_origin:
                self._collect(own_origin)


def _processes_using(mountpoint: str) -> list[str]:
    """The processes using the filesystem mounted on ``mountpoint`` (``fuser -m``), as
    ``PID (command)``; empty when none does, it is no mount point, or fuser is missing."""
    if not which("fuser"):
        return []
    found = run(["fuser", "-m", mountpoint], check=False, backend=_cli.BACKEND)
    users = []
    for pid in found.stdout.split():
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        users.append(f"{pid} ({command})")
    return users
