"""LXC's own command protocol, answered on the same socket, so that real ``lxc-info`` and
``lxc-stop -k`` work on a container bdev started.

LXC's clients (``lxc_cmd()`` in LXC 5's ``commands.c``) send a ``struct lxc_cmd_req`` (command
number, data length, a pointer-sized field) followed by the data, and read a ``struct
lxc_cmd_rsp`` (return value, data length, pointer-sized field), small results travelling in
the pointer-sized field.  The requests answered here are ``GET_STATE``, ``GET_INIT_PID``,
``GET_INIT_PIDFD`` (the pidfd passed with ``SCM_RIGHTS``), ``STOP`` (the stop signal; the
client waits until the connection closes, which happens once the container has stopped) and
``ADD_STATE_CLIENT`` (``lxc-stop``'s clean shutdown and ``lxc-wait``: the connection stays
open and gets one ``struct lxc_msg`` when the container reaches a state it asked for).
Anything else is answered ``-ENOSYS``: the client reports a failure instead of hanging.

:func:`request` is the client side, asking a container real LXC runs (its state, its init's
pid, to stop).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import TYPE_CHECKING, Protocol

from .control import socket_address
from .state import State

if TYPE_CHECKING:
    from bdev.store.layout import ContainerRef

MESSAGE = struct.Struct("@iiP")  # lxc_cmd_req and lxc_cmd_rsp: int, int, void *
MAX_DATA = 1 << 16

GET_STATE = 3
GET_INIT_PID = 4
GET_INIT_PIDFD = 18
GET_CONFIG_ITEM = 7
STOP = 2
ADD_STATE_CLIENT = 10

MAX_STATE = 8
STATE_LIST = struct.Struct(f"@{MAX_STATE}i")  # lxc_state_t states[MAX_STATE]: 1 = wanted
STATE_MESSAGE = struct.Struct("@i256si")  # struct lxc_msg: type (0: state), name[NAME_MAX + 1], value

#: ``lxc_state_t``: STOPPED, STARTING, RUNNING, STOPPING (then ABORTING, FREEZING ...).
STATE_NUMBERS = {State.STOPPED: 0, State.STARTING: 1, State.RUNNING: 2, State.STOPPING: 3}
_POINTER_MASK = (1 << (8 * struct.calcsize("P"))) - 1
#: ``struct lxc_cmd_rsp`` read with its pointer-sized field signed (-1: no pid).
SIGNED_RESPONSE = struct.Struct("@iin")
REQUEST_TIMEOUT = 5.0


# ---------------------------------------------------------------------------- the client side


def request(ref: "ContainerRef", command: int, *, wait: float = REQUEST_TIMEOUT) -> tuple[int, int] | None:
    """Send LXC's ``command`` (no data) to ``ref``'s command socket and return the answer's
    ``(ret, value)`` (value: the pointer-sized field small results travel in); None when
    nothing answers (it stopped meanwhile)."""
    answer = _exchange(ref, command, b"", wait)
    return None if answer is None else (answer[0], answer[1])


def config_item(ref: "ContainerRef", key: str, *, wait: float = REQUEST_TIMEOUT) -> str | None:
    """The value real LXC's running ``ref`` has for config ``key`` (``GET_CONFIG_ITEM``: its
    live config, with what it generated, such as ``lxc.net.0.veth.pair``), or None."""
    answer = _exchange(ref, GET_CONFIG_ITEM, key.encode() + b"\0", wait)
    if answer is None or answer[0] != 0:
        return None
    return answer[2].split(b"\0", 1)[0].decode(errors="replace")


def _exchange(ref: "ContainerRef", command: int, data: bytes, wait: float) -> tuple[int, int, bytes] | None:
    """One request (the header, then ``data``) and its answer: ``(ret, value, data)``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(wait)
    try:
        sock.connect(socket_address(ref))
        sock.sendall(MESSAGE.pack(command, len(data), 0) + data)
        ret, datalen, value = SIGNED_RESPONSE.unpack(_receive_exactly(sock, SIGNED_RESPONSE.size))
        payload = _receive_exactly(sock, datalen) if 0 < datalen <= MAX_DATA else b""
    except (OSError, TimeoutError, EOFError):
        return None
    finally:
        sock.close()
    return ret, value, payload


def lxc_init_pid(ref: "ContainerRef") -> int | None:
    """The host pid of the init of ``ref``, which real LXC runs (``GET_INIT_PID``), or None."""
    answer = request(ref, GET_INIT_PID)
    return answer[1] if answer is not None and answer[0] >= 0 and answer[1] > 0 else None


# ---------------------------------------------------------------------------- the server side


class Served(Protocol):
    """What the monitor offers to this protocol."""

    state: State

    def init_pid(self) -> int | None: ...

    def stop(self, *, timeout: float, kill: bool) -> None: ...

    def add_state_client(self, client: "StateClient") -> None: ...


class StateClient:
    """A connection waiting for the container to reach one of ``wanted`` (LXC state numbers)."""

    def __init__(self, conn: socket.socket, wanted: set[int], name: str):
        self.conn, self.wanted, self.name = conn, wanted, name

    def notify(self, state: State) -> bool:
        """Tell the client the container is in ``state`` if it waits for it, and close the
        connection; True when done with this client."""
        number = STATE_NUMBERS[state]
        if number not in self.wanted:
            return False
        try:
            self.conn.sendall(STATE_MESSAGE.pack(0, self.name.encode()[:255], number))
        except OSError:
            pass
        self.conn.close()
        return True


def is_lxc_request(first_byte: bytes) -> bool:
    """Whether a connection's first byte starts an LXC request (a little command number)
    rather than bdev's JSON (``{``)."""
    return bool(first_byte) and first_byte != b"{"


def response(ret: int = 0, value: int = 0) -> bytes:
    """A ``struct lxc_cmd_rsp`` with no data and ``value`` in its pointer-sized field."""
    return MESSAGE.pack(ret, 0, value & _POINTER_MASK)


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        data += chunk
    return data


def serve(conn: socket.socket, monitor: Served, name: str) -> bool:
    """Read one LXC request from ``conn`` and answer it; True when the connection stays open
    (``STOP`` until the container has stopped, ``ADD_STATE_CLIENT`` until its state came)."""
    command, datalen, _ = MESSAGE.unpack(_receive_exactly(conn, MESSAGE.size))
    data = _receive_exactly(conn, datalen) if 0 < datalen <= MAX_DATA else b""
    pid = monitor.init_pid()
    if command == GET_STATE:
        conn.sendall(response(0, STATE_NUMBERS[monitor.state]))
    elif command == GET_INIT_PID:
        conn.sendall(response(0, pid if pid else -1))
    elif command == GET_INIT_PIDFD:
        _send_pidfd(conn, pid)
    elif command == STOP:
        monitor.stop(timeout=0, kill=True)
        return True
    elif command == ADD_STATE_CLIENT and len(data) >= STATE_LIST.size:
        flags = STATE_LIST.unpack(data[:STATE_LIST.size])
        wanted = {number for number, flag in enumerate(flags) if flag}
        current = STATE_NUMBERS[monitor.state]
        if current in wanted:
            conn.sendall(response(0, current))
            return False
        conn.sendall(response(0, MAX_STATE))
        monitor.add_state_client(StateClient(conn, wanted, name))
        return True
    else:
        conn.sendall(response(-errno.ENOSYS))
    return False


def _send_pidfd(conn: socket.socket, pid: int | None) -> None:
    try:
        pidfd = os.pidfd_open(pid) if pid else -1
    except OSError:
        pidfd = -1
    if pidfd < 0:
        conn.sendall(response(-errno.EBADF))
        return
    try:
        socket.send_fds(conn, [response(0)], [pidfd])
    finally:
        os.close(pidfd)
