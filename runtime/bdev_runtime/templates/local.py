"""The ``local`` template: a rootfs copied from a local directory or unpacked from a tarball.

``--path`` names either a directory (copied with bdev's copy engine, keeping owners, modes,
xattrs, hard links and sparse files, with reflinks where the filesystem offers them) or a tar
archive, plain or compressed with gzip, xz, zstd or bzip2 (GNU tar recognises the compression
itself from the file's contents; the matching program must be installed).

Archives are unpacked by GNU tar with numeric owners, permissions, xattrs and ACLs kept.  Its
defaults are what keep a hostile archive inside the rootfs, and this module relies on them
rather than inspecting members itself: leading ``/`` is stripped from member names, members
whose names contain ``..`` are refused, and symlinks that point outside the tree (absolute
or with ``..``) are created only after every other member, as placeholders until then, so no
later member can be written through them.  Afterwards nothing here follows a symlink out of
the rootfs: ``etc/hostname`` is written through an ``O_NOFOLLOW`` directory handle.

On failure the rootfs may be partly filled; the engine that called the template removes it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import click

from bdev.command import run, which
from bdev.errors import BdevError, CommandError, InvalidInput
from bdev.templates import Template, TemplateContext

from .._i18n import _, N_
from ._args import TemplateArgs

log = logging.getLogger("bdev.templates.local")

ARGS = TemplateArgs(
    "local",
    [
        click.Option(
            ["--path"],
            metavar="PATH",
            required=True,
            help=_("a directory to copy, or a tar archive (plain, gzip, xz, zstd or bzip2) to unpack"),
        ),
        click.Option(
            ["--no-hostname"],
            is_flag=True,
            default=False,
            help=_("leave etc/hostname as it comes (default: write the container's name to it)"),
        ),
    ],
)


def _gnu_tar() -> str:
    """Path of GNU tar.

    :raises BdevError: there is no tar, or it is not GNU tar.
    """
    tar = which("tar")
    if tar is None:
        raise BdevError(_("template 'local' needs GNU tar to unpack archives, and tar is not installed"))
    version = run([tar, "--version"], check=False).stdout
    if "GNU tar" not in version:
        raise BdevError(_("template 'local' needs GNU tar to unpack archives, and {tar} is not GNU tar").format(
            tar=tar))
    return tar


def _first_error(stderr: str) -> str:
    """The most telling line of tar's standard error (its first), without tar's summary lines."""
    skip = ("Exiting with failure status", "Error is not recoverable", "Child returned status")
    for line in stderr.splitlines():
        line = line.strip()
        if line and not any(s in line for s in skip):
            return line.rstrip(".")
    return _("tar failed")


def unpack(archive: Path, rootfs: Path) -> None:
    """Unpack ``archive`` into ``rootfs`` with GNU tar, keeping owners, modes, xattrs and ACLs.

    Owners are restored (``--same-owner``) only when running as root; an ordinary user gets
    the files as its own, as tar does by default.

    :raises BdevError: the archive is corrupt, truncated, not a tar archive, or compressed
        with something not installed.
    """
    argv = [
        _gnu_tar(),
        "--extract",
        "--file",
        str(archive),
        "--directory",
        str(rootfs),
        "--numeric-owner",
        "--same-permissions",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
    ]
    if os.geteuid() == 0:
        argv.insert(2, "--same-owner")
    try:
        run(argv)
    except CommandError as exc:
        detail = _first_error(exc.stderr)
        raise BdevError(_("template 'local': cannot unpack {archive} as a tar archive: {detail}").format(
            archive=archive, detail=detail)) from None


def copy_directory(source: Path, rootfs: Path) -> None:
    """Copy the tree under ``source`` into ``rootfs`` with bdev's copy engine.

    :raises BdevError: the copy failed.
    """
    from bdev.copying import copytree

    try:
        stats = copytree(source, rootfs)
    except BdevError:
        raise
    except OSError as exc:
        where = exc.filename or source
        raise BdevError(_("cannot copy {source}: {where}: {error}").format(
            source=source, where=where, error=exc.strerror or exc)) from None
    log.info("copied %s: %s", source, stats.describe())


@contextlib.contextmanager
def _etc_dir(rootfs: Path) -> Iterator[int | None]:
    """A handle on the rootfs's ``etc`` directory, opened without following a symlink, or
    None if there is no real ``etc`` directory."""
    try:
        etc = os.open(rootfs / "etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            log.info("no etc directory in %s", rootfs)
            yield None
            return
        raise BdevError(_("cannot open {value}: {cause}").format(value=rootfs / 'etc', cause=exc.strerror)) from None
    try:
        yield etc
    finally:
        os.close(etc)


def read_etc_file(rootfs: Path, name: str) -> str | None:
    """The text of the regular file ``etc/NAME`` in ``rootfs``, or None if there is none
    (a symlink there is not followed and counts as none)."""
    with _etc_dir(rootfs) as etc:
        if etc is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=etc)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read(1 << 20).decode("utf-8", "replace")


def write_etc_file(rootfs: Path, name: str, text: str) -> bool:
    """Write ``text`` to ``etc/NAME`` if the rootfs has a real ``etc`` directory.

    ``etc`` must not be a symlink and an existing ``etc/NAME`` that is not a regular file (a
    symlink) is replaced, not followed, so an untrusted tree cannot redirect the write
    outside the rootfs.

    :return: whether it was written.
    """
    with _etc_dir(rootfs) as etc:
        if etc is None:
            return False
        try:
            try:
                st = os.stat(name, dir_fd=etc, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    os.unlink(name, dir_fd=etc)
            except FileNotFoundError:
                pass
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=etc)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        except OSError as exc:
            raise BdevError(_("cannot write {value}: {error}").format(
                value=rootfs / 'etc' / name, error=exc.strerror or exc)) from None
    return True


def write_hostname(rootfs: Path, name: str) -> bool:
    """Write ``name`` to ``etc/hostname`` (see :func:`write_etc_file`); whether it was written."""
    return write_etc_file(rootfs, "hostname", name + "\n")


def build(ctx: TemplateContext) -> None:
    """Fill ``ctx.rootfs`` from ``--path`` and, unless ``--no-hostname``, set its hostname.

    :raises BdevError: bad arguments, a missing or unreadable path, or a failed copy/unpack.
    """
    options = ARGS.parse(ctx.args)
    source = Path(options["path"]).expanduser()
    try:
        st = source.stat()
    except FileNotFoundError:
        raise InvalidInput(_("template 'local': {source} does not exist").format(source=source)) from None
    except OSError as exc:
        raise BdevError(_("template 'local': cannot read {source}: {error}").format(
            source=source, error=exc.strerror or exc)) from None

    if stat.S_ISDIR(st.st_mode):
        if not os.access(source, os.R_OK | os.X_OK):
            raise BdevError(_("template 'local': directory {source} is not readable").format(source=source))
        if ctx.rootfs.resolve().is_relative_to(source.resolve()):
            raise InvalidInput(
                _("template 'local': {source} contains the new rootfs {rootfs}, so it cannot be copied into it").format(
                    source=source, rootfs=ctx.rootfs)
            )
        copy_directory(source, ctx.rootfs)
    elif stat.S_ISREG(st.st_mode):
        if not os.access(source, os.R_OK):
            raise BdevError(_("template 'local': {source} is not readable").format(source=source))
        unpack(source, ctx.rootfs)
    else:
        raise InvalidInput(_("template 'local': {source} is neither a directory nor a tar archive").format(
            source=source))

    if not options["no_hostname"]:
        write_hostname(ctx.rootfs, ctx.name)


LOCAL = Template(
    "local",
    N_("a rootfs copied from a local directory or unpacked from a tarball"),
    build=build,
    usage=ARGS.usage(),
)
