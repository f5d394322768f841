"""Filesystem primitives the core and path-based backends share: an atomic exchange of two
paths, a tree removal that never crosses into another mounted filesystem, and an atomic file
write."""

from __future__ import annotations

import errno
import functools
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BdevError
from .i18n import _

if TYPE_CHECKING:
    import ctypes

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _libc() -> "ctypes.CDLL":
    """The C library, loaded on first use: finding it costs a few milliseconds that every
    command would pay at start-up otherwise."""
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def rename_exchange(a: Path, b: Path) -> None:
    """Atomically exchange two existing paths on one filesystem (``renameat2`` with
    ``RENAME_EXCHANGE``): at every instant each name refers to one complete tree.

    :raises OSError: EXDEV across filesystems, EINVAL where the filesystem cannot exchange.
    """
    import ctypes

    result = _libc().renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file:
    write a temporary file beside it, fsync, rename over, fsync the directory."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it without ever leaving its filesystem.

    A mount point found inside (a bind mount left by a crashed runtime, say) stops the
    removal with an error naming it, instead of deleting the mounted data as ``rm -rf`` would.
    Read-only directory modes are lifted as needed.  A missing ``path`` is not an error.
    """
    path = Path(path)
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    refusal = _mount_below(path, top.st_dev)  # refuse before deleting anything
    if refusal is not None:
        raise BdevError(refusal)
    _remove_dir(path, top.st_dev)


def mounted_inside(path: Path) -> str | None:
    """Why :func:`remove_tree` would refuse ``path`` now (something is mounted below it), as
    a sentence; None when nothing is, or ``path`` is not a directory."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return None
    return _mount_below(path, top.st_dev) if stat.S_ISDIR(top.st_mode) else None


def _mount_below(path: Path, dev: int) -> str | None:
    """The first mount point below ``path`` as a refusal (one read of the mount table; a walk
    comparing device numbers where there is no ``/proc``), or None."""
    from .mounts import mount_points_below

    below = mount_points_below(path)
    if below is not None:
        first = os.path.join(path, sorted(below)[0]) if below else None
    else:
        first = next(_other_devices(path, dev), None)
    if first is None:
        return None
    return _("{first} is a mount point inside {path}; unmount it before removing").format(first=first, path=path)


def _other_devices(path: Path, dev: int) -> Iterator[str]:
    """Directories below ``path`` on another device than ``dev`` (mount points), walking."""
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            full = os.path.join(root, d)
            try:
                if os.lstat(full).st_dev != dev:
                    yield full
            except FileNotFoundError:
                continue


def _remove_dir(path: Path, dev: int) -> None:
    try:
        entries = list(os.scandir(path))
    except PermissionError:
        os.chmod(path, 0o700)
        entries = list(os.scandir(path))
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev:
                raise BdevError(_(
                    "{mount} is a mount point inside {path}; unmount it before removing"
                ).format(mount=entry.path, path=path))
            _remove_dir(Path(entry.path), dev)
        else:
            try:
                os.unlink(entry.path)
            except PermissionError:
                os.chmod(path, 0o700)
                os.unlink(entry.path)
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            os.chmod(path.parent, os.lstat(path.parent).st_mode | 0o700)
            os.rmdir(path)
        else:
            raise


def tree_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (like ``du -s``), hard links counted once, one filesystem."""
    seen: set[tuple[int, int]] = set()
    total = 0
    top_dev = os.lstat(path).st_dev
    stack = [str(path)]
    while stack:
        current = stack.pop()
        with os.scandir(current) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if st.st_dev != top_dev:
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return total + os.lstat(path).st_blocks * 512
