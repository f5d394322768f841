"""Start, stop, ask about and clean up containers: what the commands call.

Every entry point first cleans up after a monitor that died without doing so
(:func:`clean_stale`): its record is still there but its process is gone.  The kernel has
already ended the container with it (parent-death signals) and dropped its mount namespace;
what may remain is the cgroup, the host side of the network, and an ephemeral container that
is to be destroyed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from bdev.engine.context import Context
from bdev.errors import BdevError, Busy, from_os_error
from bdev.store.layout import ContainerRef
from bdev.store.running import is_running

from . import control, lxccmd
from ._i18n import _
from .ephemeral import destroy_ephemeral, ephemeral_name
from .monitor import DEFAULT_STOP_TIMEOUT, Monitor, prepare, release_host_side
from .state import State, all_records, process_start_time, read_record, remove_record

if TYPE_CHECKING:
    from .attach import AttachOptions
    from .ephemeral import CopyMount

log = logging.getLogger("bdev.runtime")

START_TIMEOUT = 120.0
STOP_GRACE = 15.0


class NotRunning(BdevError):
    """The container is not running (``lxc-stop`` of a stopped container exits 2, as LXC's)."""

    exit_code = 2


@dataclass(frozen=True)
class Info:
    """What ``lxc-info`` shows: the state, and the init's pid while running.

    :param managed_by: ``bdev``, ``lxc`` (real LXC runs it: bdev cannot ask for more), or None.
    """

    name: str
    state: State
    init_pid: int | None
    managed_by: str | None


# ---------------------------------------------------------------------------- stale state


F = TypeVar("F", bound=Callable[..., Any])


def _os_errors_as_sentences(function: F) -> F:
    """An ``OSError`` escaping ``function(ctx, ref, ...)`` (a container another user owns:
    permission denied) becomes one sentence naming ``ref`` and the path."""

    @functools.wraps(function)
    def wrapper(ctx: Context, ref: ContainerRef, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(ctx, ref, *args, **kwargs)
        except OSError as exc:
            raise from_os_error(exc, container=ref.label) from None

    return wrapper  # type: ignore[return-value]


def clean_stale(ctx: Context, ref: ContainerRef) -> bool:
    """Clean up after ``ref``'s monitor if it died without doing so; True if it had to.

    Safe against a concurrent start: a record whose monitor still runs is left alone.
    """
    record = read_record(ref)
    if record is None or record.monitor_alive():
        return False
    log.info("container %s: its monitor (pid %d) is gone; cleaning up", ref.label, record.monitor_pid)
    if record.init_alive():  # cannot happen with parent-death signals, but never leave it running
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.init_pid, 9)
    try:
        from .parts import plan_parts
        from .spec import load_config

        parts = plan_parts(ref, load_config(ref))
    except BdevError as exc:  # the config is gone or changed: nothing more can be planned
        log.warning("container %s: cannot plan its cleanup: %s", ref.label, exc)
    else:
        for problem in release_host_side(parts):
            log.warning("container %s: %s", ref.label, problem)
    destroy_ephemeral(ref)
    remove_record(ref)
    return True


def sweep_stale(ctx: Context) -> list[ContainerRef]:
    """:func:`clean_stale` for every container whose monitor died, wherever it lives (an
    ephemeral container left by a crash is destroyed here); returns them."""
    cleaned = []
    for record in all_records():
        if not record.monitor_alive() and clean_stale(ctx, record.ref):
            cleaned.append(record.ref)
    return cleaned


# ---------------------------------------------------------------------------- asking


@_os_errors_as_sentences
def info(ctx: Context, ref: ContainerRef) -> Info:
    """``ref``'s state and init pid.  While its monitor is still starting it (a slow
    ``lxc.hook.pre-start``, a rootfs that mounts slowly), the monitor answers no request yet:
    its record says STARTING, at once.

    :raises NotFound: no such container.
    """
    clean_stale(ctx, ref)
    if _starting(ref):
        return Info(ref.name, State.STARTING, None, "bdev")
    answer = control.request(ref, "state")
    if answer is not None and answer.get("ok"):
        pid = int(answer.get("init_pid") or 0) or None
        return Info(ref.name, State(answer["state"]), pid, "bdev")
    if is_running(ref):
        return Info(ref.name, State.RUNNING, None, "lxc")
    ctx.store.require(ref)
    return Info(ref.name, State.STOPPED, None, None)


def _starting(ref: ContainerRef) -> bool:
    """Whether a live monitor of ``ref`` is starting it (its record says so)."""
    record = read_record(ref)
    return record is not None and record.state == State.STARTING.value and record.monitor_alive()


@_os_errors_as_sentences
def running_init(ctx: Context, ref: ContainerRef) -> tuple[int, str]:
    """The host pid and start time of ``ref``'s init, for attaching: from its monitor, or
    for a container real LXC runs, from LXC's command socket (``GET_INIT_PID``).

    :raises NotRunning: it is not running (or not yet: still starting).
    :raises BdevError: real LXC runs it and does not say its init's pid.
    """
    clean_stale(ctx, ref)
    if _starting(ref):
        raise NotRunning(_("is starting, not running yet"), container=ref.label)
    answer = control.request(ref, "state")
    if answer is None or not answer.get("ok"):
        if is_running(ref):
            pid = lxccmd.lxc_init_pid(ref)
            started = process_start_time(pid) if pid else None
            if pid is None or started is None:
                raise BdevError(_("is running under real LXC, which does not say its init's pid"),
                                container=ref.label)
            return pid, started
        ctx.store.require(ref)
        raise NotRunning(_("is not running"), container=ref.label)
    if answer.get("state") != State.RUNNING.value or not answer.get("init_pid"):
        raise NotRunning(_("is {state}, not running").format(state=str(answer.get('state')).lower()), container=ref.label)
    return int(answer["init_pid"]), str(answer.get("init_started"))


# ---------------------------------------------------------------------------- starting


@_os_errors_as_sentences
def start(
    ctx: Context,
    ref: ContainerRef,
    *,
    foreground: bool = False,
    logfile: str | None = None,
    loglevel: str | None = None,
    console_out: int | None = None,
    console_log: str | None = None,
    init: Sequence[str] | None = None,
    define: Sequence[tuple[str, str]] = (),
) -> int:
    """Start ``ref``: as a daemon (returns 0 once it runs) or in the foreground (returns
    init's exit status once it ended).

    :param console_out: in the foreground, where the console's output is copied (the
        caller's terminal is the console instead when standard input is one).
    :param console_log: append the console's output to this file (``lxc.console.logfile``).
    :param init: run this instead of ``lxc.init.cmd``.
    :param define: (key, value) config assignments for this start only (``lxc-start -s``).

    :raises Busy: it runs already (under bdev or real LXC).
    :raises BdevError: anything that keeps it from starting; nothing is left behind.
    """
    sweep_stale(ctx)
    with ctx.locked(ref):
        clean_stale(ctx, ref)
        if is_running(ref):
            raise Busy(_("is already running"), container=ref.label)
        overrides = {"console_log": os.path.abspath(console_log) if console_log else None, "init": list(init or []),
                     "define": [list(pair) for pair in define]}
        prepared = prepare(ctx, ref, **overrides)  # refuse everything before starting anything
        if not foreground:
            _launch_daemon(ref, logfile=logfile, loglevel=loglevel, overrides=overrides)
            return 0
    use_tty = console_out is not None and os.isatty(0)
    monitor = Monitor(prepared, console_out=None if use_tty else console_out, use_caller_tty=use_tty)
    return _exit_status(monitor.run())


@_os_errors_as_sentences
def execute(ctx: Context, ref: ContainerRef, command: Sequence[str]) -> int:
    """Run ``command`` in ``ref`` as an application container (``lxc-execute``): a minimal
    init as pid 1, the caller's standard streams; returns the command's exit status."""
    if not command:
        raise BdevError(_("no command to execute"), container=ref.label)
    sweep_stale(ctx)
    with ctx.locked(ref):
        clean_stale(ctx, ref)
        if is_running(ref):
            raise Busy(_("is already running"), container=ref.label)
        prepared = prepare(ctx, ref)
    return _exit_status(Monitor(prepared, command=list(command)).run())


def start_ephemeral(
    ctx: Context,
    origin: ContainerRef,
    *,
    name: str | None = None,
    lxcpath: str | os.PathLike[str] | None = None,
    keep: bool = False,
    keepname: bool = False,
    keepmac: bool = False,
    backend: str | None = None,
    mounts: "list[CopyMount] | None" = None,
    tmpfs: bool = False,
    command: Sequence[str] | None = None,
    foreground: bool = False,
    logfile: str | None = None,
    loglevel: str | None = None,
    console_out: int | None = None,
) -> tuple[ContainerRef, int]:
    """Clone ``origin`` copy-on-write and start the clone: as a daemon, in the foreground, or
    running ``command`` as an application container.  Unless ``keep``, the clone is destroyed
    once it stops (or, after a crash, by the next runtime command).  ``mounts`` are added to
    the clone (``lxc-copy -m``); ``tmpfs`` keeps its changes in memory (``lxc-copy -t``).  Returns the clone and the status (:func:`start`'s or the
    command's).

    :raises BdevError: the clone cannot be made or started (a clone that cannot start is
        destroyed again).
    """
    from .ephemeral import clone_for_run

    sweep_stale(ctx)
    ctx.store.require(origin)
    target = ctx.ref(name or ephemeral_name(origin.name), lxcpath)
    ref = clone_for_run(origin, target.name, lxcpath=target.lxcpath, keep=keep, keepname=keepname, keepmac=keepmac,
                        backend=backend, mounts=mounts, tmpfs=tmpfs)
    try:
        if command:
            return ref, execute(ctx, ref, command)
        return ref, start(ctx, ref, foreground=foreground, logfile=logfile, loglevel=loglevel, console_out=console_out)
    except BaseException:
        if not keep:
            destroy_ephemeral(ref, force=True)
        raise


def _exit_status(code: int) -> int:
    return code if code >= 0 else 128 - code


def _launch_daemon(ref: ContainerRef, *, logfile: str | None, loglevel: str | None,
                   overrides: dict[str, object]) -> None:
    """Run the monitor detached and wait until it says the container runs (or why not)."""
    ready_r, ready_w = os.pipe()
    arguments = {"lxcpath": str(ref.lxcpath), "name": ref.name, "ready_fd": ready_w,
                 "logfile": os.path.abspath(logfile) if logfile else None, "loglevel": loglevel,
                 "overrides": overrides}
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "bdev_runtime.monitor", json.dumps(arguments)],
            pass_fds=[ready_w], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, cwd="/",
        )
    finally:
        os.close(ready_w)
    try:
        launcher.wait()
        message = _read_line(ready_r, START_TIMEOUT)
    finally:
        os.close(ready_r)
    if message == "ok":
        return
    raise BdevError(_subjectless(message, ref) or "its monitor ended before the container ran (see its log: -o FILE -l DEBUG)",
                    container=ref.label)


def _subjectless(message: str, ref: ContainerRef) -> str:
    """The monitor's sentence without the ``container 'x': `` it already starts with."""
    prefix = f"container {ref.label!r}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _read_line(fd: int, timeout: float) -> str:
    """The monitor's one-line report (``ok`` or why not), or what came before it closed the
    pipe (it died) or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while time.monotonic() < deadline and not (chunks and chunks[-1].endswith(b"\n")):
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


# ---------------------------------------------------------------------------- stopping


@_os_errors_as_sentences
def stop(ctx: Context, ref: ContainerRef, *, timeout: float = DEFAULT_STOP_TIMEOUT, kill: bool = False,
         wait: bool = True) -> None:
    """Stop ``ref``: its halt signal, then kill after ``timeout`` seconds (negative: wait
    forever; ``kill``: at once).  Returns once it stopped and was cleaned up (unless not
    ``wait``).

    :raises NotRunning: it is not running.
    :raises BdevError: real LXC runs it, or it did not stop in time.
    """
    clean_stale(ctx, ref)
    answer = control.request(ref, "stop", timeout=timeout, kill=kill)
    if answer is None:
        if is_running(ref):
            raise BdevError(_("is running under real LXC: stop it with LXC's lxc-stop"), container=ref.label)
        ctx.store.require(ref)
        raise NotRunning(_("is not running"), container=ref.label)
    if not answer.get("ok", True):
        raise BdevError(str(answer.get("error")), container=ref.label)
    if not wait:
        return
    limit = None if timeout < 0 else time.monotonic() + timeout + STOP_GRACE
    while is_running(ref) or _record_alive(ref):
        if limit is not None and time.monotonic() > limit:
            raise BdevError(_("did not stop within {timeout:g} s").format(timeout=timeout), container=ref.label)
        time.sleep(0.05)
    clean_stale(ctx, ref)


@_os_errors_as_sentences
def reboot(ctx: Context, ref: ContainerRef, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
    """Reboot ``ref``: its reboot signal (``lxc.signal.reboot``); its init reboots, the
    monitor starts it again.  Returns the new init's pid once it runs.

    :raises NotRunning: it is not running.
    :raises BdevError: it did not come back within ``timeout`` seconds.
    """
    clean_stale(ctx, ref)
    before = control.request(ref, "reboot")
    if before is None:
        if is_running(ref):
            raise BdevError(_("is running under real LXC: reboot it with LXC's lxc-stop -r"), container=ref.label)
        ctx.store.require(ref)
        raise NotRunning(_("is not running"), container=ref.label)
    if not before.get("ok"):
        raise NotRunning(str(before.get("error")), container=ref.label)
    limit = time.monotonic() + max(timeout, 0) + STOP_GRACE
    while time.monotonic() < limit:
        now = control.request(ref, "state")
        if now is None:
            raise BdevError(_("stopped instead of rebooting (see its log: -o FILE -l DEBUG)"), container=ref.label)
        if now.get("state") == State.RUNNING.value and now.get("init_pid") not in (None, 0, before.get("init_pid")):
            return int(now["init_pid"])
        time.sleep(0.05)
    raise BdevError(_("did not come back within {timeout:g} s of its reboot signal").format(timeout=timeout),
                    container=ref.label)


def _record_alive(ref: ContainerRef) -> bool:
    record = read_record(ref)
    return record is not None and record.monitor_alive()


def context_for(lxcpath: str | os.PathLike[str] | None, notify: Callable[[str], None] | None = None) -> Context:
    """An engine context for ``lxcpath`` (None: LXC's default)."""
    return Context.create(lxcpath, notify=notify)


@_os_errors_as_sentences
def attach(ctx: Context, ref: ContainerRef, argv: Sequence[str], options: "AttachOptions | None" = None) -> int:
    """Run ``argv`` inside the running ``ref`` (``lxc-attach``); the command's exit status.

    :raises NotRunning: it is not running.
    """
    from .attach import AttachOptions, attach as attach_process
    from .parts import plan_parts
    from .spec import load_config

    init_pid, init_started = running_init(ctx, ref)
    parts = plan_parts(ref, load_config(ref))
    return attach_process(ref, init_pid, init_started, parts, argv, options or AttachOptions())
