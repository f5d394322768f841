"""A container's live state, whoever runs it: bdev's monitor or real LXC.

bdev's monitor answers its own protocol (:mod:`.control`); a container real LXC runs is asked
in LXC's command protocol (the one :mod:`.lxccmd` serves): ``GET_STATE`` and
``GET_INIT_PID``, as ``lxc-info`` does.  The addresses are read in the init's network
namespace (:mod:`.addresses`), so they are shown for both.  bdev's core asks here (lazily,
through :mod:`bdev.runtime`) for ``bdev info``, ``bdev ls``, ``lxc-ls -f`` and the Python
API, and stops a container here before ``lxc-destroy -f`` destroys it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass

from bdev.engine.context import Context
from bdev.errors import BdevError
from bdev.store.layout import ContainerRef
from bdev.store.running import is_running

from . import control, lifecycle, lxccmd
from .addresses import container_addresses
from .state import State

LXC_REQUEST_TIMEOUT = 5.0
STOP_WAIT = 30.0
#: ``struct lxc_cmd_rsp`` read with its pointer-sized field signed (-1: no pid).
SIGNED_RESPONSE = struct.Struct("@iin")
_NUMBERS_TO_STATES = {number: state for state, number in lxccmd.STATE_NUMBERS.items()}


@dataclass(frozen=True)
class Status:
    """What a listing shows about a container's life.

    :param init_pid: the init as the host sees it, while it runs (None otherwise).
    :param managed_by: ``bdev`` (its runtime), ``lxc`` (real LXC), or None (stopped).
    """

    name: str
    state: State
    init_pid: int | None
    managed_by: str | None

    def addresses(self) -> list[str]:
        """The container's IP addresses (no loopback, no IPv6 link-local); empty when it
        does not run, or stopped meanwhile."""
        if not self.init_pid:
            return []
        try:
            return container_addresses(self.init_pid)
        except OSError:
            return []


def lxc_request(ref: ContainerRef, command: int, *, wait: float = LXC_REQUEST_TIMEOUT) -> tuple[int, int] | None:
    """Send LXC's ``command`` (no data) to ``ref``'s command socket and return the answer's
    ``(ret, value)`` (value: the pointer-sized field small results travel in); None when
    nothing answers (it stopped meanwhile)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(wait)
    try:
        sock.connect(control.socket_address(ref))
        sock.sendall(lxccmd.MESSAGE.pack(command, 0, 0))
        answer = b""
        while len(answer) < SIGNED_RESPONSE.size:
            chunk = sock.recv(SIGNED_RESPONSE.size - len(answer))
            if not chunk:
                return None
            answer += chunk
    except (OSError, TimeoutError):
        return None
    finally:
        sock.close()
    ret, _datalen, value = SIGNED_RESPONSE.unpack(answer)
    return ret, value


def _lxc_status(ref: ContainerRef) -> Status:
    """The status of a container real LXC runs, in LXC's own protocol."""
    state_answer = lxc_request(ref, lxccmd.GET_STATE)
    if state_answer is None or state_answer[0] < 0:
        return Status(ref.name, State.RUNNING if is_running(ref) else State.STOPPED, None, "lxc")
    state = _NUMBERS_TO_STATES.get(state_answer[1], State.RUNNING)  # FROZEN and the like: it runs
    pid_answer = lxc_request(ref, lxccmd.GET_INIT_PID)
    pid = pid_answer[1] if pid_answer is not None and pid_answer[0] >= 0 and pid_answer[1] > 0 else None
    return Status(ref.name, state, pid, "lxc")


def status(ctx: Context, ref: ContainerRef) -> Status:
    """``ref``'s live state and init pid, under bdev's runtime or real LXC.

    :raises NotFound: no such container.
    """
    info = lifecycle.info(ctx, ref)
    if info.managed_by == "lxc":
        return _lxc_status(ref)
    return Status(ref.name, info.state, info.init_pid if info.state is not State.STOPPED else None, info.managed_by)


def stop_now(ctx: Context, ref: ContainerRef, *, wait: float = STOP_WAIT) -> None:
    """Kill ``ref`` at once and return once it has stopped, whoever runs it: bdev's monitor
    (:func:`lifecycle.stop`), or real LXC (its ``STOP`` command, as ``lxc-stop -k``).  A
    container that is not running is left as it is.

    :raises BdevError: it did not stop within ``wait`` seconds, or LXC refused.
    """
    current = status(ctx, ref)
    if current.managed_by == "bdev":
        with contextlib.suppress(lifecycle.NotRunning):
            lifecycle.stop(ctx, ref, kill=True, timeout=0)
        return
    if current.managed_by != "lxc":
        return
    answer = lxc_request(ref, lxccmd.STOP, wait=wait)
    if answer is not None and answer[0] < 0:
        raise BdevError(f"real LXC refused to stop it (error {-answer[0]})", container=ref.label)
    deadline = time.monotonic() + wait
    while is_running(ref):
        if time.monotonic() > deadline:
            raise BdevError(f"real LXC did not stop it within {wait:g} s", container=ref.label)
        time.sleep(0.05)
