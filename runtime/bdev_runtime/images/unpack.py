"""Unpacking a root filesystem tarball into a rootfs, strictly.

Python's ``tarfile`` trusts an archive's names and links, and this Python (3.11.2) has no
extraction filters, so every member is checked here, in a first pass that writes nothing:

* names are relative and never contain ``..`` (``./`` prefixes are fine);
* no member lies beneath a symlink of the archive, and no name repeats a non-directory
  (either would let a later member be written through a link);
* a hard link names an earlier regular file of the archive;
* a relative symlink resolves inside the rootfs from where it stands; an absolute one is
  kept as written, since the container resolves it against its own root, and nothing here
  ever follows it;
* only files, directories, symlinks, hard links, device nodes and fifos are accepted.

The second pass extracts with numeric owners, modes, times and ``SCHILY.xattr`` extended
attributes, checks that every parent directory resolves inside the rootfs before writing,
and reports progress.  An ordinary user gets the files as its own and no device nodes (the
container's ``/dev`` comes from ``lxc.autodev``), as with LXC's unprivileged images.  xz, gzip and bzip2 are read with the standard library, zstd with the
``zstandard`` module.  On failure the rootfs is left partly filled: the caller (the create
engine) removes it.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO

from bdev.copying import NullProgress, Progress
from bdev.errors import BdevError
from .._i18n import _

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XATTR_PREFIX = "SCHILY.xattr."
_ALLOWED_TYPES = {
    tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE,
    tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE,
}


class UnsafeArchive(BdevError):
    """A member of the archive could write outside the rootfs, or is of a refused kind."""


@dataclass
class MemberChecker:
    """The per-member rules, fed the members in archive order."""

    archive: str
    symlinks: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=set)
    total_bytes: int = 0
    count: int = 0

    def refuse(self, member: tarfile.TarInfo, why: str) -> UnsafeArchive:
        return UnsafeArchive(_("archive {archive} is refused: member {member!r} {why}").format(
            archive=self.archive, member=member.name, why=why))

    def clean_name(self, member: tarfile.TarInfo, name: str, link: bool = False) -> str:
        """``name`` relative and normalised (``.`` for the top); ``link``: it is the target of
        the hard link ``member``.

        :raises UnsafeArchive: it is absolute or has a ``..`` component.
        """
        if name.startswith("/"):
            raise self.refuse(member, _("is a hard link that has an absolute path {name!r}").format(name=name)
                              if link else _("has an absolute path"))
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, _("is a hard link that climbs out of the rootfs with '..'")
                              if link else _("climbs out of the rootfs with '..'"))
        if any("\0" in p for p in parts):
            raise self.refuse(member, _("has a NUL byte in its name"))
        return "/".join(parts) or "."

    def check(self, member: tarfile.TarInfo) -> str:
        """The member's clean name, once it passes every rule.

        :raises UnsafeArchive: it breaks one, named in the message.
        """
        if member.type not in _ALLOWED_TYPES:
            raise self.refuse(member, _("is of a refused type {type!r}").format(type=member.type))
        name = self.clean_name(member, member.name)
        parent = name
        while (parent := posixpath.dirname(parent)):
            if parent in self.symlinks or parent in self.files or parent in self.others:
                raise self.refuse(member, _("lies beneath {parent!r}, which the archive made a non-directory").format(
                    parent=parent))
        if name in self.symlinks or name in self.files or name in self.others:
            raise self.refuse(member, _("appears twice"))
        if member.issym():
            target = member.linkname
            if not target or "\0" in target:
                raise self.refuse(member, _("is a symlink without a target"))
            if not target.startswith("/") and _climbs_out(posixpath.dirname(name), target):
                raise self.refuse(member, _("is a symlink pointing outside the rootfs ({target!r})").format(
                    target=target))
            self.symlinks.add(name)
        elif member.islnk():
            target = self.clean_name(member, member.linkname, link=True)
            if target not in self.files:
                raise self.refuse(member, _("is a hard link to {linkname!r}, which is not an earlier file of the "
                                            "archive").format(
                    linkname=member.linkname))
            self.others.add(name)
        elif member.isreg():
            self.files.add(name)
            self.total_bytes += member.size
        elif not member.isdir():
            self.others.add(name)
        self.count += 1
        return name


def _climbs_out(directory: str, target: str) -> bool:
    """Whether the relative link ``target``, followed from ``directory`` (relative to the
    rootfs), goes above the rootfs at any step, as the kernel would walk it."""
    depth = 0
    for part in f"{directory}/{target}".split("/"):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return False


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """``path`` as a streaming tar reader, whatever its compression (xz, zstd, gzip, bzip2, none)."""
    raw: IO[bytes] = open(path, "rb")
    try:
        stream: IO[bytes] = raw
        if raw.read(4) == _ZSTD_MAGIC:
            try:
                import zstandard
            except ImportError:
                raise BdevError(_("{path} is compressed with zstd, and the Python module zstandard is not installed "
                                  "(Debian: python3-zstandard)").format(
                    path=path)) from None
            raw.seek(0)
            stream = zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[assignment]
        else:
            raw.seek(0)
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            yield tar
    finally:
        raw.close()


def _corrupt(path: Path, exc: BaseException) -> BdevError:
    detail = str(exc) or type(exc).__name__
    return BdevError(_("archive {path} is corrupt or truncated ({detail})").format(path=path, detail=detail))


_READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error)
with contextlib.suppress(ImportError):
    import zstandard as _zstd

    _READ_ERRORS = (*_READ_ERRORS, _zstd.ZstdError)


def scan(path: Path) -> MemberChecker:
    """Check every member of the archive at ``path`` without writing anything.

    :return: the checker, with the archive's total file bytes and member count.
    :raises UnsafeArchive: a member breaks a rule.
    :raises BdevError: the archive is corrupt, truncated or not a tar archive.
    """
    checker = MemberChecker(str(path))
    try:
        with open_archive(path) as tar:
            for member in tar:
                checker.check(member)
    except _READ_ERRORS as exc:
        raise _corrupt(path, exc) from None
    if checker.count == 0:
        raise BdevError(_("archive {path} holds no files").format(path=path))
    return checker


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _apply_xattrs(member: tarfile.TarInfo, target: str) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PREFIX):
            continue
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        with contextlib.suppress(OSError):  # a filesystem without that namespace keeps the file
            os.setxattr(target, key[len(_XATTR_PREFIX):], raw, follow_symlinks=False)


def _set_mtime(member: tarfile.TarInfo, target: str) -> None:
    """Set the member's modification time to the nanosecond (a pax ``mtime`` is decimal)."""
    text = member.pax_headers.get("mtime")
    try:
        ns = int(Decimal(text) * 1_000_000_000) if text else int(member.mtime) * 1_000_000_000
    except ArithmeticError:
        ns = int(member.mtime * 1_000_000_000)
    os.utime(target, ns=(ns, ns), follow_symlinks=False)


def extract(path: Path, rootfs: Path, progress: Progress | None = None) -> MemberChecker:
    """Check, then extract the archive at ``path`` into the directory ``rootfs``.

    :raises UnsafeArchive: a member breaks a rule (nothing was written).
    :raises BdevError: corrupt or truncated archive, no space left, or another write error.
    """
    totals = scan(path)
    progress = progress or NullProgress()
    root = os.path.realpath(rootfs)
    checker = MemberChecker(str(path))
    directories: list[tuple[tarfile.TarInfo, str]] = []
    as_root = os.geteuid() == 0
    progress.start(totals.total_bytes, totals.count)
    try:
        with open_archive(path) as tar:
            for member in tar:
                name = checker.check(member)  # the file could have changed since the scan
                if name == ".":
                    directories.append((member, root))
                    progress.advance(0)
                    continue
                if not as_root and (member.ischr() or member.isblk()):
                    progress.advance(0)  # as LXC's unprivileged images: no device nodes (autodev)
                    continue
                target = os.path.join(root, name)
                if not _inside(root, os.path.dirname(target)):
                    raise checker.refuse(member, _("would be written outside the rootfs"))
                if member.isdir() and os.path.isdir(target) and not os.path.islink(target):
                    pass  # already there (made for an earlier member); attributes come at the end
                else:
                    tar.extract(member, root, set_attrs=not member.isdir(), numeric_owner=True)
                if member.isdir():
                    directories.append((member, target))
                else:  # tarfile sets times as float seconds (and none on a symlink)
                    _set_mtime(member, target)
                _apply_xattrs(member, target)
                progress.advance(member.size if member.isreg() else 0)
            for member, target in reversed(directories):  # as extractall: deepest first
                if as_root:
                    tar.chown(member, target, numeric_owner=True)
                tar.chmod(member, target)
                _set_mtime(member, target)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BdevError(_("no space left on the rootfs's filesystem while unpacking {path}").format(
                path=path)) from None
        where = exc.filename or rootfs
        raise BdevError(_("cannot unpack {path}: {where}: {error}").format(
            path=path, where=where, error=exc.strerror or exc)) from None
    except _READ_ERRORS as exc:
        raise _corrupt(path, exc) from None
    finally:
        progress.finish()
    return totals
