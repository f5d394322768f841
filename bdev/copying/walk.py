"""The counting pre-walk that gives a progress bar its totals."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .mounts import MountBoundary


@dataclass(frozen=True)
class TreeSize:
    """What a copy of a tree will process.

    :param bytes: apparent size of the regular files, each hard-linked inode counted once.
    :param entries: entries below the top, of every type.
    """

    bytes: int
    entries: int


def measure(source: str, boundary: MountBoundary) -> TreeSize:
    """Count ``source`` the way the copy will walk it: ``lstat`` only, symlinks not
    followed, mount points counted but not entered.  Entries that vanish are ignored."""
    total = 0
    entries = 0
    seen: set[tuple[int, int]] = set()
    stack = [("", source, os.lstat(source).st_dev)]
    while stack:
        rel, path, dev = stack.pop()
        try:
            it = os.scandir(path)
        except OSError:
            continue
        with it:
            for entry in it:
                entries += 1
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                child = rel + entry.name
                if stat.S_ISDIR(st.st_mode):
                    if not boundary.is_mount(child, st.st_dev, dev):
                        stack.append((child + "/", entry.path, st.st_dev))
                elif stat.S_ISREG(st.st_mode):
                    if boundary.is_mount(child, st.st_dev, dev):
                        continue  # a bind-mounted file: copied empty
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_size
    return TreeSize(total, entries)
