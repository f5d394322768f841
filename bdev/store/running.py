"""Whether real LXC (or bdev's runtime) is running a container.

A running LXC container's monitor listens on an abstract unix socket, listed in
``/proc/net/unix``.  LXC 5 names it ``@<lxcpath>/<name>/command`` when that fits in a socket
address (under 106 bytes) and otherwise ``@lxc/<h>/command``, where ``<h>`` is the 64-bit
FNV-1a hash of ``<lxcpath>/<name>`` in 16 hex digits (``lxc_make_abstract_socket_name``).
"""

from __future__ import annotations

from pathlib import Path

from .layout import ContainerRef

_SUN_PATH_ROOM = 108 - 2  # sun_path, less the leading NUL and the terminating NUL
_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3


def fnv1a_64(data: bytes) -> int:
    """The 64-bit FNV-1a hash LXC uses for long socket names."""
    value = _FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


def command_socket_name(ref: ContainerRef, suffix: str = "command") -> str:
    """The abstract socket name (with ``@`` for the leading NUL) LXC binds for ``ref``."""
    plain = f"{ref.lxcpath}/{ref.name}/{suffix}"
    if len(plain.encode()) < _SUN_PATH_ROOM:
        return "@" + plain
    digest = fnv1a_64(f"{ref.lxcpath}/{ref.name}".encode())
    return f"@lxc/{digest:016x}/{suffix}"


def is_running(ref: ContainerRef, *, proc_net_unix: Path = Path("/proc/net/unix")) -> bool:
    """Whether ``ref`` has a live LXC command socket."""
    wanted = " " + command_socket_name(ref)
    try:
        with open(proc_net_unix) as fh:
            return any(line.rstrip("\n").endswith(wanted) for line in fh)
    except OSError:
        return False
