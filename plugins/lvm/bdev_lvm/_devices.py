"""Telling an LVM logical volume from any other block device, the way LXC does: the
device-mapper UUID of the device (``/sys/dev/block/M:m/dm/uuid``, read through pyudev) starts
with ``LVM-``."""

from __future__ import annotations

import os
import stat

LVM_UUID_PREFIX = "LVM-"


def dm_uuid(device_number: int) -> str | None:
    """The device-mapper UUID of the block device ``device_number``, or None when it is not
    a device-mapper device (or pyudev cannot tell)."""
    import pyudev

    try:
        device = pyudev.Devices.from_device_number(pyudev.Context(), "block", device_number)
    except (pyudev.DeviceNotFoundError, ValueError, OSError):
        return None
    raw = device.attributes.get("dm/uuid")
    return raw.decode("utf-8", "replace").strip() if raw is not None else None


def is_lvm_uuid(uuid: str | None) -> bool:
    """Whether a device-mapper UUID is LVM's (``LVM-<vg uuid><lv uuid>``, with a layer suffix
    such as ``-real`` or ``-cow`` on internal devices)."""
    return bool(uuid) and uuid.startswith(LVM_UUID_PREFIX)


def is_logical_volume(path: str) -> bool:
    """Whether ``path`` is a block device that is an LVM logical volume."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISBLK(st.st_mode) and is_lvm_uuid(dm_uuid(st.st_rdev))
