"""The single-subvolume primitives, done two ways: through the ``btrfsutil`` Python binding
(Debian's python3-btrfsutil) or through the ``btrfs`` command (btrfs-progs), for machines
without the binding.  Both raise :class:`OSError` with the kernel's ``errno`` so callers can
explain a failure the same way whichever does the work.

Recursion over nested subvolumes is not done here but in :mod:`bdev_btrfs._tree`, the same
for both: libbtrfsutil 6.2's recursive snapshot fails for unprivileged users (``EBADF``) and
makes every nested snapshot writable.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from bdev.command import run, which
from bdev.errors import CommandError
from bdev.mounts import mount_points_below

from ._fs import SUBVOLUME_INODE
from ._i18n import _

IMPL_ENV = "BDEV_BTRFS_IMPL"
"""``cli`` forces the btrfs command even where the binding is installed; ``btrfsutil`` (or
``lib``) requires the binding."""

_RDONLY_FLAG = 1  # BTRFS_ROOT_SUBVOL_RDONLY in SubvolumeInfo.flags


class SubvolumeOps(Protocol):
    """What :mod:`bdev_btrfs._tree` needs done to one subvolume at a time."""

    kind: str

    def version(self) -> str: ...
    def create(self, path: Path) -> None: ...
    def snapshot(self, source: Path, target: Path, *, readonly: bool) -> None: ...
    def delete(self, path: Path) -> None: ...
    def is_readonly(self, path: Path) -> bool: ...
    def set_readonly(self, path: Path, readonly: bool) -> None: ...
    def subvolume_id(self, path: Path) -> int: ...
    def nested(self, path: Path) -> list[tuple[str, bool]]: ...


# ---------------------------------------------------------------------------- btrfsutil


class LibOps:
    """The primitives through libbtrfsutil (ioctls, no process per call)."""

    kind = "btrfsutil"

    def __init__(self) -> None:
        self._lib = importlib.import_module("btrfsutil")

    def version(self) -> str:
        try:
            return f"btrfsutil {importlib.metadata.version('btrfsutil')}"
        except importlib.metadata.PackageNotFoundError:
            return _("btrfsutil (version unknown)")

    def create(self, path: Path) -> None:
        self._lib.create_subvolume(str(path))

    def snapshot(self, source: Path, target: Path, *, readonly: bool) -> None:
        self._lib.create_snapshot(str(source), str(target), read_only=readonly)

    def delete(self, path: Path) -> None:
        self._lib.delete_subvolume(str(path))

    def is_readonly(self, path: Path) -> bool:
        return bool(self._lib.get_subvolume_read_only(str(path)))

    def set_readonly(self, path: Path, readonly: bool) -> None:
        self._lib.set_subvolume_read_only(str(path), readonly)

    def subvolume_id(self, path: Path) -> int:
        return int(self._lib.subvolume_id(str(path)))

    def nested(self, path: Path) -> list[tuple[str, bool]]:
        """Subvolumes below ``path`` as (relative path, read-only), parents first.  Works for
        unprivileged users too (the kernel's user ioctls, skipping what they cannot reach)."""
        found = [
            (rel, bool(info.flags & _RDONLY_FLAG))
            for rel, info in self._lib.SubvolumeIterator(str(path), info=True)
        ]
        return _parents_first(found)


# ---------------------------------------------------------------------------- btrfs CLI

_ERRNO_BY_TEXT = {os.strerror(code): code for code in (
    errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EEXIST, errno.ENOENT,
    errno.ENOTEMPTY, errno.EXDEV, errno.EBUSY, errno.EINVAL, errno.EDQUOT, errno.ENOTTY,
)}


class CliOps:
    """The primitives through the ``btrfs`` command, one process per call."""

    kind = "cli"

    def version(self) -> str:
        out = run(["btrfs", "--version"], backend="btrfs").stdout.strip()
        match = re.search(r"v?(\d[\w.+~-]*)", out)
        return f"btrfs-progs CLI {match.group(1) if match else out}"

    def _btrfs(self, *args: str | os.PathLike[str], path: Path) -> str:
        try:
            return run(["btrfs", *args], backend="btrfs").stdout
        except CommandError as exc:
            raise _as_os_error(exc, path) from None

    def create(self, path: Path) -> None:
        self._btrfs("subvolume", "create", path, path=path)

    def snapshot(self, source: Path, target: Path, *, readonly: bool) -> None:
        flags = ["-r"] if readonly else []
        self._btrfs("subvolume", "snapshot", *flags, source, target, path=target)

    def delete(self, path: Path) -> None:
        self._btrfs("subvolume", "delete", path, path=path)

    def is_readonly(self, path: Path) -> bool:
        out = self._btrfs("property", "get", "-ts", path, "ro", path=path)
        return out.strip().endswith("=true")

    def set_readonly(self, path: Path, readonly: bool) -> None:
        # -f: a received subvolume (with a received UUID) may be made writable too
        self._btrfs("property", "set", "-f", "-ts", path, "ro", "true" if readonly else "false", path=path)

    def subvolume_id(self, path: Path) -> int:
        return int(self._btrfs("inspect-internal", "rootid", path, path=path).split()[0])

    def nested(self, path: Path) -> list[tuple[str, bool]]:
        """Subvolumes below ``path`` found by walking the tree (``btrfs subvolume list``
        needs root), parents first."""
        return _parents_first([(rel, self.is_readonly(path / rel)) for rel in walk_subvolumes(path)])


def _as_os_error(exc: CommandError, path: Path) -> OSError:
    """The ``OSError`` a failed btrfs command reports in its message."""
    lines = [line.strip() for line in (exc.stderr or str(exc)).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")] or lines  # not the warnings
    for line in reversed(errors):
        for message, code in _ERRNO_BY_TEXT.items():
            if message in line:
                return OSError(code, message, str(path))
    last = errors[-1] if errors else str(exc)
    return OSError(errno.EIO, last.removeprefix("ERROR: "), str(path))


# ---------------------------------------------------------------------------- shared


def walk_subvolumes(top: Path) -> Iterator[str]:
    """Relative paths of the subvolumes nested below the subvolume ``top``, found by inode
    number and device (a nested subvolume's root is inode 256 on a device of its own); mount
    points and the empty placeholders of earlier non-recursive snapshots are skipped."""
    mounted = {os.path.join(os.path.realpath(top), rel) for rel in mount_points_below(top) or ()}
    stack = [(Path(top), "", os.lstat(top).st_dev)]
    while stack:
        directory, rel, dev = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (PermissionError, FileNotFoundError):
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            child = f"{rel}/{entry.name}" if rel else entry.name
            if mounted and os.path.realpath(entry.path) in mounted:
                continue
            if st.st_dev == dev:
                stack.append((Path(entry.path), child, dev))
            elif st.st_ino == SUBVOLUME_INODE:
                yield child
                stack.append((Path(entry.path), child, st.st_dev))
            # else: an empty placeholder (inode 2) or something foreign: nothing to walk


def _parents_first(found: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    return sorted(found, key=lambda item: (item[0].count("/"), item[0]))


def binding_available() -> bool:
    """Whether the btrfsutil binding can be imported."""
    try:
        importlib.import_module("btrfsutil")
    except ImportError:
        return False
    return True


def choose(forced: str | None = None) -> SubvolumeOps:
    """The implementation to use: ``forced`` (``cli`` or ``btrfsutil``), else the
    ``BDEV_BTRFS_IMPL`` environment variable, else the binding when importable, else the CLI.

    :raises ImportError: the binding was required but cannot be imported.
    """
    wanted = (forced or os.environ.get(IMPL_ENV, "") or "auto").strip().lower()
    if wanted == "cli":
        return CliOps()
    if wanted in ("btrfsutil", "lib"):
        return LibOps()
    return LibOps() if binding_available() else CliOps()


def cli_available() -> bool:
    """Whether the ``btrfs`` command is installed."""
    return which("btrfs") is not None
