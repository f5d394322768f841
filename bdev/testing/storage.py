"""Real scratch storage for tests: filesystems on loop-mounted image files.

Used by bdev's own tests and meant for plugin authors' tests too.  Everything made is undone
in ``finally`` blocks, so a failing test leaves no mount and no loop device behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..command import run, which
from ..mounts import mount_points

MKFS = {"btrfs": ["mkfs.btrfs", "-q", "-f"], "xfs": ["mkfs.xfs", "-q", "-f"], "ext4": ["mkfs.ext4", "-q", "-F"]}


def loop_filesystem_problem(fstype: str) -> str | None:
    """Why a loop-mounted ``fstype`` cannot be made here, or None."""
    if os.geteuid() != 0:
        return "mounting a loop filesystem needs root"
    tool = MKFS.get(fstype, [f"mkfs.{fstype}"])[0]
    if not which(tool):
        return f"{tool} is not installed"
    known = {line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines() if line.strip()}
    if fstype not in known:
        return f"the kernel has no {fstype} filesystem"
    return None


@contextlib.contextmanager
def loop_filesystem(fstype: str, directory: Path, size: str = "1G", mount_options: str = "") -> Iterator[Path]:
    """Make a sparse image in ``directory``, format it with ``fstype``, mount it (the kernel
    picks a free loop device and frees it on unmount) and yield the mount point."""
    image = directory / f"{fstype}.img"
    mountpoint = directory / f"{fstype}-mnt"
    mountpoint.mkdir(parents=True, exist_ok=True)
    run(["truncate", "-s", size, str(image)])
    run([*MKFS.get(fstype, [f"mkfs.{fstype}"]), str(image)])
    options = "loop" + (f",{mount_options}" if mount_options else "")
    run(["mount", "-t", fstype, "-o", options, str(image), str(mountpoint)])
    try:
        yield mountpoint
    finally:
        run(["umount", "-R", str(mountpoint)], check=False)
        _release_loop_devices(image)
        with contextlib.suppress(OSError):
            image.unlink()


def _release_loop_devices(image: Path, timeout: float = 10.0) -> None:
    """Wait for the kernel to auto-clear the loop devices backed by ``image`` (btrfs lets go
    of its device asynchronously after unmount); detach any still attached at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attached = [entry.split(":", 1)[0] for entry in loop_devices() if entry.split(":", 1)[1].startswith(str(image))]
        if not attached:
            return
        time.sleep(0.05)
    for name in attached:
        run(["losetup", "-d", f"/dev/{name}"], check=False)


def mount_table() -> list[str]:
    """Mount points of this mount namespace, for leak checks."""
    return sorted(mount_points() or [])


def loop_devices() -> list[str]:
    """Loop devices in use (with a backing file), for leak checks."""
    found = []
    for dev in Path("/sys/block").glob("loop*"):
        backing = dev / "loop" / "backing_file"
        if backing.exists():
            found.append(f"{dev.name}:{backing.read_text().strip()}")
    return sorted(found)
