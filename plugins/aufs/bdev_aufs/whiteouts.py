"""Turning an aufs writable branch into an overlayfs upper layer, without mounting aufs.

The two filesystems record the same things differently:

==========================  ===================================  ==========================================
what                        aufs (in the branch)                 overlayfs (in the upper)
==========================  ===================================  ==========================================
``name`` was deleted        a file ``.wh.name``                  a character device 0/0 named ``name``
directory replaced whole    a file ``.wh..wh..opq`` inside it    xattr ``trusted.overlay.opaque=y`` on it
its own bookkeeping         ``.wh..wh.aufs``, ``.wh..wh.plnk/``,  (the work directory)
                            ``.wh..wh.orph/`` at the top
==========================  ===================================  ==========================================

:func:`translate_branch` copies the branch with the core's copy engine (owners, modes, times,
xattrs, hard links, device nodes, fifos, sockets and holes kept, reflinked where possible) and
then rewrites the aufs markers in the copy.  Each directory it touches gets its times back,
so the merged view shows the times aufs showed.

Pseudo-links (``.wh..wh.plnk``) are aufs's note that a hard-linked lower file was copied up
through one of its names; ``auplink`` folds them back on a clean unmount.  Leftover ones are
not folded in (the other names keep showing the lower's file, as they would under aufs once
the pseudo-links are gone); :class:`Translation` counts them so the caller can say so.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bdev.copying import copytree
from bdev.fsops import remove_tree

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
META_PREFIX = ".wh..wh."
PSEUDO_LINKS = ".wh..wh.plnk"


@dataclass
class Translation:
    """What :func:`translate_branch` changed: counts for the user, paths for tests."""

    whiteouts: int = 0
    redundant_whiteouts: int = 0
    opaque_dirs: int = 0
    pseudo_links_dropped: int = 0
    dropped: list[str] = field(default_factory=list)


def overlay_xattr(name: str) -> str:
    """The overlayfs attribute ``overlay.<name>``: ``trusted.`` from the initial user
    namespace, ``user.`` inside another one (overlayfs's ``userxattr``)."""
    try:
        initial = Path("/proc/self/uid_map").read_text().split()[:3] == ["0", "0", "4294967295"]
    except OSError:
        initial = True
    return ("trusted." if initial else "user.") + "overlay." + name


def translate_branch(branch: Path, lowers: list[Path], target: Path) -> Translation:
    """Copy the aufs branch ``branch`` into the existing empty directory ``target`` as an
    overlayfs upper layer over ``lowers`` (topmost first): aufs whiteouts become overlay
    whiteouts, opaque markers become the opaque attribute, aufs's own entries are dropped.

    A whiteout that hides nothing in ``lowers`` (or sits in an opaque directory) is dropped
    instead of translated: overlayfs would ignore it too.
    """
    copytree(branch, target)
    result = Translation()
    for top, dirs, files in os.walk(target, topdown=True):
        directory = Path(top)
        rel = directory.relative_to(target)
        names = set(dirs) | set(files)
        marked = sorted(n for n in names if n.startswith(WHITEOUT_PREFIX))
        if not marked:
            continue
        times = os.lstat(directory)
        opaque = OPAQUE_MARKER in names
        for name in marked:
            path = directory / name
            if name == PSEUDO_LINKS and path.is_dir():
                result.pseudo_links_dropped += sum(len(f) for _, _, f in os.walk(path))
            remove_tree(path)  # every marker goes; what it meant is written the overlay way below
            if name == OPAQUE_MARKER:
                continue
            if name.startswith(META_PREFIX):
                result.dropped.append(str(rel / name))
                continue
            hidden = name[len(WHITEOUT_PREFIX):]
            if hidden in names or opaque or not _in_lowers(lowers, rel / hidden):
                result.redundant_whiteouts += 1
                continue
            os.mknod(directory / hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            result.whiteouts += 1
        if opaque:
            os.setxattr(directory, overlay_xattr("opaque"), b"y", follow_symlinks=False)
            result.opaque_dirs += 1
        dirs[:] = [d for d in dirs if not d.startswith(META_PREFIX)]
        os.utime(directory, ns=(times.st_atime_ns, times.st_mtime_ns), follow_symlinks=False)
    return result


def _in_lowers(lowers: list[Path], rel: Path) -> bool:
    """Whether some lower shows an entry at ``rel``, looked up one name at a time as union
    filesystems do (a symlink on the way is an entry of its own, never followed)."""
    for lower in lowers:
        here = lower
        for depth, part in enumerate(rel.parts):
            here = here / part
            try:
                st = os.lstat(here)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                break
            if depth == len(rel.parts) - 1:
                return True
            if not stat.S_ISDIR(st.st_mode):
                break
    return False
