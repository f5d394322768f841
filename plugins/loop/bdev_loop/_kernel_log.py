"""The kernel's own reason for a failed mount, read from ``/dev/kmsg``.

``mount`` only says "wrong fs type, bad option, bad superblock ..."; the filesystem driver logs
what it disliked (``EXT4-fs (loop3): VFS: Found ext4 filesystem with invalid superblock
checksum``).  :class:`KernelLog` remembers where the log ends before the mount and afterwards
returns the new lines about one device.  Where the log cannot be read (no ``/dev/kmsg``, no
permission) it quietly returns nothing.
"""

from __future__ import annotations

import errno
import os

KMSG = "/dev/kmsg"


class KernelLog:
    """New kernel log lines since construction; use as a context manager."""

    def __init__(self, path: str = KMSG):
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError:
            self._fd = None

    def __enter__(self) -> "KernelLog":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def about(self, device_name: str) -> list[str]:
        """New messages naming ``device_name`` (``loop3``), without the driver's device tag:
        ``EXT4-fs: VFS: Found ext4 filesystem with invalid superblock checksum``."""
        tag = f" ({device_name})"
        return [m.replace(tag, "", 1) for m in self._new() if tag in m]

    def _new(self) -> list[str]:
        if self._fd is None:
            return []
        messages = []
        while True:
            try:
                record = os.read(self._fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read: go on with the next
                    continue
                break  # EAGAIN: no more
            if not record:
                break
            header, _, text = record.decode(errors="replace").partition(";")
            messages.append(text.split("\n", 1)[0].strip())
        return messages
