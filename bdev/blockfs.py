"""Filesystems on block devices and images, for block-backed backends (loop, lvm, rbd): the
types bdev makes (``--fstype``), their tools, smallest sizes, mkfs argv, how a copy gets a UUID
of its own, which grow while mounted, and recognising a filesystem from its superblock.

Every program runs through :func:`bdev.command.run`; failures become one-sentence
:class:`~bdev.errors.BdevError` naming the caller's backend.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .command import run, which
from .errors import BdevError, CommandError, InvalidInput
from .requirements import KernelFilesystem, Tool

MiB = 1 << 20
DEFAULT_FSTYPE = "ext4"
DEFAULT_SIZE = 1 << 30
"""LXC's default ``--fssize`` for block-backed backends (loop, lvm, rbd)."""


@dataclass(frozen=True)
class Filesystem:
    """One filesystem type a block device or image can hold.

    :param name: the ``--fstype`` value and the ``mount -t`` type.
    :param package: the Debian package with its tools.
    :param minimum: the smallest device its mkfs accepts, in bytes.
    :param mkfs: the mkfs argv; the device or image is appended.
    :param uuid_argv: the argv (device appended) that gives an unmounted full copy a new UUID.
    :param cow_uuid_argv: the same for a copy-on-write clone (a snapshot volume or image),
        where rewriting every metadata block would unshare it; None when a duplicate UUID
        does no harm there (ext4).
    :param online_grow: the argv (mount point appended) that grows it while mounted, or None
        for an offline grow (ext4: e2fsck, then resize2fs on the device).
    :param tools: every program used for this type.
    """

    name: str
    package: str
    minimum: int
    mkfs: tuple[str, ...]
    uuid_argv: tuple[str, ...]
    cow_uuid_argv: tuple[str, ...] | None
    online_grow: tuple[str, ...] | None
    tools: tuple[str, ...]

    def requirements(self, *, optional: bool = False) -> tuple[Tool | KernelFilesystem, ...]:
        """The tools and the kernel filesystem this type needs (all ``optional`` if asked)."""
        return (*(Tool(t, self.package, optional=optional) for t in self.tools), KernelFilesystem(self.name, optional=optional))

    def problem(self) -> str | None:
        """Why this type cannot be made or copied here, or None."""
        return next((p for p in (r.problem() for r in self.requirements()) if p), None)


FILESYSTEMS: dict[str, Filesystem] = {
    "ext4": Filesystem(
        "ext4", "e2fsprogs", 4 * MiB, ("mkfs.ext4", "-q", "-F"), ("tune2fs", "-U", "random"), None, None,
        ("mkfs.ext4", "tune2fs", "e2fsck", "resize2fs", "debugfs"),
    ),
    "xfs": Filesystem(
        "xfs", "xfsprogs", 300 * MiB, ("mkfs.xfs", "-q", "-f"), ("xfs_admin", "-U", "generate"),
        ("xfs_admin", "-U", "generate"), ("xfs_growfs",), ("mkfs.xfs", "xfs_admin", "xfs_growfs"),
    ),
    # -m changes the fsid the kernel sees without rewriting metadata (kernel >= 5.0)
    "btrfs": Filesystem(
        "btrfs", "btrfs-progs", 109 * MiB, ("mkfs.btrfs", "-q", "-f"), ("btrfstune", "-f", "-u"),
        ("btrfstune", "-f", "-m"), ("btrfs", "filesystem", "resize", "max"), ("mkfs.btrfs", "btrfstune", "btrfs"),
    ),
}
"""The types bdev makes, by ``--fstype`` name.  All three can be frozen (``fsfreeze``)."""


def supported() -> str:
    """The supported types as a phrase for messages: ``btrfs, ext4, xfs``."""
    return ", ".join(sorted(FILESYSTEMS))


def usable() -> list[str]:
    """The types that can be made here."""
    return [fs.name for fs in FILESYSTEMS.values() if fs.problem() is None]


def requirements() -> tuple[Tool | KernelFilesystem, ...]:
    """What a block-backed backend needs for filesystems: ext4 (the default) is required,
    xfs and btrfs only widen the choice."""
    return tuple(req for fs in FILESYSTEMS.values() for req in fs.requirements(optional=fs.name != DEFAULT_FSTYPE))


def chosen(fstype: str | None, *, holder: str, backend: str) -> Filesystem:
    """The filesystem for ``--fstype`` (default ext4), ready to be made here.

    :param holder: what holds it, for the message (``a loop image``, ``an RBD image``).
    :raises InvalidInput: a type bdev does not make.
    :raises BdevError: its tools or kernel driver are missing.
    """
    name = (fstype or DEFAULT_FSTYPE).strip().lower()
    fs = FILESYSTEMS.get(name)
    if fs is None:
        raise InvalidInput(f"{holder} cannot hold a {name!r} filesystem (supported: {supported()})", backend=backend)
    problem = fs.problem()
    if problem:
        raise BdevError(f"cannot make a {name} filesystem: {problem}", backend=backend)
    return fs


def minimum_problem(fs: Filesystem, size: int) -> str | None:
    """Why ``size`` bytes is too small for ``fs``, or None."""
    from .units import format_size

    if size < fs.minimum:
        return f"{format_size(size)} is too small for {fs.name} (the smallest {fs.name} filesystem is {format_size(fs.minimum)})"
    return None


def size_for_tree(path: Path, default: int, align: int = 64 * MiB) -> int:
    """A device size that holds the tree at ``path``: ``default``, or its usage plus a quarter
    and 64 MiB (rounded up to ``align``) when that is more."""
    from .fsops import tree_usage

    needed = -(-(tree_usage(path) * 5 // 4 + 64 * MiB) // align) * align
    return max(default, needed)


# ---------------------------------------------------------------------------- recognising

_EXT_MAGIC = (1080, b"\x53\xef")
_XFS_MAGIC = (0, b"XFSB")
_BTRFS_MAGIC = (65536 + 64, b"_BHRfS_M")


def probe(target: str | os.PathLike[str]) -> str | None:
    """The filesystem type on the device or in the image ``target``: ``ext4`` (any ext2/3/4,
    which the ext4 driver mounts), ``xfs`` or ``btrfs`` from their superblock magic; else what
    ``blkid`` says; None when nothing recognisable is there.

    :raises OSError: ``target`` cannot be read.
    """
    with open(target, "rb") as fh:
        for fstype, (offset, magic) in (("xfs", _XFS_MAGIC), ("btrfs", _BTRFS_MAGIC), ("ext4", _EXT_MAGIC)):
            fh.seek(offset)
            if fh.read(len(magic)) == magic:
                return fstype
    blkid = which("blkid")
    if blkid:
        result = run([blkid, "-p", "-o", "value", "-s", "TYPE", os.fspath(target)], check=False)
        found = result.stdout.strip()
        if result.returncode == 0 and found:
            return found
    return None


# ---------------------------------------------------------------------------- making

def make(fs: Filesystem, target: str | os.PathLike[str], *, backend: str) -> None:
    """Format the device or image ``target`` with ``fs``; ext4 loses its empty
    ``lost+found`` so a new rootfs starts empty, as a directory rootfs does."""
    try:
        run([*fs.mkfs, os.fspath(target)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot make a {fs.name} filesystem on {os.fspath(target)} ({detail(exc)})", backend=backend) from None
    if fs.name == "ext4":
        remove_lost_found(target, backend=backend)


def ext4_names(target: str | os.PathLike[str]) -> list[str]:
    """Names in the root directory of the ext4 filesystem on ``target`` (read with debugfs)."""
    result = run(["debugfs", "-R", "ls -p /", os.fspath(target)], check=False)
    names = []
    for line in result.stdout.splitlines():
        parts = line.strip().strip("/").split("/")
        if len(parts) >= 5:
            names.append(parts[4])
    return names


def remove_lost_found(target: str | os.PathLike[str], *, backend: str) -> None:
    """Remove an empty ``lost+found`` from the root of the ext4 filesystem on ``target``."""
    try:
        run(["debugfs", "-w", "-R", "rmdir lost+found", os.fspath(target)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot empty the new ext4 filesystem on {os.fspath(target)} ({detail(exc)})", backend=backend) from None


# ---------------------------------------------------------------------------- copies

_EXT_INCOMPAT = 1024 + 0x60
_RO_COMPAT_METADATA_CSUM = 0x400
_INCOMPAT_CSUM_SEED = 0x2000


def _ext4_needs_seed(target: str | os.PathLike[str]) -> bool:
    """Whether changing this ext4 filesystem's UUID would rewrite every metadata checksum
    (metadata_csum without metadata_csum_seed)."""
    with open(target, "rb") as fh:
        fh.seek(_EXT_INCOMPAT)
        incompat, ro_compat = struct.unpack("<2I", fh.read(8))
    return bool(ro_compat & _RO_COMPAT_METADATA_CSUM) and not incompat & _INCOMPAT_CSUM_SEED


def new_uuid(fs: Filesystem, target: str | os.PathLike[str], *, backend: str, copy_on_write: bool = False) -> None:
    """Give the unmounted filesystem on the copied ``target`` a UUID of its own: two mounted
    xfs filesystems may not share one, and btrfs would take them for one filesystem.  For
    ext4 with metadata checksums the seed is fixed first (``metadata_csum_seed``), so only the
    superblock changes instead of every checksummed block.  A ``copy_on_write`` clone uses
    :attr:`Filesystem.cow_uuid_argv` (nothing for ext4), so it keeps sharing its blocks."""
    argv = list(fs.cow_uuid_argv or ()) if copy_on_write else list(fs.uuid_argv)
    if not argv:
        return
    if fs.name == "ext4" and _ext4_needs_seed(target):
        argv[1:1] = ["-O", "metadata_csum_seed"]
    try:
        run([*argv, os.fspath(target)], backend=backend)
    except CommandError as exc:
        raise BdevError(
            f"cannot give the copied {fs.name} filesystem {os.fspath(target)} a new UUID ({detail(exc)})", backend=backend
        ) from None


# ---------------------------------------------------------------------------- growing

def check_offline(target: str | os.PathLike[str], *, backend: str) -> bool:
    """``e2fsck -f -y`` the unmounted ext4 filesystem on ``target`` (resize2fs insists on a
    fresh check); returns whether its root held ``lost+found`` before.

    :raises BdevError: errors e2fsck could not fix.
    """
    had_lost_found = "lost+found" in ext4_names(target)
    check = run(["e2fsck", "-f", "-y", os.fspath(target)], check=False, backend=backend)
    if check.returncode >= 4:
        last = last_line(check.stdout + check.stderr)
        raise BdevError(f"the ext4 filesystem on {os.fspath(target)} has errors e2fsck cannot fix ({last})", backend=backend)
    return had_lost_found


def grow_offline(target: str | os.PathLike[str], had_lost_found: bool, *, backend: str) -> None:
    """Grow the checked, unmounted ext4 filesystem on ``target`` to its device's size
    (``resize2fs``); a ``lost+found`` that e2fsck created where there was none goes again."""
    try:
        run(["resize2fs", os.fspath(target)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot grow the ext4 filesystem on {os.fspath(target)} ({detail(exc)})", backend=backend) from None
    if not had_lost_found and "lost+found" in ext4_names(target):
        remove_lost_found(target, backend=backend)


def grow_online(fs: Filesystem, mountpoint: Path, *, backend: str) -> None:
    """Grow the mounted filesystem at ``mountpoint`` to its device's size."""
    assert fs.online_grow is not None
    try:
        run([*fs.online_grow, str(mountpoint)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot grow the {fs.name} filesystem ({detail(exc)})", backend=backend) from None


# ---------------------------------------------------------------------------- freezing

def freeze(mountpoint: str | os.PathLike[str], *, backend: str) -> None:
    """``fsfreeze -f``: flush the mounted filesystem and block writes until :func:`thaw`."""
    try:
        run(["fsfreeze", "-f", os.fspath(mountpoint)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot freeze the filesystem mounted on {os.fspath(mountpoint)} ({detail(exc)})", backend=backend) from None


def thaw(mountpoint: str | os.PathLike[str], *, backend: str) -> None:
    """``fsfreeze -u``: undo :func:`freeze`."""
    run(["fsfreeze", "-u", os.fspath(mountpoint)], backend=backend, check=False)


# ---------------------------------------------------------------------------- helpers

def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (``no message`` when there is none)."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no message")


def detail(exc: CommandError) -> str:
    """``tool: last line of its error output``."""
    return f"{os.path.basename(exc.argv[0])}: {last_line(exc.stderr).rstrip('.')}"


__all__ = [
    "DEFAULT_FSTYPE", "FILESYSTEMS", "Filesystem", "MiB", "check_offline", "chosen", "detail",
    "ext4_names", "freeze", "grow_offline", "grow_online", "last_line", "make", "minimum_problem", "new_uuid",
    "probe", "remove_lost_found", "requirements", "size_for_tree", "supported", "thaw", "usable",
]
