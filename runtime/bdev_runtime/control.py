"""The monitor's command socket: the name LXC binds, bdev's small protocol on it.

The monitor binds the abstract unix socket LXC 5 binds for a running container
(:func:`bdev.store.running.command_socket_name`), so ``bdev``'s :func:`is_running` and real
LXC both see the container as running, and a second start by either one finds the name taken.

bdev's protocol is one JSON object per line each way: a request ``{"op": "state"}``,
``{"op": "stop", "timeout": 10, "kill": false}`` ..., answered by ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from typing import Any

from bdev.errors import Busy
from bdev.store.layout import ContainerRef
from bdev.store.running import command_socket_name, is_running
from ._i18n import _

REQUEST_TIMEOUT = 10.0
MAX_MESSAGE = 65536


def socket_address(ref: ContainerRef) -> bytes:
    """The abstract address (leading NUL) of ``ref``'s command socket."""
    return b"\0" + command_socket_name(ref)[1:].encode()


def bind_command_socket(ref: ContainerRef) -> socket.socket:
    """Bind and listen on ``ref``'s command socket.

    :raises Busy: the name is taken: the container is running (under bdev or real LXC).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(socket_address(ref))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Busy(_("is already running"), container=ref.name) from None
        raise
    sock.listen(16)
    return sock


def close_command_socket(sock: socket.socket, ref: ContainerRef, wait: float = 5.0) -> None:
    """Close the listening socket and wait (up to ``wait`` seconds) until its name is free.

    A process forked from the monitor without ``exec`` (a netlink helper that joins the
    container's network namespace) holds a copy for a moment; until it exits, the name stays
    bound and the container would still look running.
    """
    sock.close()
    deadline = time.monotonic() + wait
    while is_running(ref) and time.monotonic() < deadline:
        time.sleep(0.01)


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any] | None:
    """A protocol line as a dict, or None when it is not one (LXC's binary protocol, noise)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def request(ref: ContainerRef, op: str, *, wait: float = REQUEST_TIMEOUT, **args: Any) -> dict[str, Any] | None:
    """Send ``op`` with ``args`` to ``ref``'s monitor and return its answer (waiting up to
    ``wait`` seconds).

    None when nothing listens (the container is stopped), when the listener does not speak
    bdev's protocol (real LXC's monitor), or when it closed without answering.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(wait)
    try:
        try:
            sock.connect(socket_address(ref))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        sock.sendall(encode({"op": op, **args}))
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_MESSAGE:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError, TimeoutError, socket.timeout):
        return None
    finally:
        sock.close()
    return decode(data.split(b"\n", 1)[0]) if data else None
