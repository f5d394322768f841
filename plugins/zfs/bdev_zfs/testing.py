"""Test helpers: a zfs-fuse daemon (started only when no ZFS answers, stopped only if started
here), a throwaway pool on a sparse file, or, on a machine with kernel ZFS, a throwaway dataset
in a pool named by ``BDEV_TEST_ZFS_POOL``.  Used by bdev's own tests; usable by anyone's."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from bdev.command import run, which
from bdev.testing.processes import stop_from_pidfile

from . import _cli

POOL_ENV = "BDEV_TEST_ZFS_POOL"
"""Names an imported pool (kernel OpenZFS) the tests work in, instead of a zfs-fuse pool."""


@contextlib.contextmanager
def zfs_test_space(workdir: Path, name: str, size: str = "2G") -> Iterator[str]:
    """A dataset that tests make their datasets under, destroyed with them afterwards.

    With ``BDEV_TEST_ZFS_POOL=<pool>``: ``<pool>/<name>`` (``mountpoint=none``) in that
    existing pool; no daemon is started and the pool itself is left alone.  Otherwise: the pool
    ``<name>`` on a sparse file in ``workdir``, served by :func:`zfs_daemon`.
    """
    existing = os.environ.get(POOL_ENV, "").strip()
    if not existing:
        with zfs_daemon(workdir), zfs_pool(name, workdir / f"{name}.img", size) as pool:
            yield pool
        return
    if _cli.probe() is not None:
        raise RuntimeError(f"{POOL_ENV}={existing}, but no ZFS answers: {_cli.probe()}")
    base = f"{existing}/{name}"
    run(["zfs", "create", "-o", "mountpoint=none", base])
    try:
        yield base
    finally:
        _destroy_tree(base)


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
            stop_from_pidfile(pidfile, sig=signal.SIGTERM, timeout=30.0)
            raise RuntimeError(f"zfs-fuse did not answer within {timeout} s")
        time.sleep(0.1)
    try:
        yield "zfs-fuse started here"
    finally:
        stop_from_pidfile(pidfile, sig=signal.SIGTERM, timeout=30.0)


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


def _destroy_tree(top: str) -> None:
    """``zfs destroy -R -f`` the dataset ``top`` and everything below it, after unmounting
    them, retried while busy."""
    for _ in range(25):
        _umount_all(top)
        if run(["zfs", "destroy", "-R", "-f", top], check=False).returncode == 0:
            return
        time.sleep(0.2)
    run(["zfs", "destroy", "-R", "-f", top])


def _umount_all(pool: str) -> None:
    """``zfs umount -f`` every mounted dataset of ``pool`` (a pool or a dataset tree; not
    other datasets)."""
    out = run(["zfs", "list", "-H", "-r", "-o", "name,mounted", pool], check=False).stdout
    for line in reversed(out.splitlines()):
        name, _, mounted = line.partition("\t")
        if mounted == "yes":
            run(["zfs", "umount", "-f", name], check=False)
