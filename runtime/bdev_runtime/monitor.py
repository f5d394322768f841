"""The monitor: the process that owns one running container.

It binds the container's command socket (so the container counts as running for bdev and for
real LXC), writes the container's record, starts the init (:mod:`bdev_runtime.spawn`), does
the host side (cgroup, network), answers requests (state, init pid, stop), copies the console
to its log, and, when the init has ended, cleans up: remaining processes, cgroup, network,
record and socket.

``lxc-start`` runs it as a daemon (``python -m bdev_runtime.monitor``, detached in its own
session); ``lxc-start -F`` and ``lxc-execute`` run it in their own process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bdev.backend import Backend
from bdev.engine.context import Context
from bdev.engine.idshift import give_to_container_root
from bdev.errors import BdevError, NotFound
from bdev.idmap import check_allowed, write_maps
from bdev.records import Rootfs
from bdev.store.layout import ContainerRef

from . import control, linux, lxccmd
from ._i18n import _
from .ephemeral import destroy_ephemeral
from .hooks import PRE_START, hook_environment, run_hooks
from .parts import Parts, plan_parts
from .rootfs import Terminals
from .spawn import InitPlan, Spawned, init_environment, mapped_mount_point, spawn, wait_exec
from .spec import ContainerSpec, apply_defines, container_spec, load_config
from .state import Record, State, process_start_time, remove_record, write_record

log = logging.getLogger("bdev.runtime.monitor")

CLEANUP_WAIT = 10.0
DEFAULT_STOP_TIMEOUT = 60.0
"""Seconds between the halt signal and SIGKILL when nobody says (LXC's ``lxc-stop`` default)."""
HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
READ_ONLY_REQUESTS = ("state", "info")
"""What any local user may ask a monitor; stopping and rebooting are for its owner and root."""
PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
Ready = Callable[[str | None], None]


@dataclass
class Prepared:
    """A container checked and planned, nothing changed yet."""

    ref: ContainerRef
    spec: ContainerSpec
    parts: Parts
    backend: Backend
    rootfs: Rootfs


def prepare(ctx: Context, ref: ContainerRef, *, console_log: str | None = None, init: Sequence[str] = (),
            define: Sequence[Sequence[str]] = ()) -> Prepared:
    """Read, check and plan everything for starting ``ref``, changing nothing.

    :param console_log: overrides ``lxc.console.logfile``; ``init`` overrides ``lxc.init.cmd``.
    :param define: ``lxc-start -s`` (key, value) pairs applied to the config for this start.

    :raises BdevError: the container is missing, its config or rootfs is unusable, or a part
        refuses its config.
    """
    store, registry = ctx.store, ctx.registry
    store.require(ref)
    config = load_config(ref)
    try:
        apply_defines(config, [(key, value) for key, value in define])
    except BdevError as exc:
        raise exc.about(container=ref.label) from None
    spec = container_spec(ref, config)
    if console_log or init:
        spec = replace(spec, console_logfile=console_log or spec.console_logfile, init=list(init) or spec.init)
    if spec.idmap is None and os.geteuid() != 0:
        raise BdevError(_("has no lxc.idmap, and only root may start a container without a user namespace (give it "
                          "the lxc.idmap lines of your /etc/subuid and /etc/subgid ranges)"), container=ref.label)
    if spec.idmap is not None:
        try:
            check_allowed(spec.idmap)
        except BdevError as exc:
            raise exc.about(container=ref.label) from None
    if spec.console_path.startswith("/"):
        os.close(open_console_peer(spec.console_path, ref))  # refused here, before anything starts
    rootfs = store.rootfs_of(ref, config)
    try:
        backend = registry.usable_backend(rootfs.backend)
    except BdevError as exc:
        raise exc.about(container=ref.label) from None
    if not backend.exists(rootfs):
        raise NotFound(_("its rootfs {source} does not exist").format(source=rootfs.source),
                       container=ref.label, backend=backend.name)
    return Prepared(ref, spec, plan_parts(ref, config), backend, rootfs)


def open_console_peer(path: str, ref: ContainerRef) -> int:
    """Open ``lxc.console.path`` (``lxc-start -c FILE``), which gets the console's output, as
    LXC's console peer: a terminal read and written, any other file (which must exist, as
    with LXC) appended to.

    :raises BdevError: it cannot be opened.
    """
    try:
        flags = os.O_WRONLY | os.O_APPEND if os.path.isfile(path) else os.O_RDWR
        fd = os.open(path, flags | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise BdevError(_("cannot open its console file {path}: {cause}").format(path=path, cause=exc.strerror),
                        container=ref.label) from None
    return fd


@dataclass
class _Terminal:
    master: int
    slave: int

    @property
    def path(self) -> str:
        return os.ttyname(self.slave)


@dataclass
class Monitor:
    """One container's monitor.

    :param command: run this under a minimal init (``lxc-execute``) with the caller's streams.
    :param console_out: where the console's output goes besides ``lxc.console.logfile``
        (the terminal of ``lxc-start -F``), or None.
    :param use_caller_tty: bind the caller's terminal as the console (``-F`` on a terminal).
    :param ready: called once with None when the container runs, or with the sentence saying
        why it could not start.
    """

    prepared: Prepared
    command: Sequence[str] | None = None
    console_out: int | None = None
    use_caller_tty: bool = False
    ready: Ready = lambda error: None
    state: State = State.STARTING
    record: Record | None = None
    spawned: Spawned | None = None
    status: int | None = None
    kill_at: float | None = None
    _terminals: list[_Terminal] = field(default_factory=list)
    _console: _Terminal | None = None
    _console_peer: int | None = None
    _wakeup: tuple[socket.socket, socket.socket] | None = None
    _waiters: list[socket.socket] = field(default_factory=list)
    _state_clients: list[lxccmd.StateClient] = field(default_factory=list)
    _old_handlers: dict[int, Any] = field(default_factory=dict)
    _rootfs_held: contextlib.ExitStack | None = None

    @property
    def ref(self) -> ContainerRef:
        return self.prepared.ref

    @property
    def spec(self) -> ContainerSpec:
        return self.prepared.spec

    # ------------------------------------------------------------------ the whole life

    def run(self) -> int:
        """Start the container, serve until it ends, clean up; the init's exit status.

        :raises BdevError: it could not start (already running, a setup step failed); nothing
            is left behind.
        """
        sock = control.bind_command_socket(self.ref)
        try:
            self.record = Record(str(self.ref.lxcpath), self.ref.name, os.getpid(),
                                 process_start_time(os.getpid()) or "")
            write_record(self.record)
            try:
                self._start()
            except BaseException as exc:
                self._cleanup()
                control.close_command_socket(sock, self.ref)  # stopped for everyone before the caller hears why
                self._finish()
                self.ready(str(exc) if isinstance(exc, BdevError) else f"internal error: {exc!r}")
                raise
            self.ready(None)
            self._serve(sock)
            while self._rebooted():
                self._cleanup()
                if not self._restart():
                    break
                self._serve(sock)
            self._cleanup()
        finally:
            control.close_command_socket(sock, self.ref)
            self._finish()
        return self.status if self.status is not None else 1

    def _rebooted(self) -> bool:
        """Whether the init ended by rebooting (in a PID namespace the kernel ends an init that
        calls ``reboot(RESTART)`` with SIGHUP) without a stop being asked for."""
        return self.status == -signal.SIGHUP and self.state is not State.STOPPING

    def _restart(self) -> bool:
        """Start the container again after a reboot; False (logged) if it could not."""
        log.info("container %s rebooted: starting it again", self.ref.label)
        self.status, self.spawned, self.kill_at = None, None, None
        self._set_state(State.STARTING)
        try:
            self._start()
        except BdevError as exc:
            log.error("container %s could not start again after a reboot: %s", self.ref.label, exc)
            return False
        return True

    def _start(self) -> None:
        self._install_signals()
        self._open_terminals()
        namespaces = self.spec.namespaces | (linux.CLONE_NEWNET if self.prepared.parts.network.needs_netns else 0)
        plan = InitPlan(
            spec=self.spec,
            parts=self.prepared.parts,
            backend=self.prepared.backend,
            rootfs=self.prepared.rootfs,
            namespaces=namespaces,
            terminals=Terminals(self._console_path(), [t.path for t in self._terminals]),
            command=self.command,
            stdio_console=self.command is None,
            environment=init_environment(self.spec, execute=self.command is not None),
        )
        if self.spec.idmap is not None:
            plan.mount_point = mapped_mount_point(self.ref.label)
        self._hold_rootfs()
        if self.spec.pre_start_hooks:  # STARTING meanwhile: the record says so (lifecycle.info)
            run_hooks(self.spec.pre_start_hooks, self.ref,
                      hook_environment(self.ref, self.prepared.rootfs, str(plan.root_path), PRE_START), PRE_START)
        self.spawned = spawn(plan)
        pid = self.spawned.init_pid
        assert self.record is not None
        self.record.init_pid = pid
        self.record.init_started = process_start_time(pid)
        write_record(self.record)
        if self.spec.idmap is not None:  # the init waits for "go": map its ids first
            write_maps(pid, self.spec.idmap, container=self.ref.label)
        cgroup, network = self.prepared.parts.cgroup, self.prepared.parts.network
        cgroup.create()
        cgroup.apply()
        cgroup.attach(pid)
        network.setup_host(pid)
        error = wait_exec(self.spawned)
        if error is not None:
            raise BdevError(error, container=self.ref.label)
        self._set_state(State.RUNNING)
        log.info("container %s runs, init pid %d", self.ref.label, pid)

    def _hold_rootfs(self) -> None:
        """Enter the backend's :meth:`~bdev.backend.Backend.running` for this container, here in
        the host's namespaces, before the init mounts the rootfs in its own."""
        held = contextlib.ExitStack()
        try:
            held.enter_context(self.prepared.backend.running(self.prepared.rootfs, container=self.ref.label))
        except BdevError as exc:
            raise exc.about(container=self.ref.label) from None
        self._rootfs_held = held

    def _let_go_of_rootfs(self) -> None:
        """Leave what :meth:`_hold_rootfs` entered, once the container's processes (and so its
        mount namespace) are gone; a failure is logged (the backend finds it stale later)."""
        held, self._rootfs_held = self._rootfs_held, None
        if held is None:
            return
        try:
            held.close()
        except BdevError as exc:
            log.warning("container %s: %s", self.ref.label, exc.about(container=self.ref.label))
        except Exception:  # a bug in a backend must not stop the rest of the cleanup
            log.exception("container %s: releasing its rootfs failed", self.ref.label)

    # ------------------------------------------------------------------ terminals

    def _open_terminals(self) -> None:
        if self.command is None and not self.use_caller_tty and self.spec.console_path != "none":
            master, slave = os.openpty()
            self._console = _Terminal(master, slave)
            if self.spec.console_path.startswith("/"):
                self._console_peer = open_console_peer(self.spec.console_path, self.ref)
        if self.command is None:
            for _number in range(self.spec.tty_max):
                master, slave = os.openpty()
                self._terminals.append(_Terminal(master, slave))
        owned = [t.path for t in ([self._console] if self._console else []) + self._terminals]
        if self.spec.idmap is not None and owned:  # the container's root opens them
            give_to_container_root(owned, self.spec.idmap, container=self.ref.label)

    def _console_path(self) -> str | None:
        if self.command is not None or self.spec.console_path == "none":
            return None
        if self.use_caller_tty:
            return os.ttyname(0)
        return self._console.path if self._console else None

    def _console_output(self, data: bytes) -> None:
        if self.spec.console_logfile:
            with contextlib.suppress(OSError), open(self.spec.console_logfile, "ab") as fh:
                fh.write(data)
        for out in (self.console_out, self._console_peer):
            if out is not None:
                with contextlib.suppress(OSError):
                    os.write(out, data)

    # ------------------------------------------------------------------ serving

    def _install_signals(self) -> None:
        if self._wakeup is not None:
            return
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup = (reader, writer)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:  # the wakeup fd carries the signal number
            self._old_handlers[sig] = signal.signal(sig, lambda *_: None)

    def _serve(self, listener: socket.socket) -> None:
        assert self._wakeup is not None and self.spawned is not None
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, "listen")
        selector.register(self._wakeup[0], selectors.EVENT_READ, "signal")
        for terminal in ([self._console] if self._console else []) + self._terminals:
            selector.register(terminal.master, selectors.EVENT_READ, terminal)
        if self._console is not None and self._console_peer is not None and os.isatty(self._console_peer):
            selector.register(self._console_peer, selectors.EVENT_READ, "console-input")
        while self.status is None:
            self._reap()
            if self.status is not None:
                break
            timeout = None if self.kill_at is None else max(0.0, self.kill_at - time.monotonic())
            if self.kill_at is not None and timeout == 0.0:
                self._kill()
                self.kill_at = None
            for key, _events in selector.select(timeout if timeout is None else max(timeout, 0.05)):
                if key.data == "listen":
                    self._accept(listener)
                elif key.data == "signal":
                    self._on_signals()
                elif key.data == "console-input":
                    self._console_input(selector)
                else:
                    self._drain(selector, key.data)
        selector.close()

    def _reap(self) -> None:
        assert self.spawned is not None
        try:
            pid, wait_status = os.waitpid(self.spawned.spawner_pid, os.WNOHANG)
        except ChildProcessError:
            pid, wait_status = self.spawned.spawner_pid, 1 << 8
        if pid:
            self.status = os.waitstatus_to_exitcode(wait_status)
            log.info("container %s: init ended with status %s", self.ref.label, self.status)

    def _on_signals(self) -> None:
        assert self._wakeup is not None
        try:
            received = self._wakeup[0].recv(256)
        except BlockingIOError:
            return
        if any(sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) for sig in received):
            self.stop(timeout=DEFAULT_STOP_TIMEOUT, kill=False)

    def _drain(self, selector: selectors.BaseSelector, terminal: _Terminal) -> None:
        try:
            data = os.read(terminal.master, 4096)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            selector.unregister(terminal.master)
        elif terminal is self._console:
            self._console_output(data)

    def _console_input(self, selector: selectors.BaseSelector) -> None:
        """What is typed on the console terminal (``lxc-start -c /dev/ttyN``) goes to the console."""
        assert self._console is not None and self._console_peer is not None
        try:
            data = os.read(self._console_peer, 4096)
        except OSError:
            data = b""
        if not data:
            selector.unregister(self._console_peer)
            return
        with contextlib.suppress(OSError):
            os.write(self._console.master, data)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        keep = False
        try:
            conn.settimeout(2.0)
            first = conn.recv(1, socket.MSG_PEEK)
            trusted = _peer_may_control(conn)
            if lxccmd.is_lxc_request(first):
                keep = trusted and lxccmd.serve(conn, self, self.ref.name)  # LXC's socket refuses others too
            elif first:
                line = conn.recv(control.MAX_MESSAGE).split(b"\n", 1)[0]
                request = control.decode(line)
                if request is not None and not trusted and request.get("op") not in READ_ONLY_REQUESTS:
                    conn.sendall(control.encode({"ok": False, "error": "permission denied: the container belongs "
                                                 "to another user"}))
                elif request is not None:
                    conn.sendall(control.encode(self.answer(request)))
        except OSError:
            keep = False
        finally:
            if keep and not any(c.conn is conn for c in self._state_clients):
                self._waiters.append(conn)  # closed once the container stopped
            elif not keep:
                conn.close()

    def add_state_client(self, client: lxccmd.StateClient) -> None:
        """Remember an LXC client waiting for a state (told in :meth:`_set_state`)."""
        self._state_clients.append(client)

    def init_pid(self) -> int | None:
        """The container's init as the host sees it, while it runs."""
        return self.record.init_pid if self.record and self.status is None and self.record.init_pid else None

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one protocol request."""
        op = request.get("op")
        if op in ("state", "info"):
            return {"ok": True, **self.describe()}
        if op == "stop":
            timeout = request.get("timeout", DEFAULT_STOP_TIMEOUT)
            self.stop(timeout=float(timeout) if timeout is not None else -1.0, kill=bool(request.get("kill")))
            return {"ok": True, **self.describe()}
        if op == "reboot":
            if self.spawned is None or self.status is not None or self.state is not State.RUNNING:
                return {"ok": False, "error": f"is {self.state.value.lower()}, not running"}
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.spawned.init_pid, self.spec.reboot_signal)
            return {"ok": True, **self.describe()}
        return {"ok": False, "error": f"unknown request {op!r}"}

    def describe(self) -> dict[str, Any]:
        """State, init pid and its start time, as the protocol reports them."""
        record = self.record
        return {
            "state": self.state.value,
            "init_pid": record.init_pid if record else 0,
            "init_started": record.init_started if record else None,
            "monitor_pid": os.getpid(),
        }

    # ------------------------------------------------------------------ stopping

    def stop(self, *, timeout: float, kill: bool) -> None:
        """Ask the init to halt (``lxc.signal.halt``), and kill everything after ``timeout``
        seconds (negative: never; ``kill`` or 0: now)."""
        if self.status is not None or self.spawned is None:
            return
        self._set_state(State.STOPPING)
        if kill or timeout == 0:
            self._kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.spawned.init_pid, self.spec.halt_signal)
        if timeout > 0:
            deadline = time.monotonic() + timeout
            self.kill_at = deadline if self.kill_at is None else min(self.kill_at, deadline)

    def _kill(self) -> None:
        assert self.spawned is not None
        self._reap()
        if self.status is not None:
            return  # the init's pid may already belong to someone else
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.spawned.init_pid, self.spec.stop_signal)
        with contextlib.suppress(BdevError, OSError):
            self.prepared.parts.cgroup.kill_all(signal.SIGKILL)

    def _set_state(self, state: State) -> None:
        self.state = state
        if self.record is not None:
            self.record.state = state.value
            write_record(self.record)
        self._state_clients = [c for c in self._state_clients if not c.notify(state)]

    # ------------------------------------------------------------------ cleaning up

    def _cleanup(self) -> None:
        """Everything the container held on the host, gone (each step even if another failed)."""
        self._set_state(State.STOPPING)
        if self.spawned is not None:
            self.spawned.close()
        if self.spawned is not None and self.status is None:
            self._kill()
            with contextlib.suppress(ChildProcessError):
                _, wait_status = os.waitpid(self.spawned.spawner_pid, 0)
                self.status = os.waitstatus_to_exitcode(wait_status)
        for problem in release_host_side(self.prepared.parts):
            log.warning("container %s: %s", self.ref.label, problem)
        self._let_go_of_rootfs()
        for terminal in ([self._console] if self._console else []) + self._terminals:
            for fd in (terminal.master, terminal.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._console, self._terminals = None, []
        if self._console_peer is not None:
            with contextlib.suppress(OSError):
                os.close(self._console_peer)
            self._console_peer = None

    def _finish(self) -> None:
        """After the socket is closed (the container is not running any more): destroy an
        ephemeral container, then drop the record (a waiting ``stop`` returns after that)."""
        if self.spec.ephemeral and self.state is not State.STOPPED:
            destroy_ephemeral(self.ref)
        remove_record(self.ref)
        self.state = State.STOPPED
        for client in self._state_clients:
            if not client.notify(State.STOPPED):
                client.conn.close()
        self._state_clients = []
        for waiter in self._waiters:  # real LXC's lxc-stop waits for this
            waiter.close()
        self._waiters = []
        if self._wakeup is not None:  # give the process back as it was (lxc-execute, -F)
            signal.set_wakeup_fd(-1)
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
            self._old_handlers = {}
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None


def _peer_may_control(conn: socket.socket) -> bool:
    """Whether the process at the other end of ``conn`` is root or this monitor's user."""
    _pid, uid, _gid = PEER_CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              PEER_CREDENTIALS.size))
    return uid in (0, os.geteuid())


def release_host_side(parts: Parts, wait: float = CLEANUP_WAIT) -> list[str]:
    """Kill what is left in the container's cgroup, remove it, tear the network down; each
    step runs even when an earlier one failed.  Returns the problems, as sentences."""
    problems = []
    cgroup = parts.cgroup
    try:
        deadline = time.monotonic() + wait
        while cgroup.pids() and time.monotonic() < deadline:
            cgroup.kill_all(signal.SIGKILL)
            time.sleep(0.05)
        cgroup.remove()
    except (BdevError, OSError) as exc:
        problems.append(_("cgroup cleanup: {error}").format(error=exc))
    try:
        parts.network.teardown()
    except (BdevError, OSError) as exc:
        problems.append(_("network cleanup: {error}").format(error=exc))
    return problems


# ---------------------------------------------------------------------------- daemon entry


def _daemon_main(arguments: dict[str, Any]) -> int:
    """The detached monitor process (see :func:`bdev_runtime.lifecycle.start`)."""
    from pathlib import Path

    from bdev.cli import logsetup

    ready_fd = int(arguments["ready_fd"])
    os.set_inheritable(ready_fd, False)  # the container's programs must not hold it
    if os.fork():  # leave the launcher at once: the monitor is nobody's child
        os._exit(0)
    os.setsid()
    logsetup.configure("lxc-start", logsetup.lxc_level(arguments["loglevel"]) if arguments.get("loglevel") else None,
                       arguments.get("logfile"))
    ref = ContainerRef(Path(arguments["lxcpath"]), arguments["name"])

    pending = [ready_fd]

    def ready(error: str | None) -> None:
        while pending:  # only the first report counts
            fd = pending.pop()
            with contextlib.suppress(OSError):
                os.write(fd, (error or "ok").replace("\n", " ").encode() + b"\n")
                os.close(fd)

    try:
        prepared = prepare(Context.create(ref.lxcpath), ref, **arguments.get("overrides", {}))
        Monitor(prepared, ready=ready).run()
    except BdevError as exc:
        ready(str(exc))
        log.error("%s", exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - the launcher must hear about a bug too
        ready(f"internal error in the monitor: {type(exc).__name__}: {exc}")
        log.exception("monitor failed")
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(_daemon_main(json.loads(sys.argv[1])))
