"""Reaching the cluster and the host from inside a container's new namespaces.

The runtime mounts a rootfs in the container's init, after it unshared its namespaces: its
network namespace has no route to the Ceph cluster.  The cluster is the host's storage, as it
is for the kernel's rbd driver (which always talks from the host's namespace), so the
connection and the rbd-fuse daemon are made in the host's network namespace (that of pid 1 of
the ``/proc`` this process sees) and the caller's namespace is entered again afterwards.
Sockets keep the namespace they were made in; threads and children started meanwhile stay in
the host's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

from bdev.errors import BdevError

from ._cluster import BACKEND
from ._i18n import _

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000


def _setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _outer(kind: str, own: str) -> str | None:
    """The ``/proc/<pid>/ns/<kind>`` file of the nearest ancestor whose namespace ``kind``
    is not ``own`` and that runs outside this process's PID namespace (the runtime's monitor,
    from which a container's namespaces were made), or None: a command that merely runs in
    another network namespace on the host (``ip netns exec``) stays in it."""
    pid = host_pid()
    mine, pids = os.readlink(own), os.readlink("/proc/self/ns/pid")
    for _depth in range(64):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid <= 0:
                return None
            path = f"/proc/{pid}/ns/{kind}"
            if os.readlink(path) != mine:
                return path if os.readlink(f"/proc/{pid}/ns/pid") != pids else None
        except (OSError, ValueError, IndexError):
            return None
    return None


def enter_host_mounts() -> None:
    """Move this (single-threaded) process into the host's mount namespace when it runs in a
    container's (a watchdog started by a container's init: the container's ``pivot_root``
    would hide the host's paths from it); otherwise stay."""
    with contextlib.suppress(OSError):
        path = _outer("mnt", "/proc/self/ns/mnt")
        if path is not None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNS)
            finally:
                os.close(fd)


@contextlib.contextmanager
def host_network() -> Iterator[None]:
    """Run the block in the host's network and UTS namespaces when this thread is in a
    container's (the UTS one so that locks name the host, not the container).

    :raises BdevError: the host's namespaces cannot be entered (an unprivileged container).
    """
    with _outer_namespace("net", CLONE_NEWNET), _outer_namespace("uts", CLONE_NEWUTS):
        yield


@contextlib.contextmanager
def _outer_namespace(kind: str, nstype: int) -> Iterator[None]:
    own_path = f"/proc/thread-self/ns/{kind}"
    outer = _outer(kind, own_path)
    if outer is None:
        yield
        return
    own = os.open(own_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            host = os.open(outer, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(host, nstype)
            finally:
                os.close(host)
        except OSError as exc:
            raise BdevError(_("cannot reach the Ceph cluster from the host's namespaces ({cause})").format(
                cause=exc.strerror), backend=BACKEND) from None
        try:
            yield
        finally:
            _setns(own, nstype)
    finally:
        os.close(own)


def host_pid() -> int:
    """This process's id as the host's ``/proc`` numbers it (a container's init is 1 in its own
    PID namespace; records other processes check must carry the host's number)."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()
