"""The tree walk: creates every entry of the source in the target, depth first.

Directories are walked through open descriptors (``openat`` with ``O_NOFOLLOW`` relative to
the parent), so neither a symlink inside the source nor one swapped in during the copy is
ever followed.  Each directory's own metadata is applied after its children are written
(their creation would move its ``mtime``, and a read-only mode would stop them).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from ..i18n import _
from ..records import CopyStats
from .data import DataCopier
from .errors import CopyError, copy_error, explain
from .metadata import MetadataCopier, drop_default_acl
from .mounts import MountBoundary
from .progress import NullProgress, Progress
from .walk import measure

log = logging.getLogger("bdev.copying")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a fifo swapped in for a file must not hang the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PROC_FD = "/proc/self/fd"
_FLUSH_FILES = 256
_FLUSH_BYTES = 32 << 20


class _Vanished(Exception):
    """The source entry disappeared between listing its directory and copying it."""


class _Dir:
    """A directory being copied: both descriptors, its source stat and its entries."""

    __slots__ = ("src_fd", "dst_fd", "rel", "st", "entries", "next", "existed", "dst_dev")

    def __init__(
        self, src_fd: int, dst_fd: int, rel: str, st: os.stat_result, entries: list, existed: bool, dst_dev: int
    ):
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.rel = rel  # "" for the top, "a/b/" below
        self.st = st
        self.entries = entries
        self.next = 0
        self.existed = existed
        self.dst_dev = dst_dev


class TreeCopier:
    """One copy of ``source``'s contents into the existing directory ``target``.

    Use :func:`bdev.copying.copytree`; this class holds the state of one run (hard-link map,
    statistics, the data copier's per-filesystem cache).
    """

    def __init__(self, source: Path, target: Path, *, progress: Progress | None, reflink: bool):
        self.source = os.fspath(source)
        self.target = os.fspath(target)
        self.progress = None if progress is None or isinstance(progress, NullProgress) else progress
        self.stats = CopyStats()
        self.mount_points: list[str] = []
        self.data = DataCopier(reflink=reflink)
        self.meta = MetadataCopier(privileged=os.geteuid() == 0)
        self.boundary = MountBoundary(self.source)
        self._links: dict[tuple[int, int], str] = {}
        self._read_flags = _READ_FLAGS | (os.O_NOATIME if self.meta.privileged else 0)
        self._proc = os.path.isdir(_PROC_FD)
        self._pending_files = 0
        self._pending_bytes = 0

    # ------------------------------------------------------------------ run

    def run(self) -> CopyStats:
        """Copy, and return the statistics.  :raises CopyError: on the first failure."""
        top = self._open_top()
        stack = [top]
        try:
            if self.progress is not None:
                try:
                    size = measure(self.source, self.boundary)
                except OSError as exc:
                    raise copy_error(self.source, exc) from exc
                self.progress.start(size.bytes, size.entries)
            while stack:
                current = stack[-1]
                if current.next < len(current.entries):
                    entry = current.entries[current.next]
                    current.next += 1
                    try:
                        child = self._copy_entry(current, entry)
                    except _Vanished:
                        rel = current.rel + entry.name
                        log.warning("%s vanished from %s during the copy; skipped", rel, self.source)
                        continue
                    except OSError as exc:
                        raise copy_error(current.rel + entry.name, exc) from exc
                    if child is not None:
                        stack.append(child)
                else:
                    stack.pop()
                    self._finish_dir(current)
        finally:
            for open_dir in stack:
                _close(open_dir.src_fd)
                _close(open_dir.dst_fd)
            if self.progress is not None:
                self._flush()
                self.progress.finish()
        return self.stats

    def _open_top(self) -> _Dir:
        real_source = os.path.realpath(self.source)
        real_target = os.path.realpath(self.target)
        if real_target == real_source or real_target.startswith(real_source.rstrip("/") + "/"):
            raise CopyError(_(
                "cannot copy {source} into {target}: the target is inside the source"
            ).format(source=self.source, target=self.target))
        try:
            src_fd = os.open(self.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise copy_error(self.source, exc) from exc
        try:
            dst_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            _close(src_fd)
            cause = f"cannot copy into {self.target}: {explain(exc)}"
            raise CopyError(cause, relpath=".", errno=exc.errno) from exc
        try:
            st = os.fstat(src_fd)
            dst_dev = os.fstat(dst_fd).st_dev
            drop_default_acl(dst_fd)
            entries = _list(src_fd)
        except OSError as exc:
            _close(src_fd)
            _close(dst_fd)
            raise copy_error(self.source, exc) from exc
        return _Dir(src_fd, dst_fd, "", st, entries, True, dst_dev)

    # ------------------------------------------------------------------ entries

    def _copy_entry(self, parent: _Dir, entry: os.DirEntry) -> _Dir | None:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            return self._copy_dir(parent, name)
        if entry.is_file(follow_symlinks=False):
            self._copy_file(parent, name)
        else:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                raise _Vanished() from None
            self._copy_other(parent, name, st)
        return None

    def _open_source(self, parent: _Dir, name: str, flags: int) -> int:
        """Open a source entry; a missing one has vanished since its directory was read."""
        try:
            return os.open(name, flags, dir_fd=parent.src_fd)
        except FileNotFoundError:
            raise _Vanished() from None

    def _copy_file(self, parent: _Dir, name: str) -> None:
        try:
            src_fd = self._open_source(parent, name, self._read_flags)
        except PermissionError:
            if not self._read_flags & os.O_NOATIME:
                raise
            self._read_flags &= ~os.O_NOATIME  # O_NOATIME needs ownership (user namespaces)
            src_fd = self._open_source(parent, name, self._read_flags)
        try:
            st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode):  # replaced since the directory was read
                self._copy_other(parent, name, st)
                return
            if st.st_nlink > 1 and self._link_to_first(parent, name, st):
                return
            mount = self.boundary.is_mount(parent.rel + name, st.st_dev, parent.st.st_dev)
            dst_fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=parent.dst_fd)
            try:
                if mount:
                    self._note_mount(parent.rel + name)
                else:
                    result = self.data.copy(src_fd, dst_fd, st.st_size, st.st_blocks, (st.st_dev, parent.dst_dev))
                    self.stats.bytes += st.st_size
                    self.stats.reflinked_files += result.reflinked
                    self.stats.sparse_files += result.sparse
                self.meta.apply_fd(src_fd, dst_fd, st)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        self.stats.files += 1
        if st.st_nlink > 1:
            self._links[(st.st_dev, st.st_ino)] = os.path.join(self.target, parent.rel + name)
        self._advance(0 if mount else st.st_size)

    def _copy_other(self, parent: _Dir, name: str, st: os.stat_result) -> None:
        """A symlink, device node, fifo or socket (or a file that turned into one)."""
        mode = st.st_mode
        if st.st_nlink > 1 and self._link_to_first(parent, name, st):
            return
        if stat.S_ISLNK(mode):
            try:
                text = os.readlink(name, dir_fd=parent.src_fd)
            except FileNotFoundError:
                raise _Vanished() from None
            os.symlink(text, name, dir_fd=parent.dst_fd)
            self.stats.symlinks += 1
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=parent.dst_fd)
            self.stats.special += 1
        elif stat.S_ISREG(mode):  # a special file became a regular one meanwhile
            self._copy_file(parent, name)
            return
        elif stat.S_ISDIR(mode):
            raise OSError(errno.EAGAIN, "it changed type while being copied")
        else:
            raise OSError(errno.EINVAL, f"unknown file type {stat.S_IFMT(mode):o}")
        self.meta.apply_at(
            self._ref(parent.src_fd, self.source, parent.rel, name),
            parent.dst_fd,
            name,
            self._ref(parent.dst_fd, self.target, parent.rel, name),
            st,
        )
        if st.st_nlink > 1:
            self._links[(st.st_dev, st.st_ino)] = os.path.join(self.target, parent.rel + name)
        self._advance(0)

    def _link_to_first(self, parent: _Dir, name: str, st: os.stat_result) -> bool:
        """Hard-link ``name`` to the copy of an inode seen before; False if it is new (or the
        target filesystem refuses more links, in which case it is copied again)."""
        first = self._links.get((st.st_dev, st.st_ino))
        if first is None:
            return False
        try:
            os.link(first, name, dst_dir_fd=parent.dst_fd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.EMLINK:
                raise
            return False
        self.stats.hardlinks += 1
        self._advance(0)
        return True

    # ------------------------------------------------------------------ directories

    def _copy_dir(self, parent: _Dir, name: str) -> _Dir:
        rel = parent.rel + name
        src_fd = self._open_source(parent, name, _DIR_FLAGS)
        dst_fd = -1
        try:
            st = os.fstat(src_fd)
            existed = False
            try:
                os.mkdir(name, 0o700, dir_fd=parent.dst_fd)
            except FileExistsError:
                # Only a directory may be reused (lost+found at the root of a new filesystem).
                if not stat.S_ISDIR(os.stat(name, dir_fd=parent.dst_fd, follow_symlinks=False).st_mode):
                    raise
                existed = True
            dst_fd = os.open(name, _DIR_FLAGS, dir_fd=parent.dst_fd)
            dst_dev = os.fstat(dst_fd).st_dev if existed else parent.dst_dev
            if existed:
                drop_default_acl(dst_fd)
            if self.boundary.is_mount(rel, st.st_dev, parent.st.st_dev):
                self._note_mount(rel)
                entries: list = []
            else:
                entries = _list(src_fd)
        except BaseException:
            _close(src_fd)
            _close(dst_fd)
            raise
        self.stats.directories += 1
        return _Dir(src_fd, dst_fd, rel + "/", st, entries, existed, dst_dev)

    def _finish_dir(self, done: _Dir) -> None:
        try:
            self.meta.apply_fd(done.src_fd, done.dst_fd, done.st, exact_xattrs=done.existed)
        except OSError as exc:
            raise copy_error(done.rel.rstrip("/") or self.source, exc) from exc
        finally:
            _close(done.src_fd)
            _close(done.dst_fd)
        if done.rel:
            self._advance(0)

    # ------------------------------------------------------------------ helpers

    def _note_mount(self, rel: str) -> None:
        self.mount_points.append(rel)
        self.stats.mount_points += 1
        log.warning("%s is a mount point in %s; copied as an empty entry without its contents", rel, self.source)

    def _ref(self, dir_fd: int, top: str, rel: str, name: str) -> str:
        """A path to ``name`` in the open directory ``dir_fd`` for calls without ``dir_fd``
        (extended attributes): through ``/proc/self/fd`` when available."""
        if self._proc:
            return f"{_PROC_FD}/{dir_fd}/{name}"
        return os.path.join(top, rel + name)

    def _advance(self, nbytes: int) -> None:
        if self.progress is None:
            return
        self._pending_files += 1
        self._pending_bytes += nbytes
        if self._pending_files >= _FLUSH_FILES or self._pending_bytes >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.progress is not None and (self._pending_files or self._pending_bytes):
            self.progress.advance(self._pending_bytes, self._pending_files)
            self._pending_files = 0
            self._pending_bytes = 0


def _list(dir_fd: int) -> list[os.DirEntry]:
    """A directory's entries in inode order: on ext4 that is close to disk order, and a cold
    copy of 20,000 files measured 24% faster than in readdir order (2.27 s against 2.97 s,
    medians of 3, bench payload on an ext4 loop).  ``DirEntry.inode()`` costs no system call."""
    with os.scandir(dir_fd) as it:
        return sorted(it, key=lambda entry: entry.inode())


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
