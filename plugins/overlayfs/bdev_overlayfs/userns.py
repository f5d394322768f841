"""Overlay mounts for an unprivileged user, in a helper process's private user namespace.

An ordinary user cannot mount in the machine's mount namespace, but may create a user
namespace (mapping itself to root there) with a private mount namespace, and mount an overlay
in it with ``userxattr`` (overlayfs keeps its attributes under ``user.overlay.``).  The helper
is a forked child that does exactly that and then waits; the caller reaches the mount through
the helper's root directory link in ``/proc/<helper>`` joined with the mount point (the same user may look into its own process's mount
namespace).  Closing the pipe ends the helper, and the namespace and its mount go with it, so
nothing can be left mounted, even if the caller is killed.

A caller already privileged in a user namespace of its own (the helper of
:func:`bdev.engine.idshift.as_mapped_owner`, which maps a mapped container's ids and the
user's) keeps that namespace: the helper only unshares a mount namespace, so the container's
files keep their owners through the overlay.  A process whose user namespace owns its mount
namespace (a container's first process) mounts directly with :func:`mount_overlay`.

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

from ._i18n import _
from ._util import privileged_in_user_namespace

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 0x1
_MNT_DETACH = 0x2
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
_PAGE = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _fail(stage: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{stage}: {os.strerror(err)}")


def mount_overlay(target: str, options: str, *, readonly: bool) -> None:
    """``mount(2)`` an overlay with ``options`` on ``target`` (``userxattr`` already in them)
    from a user namespace.  No ``mount(8)`` here: a program run from a user namespace where it
    is not root loses the capabilities the mount needs.

    The kernel lets only a mounter whose filesystem ids the namespace maps create the overlay's
    work files, and a mapped container's files belong to the namespace's root: the mount is
    made as that root (``setfsuid``), and the ids restored after it, with the dumpable flag that
    changing them cleared (others of these ids reach the mount through ``/proc/<pid>/root``).
    Where that root cannot search the way to a layer (a container's first process, whose
    owner's lxcpath is private), the layers are opened first with this process's ids and
    named through ``/proc/self/fd`` (a process may always follow its own descriptors).

    :raises OSError: the kernel refused.
    """
    layers = _layer_paths(options)
    descriptors = [os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for path in layers]
    uid, gid = _libc.setfsuid(-1), _libc.setfsgid(-1)
    dumpable = _libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    try:
        _libc.setfsgid(0)
        _libc.setfsuid(0)
        if not all(_searchable(path) for path in layers):
            options = _through_descriptors(options, dict(zip(layers, descriptors)))
        if _libc.mount(b"overlay", target.encode(), b"overlay", _MS_RDONLY if readonly else 0, options.encode()) != 0:
            _fail("mounting the overlay")
    finally:
        _libc.setfsuid(uid)
        _libc.setfsgid(gid)
        _libc.prctl(_PR_SET_DUMPABLE, dumpable, 0, 0, 0)
        for fd in descriptors:
            os.close(fd)


LAYER_OPTIONS = ("lowerdir", "upperdir", "workdir")


def _layer_paths(options: str) -> list[str]:
    """The directories ``lowerdir``, ``upperdir`` and ``workdir`` of ``options`` name."""
    paths = []
    for option in options.split(","):
        key, equals, value = option.partition("=")
        if equals and key in LAYER_OPTIONS:
            paths.extend(value.split(":"))
    return paths


def _searchable(path: str) -> bool:
    """Whether this process (with its current filesystem ids) reaches ``path``."""
    try:
        os.stat(path)
    except PermissionError:
        return False
    return True


def _through_descriptors(options: str, descriptors: dict[str, int]) -> str:
    """``options`` with each layer path replaced by ``/proc/self/fd/N`` of its descriptor."""
    parts = []
    for option in options.split(","):
        key, equals, value = option.partition("=")
        if equals and key in LAYER_OPTIONS:
            option = f"{key}=" + ":".join(f"/proc/self/fd/{descriptors[path]}" for path in value.split(":"))
        parts.append(option)
    return ",".join(parts)


def unmount(target: str) -> None:
    """``umount2(2)`` ``target`` (detached), the counterpart of :func:`mount_overlay`.

    :raises OSError: the kernel refused.
    """
    if _libc.umount2(target.encode(), _MNT_DETACH) != 0:
        _fail("unmounting the overlay")


def _child(status_w: int, wait_r: int, target: str, options: str, readonly: bool, ids: tuple[int, int] | None) -> None:
    """Runs in the forked helper: enter a user namespace mapping ``ids`` (uid, gid) to root
    (None: keep this one) and a mount namespace, mount, report, wait."""
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if _libc.unshare(_CLONE_NEWNS | (_CLONE_NEWUSER if ids else 0)) != 0:
            _fail("creating a user namespace" if ids else "creating a mount namespace")
        if ids:
            uid, gid = ids
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
        if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            _fail("making the mount namespace private")
        mount_overlay(target, options, readonly=readonly)
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
            _("the overlay's layer paths are too long for one mount call (over 4096 bytes of options)"),
            container=container, backend="overlay",
        )
    with temporary_mountpoint("overlay-userns") as mountpoint:
        tmp = str(mountpoint)
        status_r, status_w = os.pipe()
        wait_r, wait_w = os.pipe()
        ids = None if privileged_in_user_namespace() else (os.geteuid(), os.getegid())
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                _close_all_but(status_w, wait_r)
                _child(status_w, wait_r, tmp, options, readonly, ids)
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
                raise BdevError(_("cannot mount the overlay in a user namespace ({cause})").format(cause=cause),
                                container=container, backend="overlay")
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
