"""The filesystems a loop image can hold: bdev's table of filesystems on block devices and
images (:mod:`bdev.blockfs`), which the lvm and rbd backends share."""

from __future__ import annotations

from bdev.blockfs import (
    DEFAULT_FSTYPE,
    FILESYSTEMS,
    MiB,
    Filesystem,
    check_offline,
    detail,
    grow_offline,
    grow_online,
    make,
    new_uuid,
    probe,
    requirements,
    supported,
)

__all__ = [
    "DEFAULT_FSTYPE", "FILESYSTEMS", "MiB", "Filesystem", "check_offline", "detail", "grow_offline", "grow_online",
    "make", "new_uuid", "probe", "requirements", "supported",
]
