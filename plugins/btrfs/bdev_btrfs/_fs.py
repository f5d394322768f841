"""Facts about the filesystem under a path, read without any btrfs tool: the filesystem
type (``statfs``), the mount holding a path and its options (``/proc/self/mountinfo``), a
btrfs filesystem's UUID (``BTRFS_IOC_FS_INFO``, allowed to any user) and its quota numbers
(``/sys/fs/btrfs/<uuid>/qgroups``, readable by any user)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from bdev.mounts import mount_holding
from ._i18n import _

BTRFS_SUPER_MAGIC = 0x9123683E
SUBVOLUME_INODE = 256
"""Every btrfs subvolume's root directory has this inode number."""
PLACEHOLDER_INODE = 2
"""What a non-recursive snapshot shows where a nested subvolume was: an empty directory with
this inode number (``BTRFS_EMPTY_SUBVOL_DIR_OBJECTID``)."""

_FS_INFO_SIZE = 1024
_BTRFS_IOC_FS_INFO = (2 << 30) | (_FS_INFO_SIZE << 16) | (0x94 << 8) | 31  # _IOR(0x94, 31, 1024 bytes)
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor."""
    current = Path(os.path.abspath(os.fspath(path)))
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def fs_magic(path: str | os.PathLike[str]) -> int:
    """The ``f_type`` of ``statfs(path)``.

    :raises OSError: the path cannot be reached.
    """
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(os.fspath(path)), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(path))
    return struct.unpack_from("l", buf.raw, 0)[0] & 0xFFFFFFFF


def is_btrfs(path: str | os.PathLike[str]) -> bool:
    """Whether the existing ``path`` is on btrfs."""
    try:
        return fs_magic(path) == BTRFS_SUPER_MAGIC
    except OSError:
        return False


def filesystem_name(path: str | os.PathLike[str]) -> str:
    """The filesystem type of the existing ``path`` as the mount table names it (``ext4``)."""
    if is_btrfs(path):
        return "btrfs"
    entry = mount_holding(path)
    return entry.fstype if entry else _("an unknown filesystem")


def is_subvolume(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the root of a btrfs subvolume (a directory with inode 256 on btrfs);
    a symbolic link is not followed."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o040000 and st.st_ino == SUBVOLUME_INODE and is_btrfs(path)


def filesystem_uuid(path: str | os.PathLike[str]) -> str:
    """The UUID of the btrfs filesystem holding the existing ``path`` (the same for every
    subvolume and every mount of it).

    :raises OSError: ``path`` is not on btrfs (ENOTTY) or cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        buf = bytearray(_FS_INFO_SIZE)
        fcntl.ioctl(fd, _BTRFS_IOC_FS_INFO, buf, True)
    finally:
        os.close(fd)
    raw = bytes(buf[16:32])
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def same_btrfs(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two existing paths are on one btrfs filesystem (``st_dev`` differs between
    subvolumes, so it cannot tell)."""
    try:
        return filesystem_uuid(a) == filesystem_uuid(b)
    except OSError:
        return False


def syncfs(path: str | os.PathLike[str]) -> None:
    """Commit the filesystem holding ``path`` (quota numbers are updated at commit)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        _libc.syncfs(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Qgroup:
    """Quota numbers of one subvolume (its level-0 qgroup)."""

    referenced: int
    exclusive: int
    max_referenced: int | None


def quotas_dir(path: str | os.PathLike[str]) -> Path | None:
    """``/sys/fs/btrfs/<uuid>/qgroups`` when quotas are enabled on ``path``'s filesystem."""
    try:
        directory = Path("/sys/fs/btrfs") / filesystem_uuid(path) / "qgroups"
    except OSError:
        return None
    return directory if directory.is_dir() else None


def qgroup(directory: Path, subvolume_id: int) -> Qgroup | None:
    """The numbers of qgroup ``0/<subvolume_id>`` under ``directory``, or None if it has none."""
    base = directory / f"0_{subvolume_id}"
    try:
        referenced = int((base / "referenced").read_text())
        exclusive = int((base / "exclusive").read_text())
        limit = int((base / "max_referenced").read_text())
    except (OSError, ValueError):
        return None
    return Qgroup(referenced, exclusive, limit or None)


def quotas_inconsistent(directory: Path) -> bool:
    """Whether the kernel marks the quota numbers as inconsistent (a rescan is due)."""
    try:
        return (directory / "inconsistent").read_text().strip() == "1"
    except OSError:
        return False


def is_permission_error(exc: OSError) -> bool:
    """EPERM or EACCES."""
    return exc.errno in (errno.EPERM, errno.EACCES)


def is_host_root() -> bool:
    """Whether this process is root of the initial user namespace (root in a container's user
    namespace is refused subvolume deletion like any user)."""
    if os.geteuid() != 0:
        return False
    try:
        fields = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return True
    return fields[:3] == ["0", "0", "4294967295"]
