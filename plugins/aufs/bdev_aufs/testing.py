"""An aufs container on disk, made by hand as LXC 1.0 left them, for tests (bdev's and yours).

:func:`make_aufs_scenario` writes three trees: a lower (the origin's rootfs), an aufs upper
branch recording a clone's changes the way aufs records them (``.wh.`` whiteouts, an opaque
directory marker, aufs's own ``.wh..wh.*`` entries at the top) and, independently, the merged
view a mounted aufs would show, to compare a conversion against.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from bdev.copying import copytree
from bdev.fsops import remove_tree
from bdev.testing.samples import make_sample_rootfs

STAMP_NS = 1_600_000_000_123_456_789
"""The times of everything the clone wrote, in the branch and in the expected view alike."""

UPPER_DIRS = (".", "etc", "var", "bin", "usr", "usr/share", "usr/share/doc", "srv")
"""Directories the clone's branch holds (copied up): the merged view shows their metadata."""


def make_lower(path: Path) -> Path:
    """The origin's rootfs: the sample tree plus a directory the clone replaces whole."""
    make_sample_rootfs(path)
    (path / "usr/share/doc/sub").mkdir(parents=True)
    (path / "usr/share/doc/old-readme").write_text("replaced by the clone\n")
    (path / "usr/share/doc/sub/old-note").write_text("hidden by the opaque directory\n")
    return path


def write_new_entries(root: Path) -> list[str]:
    """What the clone wrote, identical in the branch and in the merged view: a changed file,
    a file in the replaced directory, and a new directory with hard links, a setuid file, a
    fifo, a socket, an xattr and (as root) a device node and foreign ownership.  Returns the
    relative paths written."""
    privileged = os.geteuid() == 0
    motd = root / "etc/motd"
    with contextlib.suppress(FileNotFoundError):
        motd.unlink()
    motd.write_text("changed in the aufs clone\n")
    os.chmod(motd, 0o640)
    os.setxattr(motd, "user.bdev.note", b"clone")
    (root / "usr/share/doc/fresh.txt").write_text("written after the directory was replaced\n")
    srv = root / "srv"
    (srv / "a").write_text("one inode, two names\n")
    os.link(srv / "a", srv / "b")
    os.setxattr(srv / "a", "user.bdev.x", b"linked")
    (srv / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(srv / "suid", 0o4755)
    os.mkfifo(srv / "fifo")
    _make_socket(srv, "sock")
    written = ["etc/motd", "usr/share/doc/fresh.txt", "srv/a", "srv/b", "srv/suid", "srv/fifo", "srv/sock"]
    if privileged:
        os.chown(srv / "a", 1234, 1234)
        os.mknod(srv / "tty", 0o620 | stat.S_IFCHR, os.makedev(5, 0))
        written.append("srv/tty")
    return written


def _make_socket(directory: Path, name: str) -> None:
    """A unix socket file, bound by a relative name (deep paths exceed sun_path)."""
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(name)
    finally:
        os.chdir(cwd)


def _stamp(root: Path, rels: list[str]) -> None:
    for rel in sorted(rels, key=lambda r: r.count("/"), reverse=True):
        os.utime(root / rel, ns=(STAMP_NS, STAMP_NS), follow_symlinks=False)


def make_aufs_branch(lower: Path, upper: Path) -> None:
    """The clone's aufs branch over ``lower`` (``upper`` must not exist)."""
    upper.mkdir()
    for rel in UPPER_DIRS[1:]:
        (upper / rel).mkdir(parents=True, exist_ok=True)
    for rel in UPPER_DIRS:
        st = os.lstat(lower / rel) if (lower / rel).exists() else os.lstat(lower)
        os.chmod(upper / rel, stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.chown(upper / rel, st.st_uid, st.st_gid)
    base = upper / ".wh..wh.aufs"  # aufs hard-links its whiteouts to this file
    base.write_bytes(b"")
    os.chmod(base, 0o444)
    os.link(base, upper / "etc/.wh.hosts")  # a deleted file
    os.link(base, upper / "var/.wh.log")  # a deleted directory
    os.link(base, upper / "bin/.wh.dangling-link")  # a deleted symlink
    os.link(base, upper / "etc/.wh.never-existed")  # hides nothing
    (upper / "usr/share/doc/.wh..wh..opq").write_bytes(b"")  # replaced whole
    (upper / ".wh..wh.plnk").mkdir(mode=0o700)
    (upper / ".wh..wh.plnk/4242.17").write_text("a pseudo-link auplink never folded back\n")
    (upper / ".wh..wh.orph").mkdir(mode=0o700)
    written = write_new_entries(upper)
    _stamp(upper, [*written, *UPPER_DIRS])


def make_expected_view(lower: Path, expected: Path) -> None:
    """What a mounted aufs shows: the lower with the clone's deletions and writes applied
    (``expected`` must exist and be empty)."""
    copytree(lower, expected)
    os.unlink(expected / "etc/hosts")
    remove_tree(expected / "var/log")
    os.unlink(expected / "bin/dangling-link")
    doc = expected / "usr/share/doc"
    mode = stat.S_IMODE(os.lstat(doc).st_mode)
    remove_tree(doc)
    doc.mkdir()
    os.chmod(doc, mode)
    (expected / "srv").mkdir()
    os.chmod(expected / "srv", stat.S_IMODE(os.lstat(lower).st_mode))
    written = write_new_entries(expected)
    _stamp(expected, [*written, *UPPER_DIRS])


def write_lxc10_config(directory: Path, name: str, lower: Path, upper: Path, *, style: str = "1.0") -> Path:
    """An aufs clone's config as LXC 1.0 (``lxc.rootfs``), 2.0 (``lxc.rootfs`` with
    ``lxc.rootfs.backend``) or 2.1 (``lxc.rootfs.path``) wrote it."""
    lines = [
        "# an aufs clone made by lxc-clone -s -B aufs",
        "lxc.arch = amd64",
        "lxc.network.type = empty",
        "lxc.tty = 4",
        f"lxc.utsname = {name}",
    ]
    if style == "1.0":
        lines.append(f"lxc.rootfs = aufs:{lower}:{upper}")
    elif style == "2.0":
        lines += ["lxc.rootfs.backend = aufs", f"lxc.rootfs = {lower}:{upper}"]
    else:
        lines += ["lxc.rootfs.backend = aufs", f"lxc.rootfs.path = aufs:{lower}:{upper}"]
    config = directory / "config"
    config.write_text("\n".join(lines) + "\n")
    return config
