"""An embedded btrfs pool: a btrfs filesystem in a sparse image file, mounted on demand, so
that containers get instant snapshots on a machine whose lxcpath cannot snapshot (ext4).

Turned on by the ``lxc.conf`` key ``lxc.bdev.btrfs.pool = <directory>`` (or the create option
``btrfspool``).  The directory is the pool's mount point; the image is ``<directory>.img``,
made on first use (sparse; ``lxc.bdev.btrfs.pool.size``, default a fifth of the free space
of the filesystem holding it, between 5 and 30 GiB, as Incus sizes its loop pools).  Where a
new rootfs's container directory is not on btrfs, the rootfs goes into the pool at
``<directory>/<absolute path of the rootfs directory>`` (``/var/lib/lxc/web1/rootfs`` becomes
``<pool>/var/lib/lxc/web1/rootfs``), and the config says ``lxc.rootfs.path =
btrfs:<that path>``: real LXC reads it while the pool is mounted, and bdev mounts the pool
again whenever it touches a rootfs inside it.  The pool is never unmounted by bdev; to have it
mounted at boot, add the line :meth:`LoopPool.fstab_line` to ``/etc/fstab``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from bdev.command import run, which
from bdev.errors import BdevError, InvalidInput
from bdev.mounts import mount_holding
from bdev.naming import validate_path
from bdev.records import CreateOptions, Placement
from bdev.units import parse_size
from ._i18n import _


POOL_SETTING = "lxc.bdev.btrfs.pool"
SIZE_SETTING = "lxc.bdev.btrfs.pool.size"
POOL_OPTION = "btrfspool"
GiB = 1024**3


class LoopPool:
    """A loop-file btrfs pool mounted at ``mountpoint`` from ``<mountpoint>.img``.

    :param size: bytes for a new image; None for the default.
    """

    def __init__(self, mountpoint: Path, size: int | None = None):
        self.mountpoint = Path(mountpoint)
        self.image = self.mountpoint.with_name(self.mountpoint.name + ".img")
        self.size = size

    # ---------------------------------------------------------------- places

    def place(self, placement: Placement) -> Path:
        """Where the rootfs of ``placement`` lives in the pool: its rootfs directory's
        absolute path, below the pool."""
        return self.mountpoint / str(placement.rootfs_dir).lstrip("/")

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` lies inside the pool."""
        text = os.path.normpath(os.path.abspath(os.fspath(path)))
        return text.startswith(str(self.mountpoint).rstrip("/") + "/")

    # ---------------------------------------------------------------- state

    def is_mounted(self) -> bool:
        """Whether a btrfs filesystem is mounted at the pool's mount point."""
        if not self.mountpoint.is_dir():
            return False
        entry = mount_holding(self.mountpoint)
        return entry is not None and entry.mountpoint == str(self.mountpoint) and entry.fstype == "btrfs"

    def problem(self) -> str | None:
        """Why the pool cannot be used now, or None."""
        if self.is_mounted():
            return None
        if os.geteuid() != 0:
            return _("the btrfs pool {mountpoint} is not mounted, and mounting it needs root").format(
                mountpoint=self.mountpoint)
        if not self.image.exists() and which("mkfs.btrfs") is None:
            return _("mkfs.btrfs is not installed (install btrfs-progs), and the btrfs pool image must be made")
        if not _writable_parent(self.image):
            return _("the btrfs pool image {image} cannot be made: its directory is not writable").format(
                image=self.image)
        return None

    def describe(self) -> str:
        """One phrase for ``bdev backends``: where, whether mounted, how to make it permanent."""
        state = "mounted" if self.is_mounted() else "mounted on demand"
        return _("pool {mountpoint} ({state}; to mount it at boot add '{fstab_line}' to /etc/fstab)").format(
            mountpoint=self.mountpoint, state=state, fstab_line=self.fstab_line())

    def fstab_line(self) -> str:
        """The ``/etc/fstab`` line that mounts the pool at boot."""
        return f"{self.image} {self.mountpoint} btrfs loop 0 0"

    # ---------------------------------------------------------------- actions

    def ensure_mounted(self) -> None:
        """Make the image if it does not exist, and mount it if it is not mounted; another
        bdev process doing the same at once is waited for.

        :raises BdevError: naming the pool and the cause.
        """
        if self.is_mounted():
            return
        problem = self.problem()
        if problem:
            raise BdevError(problem, backend="btrfs")
        with self._locked():
            if self.is_mounted():
                return
            if not self.image.exists():
                self._make_image()
            self.mountpoint.mkdir(parents=True, exist_ok=True)
            run(["mount", "-t", "btrfs", "-o", "loop", str(self.image), str(self.mountpoint)], backend="btrfs")

    def unmount(self, timeout: float = 10.0) -> None:
        """Unmount the pool and wait (up to ``timeout`` seconds) until the kernel has freed its
        loop device, which btrfs lets go of asynchronously; nothing if not mounted."""
        if not self.is_mounted():
            return
        run(["umount", str(self.mountpoint)], backend="btrfs")
        deadline = time.monotonic() + timeout
        while self._loop_devices() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _loop_devices(self) -> list[str]:
        """Loop devices backed by the pool image."""
        found = []
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            with contextlib.suppress(OSError):
                if backing.read_text().strip().removesuffix(" (deleted)") == str(self.image):
                    found.append(backing.parent.parent.name)
        return found

    def prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents inside the pool while they are empty (what
        :meth:`place` made for a rootfs that is gone)."""
        current = Path(directory)
        while self.contains(current):
            try:
                current.rmdir()
            except OSError:
                return
            current = current.parent

    def _make_image(self) -> None:
        size = self.size or default_size(self.image.parent)
        partial = self.image.with_name(self.image.name + ".new")
        try:
            run(["truncate", "-s", str(size), str(partial)], backend="btrfs")
            run(["mkfs.btrfs", "-q", "-f", str(partial)], backend="btrfs")
            os.replace(partial, self.image)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.image.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.image.with_name(self.image.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def default_size(directory: Path) -> int:
    """A fifth of the free space where the image goes, between 5 and 30 GiB."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return max(5 * GiB, min(30 * GiB, free // 5))


def _writable_parent(path: Path) -> bool:
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def pool_from(settings: Mapping[str, str], options: CreateOptions) -> LoopPool | None:
    """The pool the create option ``btrfspool`` or the ``lxc.bdev.btrfs.pool`` setting names,
    or None.

    :raises InvalidInput: the path or size given is not acceptable.
    """
    where = options.extra.get(POOL_OPTION) or settings.get(POOL_SETTING)
    if not where:
        return None
    mountpoint = validate_path(where, what="the btrfs pool directory")
    if mountpoint == Path("/"):
        raise InvalidInput(_("the btrfs pool directory cannot be /"), backend="btrfs")
    size_text = settings.get(SIZE_SETTING)
    size = parse_size(size_text, what=SIZE_SETTING) if size_text else None
    return LoopPool(mountpoint, size)

