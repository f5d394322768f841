"""The loop backend: a container's rootfs is a filesystem image, ``<container>/rootdev``
(``lxc.rootfs.path = loop:<lxcpath>/<name>/rootdev``), mounted through a loop device.

Snapshots and clones copy the *image*, not its files: a reflink where the filesystem under the
lxcpath allows it (btrfs, xfs: instant, blocks shared until written), a hole-preserving copy
otherwise; the copy then gets a filesystem UUID of its own.  Restore in place copies the
snapshot's image beside the live one and exchanges the two names atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CopyStats, CreateOptions, Placement, Rootfs, Usage, blockfs
from bdev.command import run
from bdev.errors import AlreadyExists, BdevError, Busy, CommandError, InvalidInput, NotFound, from_os_error
from bdev.backend import PathBackend
from bdev.mounts import mount_at, mountpoints_of
from bdev.naming import validate_path
from bdev.requirements import Tool
from bdev.units import format_size

from . import _filesystems as fsys
from . import _image
from ._i18n import _, N_
from ._kernel_log import KernelLog
from ._loopdev import LOOP_CONTROL, Attachment, LoopDevices

GiB = 1 << 30
DEFAULT_SIZE = 1 * GiB  # LXC's default --fssize
IMAGE_LEAF = "rootdev"
_ALIGN = 4096


class LoopBackend(PathBackend):
    """A rootfs in an image file, by default ``<lxcpath>/<name>/rootdev``, holding an ext4,
    xfs or btrfs filesystem (``--fstype``, default ext4) of ``--fssize`` bytes (default 1 GiB).

    :param settings: the global ``lxc.conf`` values.
    :param loop_control: the loop control device to allocate loop devices from (tests point
        it elsewhere to exercise the "no loop device" path).
    """

    name = "loop"
    description = N_("a filesystem image (ext4, xfs or btrfs) on a loop device; snapshots reflink the image")
    capabilities = Capabilities(
        native_snapshot=True,
        copy_by_snapshot=True,
        block_backed=True,
        needs_mount=True,
        sized=True,
        can_backup=True,
    )
    requires = (Tool("mount", "mount"), Tool("umount", "mount"), *fsys.requirements())
    detect_priority = 50

    def __init__(
        self, settings: Mapping[str, str] | None = None, *, loop_control: str | os.PathLike[str] = LOOP_CONTROL
    ):
        super().__init__(settings)
        self.loops = LoopDevices(Path(loop_control), backend=self.name)

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """Missing tools, plus a missing loop driver or missing privileges (attaching loop
        devices and mounting need root)."""
        reasons = super().unavailable_reasons()
        problem = self.loops.problem()
        if problem:
            reasons.append(problem)
        return reasons

    def implementation(self) -> str:
        """How images are attached and copied here, and which filesystems can be made."""
        usable = [fs.name for fs in fsys.FILESYSTEMS.values() if fs.problem() is None]
        return (
            _("loop-control ioctls with autoclear; FICLONE or sparse image copies; fstypes: {usable}").format(
                usable=', '.join(usable) or 'none')
        )

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuses an unsupported ``--fstype``, a type whose tools or kernel driver are
        missing, and a ``--fssize`` below the type's smallest filesystem (xfs: 300 MiB)."""
        try:
            self._new_image(placement, options)
        except BdevError as exc:
            return exc.cause
        return None

    # ------------------------------------------------------------------ identity

    def detect(self, source: str) -> bool:
        """An unprefixed rootfs path that is a regular file is a loop image (as LXC)."""
        return os.path.isfile(source)

    def parse(self, source: str) -> Rootfs:
        """Accept an absolute image path without control characters."""
        if not source.startswith("/"):
            raise InvalidInput(_("loop rootfs {source!r} is not an absolute path").format(source=source),
                               backend=self.name)
        return Rootfs(self.name, str(validate_path(source, "loop image")))

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``<lxcpath>/<name>/rootdev``; a staged image (restore in place) goes beside the live
        image it will be swapped with: ``<dir of live>/.<live name>.bdev-<stage>``."""
        return placement.staged_beside() or str(placement.path(IMAGE_LEAF))

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """Make a sparse image of the requested size, format it (mkfs through ``run``) and,
        like LXC, an empty ``rootfs`` directory beside it to mount on.  Everything is checked
        first and a failure removes what was made."""
        fs, size = self._new_image(placement, options)
        image = Path(self.default_source(placement, options))
        if os.path.lexists(image):
            raise AlreadyExists(_("{image} already exists").format(image=image), backend=self.name)
        with self._undo_on_failure(image, placement):
            _image.create_sparse(image, size)
            fsys.make(fs, image, backend=self.name)
        return Rootfs(self.name, str(image))

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove the image; a missing one is not an error.  Refused while a loop device
        still holds it (it is mounted somewhere)."""
        image = Path(rootfs.source)
        try:
            st = os.lstat(image)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise BdevError(_("{image} is a directory, not a loop image; it was left alone").format(image=image),
                            backend=self.name)
        self._refuse_if_in_use(image, _("removing it"))
        try:
            os.unlink(image)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse the image now: a loop device holds it (mounted
        somewhere); None when it is free or gone."""
        image = Path(rootfs.source)
        if not os.path.lexists(image) or os.path.isdir(image):
            return None  # destroy has nothing to remove, or refuses a directory for another reason
        return self._in_use(image, _("removing it"))

    # ------------------------------------------------------------------ mounting

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Attach the image to a free loop device (autoclear: the device goes away with the
        mount) and mount its filesystem on ``mountpoint``.

        Refused, before any loop device is taken, when the image is missing, holds no
        filesystem bdev recognises, is frozen and a read-write mount is asked, or is already
        mounted read-write (two mounts of one filesystem through two devices corrupt it).
        """
        image = self._image_file(rootfs)
        if not readonly and not os.stat(image).st_mode & 0o222:
            raise BdevError(_("the image {image} is frozen (read-only); mount it read-only").format(image=image),
                            backend=self.name)
        users = self._users(image)
        if users and (not readonly or any(not u.readonly for u in users)):
            raise Busy(
                _("the image {image} is already in use by {users}; unmount it first").format(
                    image=image, users=self._describe(users)), backend=self.name
            )
        fstype = self._probe(image)
        with self.loops.attached(image, readonly=readonly) as device, KernelLog() as kernel:
            try:
                mode = "ro" if readonly else "rw"
                run(["mount", "-t", fstype, "-o", mode, str(device), str(mountpoint)], backend=self.name)
            except CommandError as exc:
                said = kernel.about(device.name)
                reason = said[-1] if said else _mount_complaint(exc.stderr, mountpoint)
                raise BdevError(
                    _("cannot mount the {fstype} filesystem in {image}, it may be damaged ({reason})").format(
                        fstype=fstype, image=image, reason=reason), backend=self.name
                ) from None

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount ``mountpoint`` and wait until its loop device has let go of the image (btrfs
        releases it a moment after the unmount); nothing mounted there is not an error."""
        entry = mount_at(mountpoint)
        if entry is None:
            return
        try:
            run(["umount", str(mountpoint)], backend=self.name)
        except CommandError as exc:
            raise BdevError(_("cannot unmount {mountpoint} ({detail})").format(
                mountpoint=mountpoint, detail=fsys.detail(exc)), backend=self.name) from None
        device = Path(entry.source)
        if device.parent != self.loops.control.parent or not device.name.startswith("loop"):
            return
        if mountpoints_of(device):
            return  # still mounted elsewhere (a bind mount): the device is meant to stay
        image = Path(rootfs.source)
        if self.loops.wait_released(device.name, image):
            return
        if self.loops.backs(device.name, image) and not mountpoints_of(device):
            with contextlib.suppress(OSError):
                self.loops.detach(device.name)
            if self.loops.wait_released(device.name, image, timeout=2.0):
                return
        raise BdevError(_("{device} still holds {image} after unmounting {mountpoint}").format(
            device=device, image=image, mountpoint=mountpoint), backend=self.name)

    # ------------------------------------------------------------------ measuring and resizing

    def usage(self, rootfs: Rootfs) -> Usage:
        """The filesystem's used and total bytes (statvfs where it is mounted, or through a
        temporary read-only mount), and in the note what the image occupies on the host."""
        image = self._image_file(rootfs)
        size, allocated = _image.apparent_size(image), _image.allocated_bytes(image)
        host = f"the image {image} is {format_size(size)} and occupies {format_size(allocated)} on the host"
        try:
            used, total = self._filesystem_usage(rootfs, image)
        except BdevError as exc:
            return Usage(allocated, size, note=_("{host}; its filesystem was not measured ({cause})").format(
                host=host, cause=exc.cause))
        return Usage(used, total, note=host)

    def _filesystem_usage(self, rootfs: Rootfs, image: Path) -> tuple[int, int]:
        for user in self.loops.attachments(image):
            for mountpoint in mountpoints_of(user.device):
                return _statvfs(Path(mountpoint))
        problem = self.loops.problem()
        if problem:
            raise BdevError(problem, backend=self.name)
        with self.accessed(rootfs, readonly=True) as path:
            return _statvfs(path)

    def resize(self, rootfs: Rootfs, size: int) -> None:
        """Grow the image, then its filesystem: ext4 offline (``e2fsck -f -y``, then
        ``resize2fs``), xfs (``xfs_growfs``) and btrfs (``btrfs filesystem resize max``) while
        mounted.  Shrinking is refused; the same size does nothing."""
        image = self._image_file(rootfs)
        current = _image.apparent_size(image)
        size = _aligned(size)
        if size < current // _ALIGN * _ALIGN:
            raise InvalidInput(
                _("cannot shrink {image} from {size} to {size2}: loop images only grow").format(
                    image=image, size=format_size(current), size2=format_size(size)),
                backend=self.name,
            )
        if size <= current:  # the same size (LXC's images are one byte over theirs)
            return
        self._refuse_if_in_use(image, _("resizing it"))
        fstype = self._probe(image)
        fs = fsys.FILESYSTEMS.get(fstype)
        if fs is None:
            raise BdevError(
                _("cannot grow the {fstype} filesystem in {image} (bdev grows {supported})").format(
                    fstype=fstype, image=image, supported=fsys.supported()), backend=self.name
            )
        problem = fs.problem()
        if problem:
            raise BdevError(_("cannot grow the {fstype} filesystem in {image}: {problem}").format(
                fstype=fstype, image=image, problem=problem), backend=self.name)
        self._grow(rootfs, fs, current, size)

    def _grow(self, rootfs: Rootfs, fs: fsys.Filesystem, current: int, size: int) -> None:
        """Extend the image file to ``size`` and grow ``fs`` into it.  If a step fails before
        the filesystem itself was touched (e2fsck found errors, the mount failed), the image
        is cut back to ``current``."""
        image = Path(rootfs.source)
        _image.grow(image, size)
        touched = False
        try:
            if fs.online_grow is None:
                had_lost_found = fsys.check_offline(image, backend=self.name)
                touched = True
                fsys.grow_offline(image, had_lost_found, backend=self.name)
            else:
                with self.accessed(rootfs) as path:
                    touched = True
                    fsys.grow_online(fs, path, backend=self.name)
        except BaseException:
            if not touched:
                with contextlib.suppress(OSError):
                    _image.shrink_back(image, current)
            raise

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self, source_path: Path, placement: Placement, options: CreateOptions, progress: "object | None" = None
    ) -> CloneOutcome:
        """Create an image and copy the tree at ``source_path`` into it (the base class's
        create, mount, copy engine).  Without ``--fssize`` the image is made big enough for
        the tree (its usage plus a quarter and 64 MiB) when that exceeds the default size."""
        if options.fssize is None:
            _, base = self._new_image(placement, options)
            needed = blockfs.size_for_tree(source_path, base)
            if needed > base:
                options = dataclasses.replace(options, fssize=needed)
        return super().copy_from(source_path, placement, options, progress)

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """Copy the source's image to ``placement`` (reflink, else hole by hole) and give the
        copy its own filesystem UUID; a larger ``--fssize`` grows the copy.  A different
        ``--fstype`` or a smaller ``--fssize`` cannot come from the image: then the files are
        copied into a new image (method ``copy``).  The copy needs nothing of its origin."""
        if source_backend.name != self.name:
            raise self._unsupported(f"snapshots of a {source_backend.name} rootfs")
        image = self._image_file(source)
        if any(not user.readonly for user in self._users(image)):
            raise Busy(
                _("the image {image} is mounted read-write, so a copy would be inconsistent; unmount it first").format(
                    image=image),
                backend=self.name,
            )
        fstype, size = self._probe(image), _image.apparent_size(image)
        wanted_type = options.fstype.strip().lower() if options.fstype else fstype
        wanted_size = _aligned(options.fssize) if options.fssize else size
        if wanted_type != fstype or wanted_size < size:
            files_options = dataclasses.replace(options, fstype=wanted_type, fssize=options.fssize or size)
            return self._copy_files(source, placement, files_options)
        fs = fsys.FILESYSTEMS.get(fstype)  # None: a type bdev does not make, copied as it is
        problem = fs.problem() if fs is not None else None
        if problem:
            raise BdevError(_("cannot copy the {fstype} image {image}: {problem}").format(
                fstype=fstype, image=image, problem=problem), backend=self.name)
        target = Path(self.default_source(placement, options))
        if os.path.lexists(target):
            raise AlreadyExists(_("{target} already exists").format(target=target), backend=self.name)
        with self._undo_on_failure(target, placement):
            how = _image.copy_image(image, target)
            if fs is not None:
                fsys.new_uuid(fs, target, backend=self.name)
                if wanted_size > size:
                    self._grow(Rootfs(self.name, str(target)), fs, size, wanted_size)
        stats = CopyStats(files=1, bytes=size, reflinked_files=int(how == "reflink"), sparse_files=int(how == "sparse"))
        return CloneOutcome(Rootfs(self.name, str(target)), "snapshot", stats=stats)

    def _copy_files(self, source: Rootfs, placement: Placement, options: CreateOptions) -> CloneOutcome:
        """A new image of the requested type and size (the origin's size unless told),
        filled with the source's files."""
        self._new_image(placement, options)  # refuse before anything exists
        with self.accessed(source, readonly=True) as path:
            outcome = self.copy_from(path, placement, options)
        note = "the filesystem type or a smaller size asked for cannot come from a copy of the image"
        return dataclasses.replace(outcome, note=note)

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs:
        """A read-only point-in-time copy of the image for another backend to layer over.

        It lives where :meth:`default_source` puts an image for ``placement`` (``rootdev`` in
        that container's directory; beside ``placement.near`` when staged), is a reflink or
        sparse copy with its own UUID, and has mode 0444: :meth:`mount` then accepts only a
        read-only mount.  The caller removes it with :meth:`destroy`.
        """
        frozen = self.snapshot(rootfs, self, placement, CreateOptions()).rootfs
        try:
            os.chmod(frozen.source, _image.FROZEN_MODE)
        except OSError as exc:
            self.destroy(frozen)
            raise from_os_error(exc, backend=self.name) from None
        return frozen

    # ------------------------------------------------------------------ atomic restore


    # ------------------------------------------------------------------ helpers

    def _new_image(self, placement: Placement, options: CreateOptions) -> tuple[fsys.Filesystem, int]:
        """The filesystem and size of a new image at ``placement``, or the refusal.  A staged
        image (restore in place) takes the live image's type and size unless told otherwise,
        and is refused while the live image is mounted (the swap would happen under the mount)."""
        if placement.stage is not None and placement.near:
            users = self.loops.attachments(Path(placement.near))
            if users:
                raise Busy(
                    _("the image {near} is in use by {users}; unmount it before replacing it").format(
                        near=placement.near, users=self._describe(users)),
                    backend=self.name,
                )
        inherited_type, inherited_size = self._inherited(placement)
        fstype = (options.fstype.strip().lower() if options.fstype else None) or inherited_type or fsys.DEFAULT_FSTYPE
        fs = fsys.FILESYSTEMS.get(fstype)
        if fs is None:
            raise InvalidInput(
                _("a loop image cannot hold a {fstype!r} filesystem (supported: {supported})").format(
                    fstype=fstype, supported=fsys.supported()), backend=self.name
            )
        problem = fs.problem()
        if problem:
            raise BdevError(_("cannot make a {fstype} image: {problem}").format(fstype=fstype, problem=problem),
                            backend=self.name)
        size = _aligned(options.fssize or inherited_size or DEFAULT_SIZE)
        if size < fs.minimum:
            raise InvalidInput(
                _("{size} is too small for {fstype} (the smallest {fstype} filesystem is {size2})").format(
                    size=format_size(size), fstype=fstype, size2=format_size(fs.minimum)),
                backend=self.name,
            )
        return fs, size

    @staticmethod
    def _inherited(placement: Placement) -> tuple[str | None, int | None]:
        if placement.stage is None or not placement.near or not os.path.isfile(placement.near):
            return None, None
        near = Path(placement.near)
        try:
            fstype = fsys.probe(near)
            return (fstype if fstype in fsys.FILESYSTEMS else None), _image.apparent_size(near)
        except OSError:
            return None, None

    def _image_file(self, rootfs: Rootfs) -> Path:
        """The existing regular file behind ``rootfs``."""
        image = Path(rootfs.source)
        try:
            st = os.stat(image)
        except FileNotFoundError:
            raise NotFound(_("the loop image {image} does not exist").format(image=image), backend=self.name) from None
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None
        if not stat.S_ISREG(st.st_mode):
            raise BdevError(_("{image} is not a regular file, so not a loop image").format(image=image),
                            backend=self.name)
        return image

    def _probe(self, image: Path) -> str:
        try:
            fstype = fsys.probe(image)
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None
        if fstype is None:
            raise BdevError(
                _("the image {image} holds no filesystem bdev recognises (damaged superblock, or never formatted)").format(
                    image=image),
                backend=self.name,
            )
        return fstype

    def _users(self, image: Path) -> list[Attachment]:
        """The loop devices bound to ``image``, after giving any that no mount uses a moment
        to go (an autoclear still in progress, btrfs letting go after an unmount, a mount
        reaped after its process died)."""
        users = self.loops.attachments(image)
        if not users:
            return users
        for user in users:
            if not mountpoints_of(user.device):
                self.loops.wait_released(user.name, image)
        return self.loops.attachments(image)

    def _refuse_if_in_use(self, image: Path, doing: str) -> None:
        refusal = self._in_use(image, doing)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)

    def _in_use(self, image: Path, doing: str) -> str | None:
        """Why ``image`` cannot be changed by ``doing`` now (a loop device holds it), or None."""
        users = self._users(image)
        if not users:
            return None
        return _("the image {image} is in use by {users}; unmount it before {doing}").format(
            image=image, users=self._describe(users), doing=doing)

    @staticmethod
    def _describe(users: list[Attachment]) -> str:
        parts = []
        for user in users:
            where = mountpoints_of(user.device)
            parts.append(f"{user.device} (mounted on {', '.join(where)})" if where else str(user.device))
        return ", ".join(parts)

    @contextlib.contextmanager
    def _undo_on_failure(self, image: Path, placement: Placement) -> Iterator[None]:
        """Make the ``rootfs`` mount directory (as LXC) for a new image at ``placement``; if
        the body fails, remove the image (unless it was there already: the body creates it
        with ``O_EXCL``) and that directory, and explain an ``OSError``."""
        made = None
        if placement.stage is None and not placement.rootfs_dir.exists():
            placement.rootfs_dir.mkdir(mode=0o755)
            made = placement.rootfs_dir
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, FileExistsError):
                with contextlib.suppress(OSError):
                    os.unlink(image)
            if made is not None:
                with contextlib.suppress(OSError):
                    made.rmdir()
            if isinstance(exc, FileExistsError):
                raise AlreadyExists(_("{image} already exists").format(image=image), backend=self.name) from None
            if isinstance(exc, OSError):
                raise from_os_error(exc, backend=self.name) from None
            raise


def _aligned(size: int, unit: int = _ALIGN) -> int:
    """``size`` rounded up to a multiple of ``unit``."""
    return -(-size // unit) * unit


def _mount_complaint(stderr: str, mountpoint: Path) -> str:
    """mount's first line without its ``mount: <mountpoint>: `` prefix."""
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "mount failed")
    for prefix in ("mount: ", f"{mountpoint}: "):
        first = first.removeprefix(prefix)
    return first.rstrip(".")


def _statvfs(path: Path) -> tuple[int, int]:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize
