"""The rbd backend: the rootfs is the RBD image ``<pool>/<name>`` holding an ext4, xfs or btrfs
filesystem, written ``lxc.rootfs.path = rbd:/dev/rbd/<pool>/<name>`` as LXC writes it
(``/dev/rbd/<pool>/<namespace>/<name>`` in an RBD namespace), and mounted at
``<lxcpath>/<name>/rootfs``.

* The pool is ``--rbdpool``, else ``lxc.bdev.rbd.rbdpool``, else ``lxc``; the image is
  ``--rbdname``, else the placement's ``storage_name`` (``web1``, ``web1.snap0``: two
  containers' ``snap0`` never collide).  The cluster and user are host settings
  (:mod:`bdev_rbd._cluster`).  Everything goes through librbd, never the ``rbd`` CLI.
* Snapshot clones and container snapshots are an RBD snapshot of the origin named after the
  new container, protected, and cloned (layering).  A mounted origin is frozen (``fsfreeze``)
  around its snapshot.  Clones do not block destroying their origin: an origin whose
  snapshots still have clones is hidden (``.bdev-deleted.<name>.<id>``) and removed with its
  last clone, or when ``bdev rbd flatten`` detaches it.
* Restore in place rolls back (``rollback_to_snap``) when the container snapshot is the
  image's latest snapshot and its clone holds nothing of its own; otherwise the core stages a
  clone and :meth:`RbdBackend.swap` exchanges the names (three renames, repaired after a crash).
* A read-write mount takes an RBD advisory lock naming this host and the mount point, so a
  second host (or a second mount here) is refused, naming the holder (:mod:`bdev_rbd._locks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage, blockfs
from bdev.command import run
from bdev.errors import AlreadyExists, BdevError, Busy, CommandError, InvalidInput
from bdev.mounts import mount_at
from bdev.requirements import PythonModule, Tool
from bdev.units import format_size

from . import _attach, _hostns, _images, _locks
from ._cluster import DEFAULT_POOL, KEY_POOL, Cluster, explain, pool
from ._i18n import _, N_
from ._names import ImageRef, name_problem, parse_locator, ref_problem, split_locator

GiB = 1 << 30
DEFAULT_SIZE = 1 * GiB  # LXC's default --fssize
KEY_NAMESPACE = "lxc.bdev.rbd.namespace"
FSTYPE_KEY = "bdev.fstype"


class RbdBackend(Backend):
    """A rootfs on a Ceph RBD image, with layered snapshot clones and multi-host locking."""

    name = "rbd"
    description = N_("a Ceph RBD image holding a filesystem (librbd); layered snapshot clones, host locks")
    capabilities = Capabilities(
        native_snapshot=True,
        block_backed=True,
        needs_pool=True,
        needs_mount=True,
        sized=True,
        can_backup=True,
    )
    requires = (
        PythonModule("rados", "python3-rados"),
        PythonModule("rbd", "python3-rbd"),
        Tool("mount", "mount"),
        Tool("fsfreeze", "util-linux"),
        Tool("rbd-fuse", "rbd-fuse", optional=True),
        Tool("fusermount", "fuse3", optional=True),
        Tool("rbd", "ceph-common", optional=True),
        *blockfs.requirements(),
    )
    detect_priority = 40

    def __init__(self, settings: Mapping[str, str] | None = None):
        super().__init__(settings)
        self._held_for_container: dict[str, str] = {}
        """Attachments :meth:`running` made, by rootfs source (a container's init, forked
        after it, mounts these)."""

    # ------------------------------------------------------------------ settings

    def cluster(self) -> Cluster:
        """The cluster this host's settings name."""
        return Cluster.from_settings(self.settings)

    def host(self) -> str:
        """This host's name in lock cookies."""
        return _locks.host_name(self.settings)

    @contextlib.contextmanager
    def opened_pool(self, ref: ImageRef) -> Iterator[Any]:
        """An I/O context on the pool and namespace of ``ref``."""
        with pool(self.cluster(), ref.pool, ref.namespace) as ioctx:
            yield ioctx

    def _pool_opener(self, namespace: str):
        return lambda pool_name: pool(self.cluster(), pool_name, namespace)

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """Missing bindings or tools, and a host with no way to attach an image."""
        reasons = super().unavailable_reasons()
        try:
            kind, why = _attach.choose()
        except BdevError as exc:
            kind, why = None, exc.cause
        if kind is None:
            reasons.append(why)
        return reasons

    def implementation(self) -> str:
        """How images are attached here, the cluster and the usable fstypes."""
        try:
            kind, why = _attach.choose()
            cluster = self.cluster().describe()
        except BdevError as exc:
            return exc.cause
        mounts = f"mounts through {why}" if kind else why
        return _("librbd; {mounts}; cluster: {cluster}; fstypes: {usable}").format(
            mounts=mounts, cluster=cluster, usable=', '.join(blockfs.usable()) or 'none')

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuses a name bdev or Ceph rejects, an unreachable cluster, a missing pool or
        namespace, an existing image, an unsupported ``--fstype`` and a ``--fssize`` below
        the type's smallest filesystem."""
        try:
            self._new_image(placement, options)
        except BdevError as exc:
            return exc.cause
        return None

    # ------------------------------------------------------------------ naming

    def detect(self, source: str) -> bool:
        """An unprefixed ``/dev/rbd/<pool>/<image>`` is rbd (LXC's test)."""
        return parse_locator(source) is not None

    def parse(self, source: str) -> Rootfs:
        """Accept ``/dev/rbd/<pool>[/<namespace>]/<image>``."""
        if parse_locator(source) is None:
            raise InvalidInput(_("rbd rootfs {source!r} is not of the form /dev/rbd/<pool>/<image>").format(
                source=source), backend=self.name)
        return Rootfs(self.name, source)

    def image_of(self, rootfs: Rootfs) -> ImageRef:
        """The image ``rootfs`` names."""
        ref = parse_locator(rootfs.source)
        if ref is None:
            raise InvalidInput(_("rbd rootfs {source!r} is not of the form /dev/rbd/<pool>/<image>").format(
                source=rootfs.source), backend=self.name)
        return ref

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``/dev/rbd/<pool>/<rbdname or storage_name>``; a staged image goes beside the live
        one: ``<live image>.bdev-<stage>`` in its pool."""
        if placement.stage is not None and placement.near:
            live = parse_locator(placement.near)
            if live is not None:
                return live.renamed(f"{live.name}.bdev-{placement.stage}").locator
        name = options.extra.get("rbdname") if placement.owner is None and placement.stage is None else None
        pool_name = options.extra.get("rbdpool") or self.settings.get(KEY_POOL) or DEFAULT_POOL
        namespace = options.extra.get("rbdnamespace") or self.settings.get(KEY_NAMESPACE) or ""
        return ImageRef(pool_name, namespace, name or placement.storage_name).locator

    # ------------------------------------------------------------------ lifecycle

    def _new_image(self, placement: Placement, options: CreateOptions) -> tuple[ImageRef, blockfs.Filesystem, int]:
        """Everything :meth:`create` needs, checked against the cluster, or the refusal."""
        ref = split_locator(self.default_source(placement, options))
        assert ref is not None
        problem = ref_problem(ref)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        live = self._live_beside(placement)
        fs = blockfs.chosen(options.fstype or (live[0] if live else None), holder="an RBD image", backend=self.name)
        size = options.fssize or (live[1] if live else DEFAULT_SIZE)
        problem = blockfs.minimum_problem(fs, size)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        with self.opened_pool(ref) as ioctx:
            if _images.exists(ioctx, ref.name):
                raise AlreadyExists(_("RBD image {spec} already exists").format(spec=ref.spec), backend=self.name)
        return ref, fs, size

    def _live_beside(self, placement: Placement) -> tuple[str | None, int] | None:
        """For a staged placement: the live image's filesystem type and size."""
        live = parse_locator(placement.near) if placement.stage and placement.near else None
        if live is None:
            return None
        with self.opened_pool(live) as ioctx, _images.opened(ioctx, live.name, read_only=True) as image:
            return _images.metadata(ioctx, live.name).get(FSTYPE_KEY), image.size()

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """A new image of ``--fssize`` (default 1 GiB) with a fresh ``--fstype`` filesystem
        (default ext4), made through an attachment; the mount point directory is made as LXC
        does.  Everything is checked first and a failure removes what was made."""
        ref, fs, size = self._new_image(placement, options)
        with self.opened_pool(ref) as ioctx:
            _images.create(ioctx, ref.name, size)
            try:
                _images.set_metadata(ioctx, ref.name, FSTYPE_KEY, fs.name)
                with _attach.attached(self.cluster(), ref, readonly=False) as path:
                    blockfs.make(fs, path, backend=self.name)
                if placement.stage is None:
                    placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
            except BaseException:
                with contextlib.suppress(BdevError):
                    _images.remove(ioctx, ref.name)
                raise
        return Rootfs(self.name, ref.locator)

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove the image and its snapshots; if clones still use some of its snapshots, hide
        it instead (``.bdev-deleted.<name>.<id>``).  Then remove its origin snapshot when no
        other clone uses it, and a hidden origin when nothing depends on it any more.
        Refused while the image is mounted (here or on another host)."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx:
            _images.repair(ioctx, ref.name)
            if not _images.exists(ioctx, ref.name):
                return
            with _images.opened(ioctx, ref.name) as image:
                self._refuse_if_mounted(image, ref, _("removing it"))
                origin = _images.parent(image)
            if _images.drop_unused_snapshots(ioctx, ref.name):
                _images.hide(ioctx, ref.name)
            else:
                _images.remove(ioctx, ref.name)
        _images.collect(self._pool_opener(ref.namespace), origin)

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse now: the image is mounted, here or on another
        host (a stale lock of this host is released on the way, as :meth:`destroy` does)."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx:
            if not _images.exists(ioctx, ref.name):
                return None
            with _images.opened(ioctx, ref.name) as image:
                try:
                    self._refuse_if_mounted(image, ref, _("removing it"))
                except Busy as exc:
                    return exc.cause
        return None

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the image exists."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx:
            _images.repair(ioctx, ref.name)
            return _images.exists(ioctx, ref.name)

    def identity(self, rootfs: Rootfs) -> str:
        """The image's id: renames keep it, so a swap changes the id behind a name."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx:
            _images.repair(ioctx, ref.name)
            return _images.image_id(ioctx, ref.name)

    # ------------------------------------------------------------------ mounting

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Attach the image (krbd, rbd-nbd, or rbd-fuse + a loop device) and mount its
        filesystem.  A read-write mount first takes the image's lock for this host and
        mount point; any mount is refused while another holder has it read-write.  In a
        container's init, the attachment :meth:`running` made in the host's namespaces is
        mounted instead."""
        held = self._held_for_container.get(rootfs.source)
        if held is not None:
            self._mount_filesystem(held, mountpoint, readonly=readonly)
            return
        ref = self.image_of(rootfs)
        path = self._lock_and_attach(ref, str(mountpoint), readonly=readonly)
        try:
            self._mount_filesystem(path, mountpoint, readonly=readonly)
        except BaseException:
            _attach.detach(path)
            if not readonly:
                self._release(ref, str(mountpoint))
            raise

    @contextlib.contextmanager
    def running(self, rootfs: Rootfs, *, container: str, readonly: bool = False) -> Iterator[None]:
        """Lock the image for ``container`` (read-only: refuse while another holder has it
        read-write, lock nothing) and attach it from the host's namespaces (an rbd-fuse daemon
        started here outlives the container's processes, so the kernel's final unmount of its
        filesystem still reaches Ceph); once the container's mount namespace is gone: wait for
        the loop device to let go, detach, release the lock."""
        ref = self.image_of(rootfs)
        holder = _locks.container_mount(container)
        path = self._lock_and_attach(ref, holder, readonly=readonly)
        self._held_for_container[rootfs.source] = path
        try:
            yield
        finally:
            del self._held_for_container[rootfs.source]
            self._let_go(ref, path, None if readonly else holder,
                         what=_("container {container}").format(container=container))

    def _lock_and_attach(self, ref: ImageRef, holder: str, *, readonly: bool) -> str:
        """Take the lock for a read-write mount ``holder`` (refuse any mount while another
        holder has it read-write) and attach the image; the device or file to mount."""
        with _hostns.host_network():  # a container's init mounts it from its own namespaces
            _attach.reap()
            with self.opened_pool(ref) as ioctx, _images.opened(ioctx, ref.name) as image:
                if readonly:
                    self._refuse_if_mounted(image, ref, _("mounting it read-only"))
                else:
                    _locks.take(image, ref.spec, self.host(), holder,
                                lambda existing: self._holder_alive(existing, ref))
            try:
                return _attach.attach(self.cluster(), ref, readonly=readonly)
            except BaseException:
                if not readonly:
                    self._release(ref, holder)
                raise

    def _let_go(self, ref: ImageRef, path: str, holder: str | None, *, what: str) -> None:
        """After ``path``'s filesystem is unmounted: wait for its loop device to let go,
        detach it, and release the lock of ``holder`` (if any).  While a loop device still
        holds it nothing is detached (its last writes would be lost) and the lock stays."""
        if not path.startswith("/dev/") and not _attach.wait_loops_released(path):
            raise BdevError(_("a loop device still holds {backing} after unmounting {what}").format(
                backing=path, what=what), backend=self.name)
        _attach.detach(path)
        if holder is not None:
            self._release(ref, holder)

    def _mount_filesystem(self, path: str, mountpoint: Path, *, readonly: bool) -> None:
        fstype = blockfs.probe(path)
        if fstype is None:
            raise BdevError(_("{path} holds no filesystem bdev recognises (damaged, or never formatted)").format(
                path=path), backend=self.name)
        opts = ("ro" if readonly else "rw") + ("" if path.startswith("/dev/") else ",loop")
        try:
            run(["mount", "-t", fstype, "-o", opts, path, str(mountpoint)], backend=self.name)
        except CommandError as exc:
            raise BdevError(_("cannot mount the {fstype} filesystem of {path} ({detail})").format(
                fstype=fstype, path=path, detail=blockfs.detail(exc)), backend=self.name) from None

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount, wait for the loop device to let go, detach (stopping rbd-fuse), and
        release this mount's lock; nothing mounted there only releases a stale lock."""
        ref = self.image_of(rootfs)
        entry = mount_at(mountpoint)
        if entry is None:
            self._release(ref, str(mountpoint))
            return
        backing = _attach.loop_backing(entry.source) or entry.source
        try:
            run(["umount", str(mountpoint)], backend=self.name)
        except CommandError as exc:
            raise BdevError(_("cannot unmount {mountpoint} ({detail})").format(
                mountpoint=mountpoint, detail=blockfs.detail(exc)), backend=self.name) from None
        self._let_go(ref, backing, str(mountpoint), what=str(mountpoint))

    def _release(self, ref: ImageRef, holder: str) -> None:
        with self.opened_pool(ref) as ioctx, _images.opened(ioctx, ref.name) as image:
            _locks.release_mount(image, self.host(), holder)

    @staticmethod
    def _mount_alive(holder: _locks.Holder) -> bool:
        return holder.mount.startswith("/") and mount_at(holder.mount) is not None

    @classmethod
    def _holder_alive(cls, holder: _locks.Holder, ref: ImageRef) -> bool:
        """Whether this host's lock ``holder`` of ``ref`` still stands for a mount: visible
        here, or in another mount namespace (a running container's) while the image stays
        attached and in use."""
        return cls._mount_alive(holder) or _attach.in_use(ref)

    def _refuse_if_mounted(self, image: Any, ref: ImageRef, doing: str) -> None:
        """Busy while a live holder (here or elsewhere) has the image mounted read-write;
        a stale lock of this host is released."""
        for holder in _locks.holders(image):
            if holder.host == self.host() and not self._holder_alive(holder, ref):
                _locks.release(image, holder)
                continue
            raise Busy(_("RBD image {spec} is mounted read-write by {users}; unmount it before {doing}").format(
                spec=ref.spec, users=holder.describe(), doing=doing), backend=self.name)
        here = _attach.mountpoints(ref)
        if here:
            raise Busy(_("RBD image {spec} is mounted on {here}; unmount it before {doing}").format(
                spec=ref.spec, here=', '.join(here), doing=doing), backend=self.name)

    @contextlib.contextmanager
    def _frozen(self, image: Any, ref: ImageRef) -> Iterator[None]:
        """Freeze the image's filesystem where this host has it mounted read-write, for a
        consistent snapshot; refuse when another host has it mounted read-write."""
        points = []
        for holder in _locks.holders(image):
            if holder.host != self.host():
                raise Busy(
                    _("RBD image {spec} is mounted read-write by {users}, so a snapshot here would not be "
                      "consistent; snapshot it there or unmount it").format(
                        spec=ref.spec, users=holder.describe()),
                    backend=self.name,
                )
            if self._mount_alive(holder):
                points.append(holder.mount)
        frozen = []
        try:
            for point in points:
                blockfs.freeze(point, backend=self.name)
                frozen.append(point)
            yield
        finally:
            for point in frozen:
                blockfs.thaw(point, backend=self.name)

    # ------------------------------------------------------------------ measuring and resizing

    def usage(self, rootfs: Rootfs) -> Usage:
        """Bytes that hold data in the image (with those it shares with its origin), of its
        size; the note says how much is its own (``diff_iterate``)."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx, _images.opened(ioctx, ref.name, read_only=True) as image:
            total = _images.allocated(image, include_parent=True)
            own = _images.allocated(image, include_parent=False)
            size = image.size()
        note = f"RBD image {ref.spec} of {format_size(size)}: {format_size(own)} its own"
        if total != own:
            note += f", {format_size(total - own)} shared with its origin"
        return Usage(total, size, note=note)

    def resize(self, rootfs: Rootfs, size: int) -> None:
        """Grow the image, then its filesystem (ext4 offline, xfs and btrfs mounted);
        shrinking is refused, the same size does nothing."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx, _images.opened(ioctx, ref.name) as image:
            current = image.size()
            if size < current:
                raise InvalidInput(
                    _("cannot shrink RBD image {spec} from {size} to {size2}").format(
                        spec=ref.spec, size=format_size(current), size2=format_size(size)), backend=self.name
                )
            if size == current:
                return
            self._refuse_if_mounted(image, ref, _("resizing it"))
            fstype = _images.metadata(ioctx, ref.name).get(FSTYPE_KEY) or "ext4"
            fs = blockfs.chosen(fstype, holder="an RBD image", backend=self.name)
            image.resize(size)
        if fs.online_grow is None:
            with _attach.attached(self.cluster(), ref, readonly=False) as path:
                had = blockfs.check_offline(path, backend=self.name)
                blockfs.grow_offline(path, had, backend=self.name)
        else:
            with self.accessed(rootfs) as path:
                blockfs.grow_online(fs, Path(path), backend=self.name)

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self, source_path: Path, placement: Placement, options: CreateOptions, progress: "object | None" = None
    ) -> CloneOutcome:
        """A new image filled by bdev's copy engine; without ``--fssize`` it is made big enough
        for the tree (its usage plus a quarter and 64 MiB) when that exceeds 1 GiB."""
        if options.fssize is None and placement.stage is None:
            options = dataclasses.replace(options, fssize=blockfs.size_for_tree(source_path, DEFAULT_SIZE))
        target = parse_locator(self.default_source(placement, options))
        try:
            return super().copy_from(source_path, placement, options, progress)
        except (BdevError, OSError):
            cause = _attach.aborted(target) if target is not None else None
            if target is not None and cause:
                raise BdevError(_("the copy into RBD image {spec} stopped: {cause}").format(
                    spec=target.spec, cause=cause), backend=self.name) from None
            raise

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """A clone needs an rbd origin in the new image's pool and namespace."""
        if source_backend.name != self.name:
            return super().snapshot_refusal(source, source_backend, placement)
        src = self.image_of(source)
        target = parse_locator(self.default_source(placement, options or CreateOptions()))
        if target is None or (target.pool, target.namespace) != (src.pool, src.namespace):
            return _("RBD image {spec} is not in the pool of {value}").format(
                spec=src.spec, value=target.spec if target else 'the new image')
        return None

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """Snapshot the origin (frozen if mounted here) as ``@<new storage name>``, protect it
        and clone it to the new image; an xfs or btrfs clone gets a UUID of its own.  The clone
        does not block destroying its origin (see :meth:`destroy`)."""
        src = self.image_of(source)
        target = parse_locator(self.default_source(placement, options))
        assert target is not None
        problem = name_problem(target.name)
        if problem:
            raise InvalidInput(problem, backend=self.name)
        with self.opened_pool(src) as ioctx:
            if _images.exists(ioctx, target.name):
                raise AlreadyExists(_("RBD image {spec} already exists").format(spec=target.spec), backend=self.name)
            fstype = _images.metadata(ioctx, src.name).get(FSTYPE_KEY)
            with _images.opened(ioctx, src.name) as image:
                snap = _images.free_snapshot_name(image, target.name)
                with self._frozen(image, src):
                    _images.clone(ioctx, src.name, snap, target.name)
            try:
                if fstype:
                    _images.set_metadata(ioctx, target.name, FSTYPE_KEY, fstype)
                fs = blockfs.FILESYSTEMS.get(fstype or "")
                if fs is not None and fs.cow_uuid_argv:
                    with _attach.attached(self.cluster(), target, readonly=False) as path:
                        blockfs.new_uuid(fs, path, backend=self.name, copy_on_write=True)
                if placement.stage is None:
                    placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
            except BaseException:
                with contextlib.suppress(BdevError):
                    self.destroy(Rootfs(self.name, target.locator))
                raise
        return CloneOutcome(Rootfs(self.name, target.locator), "snapshot")

    def flatten(self, rootfs: Rootfs) -> bool:
        """Copy the origin's data into the clone so it no longer needs its origin, then remove
        the origin snapshot (and a hidden origin) nothing uses any more.  False when the image
        is not a clone."""
        ref = self.image_of(rootfs)
        with self.opened_pool(ref) as ioctx, _images.opened(ioctx, ref.name) as image:
            origin = _images.parent(image)
            if origin is None:
                return False
            try:
                image.flatten()
            except Exception as exc:  # noqa: BLE001 - librbd's errors, explained
                raise explain(exc, _("flattening RBD image {spec}").format(spec=ref.spec)) from None
        _images.collect(self._pool_opener(ref.namespace), origin)
        return True

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the two images' names by three renames through ``<live>.bdev-swap`` (a
        crash in between is finished by the next operation on either name); refused while
        either is mounted."""
        a, b = self.image_of(live), self.image_of(staged)
        if (a.pool, a.namespace) != (b.pool, b.namespace):
            raise BdevError(_("cannot swap {spec} and {spec2}: they are in different pools").format(
                spec=a.spec, spec2=b.spec), backend=self.name)
        with self.opened_pool(a) as ioctx:
            _images.repair(ioctx, a.name)
            for ref in (a, b):
                with _images.opened(ioctx, ref.name) as image:
                    self._refuse_if_mounted(image, ref, _("swapping it"))
            _images.swap(ioctx, a.name, b.name)

    def restore_natively(self, live: Rootfs, snapshot: Rootfs) -> bool:
        """Roll the live image back to the RBD snapshot the container snapshot was cloned
        from, when that is the live image's latest snapshot and the clone holds nothing of its
        own (it is unchanged); otherwise False, having changed nothing.  RBD keeps newer
        snapshots through a rollback, but restoring an older one by stage and swap is instant,
        where a rollback rewrites the whole image.  Running it again rolls back again."""
        ref, snap_ref = self.image_of(live), self.image_of(snapshot)
        with self.opened_pool(ref) as ioctx:
            _images.repair(ioctx, ref.name)
            if (snap_ref.pool, snap_ref.namespace) != (ref.pool, ref.namespace) or not _images.exists(ioctx, snap_ref.name):
                return False
            with _images.opened(ioctx, snap_ref.name, read_only=True) as snap_image:
                origin = _images.parent(snap_image)
                if origin is None or origin[:2] != (ref.pool, ref.name) or _locks.holders(snap_image):
                    return False
                if _attach.mountpoints(snap_ref) or _images.allocated(snap_image, include_parent=False):
                    return False
            with _images.opened(ioctx, ref.name) as image:
                if _images.snapshots(image)[-1:] != [origin[2]]:
                    return False
                self._refuse_if_mounted(image, ref, _("restoring it"))
                try:
                    image.rollback_to_snap(origin[2])
                except Exception as exc:  # noqa: BLE001 - librbd's errors, explained
                    raise explain(exc, _("rolling RBD image {spec} back to {origin}").format(
                        spec=ref.spec, origin=origin[2])) from None
        return True
