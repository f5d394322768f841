"""Comparing directory trees in tests: everything ``rsync -aHAXS --numeric-ids`` keeps.

:func:`describe_tree` turns a tree into ``{relative path: Entry}``; :func:`assert_trees_equal`
compares two trees and fails with a readable list of the differences.  Neither follows a
symlink nor is stopped by a missing read permission when run as root.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
MAX_SHOWN = 20


@dataclass(frozen=True)
class Entry:
    """What matters about one entry of a tree.

    :param type: ``file``, ``dir``, ``symlink``, ``char``, ``block``, ``fifo`` or ``socket``.
    :param mode: permission bits including set-user-ID, set-group-ID and sticky.
    :param mtime_ns: modification time (symlinks included: ``lutimes`` sets it).
    :param size: apparent size of a regular file or symlink; None for directories (their
        size depends on the filesystem) and special files.
    :param sha256: of a regular file's content, when described with ``content``.
    :param symlink: the target text of a symlink.
    :param rdev: device number of a device node.
    :param xattrs: every extended attribute (ACLs and capabilities included), by name.
    :param link_group: for an inode with several names in the tree, the smallest of its
        relative paths; None for directories and single-link entries.
    :param sparse: for a regular file, whether fewer blocks are allocated than its size needs.
    """

    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int | None = None
    sha256: str | None = None
    symlink: str | None = None
    rdev: int | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict, hash=False)
    link_group: str | None = None
    sparse: bool | None = None

    def differences(self, other: "Entry") -> list[str]:
        """``field: mine != other's`` for each field that differs."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                if f.name == "mode":
                    mine, theirs = oct(mine), oct(theirs)
                elif f.name == "xattrs":
                    mine, theirs = _xattr_diff(mine, theirs)
                out.append(f"{f.name}: {mine!r} != {theirs!r}")
        return out


def _xattr_diff(a: dict[str, bytes], b: dict[str, bytes]) -> tuple[dict, dict]:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return {k: a.get(k) for k in keys}, {k: b.get(k) for k in keys}


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def describe_tree(path: Path, *, content: bool = True) -> dict[str, Entry]:
    """Every entry of the tree at ``path``, keyed by relative path (``.`` is the top).

    Symlinks are described, never followed; mount points are entered (describe each side of
    a copy the same way).

    :param content: hash regular files' contents (``sha256``); False leaves it None.
    """
    top = os.fspath(path)
    raw: dict[str, tuple[os.stat_result, str]] = {}
    stack = [(".", top)]
    while stack:
        rel, full = stack.pop()
        st = os.lstat(full)
        raw[rel] = (st, full)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(full) as it:
                for entry in it:
                    child = entry.name if rel == "." else f"{rel}/{entry.name}"
                    stack.append((child, entry.path))
    groups: dict[tuple[int, int], str] = {}
    for rel, (st, _full) in raw.items():
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in groups or rel < groups[key]:
                groups[key] = rel
    out = {}
    for rel, (st, full) in raw.items():
        kind = _TYPES.get(stat.S_IFMT(st.st_mode), f"unknown-{stat.S_IFMT(st.st_mode):o}")
        is_file = kind == "file"
        grouped = st.st_nlink > 1 and kind != "dir"
        out[rel] = Entry(
            type=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
            size=st.st_size if kind in ("file", "symlink") else None,
            sha256=_sha256(full) if is_file and content else None,
            symlink=os.readlink(full) if kind == "symlink" else None,
            rdev=st.st_rdev if kind in ("char", "block") else None,
            xattrs=_xattrs(full),
            link_group=groups[(st.st_dev, st.st_ino)] if grouped else None,
            sparse=st.st_blocks * 512 < st.st_size if is_file else None,
        )
    return out


def tree_differences(
    a: Path,
    b: Path,
    *,
    ignore_times_of: Iterable[str] = (),
    content: bool = True,
    time_granularity_ns: int = 1,
) -> list[str]:
    """Human-readable differences between the trees ``a`` and ``b``, empty when equal.

    :param ignore_times_of: relative paths (``.`` for the top) whose ``mtime_ns`` is not
        compared.
    :param time_granularity_ns: compare modification times truncated to this step (a
        filesystem such as squashfs keeps whole seconds: ``1_000_000_000``).
    """
    left = describe_tree(a, content=content)
    right = describe_tree(b, content=content)
    skip_times = set(ignore_times_of)
    problems = []
    for rel in sorted(set(left) | set(right)):
        if rel not in right:
            problems.append(f"{rel}: only in {a}")
        elif rel not in left:
            problems.append(f"{rel}: only in {b}")
        else:
            mine, theirs = left[rel], right[rel]
            if rel in skip_times:
                theirs = replace(theirs, mtime_ns=mine.mtime_ns)
            elif time_granularity_ns > 1 and mine.mtime_ns is not None and theirs.mtime_ns is not None:
                step = time_granularity_ns
                mine = replace(mine, mtime_ns=mine.mtime_ns // step * step)
                theirs = replace(theirs, mtime_ns=theirs.mtime_ns // step * step)
            diffs = mine.differences(theirs)
            if diffs:
                problems.append(f"{rel}: " + "; ".join(diffs))
    return problems


def assert_trees_equal(a: Path, b: Path, *, ignore_times_of: Iterable[str] = ()) -> None:
    """Fail unless the trees ``a`` and ``b`` hold the same entries with the same types,
    modes, owners, modification times, contents, symlink targets, device numbers, extended
    attributes, hard-link groups and sparseness.  Access times are never compared.

    :param ignore_times_of: relative paths whose modification time may differ.
    :raises AssertionError: listing up to 20 differing entries.
    """
    problems = tree_differences(a, b, ignore_times_of=ignore_times_of)
    if not problems:
        return
    shown = problems[:MAX_SHOWN]
    more = len(problems) - len(shown)
    lines = [f"trees differ ({len(problems)} entries): {a} vs {b}", *(f"  {p}" for p in shown)]
    if more:
        lines.append(f"  ... and {more} more")
    raise AssertionError("\n".join(lines))
