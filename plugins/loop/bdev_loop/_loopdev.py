"""Loop devices, allocated through the loop control device and attached with autoclear.

:class:`LoopDevices` asks ``/dev/loop-control`` for a free device (``LOOP_CTL_GET_FREE``,
which makes a new one when none is free; ``LOOP_CTL_ADD`` past a stuck one), binds an image
to it with ``LOOP_CONFIGURE`` (or ``LOOP_SET_FD`` + ``LOOP_SET_STATUS64`` on kernels older
than 5.8) and sets
``LO_FLAGS_AUTOCLEAR``: the kernel detaches the device by itself once its last user (our
handle, then the mount made through it) lets go.  No device number is ever assumed.  Which
device holds which image is read from sysfs (``/sys/block/loopN/loop/backing_file``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import BackendUnavailable, BdevError
from ._i18n import _

log = logging.getLogger("bdev.loop")

LOOP_CONTROL = Path("/dev/loop-control")
SYS_BLOCK = Path("/sys/block")

_LOOP_SET_FD = 0x4C00
_LOOP_CLR_FD = 0x4C01
_LOOP_SET_STATUS64 = 0x4C04
_LOOP_CONFIGURE = 0x4C0A
_LOOP_CTL_ADD = 0x4C80
_LOOP_CTL_GET_FREE = 0x4C82
_LO_FLAGS_READ_ONLY = 1
_LO_FLAGS_AUTOCLEAR = 4
_NAME_LEN = 64

# struct loop_info64: device, inode, rdevice, offset, sizelimit (u64); number, encrypt_type,
# encrypt_key_size, flags (u32); file_name, crypt_name (64 bytes), encrypt_key (32), init[2] (u64).
_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
# struct loop_config: fd, block_size (u32), info (loop_info64), reserved[8] (u64).
_CONFIG = struct.Struct(f"=2I{_INFO64.size}s8Q")

_ATTEMPTS = 100
_NODE_WAIT = 2.0
RELEASE_WAIT = 10.0


@dataclass(frozen=True)
class Attachment:
    """A loop device bound to an image: ``name`` (``loop3``), its node and whether it is
    read-only."""

    name: str
    device: Path
    readonly: bool


class LoopDevices:
    """Allocation and inspection of loop devices.

    :param control: the loop control device; its directory holds the ``loopN`` nodes.
    :param sysfs: the ``/sys/block`` directory to read attachments from.
    :param backend: named in errors.
    """

    def __init__(self, control: Path = LOOP_CONTROL, *, sysfs: Path = SYS_BLOCK, backend: str = "loop"):
        self.control = Path(control)
        self.sysfs = Path(sysfs)
        self.backend = backend

    # ------------------------------------------------------------------ availability

    def problem(self) -> str | None:
        """Why loop devices cannot be attached here, or None."""
        if not self.control.exists():
            return _("{control} does not exist (the kernel has no loop driver)").format(control=self.control)
        if os.geteuid() != 0:
            return _("attaching loop devices and mounting them needs root")
        if not os.access(self.control, os.R_OK | os.W_OK):
            return _("{control} is not readable and writable").format(control=self.control)
        return None

    def node(self, name: str) -> Path:
        """The device node of ``loopN``, beside the control device."""
        return self.control.parent / name

    # ------------------------------------------------------------------ attaching

    @contextlib.contextmanager
    def attached(self, image: Path, *, readonly: bool) -> Iterator[Path]:
        """Bind ``image`` to a free loop device with autoclear and yield the device node.

        Our handle on the device is closed on exit: if nothing else uses the device by then
        (a mount made through it does), the kernel detaches it; this waits until it has, and
        detaches it explicitly if it has not after a while.

        :raises BackendUnavailable: no loop device can be had.
        """
        image_fd = os.open(image, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
        try:
            name, device_fd = self._bind(image_fd, Path(image), readonly)
        finally:
            os.close(image_fd)
        try:
            yield self.node(name)
        finally:
            os.close(device_fd)
            released = self.wait_released(name, Path(image), unless_mounted=True)
            if not released and not _mounted_from(self.node(name)) and self.backs(name, Path(image)):
                with contextlib.suppress(OSError):
                    self.detach(name)

    def _bind(self, image_fd: int, image: Path, readonly: bool) -> tuple[str, int]:
        """Find a free device and bind ``image_fd`` to it; returns its name and an open handle.

        ``LOOP_CTL_GET_FREE`` offers the first unbound device, so processes racing for one are
        offered the same: the loser gets EBUSY and asks again.  A device offered again and
        again yet never bindable (held open exclusively by someone) is skipped by making a
        fresh one with ``LOOP_CTL_ADD``.
        """
        try:
            control = os.open(self.control, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise BackendUnavailable(
                _("no loop device can be had: cannot open {control} ({cause})").format(
                    control=self.control, cause=exc.strerror), backend=self.backend
            ) from None
        try:
            last, refused = "", -1
            for _attempt in range(_ATTEMPTS):
                number = self._free_number(control, stuck=refused)
                name = f"loop{number}"
                device_fd = self._open_node(name, readonly)
                try:
                    self._configure(device_fd, image_fd, image, readonly)
                except OSError as exc:
                    os.close(device_fd)
                    if exc.errno == errno.EBUSY:
                        last, refused = f"{name} was busy", number
                        log.debug("%s; asking %s again", last, self.control)
                        continue
                    raise BdevError(
                        _("cannot attach {image} to {node} ({cause})").format(
                            image=image, node=self.node(name), cause=exc.strerror), backend=self.backend
                    ) from None
                log.debug("attached %s to %s%s", image, self.node(name), " read-only" if readonly else "")
                return name, device_fd
            raise BackendUnavailable(
                _("no free loop device could be claimed after {attempts} attempts ({last})").format(
                    attempts=_ATTEMPTS, last=last), backend=self.backend
            )
        finally:
            os.close(control)

    def _free_number(self, control: int, *, stuck: int) -> int:
        """The number of a free loop device; a new one if the kernel offers ``stuck`` again."""
        try:
            number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
            if number == stuck:
                number = fcntl.ioctl(control, _LOOP_CTL_ADD, -1)
            return number
        except OSError as exc:
            raise BackendUnavailable(
                _("no free loop device can be had from {control} ({cause})").format(
                    control=self.control, cause=exc.strerror), backend=self.backend
            ) from None

    def _open_node(self, name: str, readonly: bool) -> int:
        """Open ``/dev/loopN``, waiting briefly for devtmpfs to create a new node."""
        path = self.node(name)
        deadline = time.monotonic() + _NODE_WAIT
        while True:
            try:
                return os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise BackendUnavailable(
                        _("the kernel offered {name} but {path} never appeared").format(
                            name=name, path=path), backend=self.backend
                    ) from None
                time.sleep(0.01)
            except OSError as exc:
                raise BackendUnavailable(_("cannot open {path} ({cause})").format(path=path, cause=exc.strerror),
                                         backend=self.backend) from None

    @staticmethod
    def _configure(device_fd: int, image_fd: int, image: Path, readonly: bool) -> None:
        flags = _LO_FLAGS_AUTOCLEAR | (_LO_FLAGS_READ_ONLY if readonly else 0)
        file_name = os.fsencode(image)[: _NAME_LEN - 1]
        info = _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, file_name, b"", b"", 0, 0)
        config = _CONFIG.pack(image_fd, 0, info, *([0] * 8))
        try:
            fcntl.ioctl(device_fd, _LOOP_CONFIGURE, config)
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                raise
        # Kernels before 5.8: bind, then set the flags (the fd's mode makes it read-only).
        fcntl.ioctl(device_fd, _LOOP_SET_FD, image_fd)
        try:
            fcntl.ioctl(device_fd, _LOOP_SET_STATUS64, info)
        except OSError:
            with contextlib.suppress(OSError):
                fcntl.ioctl(device_fd, _LOOP_CLR_FD, 0)
            raise

    # ------------------------------------------------------------------ inspecting

    def attachments(self, image: Path) -> list[Attachment]:
        """The loop devices currently bound to ``image`` (compared by its resolved path, which
        the kernel keeps up to date across renames)."""
        wanted = os.path.realpath(image)
        found = []
        for entry in sorted(self._devices()):
            backing = self._backing_file(entry)
            if backing == wanted:
                found.append(Attachment(entry, self.node(entry), self._read(entry, "ro") == "1"))
        return found

    def backs(self, name: str, image: Path) -> bool:
        """Whether ``loopN`` is still bound to ``image``."""
        return self._backing_file(name) == os.path.realpath(image)

    def _devices(self) -> list[str]:
        try:
            return [p.name for p in self.sysfs.iterdir() if p.name.startswith("loop")]
        except OSError:
            return []

    def _backing_file(self, name: str) -> str | None:
        return self._read(name, "loop/backing_file")

    def _read(self, name: str, attribute: str) -> str | None:
        try:
            return (self.sysfs / name / attribute).read_text().rstrip("\n")
        except OSError:
            return None

    # ------------------------------------------------------------------ releasing

    def wait_released(
        self, name: str, image: Path, *, unless_mounted: bool = False, timeout: float = RELEASE_WAIT
    ) -> bool:
        """Wait until ``loopN`` no longer holds ``image`` (btrfs lets go of its device a little
        after an unmount); returns whether it did.

        :param unless_mounted: return at once if a mount uses the device (it holds it on
            purpose, as after a successful mount).
        """
        deadline = time.monotonic() + timeout
        while self.backs(name, image):
            if unless_mounted and _mounted_from(self.node(name)):
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def detach(self, name: str) -> None:
        """Unbind ``loopN`` (``LOOP_CLR_FD``); with autoclear set the kernel finishes it once
        the last user closes the device."""
        fd = os.open(self.node(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, _LOOP_CLR_FD, 0)
        finally:
            os.close(fd)


def _mounted_from(device: Path) -> bool:
    from bdev.mounts import mountpoints_of

    return bool(mountpoints_of(device))
