"""A container's live state, whoever runs it: bdev's monitor or real LXC.

bdev's monitor answers its own protocol (:mod:`.control`); a container real LXC runs is asked
in LXC's command protocol (:func:`.lxccmd.request`): ``GET_STATE`` and ``GET_INIT_PID``, as
``lxc-info`` does.  The addresses are read in the init's network
namespace (:mod:`.addresses`), so they are shown for both.  bdev's core asks here (lazily,
through :mod:`bdev.runtime`) for ``bdev info``, ``bdev ls``, ``lxc-ls -f`` and the Python
API, and stops a container here before ``lxc-destroy -f`` destroys it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from bdev.engine.context import Context
from bdev.errors import BdevError
from bdev.store.layout import ContainerRef
from bdev.store.running import is_running

from . import lifecycle, lxccmd
from ._i18n import _
from .addresses import container_addresses
from .state import State

STOP_WAIT = 30.0
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


def _lxc_status(ref: ContainerRef) -> Status:
    """The status of a container real LXC runs, in LXC's own protocol."""
    state_answer = lxccmd.request(ref, lxccmd.GET_STATE)
    if state_answer is None or state_answer[0] < 0:
        return Status(ref.name, State.RUNNING if is_running(ref) else State.STOPPED, None, "lxc")
    state = _NUMBERS_TO_STATES.get(state_answer[1], State.RUNNING)  # FROZEN and the like: it runs
    return Status(ref.name, state, lxccmd.lxc_init_pid(ref), "lxc")


def status(ctx: Context, ref: ContainerRef) -> Status:
    """``ref``'s live state and init pid, under bdev's runtime or real LXC.

    :raises NotFound: no such container.
    """
    info = lifecycle.info(ctx, ref)
    if info.managed_by == "lxc":
        return _lxc_status(ref)
    return Status(ref.name, info.state, info.init_pid if info.state is not State.STOPPED else None, info.managed_by)


def memory_usage(lxcpath: str | os.PathLike[str], name: str) -> tuple[int | None, int | None]:
    """``(memory, swap)`` bytes the running container ``name`` of ``lxcpath`` uses (its
    cgroup, under bdev's runtime or real LXC: ``lxc.payload.<name>``); None where unknown."""
    from .cgroups import container_cgroup
    from .spec import load_config

    ref = lifecycle.context_for(lxcpath).ref(name)
    try:
        return container_cgroup(ref, load_config(ref)).memory_usage()
    except (BdevError, OSError):
        return None, None


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
    answer = lxccmd.request(ref, lxccmd.STOP, wait=wait)
    if answer is not None and answer[0] < 0:
        raise BdevError(_("real LXC refused to stop it (error {value})").format(value=-answer[0]), container=ref.label)
    deadline = time.monotonic() + wait
    while is_running(ref):
        if time.monotonic() > deadline:
            raise BdevError(_("real LXC did not stop it within {wait:g} s").format(wait=wait), container=ref.label)
        time.sleep(0.05)
