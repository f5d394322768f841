"""Mounting images read-only through loop devices, and finding the loop devices that hold one.

``mount -t squashfs -o loop,ro`` lets util-linux take a free loop device from
``/dev/loop-control`` (``LOOP_CTL_GET_FREE``: no device number is ever guessed) and set
autoclear, so the kernel frees the device when the filesystem is unmounted.  Which device
holds which image is read from sysfs (``/sys/block/loopN/loop/backing_file``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bdev.mounts import mountpoints_of

LOOP_CONTROL = Path("/dev/loop-control")
SYS_BLOCK = Path("/sys/block")
RELEASE_WAIT = 10.0
def problem() -> str | None:
    """Why loop devices cannot be attached here, or None."""
    if not LOOP_CONTROL.exists():
        return f"{LOOP_CONTROL} does not exist (the kernel has no loop driver)"
    if os.geteuid() != 0:
        return "attaching loop devices and mounting them needs root"
    return None


def devices_holding(image: Path) -> list[str]:
    """Names (``loop3``) of the loop devices bound to ``image``, by its resolved path."""
    wanted = os.path.realpath(image)
    found = []
    try:
        entries = sorted(p.name for p in SYS_BLOCK.iterdir() if p.name.startswith("loop"))
    except OSError:
        return []
    for name in entries:
        try:
            backing = (SYS_BLOCK / name / "loop" / "backing_file").read_text().rstrip("\n")
        except OSError:
            continue
        if backing == wanted:
            found.append(name)
    return found


def backs(name: str, image: Path) -> bool:
    """Whether ``loopN`` is still bound to ``image``."""
    return name in devices_holding(image)


def wait_released(device: str, image: Path, timeout: float = RELEASE_WAIT) -> bool:
    """Wait until the loop device ``device`` (``/dev/loop3``) no longer holds ``image`` or is
    mounted somewhere again (shared by another read-only mount); returns whether it let go."""
    name = os.path.basename(device)
    deadline = time.monotonic() + timeout
    while backs(name, image):
        if mountpoints_of(device):
            return True  # another mount of the same image uses it on purpose
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
