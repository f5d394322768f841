"""The Linux system calls the runtime needs and Python 3.11 lacks, through ctypes.

Python 3.11 has no ``os.unshare``/``os.setns`` (3.12 added them) and no ``mount``,
``umount2``, ``pivot_root`` or ``sethostname``.  This is the one module that calls libc for
them; every function raises :class:`OSError` with the C library's ``errno`` on failure, as the
``os`` module does.  Process attributes that python-prctl covers (parent-death signal, child
subreaper) are not duplicated here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# namespaces (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: The file under ``/proc/PID/ns/`` of each namespace flag.
NAMESPACE_FILES: dict[int, str] = {
    CLONE_NEWUSER: "user",
    CLONE_NEWCGROUP: "cgroup",
    CLONE_NEWIPC: "ipc",
    CLONE_NEWUTS: "uts",
    CLONE_NEWNET: "net",
    CLONE_NEWPID: "pid",
    CLONE_NEWNS: "mnt",
}

# mount flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)


def _check(result: int, what: str, path: str | os.PathLike[str] | None = None) -> None:
    if result < 0:
        err = ctypes.get_errno()
        if path is None:
            raise OSError(err, f"{what}: {os.strerror(err)}")
        raise OSError(err, f"{what}: {os.strerror(err)}", os.fspath(path))


def _bytes(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """``mount(2)``."""
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), "mount", target)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    """``umount2(2)``."""
    _check(_libc.umount2(_bytes(target), flags), "umount", target)


def unshare(flags: int) -> None:
    """``unshare(2)``: move this process into new namespaces (``CLONE_NEW*``)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """``setns(2)``: join the namespace open at ``fd`` (``nstype`` 0 accepts any kind)."""
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    """``pivot_root(2)``."""
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _bytes(new_root), _bytes(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    """``sethostname(2)`` in this process's UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def has_namespace(kind: str) -> bool:
    """Whether the kernel offers namespaces of ``kind`` (``cgroup``, ``user`` ...)."""
    return os.path.exists(f"/proc/self/ns/{kind}")


_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)


def bpf(cmd: int, attr: ctypes.Array) -> int:  # type: ignore[type-arg]
    """``bpf(2)``: run command ``cmd`` with ``attr``, a buffer holding the packed ``union
    bpf_attr``; returns the result (a file descriptor for ``BPF_PROG_LOAD``).  Added for the
    cgroup v2 device program (:mod:`bdev_runtime.cgroups.bpf`)."""
    result = _libc.syscall(_SYS_BPF, ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    _check(result, "bpf")
    return result
