"""Image files: made sparse, copied by reflink (``FICLONE``) or hole by hole, measured."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

IMAGE_MODE = 0o600  # as LXC makes rootdev
FROZEN_MODE = 0o444

_FICLONE = 0x40049409
_CHUNK = 8 << 20
_NO_REFLINK = {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EPERM, errno.ENOSYS}


def create_sparse(path: Path, size: int) -> None:
    """Create ``path`` (it must not exist) as a sparse file of ``size`` bytes, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IMAGE_MODE)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_image(source: Path, target: Path) -> str:
    """Copy the image ``source`` to the new file ``target`` (mode 0600) and make it durable.

    A reflink (``FICLONE``: instant, blocks shared until either side writes) where source and
    target are on one btrfs or xfs filesystem, otherwise a copy of the data regions only
    (``SEEK_DATA``/``SEEK_HOLE``), so holes stay holes.  A failed copy removes ``target``.

    :returns: ``"reflink"`` or ``"sparse"``.
    """
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IMAGE_MODE)
        try:
            how = _clone_or_copy(src, dst)
            os.fsync(dst)
        except BaseException:
            os.close(dst)
            os.unlink(target)
            raise
        os.close(dst)
    finally:
        os.close(src)
    return how


def _clone_or_copy(src: int, dst: int) -> str:
    try:
        fcntl.ioctl(dst, _FICLONE, src)
        return "reflink"
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    copy_sparse(src, dst)
    return "sparse"


def copy_sparse(src: int, dst: int) -> None:
    """Copy the data regions of ``src`` to the same offsets of ``dst``; holes are skipped
    (``dst`` gets ``src``'s size first, so they stay holes)."""
    size = os.fstat(src).st_size
    os.ftruncate(dst, size)
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                return
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        _copy_range(src, dst, start, end)
        offset = end


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    """Copy ``[start, end)`` in the kernel where it can, else through a buffer that leaves
    all-zero chunks unwritten."""
    position = start
    while position < end:
        count = min(end - position, 1 << 30)
        try:
            done = os.copy_file_range(src, dst, count, position, position)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _copy_buffered(src, dst, position, end)
            return
        if done == 0:
            return
        position += done


def _copy_buffered(src: int, dst: int, start: int, end: int) -> None:
    zero = bytes(_CHUNK)
    position = start
    while position < end:
        chunk = os.pread(src, min(_CHUNK, end - position), position)
        if not chunk:
            return
        if chunk != zero[: len(chunk)]:
            os.pwrite(dst, chunk, position)
        position += len(chunk)


def allocated_bytes(path: Path) -> int:
    """Bytes the image really occupies on the host (its allocated blocks)."""
    return os.stat(path).st_blocks * 512


def apparent_size(path: Path) -> int:
    """The image's size, which is the size of the block device made from it."""
    return os.stat(path).st_size


def grow(path: Path, size: int) -> None:
    """Extend ``path`` to ``size`` bytes with a hole."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def shrink_back(path: Path, size: int) -> None:
    """Undo :func:`grow` (only while nothing was written past ``size``)."""
    os.truncate(path, size)
