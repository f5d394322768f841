"""Overlay mounts for an unprivileged user, in a helper process's private user namespace.

An ordinary user cannot mount in the machine's mount namespace, but may create a user
namespace (mapping itself to root there) with a private mount namespace, and mount an overlay
in it with ``userxattr`` (overlayfs keeps its attributes under ``user.overlay.``).  The helper
is a forked child that does exactly that and then waits; the caller reaches the mount through
the helper's root directory link in ``/proc/<helper>`` joined with the mount point (the same user may look into its own process's mount
namespace).  Closing the pipe ends the helper, and the namespace and its mount go with it, so
nothing can be left mounted, even if the caller is killed.

No external program is run: the child uses ``unshare(2)`` and ``mount(2)`` through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from bdev.errors import BdevError
from bdev.mounts import temporary_mountpoint

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 0x1
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
_PAGE = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _fail(stage: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{stage}: {os.strerror(err)}")


def _child(status_w: int, wait_r: int, target: str, options: str, readonly: bool, uid: int, gid: int) -> None:
    """Runs in the forked helper: enter a user + mount namespace, mount, report, wait."""
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
            _fail("creating a user namespace")
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            _fail("making the mount namespace private")
        flags = _MS_RDONLY if readonly else 0
        if _libc.mount(b"overlay", target.encode(), b"overlay", flags, options.encode()) != 0:
            _fail("mounting the overlay")
        os.write(status_w, b"ok")
    except OSError as exc:
        os.write(status_w, f"{exc.errno or errno.EIO} {exc.strerror}".encode(errors="replace")[:_PAGE])
        os._exit(1)
    os.close(status_w)
    while True:  # wait until the caller closes its end of the pipe (or dies)
        try:
            if not os.read(wait_r, 1):
                break
        except InterruptedError:
            continue
    os._exit(0)


@contextlib.contextmanager
def namespace_mount(options: str, *, readonly: bool, container: str | None = None) -> Iterator[Path]:
    """Mount an overlay with ``options`` (``userxattr`` is added) in a private user namespace
    and yield a path through which this process reaches it.

    :raises BdevError: the namespace or the mount could not be made; one sentence with the cause.
    """
    options = f"{options},userxattr"
    if len(options.encode()) >= _PAGE:
        raise BdevError(
            "the overlay's layer paths are too long for one mount call (over 4096 bytes of options)",
            container=container, backend="overlay",
        )
    with temporary_mountpoint("overlay-userns") as mountpoint:
        tmp = str(mountpoint)
        status_r, status_w = os.pipe()
        wait_r, wait_w = os.pipe()
        uid, gid = os.geteuid(), os.getegid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                _close_all_but(status_w, wait_r)
                _child(status_w, wait_r, tmp, options, readonly, uid, gid)
            finally:
                os._exit(1)
        os.close(status_w)
        os.close(wait_r)
        try:
            report = _read_all(status_r)
            if report != b"ok":
                os.close(wait_w)
                wait_w = -1
                os.waitpid(pid, 0)
                cause = report.decode(errors="replace").partition(" ")[2] or "the helper process died"
                raise BdevError(f"cannot mount the overlay in a user namespace ({cause})", container=container, backend="overlay")
            yield Path(f"/proc/{pid}/root{tmp}")
        finally:
            os.close(status_r)
            if wait_w >= 0:
                os.close(wait_w)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


def _close_all_but(*keep: int) -> None:
    """In the helper: close every inherited descriptor except ``keep``, so that another
    helper's pipe (or the caller's files) are not held open by this one."""
    limit = os.sysconf("SC_OPEN_MAX")
    start = 3
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, limit)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, _PAGE)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
