"""The filesystems a logical volume can hold (``--fstype``): how to make one, its smallest
size, and how a snapshot clone gets a UUID of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bdev.command import run
from bdev.errors import BdevError, CommandError, InvalidInput
from bdev.requirements import KernelFilesystem, Tool

MiB = 1 << 20
BACKEND = "lvm"


@dataclass(frozen=True)
class Filesystem:
    """One ``--fstype``.

    :param mkfs: the mkfs argv; the device is appended.
    :param minimum: the smallest volume its mkfs accepts, in bytes.
    :param new_uuid: argv (device appended) giving an unmounted snapshot a new UUID, or None
        when duplicates do no harm (ext4: LXC leaves them, and a new UUID would rewrite every
        checksummed block of a copy-on-write snapshot).
    """

    name: str
    package: str
    mkfs: tuple[str, ...]
    minimum: int
    new_uuid: tuple[str, ...] | None

    def requirements(self) -> tuple[Tool | KernelFilesystem, ...]:
        """Its tools and its kernel filesystem."""
        tools = {self.mkfs[0], *(self.new_uuid[:1] if self.new_uuid else ())}
        return (*(Tool(t, self.package) for t in sorted(tools)), KernelFilesystem(self.name))

    def problem(self) -> str | None:
        """Why this type cannot be made here, or None."""
        return next((p for p in (r.problem() for r in self.requirements()) if p), None)


FILESYSTEMS = {
    "ext4": Filesystem("ext4", "e2fsprogs", ("mkfs.ext4", "-q", "-F"), 4 * MiB, None),
    "xfs": Filesystem("xfs", "xfsprogs", ("mkfs.xfs", "-q", "-f"), 300 * MiB, ("xfs_admin", "-U", "generate")),
    # -m changes the fsid the kernel sees without rewriting metadata (kernel >= 5.0)
    "btrfs": Filesystem("btrfs", "btrfs-progs", ("mkfs.btrfs", "-q", "-f"), 109 * MiB, ("btrfstune", "-f", "-m")),
}
DEFAULT = "ext4"


def usable() -> list[str]:
    """The types that can be made here."""
    return [fs.name for fs in FILESYSTEMS.values() if fs.problem() is None]


def chosen(fstype: str | None) -> Filesystem:
    """The filesystem for ``--fstype`` (default ext4).

    :raises InvalidInput: a type the backend does not make.
    """
    name = (fstype or DEFAULT).strip().lower()
    fs = FILESYSTEMS.get(name)
    if fs is None:
        raise InvalidInput(
            f"a logical volume cannot hold a {name!r} filesystem here (supported: {', '.join(sorted(FILESYSTEMS))})",
            backend=BACKEND,
        )
    return fs


def _detail(exc: CommandError) -> str:
    last = next((line.strip() for line in reversed(exc.stderr.splitlines()) if line.strip()), "no message")
    return f"{os.path.basename(exc.argv[0])}: {last.rstrip('.')}"


def make(fs: Filesystem, device: str) -> None:
    """Format ``device`` with ``fs``; an ext4 volume loses its empty ``lost+found`` so a new
    rootfs starts empty, as a directory rootfs does."""
    try:
        run([*fs.mkfs, device], backend=BACKEND)
        if fs.name == "ext4":
            run(["debugfs", "-w", "-R", "rmdir lost+found", device], backend=BACKEND)
    except CommandError as exc:
        raise BdevError(f"cannot make a {fs.name} filesystem on {device} ({_detail(exc)})", backend=BACKEND) from None


def probe(device: str) -> str | None:
    """The filesystem type on ``device`` as ``blkid`` reads it from the superblock, or None."""
    result = run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], check=False, backend=BACKEND)
    return result.stdout.strip() or None if result.returncode == 0 else None


def give_new_uuid(device: str) -> None:
    """Give the unmounted filesystem on the snapshot ``device`` a UUID of its own where a
    duplicate would break mounting (xfs refuses a second mount of one UUID; btrfs takes two
    devices with one fsid for one filesystem)."""
    fstype = probe(device)
    fs = FILESYSTEMS.get(fstype or "")
    if fs is None or fs.new_uuid is None:
        return
    try:
        run([*fs.new_uuid, device], backend=BACKEND)
    except CommandError as exc:
        raise BdevError(f"cannot give the {fs.name} filesystem on {device} a new UUID ({_detail(exc)})", backend=BACKEND) from None
