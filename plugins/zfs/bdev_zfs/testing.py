"""Test helpers: a zfs-fuse daemon (started only when no ZFS answers, stopped only if started
here) and a throwaway pool on a sparse file.  Used by bdev's own tests; usable by anyone's."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from bdev.command import run, which

from . import _cli


@contextlib.contextmanager
def zfs_daemon(workdir: Path, timeout: float = 15.0) -> Iterator[str]:
    """Yield how ZFS is served (``kernel or running daemon`` or ``zfs-fuse started here``).

    Starts ``zfs-fuse --pidfile P --no-kstat-mount --enable-xattr`` (bdev copies keep
    xattrs, which zfs-fuse refuses by default) only when no ZFS answers, polls until
    ``zpool list`` works, and on exit stops with SIGTERM the daemon it started (never another).
    """
    if _cli.probe() is None:
        yield "an existing ZFS"
        return
    if not which("zfs-fuse"):
        raise RuntimeError("zfs-fuse is not installed (apt-get install zfs-fuse)")
    pidfile = workdir / "zfs-fuse.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    run(["zfs-fuse", "--pidfile", str(pidfile), "--no-kstat-mount", "--enable-xattr"])
    deadline = time.monotonic() + timeout
    while _cli.probe() is not None:
        if time.monotonic() > deadline:
            _stop(pidfile)
            raise RuntimeError(f"zfs-fuse did not answer within {timeout} s")
        time.sleep(0.1)
    try:
        yield "zfs-fuse started here"
    finally:
        _stop(pidfile)


def _stop(pidfile: Path, timeout: float = 30.0) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


@contextlib.contextmanager
def zfs_pool(name: str, image: Path, size: str = "1G") -> Iterator[str]:
    """A pool ``name`` on the sparse file ``image`` (``zpool create -m none``); destroyed on
    exit after ``zfs umount -a`` (zpool destroy may say busy otherwise)."""
    image = image.absolute()
    run(["truncate", "-s", size, str(image)])
    run(["zpool", "create", "-m", "none", name, str(image)])
    try:
        yield name
    finally:
        for _ in range(25):
            _umount_all(name)
            if run(["zpool", "destroy", "-f", name], check=False).returncode == 0:
                break
            time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):
            image.unlink()


def _umount_all(pool: str) -> None:
    """``zfs umount -f`` every mounted dataset of ``pool`` (not other pools' datasets)."""
    out = run(["zfs", "list", "-H", "-r", "-o", "name,mounted", pool], check=False).stdout
    for line in reversed(out.splitlines()):
        name, _, mounted = line.partition("\t")
        if mounted == "yes":
            run(["zfs", "umount", "-f", name], check=False)
