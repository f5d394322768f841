"""The squashfs backend: a container's rootfs is an immutable, compressed squashfs image,
``<lxcpath>/<name>/rootfs.squashfs`` (``lxc.rootfs.path = squashfs:<path>``), mounted
read-only through a loop device on ``<container>/rootfs``.

* **Making an image**: ``copy_from`` runs ``mksquashfs`` on any container's files, so
  ``bdev clone web1 base-img -B squashfs`` turns a container into an image.  ``create``
  without a source makes the image of an empty tree.
* **Snapshots and clones of an image** share it in O(1) at any size: a reflink where the
  filesystem has them (btrfs, xfs), else a hard link (ext4).  Both are safe because an image
  is never written in place (see :mod:`bdev_squashfs._image`).
* **Containers that must change** run as overlay clones on top
  (``bdev clone base-img web1 -s -B overlay``): overlay asks :meth:`SquashfsBackend.freeze`
  for a copy it owns (again a reflink or hard link), so the clones keep working even after
  the image container is destroyed.
* **Writes** are refused by :meth:`SquashfsBackend.mount` (the image mounts read-only; the
  kernel answers EROFS).  The core's own edits (a template filling a new container, the new
  hostname written into a clone) go through ``accessed(readonly=False)``, which hands out a
  scratch copy of the tree and, when it is done, builds a new image and renames it over the
  old name: the old image is never modified.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

from bdev import Backend, Capabilities, CloneOutcome, CopyStats, CreateOptions, Placement, Rootfs, Usage
from bdev.command import run, which
from bdev.copying import copytree
from bdev.errors import AlreadyExists, BdevError, Busy, CommandError, InvalidInput, NotFound, from_os_error
from bdev.backend import PathBackend
from bdev.fsops import fsync_dir, remove_tree
from bdev.mounts import mount_at, mountpoints_of, temporary_mountpoint
from bdev.naming import validate_path
from bdev.requirements import KernelFilesystem, Tool
from bdev.units import format_size

from . import _image, _loop

IMAGE_LEAF = "rootfs.squashfs"
EDIT_SUFFIX = "bdev-edit"


class SquashfsBackend(PathBackend):
    """An immutable squashfs image per container, shared by snapshots and overlay clones.

    Backend options (``-O KEY=VALUE``): ``compressor`` = ``zstd``, ``lz4`` or ``gzip``
    (default: the first of these this kernel reads).
    """

    name = "squashfs"
    description = "an immutable compressed squashfs image (read-only loop mount); clones share the image"
    capabilities = Capabilities(
        read_only=True,
        needs_mount=True,
        block_backed=True,
        native_snapshot=True,
        can_backup=True,
    )
    requires = (
        Tool("mksquashfs", "squashfs-tools"),
        Tool("mount", "mount"),
        Tool("umount", "mount"),
        KernelFilesystem("squashfs"),
    )
    detect_priority = None  # an unprefixed path is never claimed: LXC has no squashfs backend
    best_priority = None  # read-only: never a sensible default for a new container
    time_granularity_ns: ClassVar[int] = 1_000_000_000
    """squashfs stores whole seconds: tree comparisons (the conformance kit) compare mtimes at
    this granularity."""

    def __init__(self, settings: Mapping[str, str] | None = None):
        super().__init__(settings)

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """Missing mksquashfs, mount or the kernel's squashfs, and loop devices that cannot be
        had (no loop driver, not root)."""
        reasons = super().unavailable_reasons()
        problem = _loop.problem()
        if problem:
            reasons.append(problem)
        return reasons

    def implementation(self) -> str:
        """The compressor new images get, and how images are shared."""
        return f"mksquashfs -comp {_image.best_compressor()}; mount -o loop,ro (autoclear); reflink or hard-link sharing"

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuses when ``mksquashfs`` is missing, and an unknown compressor or one this
        kernel cannot read."""
        if which("mksquashfs") is None:
            return "mksquashfs is not installed (Debian package squashfs-tools)"
        try:
            self._compressor(options)
        except BdevError as exc:
            return exc.cause
        return None

    # ------------------------------------------------------------------ identity

    def parse(self, source: str) -> Rootfs:
        """Accept an absolute image path without control characters."""
        if not source.startswith("/"):
            raise InvalidInput(f"squashfs rootfs {source!r} is not an absolute path", backend=self.name)
        return Rootfs(self.name, str(validate_path(source, "squashfs image")))

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``<lxcpath>/<name>/rootfs.squashfs``; a staged image (restore in place) goes beside
        the live image it will be swapped with: ``<dir of live>/.<live name>.bdev-<stage>``."""
        return placement.staged_beside() or str(placement.path(IMAGE_LEAF))

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """The image of an empty tree (a root directory 0755 owned by root), and like LXC an
        empty ``rootfs`` directory to mount it on."""
        compressor = self._compressor(options)
        target = self._new_target(placement, options)
        with self._undo_on_failure(target, placement), temporary_mountpoint("squashfs-empty") as empty:
            os.chmod(empty, 0o755)
            _image.build(empty, target, compressor=compressor, backend=self.name)
        return Rootfs(self.name, str(target))

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove this name of the image (other names, shared by snapshots or overlay clones,
        keep it); a missing one is not an error.  Refused while it is mounted."""
        image = Path(rootfs.source)
        try:
            st = os.lstat(image)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise BdevError(f"{image} is a directory, not a squashfs image; it was left alone", backend=self.name)
        users = self._users(image)
        if users:
            raise Busy(f"the image {image} is mounted ({users}); unmount it before removing it", backend=self.name)
        try:
            os.unlink(image)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None

    # ------------------------------------------------------------------ mounting

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Mount the image read-only on ``mountpoint`` (``mount -t squashfs -o loop,ro``).

        A read-write mount is refused: the image is immutable.  Change a container through an
        overlay clone on top (``bdev clone IMAGE NEW -s -B overlay``).
        """
        image = self._image_file(rootfs)
        if not readonly:
            raise BdevError(
                f"the squashfs image {image} is immutable and mounts only read-only; "
                "make an overlay clone on top of it to change files",
                backend=self.name,
            )
        try:
            run(["mount", "-t", "squashfs", "-o", "loop,ro", str(image), str(mountpoint)], backend=self.name)
        except CommandError as exc:
            said = (exc.stderr.strip().splitlines() or ["mount failed"])[0]
            raise BdevError(f"cannot mount the squashfs image {image} ({said})", backend=self.name) from None

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount ``mountpoint`` and wait for its loop device to let go of the image
        (autoclear); nothing mounted there is not an error."""
        entry = mount_at(mountpoint)
        if entry is None:
            return
        try:
            run(["umount", str(mountpoint)], backend=self.name)
        except CommandError as exc:
            said = (exc.stderr.strip().splitlines() or ["umount failed"])[0]
            raise BdevError(f"cannot unmount {mountpoint} ({said})", backend=self.name) from None
        if entry.source.startswith("/dev/loop") and not _loop.wait_released(entry.source, Path(rootfs.source)):
            raise BdevError(f"{entry.source} still holds {rootfs.source} after unmounting {mountpoint}", backend=self.name)

    @contextlib.contextmanager
    def accessed(self, rootfs: Rootfs, *, readonly: bool = False) -> Iterator[Path]:
        """Read-only: a temporary read-only mount of the image.  Read-write (the core filling
        a new container from a template, or writing a clone's hostname): a scratch copy of the
        tree beside the image; on a clean exit a new image is built from it and renamed over
        the old name (never written in place), on an error the image is left as it was."""
        if readonly:
            with temporary_mountpoint(self.name) as mountpoint:
                self.mount(rootfs, mountpoint, readonly=True)
                try:
                    yield mountpoint
                finally:
                    self.umount(rootfs, mountpoint)
            return
        image = self._image_file(rootfs)
        compressor = self._compressor(CreateOptions())
        scratch = image.with_name(f".{image.name}.{EDIT_SUFFIX}")
        if os.path.lexists(scratch):
            remove_tree(scratch)  # left by a process that died while editing
        scratch.mkdir(mode=0o700)
        try:
            tree = scratch / "tree"
            tree.mkdir(mode=0o755)
            with self.accessed(rootfs, readonly=True) as files:
                copytree(files, tree)
            yield tree
            _image.replace_with(tree, image, compressor=compressor, backend=self.name)
            fsync_dir(image.parent)
        finally:
            with contextlib.suppress(OSError, BdevError):
                remove_tree(scratch)

    # ------------------------------------------------------------------ measuring

    def usage(self, rootfs: Rootfs) -> Usage:
        """The image's size on the host (its data, compressed); no limit: it never grows."""
        image = self._image_file(rootfs)
        st = os.stat(image)
        note = f"the compressed image {image} is {format_size(st.st_size)}"
        if st.st_nlink > 1:
            note += f" and shared by {st.st_nlink} names (snapshots, clones)"
        return Usage(st.st_blocks * 512, None, note=note)

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self, source_path: Path, placement: Placement, options: CreateOptions, progress: "object | None" = None
    ) -> CloneOutcome:
        """Build the image straight from the tree at ``source_path`` with ``mksquashfs``
        (owners, modes, times, hard links, device nodes and xattrs kept)."""
        compressor = self._compressor(options)
        target = self._new_target(placement, options)
        with self._undo_on_failure(target, placement):
            _image.build(source_path, target, compressor=compressor, backend=self.name)
        size = os.stat(target).st_size
        return CloneOutcome(Rootfs(self.name, str(target)), "copy", stats=CopyStats(files=1, bytes=size))

    def snapshot_refusal(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """A squashfs image can be snapshotted (shared); other backends' rootfs cannot."""
        if source_backend.name != self.name:
            return f"the {self.name} backend cannot snapshot a {source_backend.name} rootfs (copy it into an image)"
        return None

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """Share the image with a new name in O(1): a reflink, else a hard link (see
        :func:`bdev_squashfs._image.share`).  The clone does not depend on its origin."""
        image = self._image_file(source)
        target = self._new_target(placement, options)
        with self._undo_on_failure(target, placement):
            how = _image.share(image, target)
        size = os.stat(target).st_size
        stats = CopyStats(files=1, bytes=size, reflinked_files=int(how == "reflink"))
        return CloneOutcome(Rootfs(self.name, str(target)), "snapshot", stats=stats, note=f"the image was shared ({how})")

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs:
        """A copy of the image owned by the caller, at ``placement`` (a reflink or hard link:
        O(1)).  An image is already immutable, so this only gives the caller a name of its own:
        the overlay clone layered over it keeps working when the image container is destroyed,
        and its own destroy removes only its name."""
        return self.snapshot(rootfs, self, placement, CreateOptions()).rootfs

    # ------------------------------------------------------------------ atomic restore


    # ------------------------------------------------------------------ helpers

    def _compressor(self, options: CreateOptions) -> str:
        """``-O compressor=NAME`` or the first this kernel reads; refused when unknown or
        unreadable by this kernel."""
        wanted = (options.extra.get("compressor") or "").strip().lower()
        if not wanted:
            return _image.best_compressor()
        if wanted not in _image.COMPRESSORS:
            raise InvalidInput(
                f"unknown squashfs compressor {wanted!r} (known: {', '.join(_image.COMPRESSORS)})", backend=self.name
            )
        if not _image.kernel_reads(wanted):
            raise BdevError(f"this kernel's squashfs cannot read {wanted} images", backend=self.name)
        return wanted

    def _new_target(self, placement: Placement, options: CreateOptions) -> Path:
        target = Path(self.default_source(placement, options))
        if os.path.lexists(target):
            raise AlreadyExists(f"{target} already exists", backend=self.name)
        return target

    def _image_file(self, rootfs: Rootfs) -> Path:
        """The existing regular file behind ``rootfs``."""
        image = Path(rootfs.source)
        try:
            st = os.stat(image)
        except FileNotFoundError:
            raise NotFound(f"the squashfs image {image} does not exist", backend=self.name) from None
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None
        if not stat.S_ISREG(st.st_mode):
            raise BdevError(f"{image} is not a regular file, so not a squashfs image", backend=self.name)
        return image

    @staticmethod
    def _users(image: Path) -> str:
        """The loop devices holding ``image`` that are mounted, as text ('' when none)."""
        used = []
        for name in _loop.devices_holding(image):
            where = mountpoints_of(f"/dev/{name}")
            if where:
                used.append(f"/dev/{name} on {', '.join(where)}")
            else:
                _loop.wait_released(f"/dev/{name}", image, timeout=2.0)
        return "; ".join(used)

    @contextlib.contextmanager
    def _undo_on_failure(self, image: Path, placement: Placement) -> Iterator[None]:
        """Make the ``rootfs`` mount directory (as LXC) for a new image at ``placement``; if the
        body fails, remove the image it made and that directory, and explain an ``OSError``."""
        made = None
        if placement.stage is None and not placement.rootfs_dir.exists():
            placement.rootfs_dir.mkdir(mode=0o755, parents=True)
            made = placement.rootfs_dir
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, (FileExistsError, AlreadyExists)):
                with contextlib.suppress(OSError):
                    os.unlink(image)
            if made is not None:
                with contextlib.suppress(OSError):
                    made.rmdir()
            if isinstance(exc, FileExistsError):
                raise AlreadyExists(f"{image} already exists", backend=self.name) from None
            if isinstance(exc, OSError):
                raise from_os_error(exc, backend=self.name) from None
            raise
