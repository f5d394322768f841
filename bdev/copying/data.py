"""Copying the data of one regular file: reflink, then ``copy_file_range``, then read/write.

Holes are kept: a file whose allocated blocks are fewer than its size is copied extent by
extent (``SEEK_DATA``/``SEEK_HOLE``) and truncated to its full size at the end.  Whether a
pair of filesystems can reflink (or ``copy_file_range``) is learnt from the first attempt
and cached per ``(source st_dev, target st_dev)``, so a refusal costs one system call per
pair, not one per file.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from typing import NamedTuple

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)``: make the target file share all the source file's extents."""

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)

# Errors meaning "this pair of filesystems cannot do it", as opposed to a real failure
# (ENOSPC, EIO ...) that must be reported.
_CLONE_REFUSALS = frozenset(
    {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ETXTBSY}
)
_RANGE_REFUSALS = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EBADF})


class DataResult(NamedTuple):
    """How one file's data was copied: cloned with ``FICLONE``; has holes."""

    reflinked: bool
    sparse: bool


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` byte ranges of ``fd`` holding data, up to ``size``.

    Uses ``SEEK_DATA``/``SEEK_HOLE``; where the filesystem does not support them the whole
    file is one range.
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield offset, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


class DataCopier:
    """Copies file data, remembering per pair of filesystems which method works.

    :param reflink: try ``FICLONE`` first.  When False, data is copied with
        ``copy_file_range``, which the kernel may still satisfy by sharing extents on btrfs
        and XFS (it does not write the data again, but the copy is then not counted as
        reflinked).
    """

    def __init__(self, *, reflink: bool = True):
        self.reflink = reflink
        self._can_clone: dict[tuple[int, int], bool] = {}
        self._can_range: dict[tuple[int, int], bool] = {}

    def copy(self, src_fd: int, dst_fd: int, size: int, blocks: int, pair: tuple[int, int]) -> DataResult:
        """Copy ``size`` bytes from ``src_fd`` into the new, empty ``dst_fd``.

        :param blocks: the source's ``st_blocks``; fewer than ``size`` needs means holes.
        :param pair: ``(source st_dev, target st_dev)``, the cache key.
        :raises OSError: a real failure (disk full, I/O error).
        """
        if size == 0:
            return DataResult(False, False)
        maybe_sparse = blocks * 512 < size
        if self.reflink and self._can_clone.get(pair, True):
            try:
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
            except OSError as exc:
                if exc.errno not in _CLONE_REFUSALS:
                    raise
                self._can_clone[pair] = False
            else:
                self._can_clone[pair] = True
                return DataResult(True, maybe_sparse)
        if not maybe_sparse:
            self._copy_range(src_fd, dst_fd, 0, size, pair, False)
            return DataResult(False, False)
        written = 0
        extents = list(data_extents(src_fd, size))
        if extents == [(0, size)]:
            # st_blocks says holes but SEEK_DATA reports none (zfs-fuse and other FUSE
            # filesystems): find them by reading, so the copy stays sparse.
            written = _read_write(src_fd, dst_fd, 0, size, True)
        else:
            for start, end in extents:
                written += self._copy_range(src_fd, dst_fd, start, end, pair, True)
        os.ftruncate(dst_fd, size)
        return DataResult(False, written < size)

    def _copy_range(self, src_fd: int, dst_fd: int, start: int, end: int, pair: tuple[int, int], sparse: bool) -> int:
        """Copy bytes ``[start, end)`` at the same offsets; returns the bytes written."""
        offset = start
        if self._can_range.get(pair, True):
            while offset < end:
                try:
                    done = os.copy_file_range(src_fd, dst_fd, end - offset, offset, offset)
                except OSError as exc:
                    if exc.errno not in _RANGE_REFUSALS:
                        raise
                    self._can_range[pair] = False
                    break
                if done == 0:  # the source shrank under us
                    return offset - start
                offset += done
            else:
                self._can_range[pair] = True
                return offset - start
        return offset - start + _read_write(src_fd, dst_fd, offset, end, sparse)


def _read_write(src_fd: int, dst_fd: int, start: int, end: int, sparse: bool) -> int:
    """The portable fallback: ``pread``/``pwrite`` in 1 MiB chunks.  For a sparse source,
    all-zero chunks are skipped (left as holes) rather than written."""
    offset = start
    written = 0
    while offset < end:
        chunk = os.pread(src_fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            break
        if sparse and chunk == _ZEROS[: len(chunk)]:
            offset += len(chunk)
            continue
        view = memoryview(chunk)
        while view:
            n = os.pwrite(dst_fd, view, offset)
            view = view[n:]
            offset += n
            written += n
    return written
