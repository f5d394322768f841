"""Running a command inside a running container (``lxc-attach``).

The caller forks a helper that joins the container's namespaces (``setns`` on the init's
``/proc/PID/ns/*``: user first, then cgroup, ipc, uts, net, pid, mnt; joining the mount
namespace puts it at the container's root).  Joining a PID namespace only applies to
children, so the helper forks the command's process, tells the caller its host pid (the caller
puts it in the container's cgroup), and passes its exit status back.  The command gets the
container's security plan (capabilities, seccomp, no_new_privs) unless elevated, then the
user and group ids asked for (``-u``/``-g``), no file descriptor but its standard streams,
and an environment like ``lxc-attach``'s: the caller's by default (``--keep-env``), or only
``container=lxc``, a default ``PATH`` and the chosen variables with ``--clear-env``.

When the caller's standard input is a terminal, the command gets a terminal of its own, as
with LXC: a pseudo-terminal of the *container's* ``devpts`` (opened by the helper through the
container's ``/dev/ptmx``, so ``tty`` inside names a ``/dev/pts/N`` that exists there; the
host's when the container has none), made the command's controlling terminal; the caller
puts its own terminal in raw mode, passes its size on (and on ``SIGWINCH``), and copies bytes
both ways until the command ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from bdev.errors import BdevError, InvalidInput
from bdev.idmap import become_root
from bdev.store.layout import ContainerRef

from . import linux
from ._i18n import _
from .init import exit_status
from .parts import Parts
from .spec import DEFAULT_PATH
from .state import process_start_time

#: Join order: the user namespace first (it owns the others), the mount namespace last.
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
DEFAULT_SHELL = "/bin/sh"
#: ``<asm-generic/ioctls.h>``: unlock a pty's slave, and read its number (Python's termios
#: module has neither).
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
PROXY_CHUNK = 65536


@dataclass
class AttachOptions:
    """How to run the command.

    :param clear_env: start from an empty environment (``--clear-env``).
    :param keep_vars: with ``clear_env``, variables of the caller to keep (``--keep-var``).
    :param set_vars: variables to set (``-v NAME=VALUE``).
    :param elevated: skip the security plan (``-e``).
    :param cwd: working directory inside the container (default ``/``).
    :param uid: run as this user id of the container (``-u``; default: stay root).
    :param gid: run as this group id of the container (``-g``; default: stay in group 0).
    :param pty: give the command a terminal: None (default) when standard input is one.
    """

    clear_env: bool = False
    keep_vars: Sequence[str] = ()
    set_vars: Mapping[str, str] = field(default_factory=dict)
    elevated: bool = False
    cwd: str = "/"
    uid: int | None = None
    gid: int | None = None
    pty: bool | None = None

    def __post_init__(self) -> None:
        for label, value in (("uid", self.uid), ("gid", self.gid)):
            if value is not None and not 0 <= value < 2**32 - 1:
                raise InvalidInput(_("{label} {value} is not a user or group id (0 to 4294967294)").format(
                    label=label, value=value))


def parse_assignments(values: Sequence[str], option: str) -> dict[str, str]:
    """``NAME=VALUE`` words (``-v``), refusing a word without ``=`` or with an empty name.

    :raises InvalidInput: naming ``option`` and the word.
    """
    out = {}
    for value in values:
        name, sep, val = value.partition("=")
        if not sep or not name:
            raise InvalidInput(_("{option} {value!r}: expected NAME=VALUE").format(option=option, value=value))
        out[name] = val
    return out


def command_environment(options: AttachOptions, caller: Mapping[str, str] | None = None) -> dict[str, str]:
    """The attached command's environment (see the module docstring)."""
    caller = os.environ if caller is None else caller
    if options.clear_env:
        env = {name: caller[name] for name in options.keep_vars if name in caller}
    else:
        env = dict(caller)
    env["container"] = "lxc"
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(options.set_vars)
    return env


def _open_namespaces(init_pid: int) -> list[int]:
    fds = []
    own_user = os.stat("/proc/self/ns/user").st_ino
    for kind in JOIN_ORDER:
        path = f"/proc/{init_pid}/ns/{kind}"
        if not os.path.exists(path):
            continue
        if kind == "user" and os.stat(path).st_ino == own_user:
            continue  # the same user namespace: setns would refuse it
        fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    return fds


def attach(ref: ContainerRef, init_pid: int, init_started: str, parts: Parts, argv: Sequence[str],
           options: AttachOptions) -> int:
    """Run ``argv`` (default: a shell) in the container whose init is ``init_pid``; its exit status.

    :raises BdevError: the container stopped meanwhile, or joining its namespaces failed.
    """
    argv = list(argv) or [DEFAULT_SHELL]
    use_pty = options.pty if options.pty is not None else os.isatty(0)
    try:
        ns_fds = _open_namespaces(init_pid)
    except OSError as exc:
        raise BdevError(_("cannot open its namespaces: {cause}").format(cause=exc.strerror),
                        container=ref.label) from None
    if process_start_time(init_pid) != init_started:
        for fd in ns_fds:
            os.close(fd)
        raise BdevError(_("stopped while attaching"), container=ref.label)
    env = command_environment(options)
    if use_pty and "TERM" not in env and "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    fd_parent, fd_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    helper = os.fork()
    if helper == 0:
        os.close(pid_r)
        os.close(go_w)
        fd_parent.close()
        _helper_main(ns_fds, argv, env, options, parts, pid_w, go_r, fd_child if use_pty else None)  # never returns
    for fd in ns_fds:
        os.close(fd)
    os.close(pid_w)
    os.close(go_r)
    fd_child.close()
    message = os.read(pid_r, 4096).decode(errors="replace")
    os.close(pid_r)
    master = None
    step = _("receive the attached process's terminal")
    try:
        if message.startswith("pid "):
            master = _receive_master(fd_parent) if use_pty else None
            if master is not None:
                _copy_size(0, master)  # before the command starts: it may ask at once
            step = _("put the attached process in its cgroup")
            parts.cgroup.attach(int(message[4:]))
            os.write(go_w, b"g")
    except (BdevError, OSError) as exc:
        os.close(go_w)
        if master is not None:
            os.close(master)
        _wait(helper)
        raise BdevError(_("cannot {step}: {error}").format(step=step, error=exc), container=ref.label) from None
    finally:
        fd_parent.close()
    os.close(go_w)
    if master is not None:
        wait_status = _proxy(master, helper)
    else:
        wait_status = _wait(helper)
    if not message.startswith("pid "):
        raise BdevError(message or "attaching failed", container=ref.label)
    return exit_status(wait_status)


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


def _receive_master(sock: socket.socket) -> int:
    """The pty master the helper sends (see :func:`_open_pty`).

    :raises OSError: it sent none.
    """
    _data, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    if not fds:
        raise OSError("the attach helper sent no terminal")
    return fds[0]


def _helper_main(ns_fds: list[int], argv: list[str], env: dict[str, str], options: AttachOptions, parts: Parts,
                 pid_w: int, go_r: int, fd_sock: socket.socket | None) -> None:
    status = 1
    try:
        user_ns = os.stat("/proc/self/ns/user").st_ino
        try:
            for number, fd in enumerate(ns_fds):
                linux.setns(fd)
                os.close(fd)
                # the user namespace comes first (JOIN_ORDER): a mapped container's; be its root
                if number == 0 and os.stat("/proc/self/ns/user").st_ino != user_ns:
                    become_root()
        except (OSError, BdevError) as exc:
            os.write(pid_w, f"cannot join its namespaces: {getattr(exc, 'strerror', None) or exc}".encode())
            os._exit(1)
        terminal = None
        if fd_sock is not None:
            try:
                terminal = _open_pty()
            except OSError as exc:
                os.write(pid_w, f"cannot open a terminal for the command: {exc.strerror}".encode())
                os._exit(1)
        child = os.fork()
        if child == 0:
            os.close(pid_w)
            _command_main(argv, env, options, parts, go_r, terminal)  # never returns
        os.close(go_r)
        if terminal is not None and fd_sock is not None:
            socket.send_fds(fd_sock, [b"t"], [terminal[0]])
            for fd in terminal:
                os.close(fd)
            fd_sock.close()
        os.write(pid_w, f"pid {child}".encode())
        os.close(pid_w)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
        status = exit_status(_wait(child))
    finally:
        os._exit(status)


def _open_pty() -> tuple[int, int]:
    """``(master, slave)`` of a new pseudo-terminal: from the container's ``/dev/ptmx``
    (the helper has joined its mount namespace), else the host's.

    :raises OSError: neither could be had.
    """
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return os.openpty()
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
        slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    return master, slave


def _command_main(argv: list[str], env: dict[str, str], options: AttachOptions, parts: Parts, go_r: int,
                  terminal: tuple[int, int] | None) -> None:
    try:
        if os.read(go_r, 1) != b"g":
            os._exit(1)
        os.close(go_r)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        if terminal is not None:
            _take_terminal(*terminal, options)
        try:
            os.chdir(options.cwd)
        except OSError:
            os.chdir("/")
        if not options.elevated:
            parts.security.apply_in_child()
        _switch_ids(options)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # nothing of the caller's leaks in, as with LXC
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"lxc-attach: cannot run {argv[0]} in the container: {exc.strerror}\n".encode())
        os._exit(127)
    except BaseException as exc:  # noqa: BLE001 - report, never return into the caller's code
        os.write(2, f"lxc-attach: {exc}\n".encode())
    os._exit(126)


def _take_terminal(master: int, slave: int, options: AttachOptions) -> None:
    """Make ``slave`` the process's controlling terminal and standard streams (owned by the
    user it is to run as)."""
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    if options.uid is not None or options.gid is not None:
        os.fchown(slave, -1 if options.uid is None else options.uid, -1 if options.gid is None else options.gid)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


def _switch_ids(options: AttachOptions) -> None:
    """Become ``options.gid`` (with no supplementary groups) and ``options.uid``, after the
    security plan (dropping capabilities needs CAP_SETPCAP, which a non-root uid lacks)."""
    if options.gid is not None:
        os.setgroups([])
        os.setgid(options.gid)
    if options.uid is not None:
        if options.gid is None:
            os.setgroups([])
        os.setuid(options.uid)


# ---------------------------------------------------------------------------- the caller's terminal


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode (keys go to the command, ^C included), restored after."""
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _copy_size(source: int, master: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8))


def _proxy(master: int, helper: int) -> int:
    """Copy the caller's standard input to ``master`` and ``master`` to its standard output
    until the command is done (its terminal closed and the helper ended); the helper's wait
    status."""
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(0, master))
    reading = [0, master]
    wait_status: int | None = None
    try:
        with _raw_terminal(0):
            while master in reading:
                try:
                    ready, _, _ = select.select(reading, [], [], 0.2)
                except InterruptedError:
                    continue
                if master in ready and not _pass_on(master, 1):
                    reading.remove(master)
                if 0 in ready and not _pass_on(0, master):
                    reading.remove(0)  # end of input: the command sees it as its terminal's EOF
                    with contextlib.suppress(OSError):
                        os.write(master, bytes([termios.tcgetattr(master)[6][termios.VEOF][0]]))
                if wait_status is None:
                    pid, status = os.waitpid(helper, os.WNOHANG)
                    if pid:  # the command ended; what it left in the terminal is still copied
                        wait_status = status
                        reading = [fd for fd in reading if fd == master]
                        while select.select([master], [], [], 0.05)[0] and _pass_on(master, 1):
                            pass
                        break
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(master)
    return wait_status if wait_status is not None else _wait(helper)


def _pass_on(source: int, target: int) -> bool:
    """Copy what ``source`` has to ``target``; False when ``source`` ended (EOF, or EIO: a
    pty master whose slave was closed)."""
    try:
        data = os.read(source, PROXY_CHUNK)
    except OSError:
        return False
    if not data:
        return False
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(target, view):]
        except OSError:
            return False
    return True
