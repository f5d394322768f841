"""What changed in an overlay rootfs against its lowers, read from the upper directory.

The upper holds exactly the changes: a new entry is *added*; a file whose content differs from
the one it hides is *modified*; one with the same content but another mode, owner, xattrs or
times, or a metacopy file (``overlay.metacopy``: attributes copied up, data still below), is
*metadata*; a whiteout (character device 0/0, or a zero-size file with ``overlay.whiteout``)
is *deleted*; a directory with ``overlay.opaque=y`` hides the lower one whole (*opaque*, its
contents then all added); one with ``overlay.redirect`` was *renamed* from the path it names
(``redirect_dir=on``).  Attributes are read under ``trusted.overlay.`` and, for mounts made in a
user namespace, ``user.overlay.``.

The lowers are looked up as the kernel stacks them: whiteouts, opaque directories and
redirects inside lower layers (copied uppers of earlier clones) are honoured.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bdev.records import Change

from ._util import get_xattr, is_opaque, is_whiteout, plain_xattrs

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Found:
    """An entry found in the lower stack."""

    path: Path
    st: os.stat_result


class LowerStack:
    """The merged view of the lower layers alone (topmost first), for lookups by path."""

    def __init__(self, roots: list[Path]):
        self.roots = roots

    def lookup(self, rel: str) -> Found | None:
        """The entry the lowers show at ``rel`` (``a/b``, relative to the root), or None."""
        parts = [p for p in rel.split("/") if p]
        # the merged directory being walked: (layer index, directory in that layer)
        stack: list[tuple[int, Path]] = [(i, root) for i, root in enumerate(self.roots) if root.is_dir()]
        if not parts:
            return Found(stack[0][1], os.lstat(stack[0][1])) if stack else None
        for depth, name in enumerate(parts):
            last = depth == len(parts) - 1
            parents = dict(stack)
            found: list[tuple[int, Path]] = []
            redirect: str | None = None
            for index in range(len(self.roots)):
                if redirect is not None and redirect.startswith("/"):
                    candidate = self.roots[index] / redirect.lstrip("/")
                elif index in parents:
                    candidate = parents[index] / (redirect if redirect is not None else name)
                else:
                    continue
                try:
                    st = os.lstat(candidate)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if is_whiteout(candidate, st):
                    break
                if not stat.S_ISDIR(st.st_mode):
                    if not found and last:
                        return Found(candidate, st)
                    break
                found.append((index, candidate))
                if is_opaque(candidate):
                    break
                target = get_xattr(candidate, "redirect")
                if target:
                    redirect = os.fsdecode(target)
            if not found:
                return None
            if last:
                return Found(found[0][1], os.lstat(found[0][1]))
            stack = found
        return None


def diff(upper: Path, lowers: list[Path]) -> list[Change]:
    """Every change the upper directory ``upper`` makes over ``lowers`` (topmost first)."""
    stack = LowerStack(lowers)
    changes: list[Change] = []
    _walk(upper, "", "", stack, changes)
    renamed_from = {c.source for c in changes if c.kind == "renamed"}
    return [c for c in changes if not (c.kind == "deleted" and c.path in renamed_from)]


def _walk(directory: Path, rel: str, lower_rel: str | None, stack: LowerStack, out: list[Change]) -> None:
    """Report the entries of the upper directory ``directory`` (merged path ``rel``), whose
    lower counterpart is at ``lower_rel`` (None: hidden, everything below is new)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        path = f"{rel}/{entry.name}"
        st = entry.stat(follow_symlinks=False)
        below_rel = None if lower_rel is None else f"{lower_rel}/{entry.name}".lstrip("/")
        redirect = get_xattr(entry.path, "redirect")
        if redirect:
            text = os.fsdecode(redirect)
            below_rel = text.lstrip("/") if text.startswith("/") else f"{lower_rel or ''}/{text}".lstrip("/")
        below = stack.lookup(below_rel) if below_rel is not None else None

        if is_whiteout(entry.path, st):
            if below is not None:
                out.append(Change(path, "deleted"))
            continue
        if redirect and below is not None:
            out.append(Change(path, "renamed", source="/" + below_rel))
        if stat.S_ISDIR(st.st_mode):
            _directory(entry.path, path, st, below, below_rel, bool(redirect) and below is not None, stack, out)
            continue
        if redirect and below is not None:
            if get_xattr(entry.path, "metacopy") is None and _content_differs(entry.path, st, below):
                out.append(Change(path, "modified"))
            continue
        if below is None:
            out.append(Change(path, "added"))
        elif get_xattr(entry.path, "metacopy") is not None:
            out.append(Change(path, "metadata"))
        else:
            kind = _compare(entry.path, st, below)
            if kind:
                out.append(Change(path, kind))


def _directory(
    real: str, path: str, st: os.stat_result, below: Found | None, below_rel: str | None,
    renamed: bool, stack: LowerStack, out: list[Change],
) -> None:
    if below is None:
        if not renamed:
            out.append(Change(path, "added"))
        _walk(Path(real), path, None, stack, out)
        return
    if is_opaque(real):
        out.append(Change(path, "opaque"))
        _walk(Path(real), path, None, stack, out)
        return
    if not stat.S_ISDIR(below.st.st_mode):
        out.append(Change(path, "modified"))  # a directory now where a file was
        _walk(Path(real), path, None, stack, out)
        return
    if not renamed and _attributes_differ(real, st, below):
        out.append(Change(path, "metadata"))
    _walk(Path(real), path, below_rel, stack, out)


def _attributes_differ(path: str, st: os.stat_result, below: Found) -> bool:
    other = below.st
    return (
        stat.S_IMODE(st.st_mode) != stat.S_IMODE(other.st_mode)
        or (st.st_uid, st.st_gid) != (other.st_uid, other.st_gid)
        or plain_xattrs(path) != plain_xattrs(below.path)
    )


def _compare(path: str, st: os.stat_result, below: Found) -> str | None:
    """``modified`` when the content (or type) differs from the hidden entry, ``metadata``
    when only attributes or times do, None when nothing visible changed."""
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(below.st.st_mode) or _content_differs(path, st, below):
        return "modified"
    if _attributes_differ(path, st, below) or st.st_mtime_ns != below.st.st_mtime_ns:
        return "metadata"
    return None


def _content_differs(path: str, st: os.stat_result, below: Found) -> bool:
    other = below.st
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(other.st_mode):
        return True
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path) != os.readlink(below.path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return st.st_rdev != other.st_rdev
    if not stat.S_ISREG(st.st_mode):
        return False
    if st.st_size != other.st_size:
        return True
    with open(path, "rb") as a, open(below.path, "rb") as b:
        while True:
            chunk = a.read(_CHUNK)
            if chunk != b.read(_CHUNK):
                return True
            if not chunk:
                return False
