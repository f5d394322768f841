"""What an aufs clone changed against its lower, read from the upper branch (no mount).

The branch holds exactly the changes: ``.wh.<name>`` is a deleted entry, ``.wh..wh..opq``
marks a directory that replaced the lower one whole (*opaque*: its contents are then all
added), a new entry is *added*, a file whose content or type differs from the lower's is
*modified*, one with the same content but another mode, owner, xattrs or time is *metadata*.
"""

from __future__ import annotations

import filecmp
import os
import stat
from pathlib import Path

from bdev.records import Change

from .whiteouts import META_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX


def branch_diff(upper: Path, lower: Path) -> list[Change]:
    """The changes recorded in the branch ``upper`` over ``lower``, sorted by path."""
    changes: list[Change] = []
    hidden: set[str] = set()  # directories whose lower contents are hidden (opaque)
    for top, dirs, files in os.walk(upper):
        rel = Path(top).relative_to(upper)
        dirs[:] = [d for d in dirs if not d.startswith(META_PREFIX)]
        names = set(dirs) | set(files)
        opaque = OPAQUE_MARKER in names or any(str(rel) == h or str(rel).startswith(h + "/") for h in hidden)
        if OPAQUE_MARKER in names:
            hidden.add(str(rel))
            changes.append(Change(_shown(rel), "opaque"))
        for name in sorted(names):
            if name.startswith(META_PREFIX):
                continue
            if name.startswith(WHITEOUT_PREFIX):
                gone = rel / name[len(WHITEOUT_PREFIX):]
                if not opaque and os.path.lexists(lower / gone) and gone.name not in names:
                    changes.append(Change(_shown(gone), "deleted"))
                continue
            kind = "added" if opaque else _compare(upper / rel / name, lower / rel / name)
            if kind:
                changes.append(Change(_shown(rel / name), kind))
    return sorted(changes, key=lambda c: c.path)


def _shown(rel: Path) -> str:
    return "/" if str(rel) == "." else "/" + str(rel)


def _compare(mine: Path, theirs: Path) -> str | None:
    """``added``, ``modified``, ``metadata`` or None (a copied-up directory, unchanged)."""
    try:
        below = os.lstat(theirs)
    except (FileNotFoundError, NotADirectoryError):
        return "added"
    here = os.lstat(mine)
    if stat.S_IFMT(here.st_mode) != stat.S_IFMT(below.st_mode):
        return "modified"
    if stat.S_ISREG(here.st_mode) and not filecmp.cmp(mine, theirs, shallow=False):
        return "modified"
    if stat.S_ISLNK(here.st_mode) and os.readlink(mine) != os.readlink(theirs):
        return "modified"
    if (here.st_mode, here.st_uid, here.st_gid) != (below.st_mode, below.st_uid, below.st_gid):
        return "metadata"
    if not stat.S_ISDIR(here.st_mode) and (here.st_mtime_ns != below.st_mtime_ns or _xattrs(mine) != _xattrs(theirs)):
        return "metadata"
    return None


def _xattrs(path: Path) -> dict[str, bytes]:
    try:
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}
