"""What the loop backend knows about each filesystem it puts in an image: how to make it, its
smallest size, how to give a copy a new UUID, how to grow it, and how to recognise it."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from bdev.command import run, which
from bdev.errors import BdevError, CommandError
from bdev.requirements import KernelFilesystem, Tool

MiB = 1 << 20


@dataclass(frozen=True)
class Filesystem:
    """One filesystem type an image can hold.

    :param name: the ``--fstype`` value and the ``mount -t`` type.
    :param package: the Debian package with its tools.
    :param minimum: the smallest image its mkfs accepts, in bytes.
    :param mkfs: the mkfs argv; the image path is appended.
    :param uuid_argv: the argv (image appended) that gives an unmounted copy a new UUID.
    :param online_grow: the argv (mount point appended) that grows it while mounted, or None
        for an offline grow (ext4: e2fsck, then resize2fs on the image).
    :param tools: every program the backend runs for this type.
    """

    name: str
    package: str
    minimum: int
    mkfs: tuple[str, ...]
    uuid_argv: tuple[str, ...]
    online_grow: tuple[str, ...] | None
    tools: tuple[str, ...]

    def requirements(self) -> tuple[Tool | KernelFilesystem, ...]:
        """The tools and the kernel filesystem this type needs."""
        return (*(Tool(t, self.package) for t in self.tools), KernelFilesystem(self.name))

    def problem(self) -> str | None:
        """Why images of this type cannot be made or copied here, or None."""
        for req in self.requirements():
            problem = req.problem()
            if problem:
                return problem
        return None


FILESYSTEMS: dict[str, Filesystem] = {
    "ext4": Filesystem(
        "ext4", "e2fsprogs", 4 * MiB, ("mkfs.ext4", "-q", "-F"), ("tune2fs", "-U", "random"), None,
        ("mkfs.ext4", "tune2fs", "e2fsck", "resize2fs", "debugfs"),
    ),
    "xfs": Filesystem(
        "xfs", "xfsprogs", 300 * MiB, ("mkfs.xfs", "-q", "-f"), ("xfs_admin", "-U", "generate"), ("xfs_growfs",),
        ("mkfs.xfs", "xfs_admin", "xfs_growfs"),
    ),
    "btrfs": Filesystem(
        "btrfs", "btrfs-progs", 109 * MiB, ("mkfs.btrfs", "-q", "-f"), ("btrfstune", "-f", "-u"),
        ("btrfs", "filesystem", "resize", "max"), ("mkfs.btrfs", "btrfstune", "btrfs"),
    ),
}
DEFAULT_FSTYPE = "ext4"


def supported() -> str:
    """The supported types as a phrase for messages: ``btrfs, ext4, xfs``."""
    return ", ".join(sorted(FILESYSTEMS))


# ---------------------------------------------------------------------------- recognising

_EXT_MAGIC = (1080, b"\x53\xef")
_XFS_MAGIC = (0, b"XFSB")
_BTRFS_MAGIC = (65536 + 64, b"_BHRfS_M")


def probe(image: Path) -> str | None:
    """The filesystem type in ``image``: ``ext4`` (any ext2/3/4, which the ext4 driver
    mounts), ``xfs`` or ``btrfs`` from their superblock magic; else what ``blkid`` says;
    None when nothing recognisable is there."""
    with open(image, "rb") as fh:
        for fstype, (offset, magic) in (("xfs", _XFS_MAGIC), ("btrfs", _BTRFS_MAGIC), ("ext4", _EXT_MAGIC)):
            fh.seek(offset)
            if fh.read(len(magic)) == magic:
                return fstype
    blkid = which("blkid")
    if blkid:
        result = run([blkid, "-p", "-o", "value", "-s", "TYPE", str(image)], check=False)
        found = result.stdout.strip()
        if result.returncode == 0 and found:
            return found
    return None


# ---------------------------------------------------------------------------- making

def make(fs: Filesystem, image: Path, *, backend: str) -> None:
    """Format ``image`` with ``fs``; an ext4 image loses its ``lost+found`` so a new rootfs
    starts empty."""
    try:
        run([*fs.mkfs, str(image)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot make a {fs.name} filesystem in {image} ({detail(exc)})", backend=backend) from None
    if fs.name == "ext4":
        remove_lost_found(image, backend=backend)


def ext4_names(image: Path) -> list[str]:
    """Names in the root directory of the ext4 filesystem in ``image`` (read with debugfs)."""
    result = run(["debugfs", "-R", "ls -p /", str(image)], check=False)
    names = []
    for line in result.stdout.splitlines():
        parts = line.strip().strip("/").split("/")
        if len(parts) >= 5:
            names.append(parts[4])
    return names


def remove_lost_found(image: Path, *, backend: str) -> None:
    """Remove an empty ``lost+found`` from the root of the ext4 filesystem in ``image``."""
    run(["debugfs", "-w", "-R", "rmdir lost+found", str(image)], backend=backend)


# ---------------------------------------------------------------------------- copies

_EXT_INCOMPAT = 1024 + 0x60
_RO_COMPAT_METADATA_CSUM = 0x400
_INCOMPAT_CSUM_SEED = 0x2000


def _ext4_needs_seed(image: Path) -> bool:
    """Whether changing this ext4 filesystem's UUID would rewrite every metadata checksum
    (metadata_csum without metadata_csum_seed)."""
    with open(image, "rb") as fh:
        fh.seek(_EXT_INCOMPAT)
        incompat, ro_compat = struct.unpack("<2I", fh.read(8))
    return bool(ro_compat & _RO_COMPAT_METADATA_CSUM) and not incompat & _INCOMPAT_CSUM_SEED


def new_uuid(fs: Filesystem, image: Path, *, backend: str) -> None:
    """Give the unmounted filesystem in the copied ``image`` a UUID of its own: two mounted
    xfs filesystems may not share one, and btrfs would take them for one filesystem.  For
    ext4 with metadata checksums the seed is fixed first (``metadata_csum_seed``), so only the
    superblock changes instead of every checksummed block."""
    argv = list(fs.uuid_argv)
    if fs.name == "ext4" and _ext4_needs_seed(image):
        argv[1:1] = ["-O", "metadata_csum_seed"]
    try:
        run([*argv, str(image)], backend=backend)
    except CommandError as exc:
        raise BdevError(
            f"cannot give the copied {fs.name} filesystem {image} a new UUID ({detail(exc)})", backend=backend
        ) from None


# ---------------------------------------------------------------------------- growing

def check_offline(image: Path, *, backend: str) -> bool:
    """``e2fsck -f -y`` the unmounted ext4 filesystem in ``image`` (resize2fs insists on a
    fresh check); returns whether its root held ``lost+found`` before.

    :raises BdevError: errors e2fsck could not fix.
    """
    had_lost_found = "lost+found" in ext4_names(image)
    check = run(["e2fsck", "-f", "-y", str(image)], check=False, backend=backend)
    if check.returncode >= 4:
        last = last_line(check.stdout + check.stderr)
        raise BdevError(f"the ext4 filesystem in {image} has errors e2fsck cannot fix ({last})", backend=backend)
    return had_lost_found


def grow_offline(image: Path, had_lost_found: bool, *, backend: str) -> None:
    """Grow the checked, unmounted ext4 filesystem in ``image`` to the image's size
    (``resize2fs``); a ``lost+found`` that e2fsck created where there was none goes again."""
    try:
        run(["resize2fs", str(image)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot grow the ext4 filesystem in {image} ({detail(exc)})", backend=backend) from None
    if not had_lost_found and "lost+found" in ext4_names(image):
        remove_lost_found(image, backend=backend)


def grow_online(fs: Filesystem, mountpoint: Path, *, backend: str) -> None:
    """Grow the mounted filesystem at ``mountpoint`` to its device's size."""
    assert fs.online_grow is not None
    try:
        run([*fs.online_grow, str(mountpoint)], backend=backend)
    except CommandError as exc:
        raise BdevError(f"cannot grow the {fs.name} filesystem ({detail(exc)})", backend=backend) from None


# ---------------------------------------------------------------------------- helpers

def last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no message")


def detail(exc: CommandError) -> str:
    """``tool: last line of its error output``."""
    return f"{os.path.basename(exc.argv[0])}: {last_line(exc.stderr).rstrip('.')}"

