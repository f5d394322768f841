"""Creating the container's init: namespaces, filesystem, and ``exec``.

Three processes take part.  The *monitor* forks a *spawner*, which unshares the container's
namespaces and forks the *init*: the first process of the new PID namespace (pid 1 inside).
The spawner tells the monitor the init's host pid and stays as its parent until it exits, with
the same status.  Parent-death signals tie them together: when the monitor dies (even by
``SIGKILL``) the spawner gets ``SIGTERM``, kills the init and reaps it; when the spawner dies
the init gets ``SIGKILL``.  Either way the kernel tears the PID namespace down, and the mount
namespace (the only place the rootfs is mounted) goes with it.

The init waits until the monitor has done the host side (cgroup, network, id maps), then mounts
the rootfs through its backend and builds the container's tree inside its own mount namespace,
``pivot_root``s, applies the security plan and ``exec``s.  Any failure before ``exec`` is
written as one sentence on an error pipe that ``exec`` closes: the monitor reads either that
sentence or end-of-file (success).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import stat
import termios
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import prctl

from bdev.backend import Backend
from bdev.errors import BdevError
from bdev.idmap import become_root
from bdev.records import Rootfs

from . import linux, rootfs as rootfs_setup
from .hooks import PRE_MOUNT, hook_environment, run_hooks
from ._i18n import _
from .init import exit_status, run_init
from .parts import Parts
from .spec import DEFAULT_PATH, ContainerSpec

#: Where a rootfs without a host path is mounted, in the container's own mount namespace
#: only (each container sees its own mount there, as with LXC's ``lxc.rootfs.mount``).
ROOTFS_MOUNT_DIR = "rootfs"


def rootfs_mount_point() -> Path:
    """The (shared, always empty on the host) directory rootfs are mounted on inside each
    container's mount namespace."""
    from bdev.mounts import mounts_root

    path = mounts_root().parent / ROOTFS_MOUNT_DIR
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    return path


#: The mount point root makes (:func:`rootfs_mount_point` run as root), searchable by anyone.
SYSTEM_MOUNT_POINT = Path("/run/bdev") / ROOTFS_MOUNT_DIR


def searchable_by_all(path: Path) -> bool:
    """Whether every directory from ``/`` to ``path`` lets any user through (``o+x``)."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


def mapped_mount_point(container: str) -> Path:
    """Where a mapped container's rootfs is bound: a directory its root (a host id with no
    rights of its own) can reach, as LXC's shared ``lxc/rootfs`` directory.

    :raises BdevError: neither this user's mount point nor the system one is searchable.
    """
    for candidate in (rootfs_mount_point(), SYSTEM_MOUNT_POINT):
        with contextlib.suppress(OSError):
            if candidate.is_dir() and searchable_by_all(candidate):
                return candidate
    raise BdevError(_("an unprivileged container needs a rootfs mount point every user can search, and "
                      "{rootfs_mount_point} is private and {system_mount_point} missing (root creates it)").format(
        rootfs_mount_point=rootfs_mount_point(), system_mount_point=SYSTEM_MOUNT_POINT),
                    container=container)


@dataclass
class InitPlan:
    """What the init process does, decided by the monitor before forking.

    :param namespaces: the ``CLONE_NEW*`` flags to unshare (network and user included).
    :param terminals: the host pty slaves bound on ``/dev/console`` and ``/dev/ttyN``.
    :param command: for ``lxc-execute``: run this under a minimal init (pid 1 reaps and
        forwards signals) instead of the config's init.
    :param stdio_console: give the init ``/dev/console`` as its standard streams; otherwise
        it keeps the caller's (``lxc-execute``).
    :param environment: the init's whole environment.
    :param mount_point: where the rootfs is mounted in the container's mount namespace when it
        has no host path or the container is mapped (chosen here, by the caller's ids).
    """

    spec: ContainerSpec
    parts: Parts
    backend: Backend
    rootfs: Rootfs
    namespaces: int
    terminals: rootfs_setup.Terminals
    command: Sequence[str] | None = None
    stdio_console: bool = True
    environment: dict[str, str] = field(default_factory=dict)
    mount_point: Path = field(default_factory=rootfs_mount_point)

    @property
    def argv(self) -> list[str]:
        return list(self.command) if self.command else list(self.spec.init)

    @property
    def root_path(self) -> Path:
        """Where the container's rootfs is seen in its mount namespace (``LXC_ROOTFS_MOUNT``):
        its own directory, or :attr:`mount_point` when it has none or is mapped."""
        direct = self.backend.data_path(self.rootfs)
        return Path(direct) if direct is not None and self.spec.idmap is None else self.mount_point


@dataclass
class Spawned:
    """The spawner's pid (the monitor's child), the init's host pid, and the pipes."""

    spawner_pid: int
    init_pid: int
    go_fd: int
    error_fd: int

    def close(self) -> None:
        """Close the pipes still open (the init then ends if it was still waiting)."""
        for name in ("go_fd", "error_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


def _nothing_inherited() -> None:
    """Make every descriptor but the standard streams close on ``exec``, so the container's
    programs get none of the monitor's (its log, the launcher's ready pipe).  They are not
    closed here: Python objects of the monitor still own them."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def _die_with_parent(parent: int | None, sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the parent ends; ``parent`` None when it is outside this process's
    PID namespace (its pid reads 0): the go pipe's end-of-file covers a parent that died
    before the signal was armed."""
    prctl.set_pdeathsig(sig)
    if parent is not None and os.getppid() != parent:  # died before the signal was armed
        os._exit(1)


def spawn(plan: InitPlan) -> Spawned:
    """Fork the spawner and the init; return once the init exists, waiting for ``go``.

    :raises BdevError: the namespaces could not be created.
    """
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    monitor = os.getpid()
    spawner = os.fork()
    if spawner == 0:  # ------------------------------------------------ spawner
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)  # the monitor decides; the init resets them
            _die_with_parent(monitor, signal.SIGTERM)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(go_w)
            os.close(err_r)
            os.close(pid_r)
            _nothing_inherited()
            try:
                linux.unshare(plan.namespaces)
            except OSError as exc:
                os.write(pid_w, f"error creating the container's namespaces: {exc.strerror}".encode())
                os._exit(1)
            init = os.fork()
            if init == 0:  # ----------------------------------------------- init
                os.close(pid_w)
                _init_main(plan, go_r, err_w)  # never returns
            # The monitor gone, end the container and reap its init here, so that it does not
            # wait as a zombie in its cgroup for the host's init to reap it.
            signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
            os.write(pid_w, f"pid {init}".encode())
            os.close(pid_w)
            os.close(go_r)
            os.close(err_w)
            _, wait_status = os.waitpid(init, 0)
            status = exit_status(wait_status)
            if os.WIFSIGNALED(wait_status):  # end the same way, so the monitor sees the signal
                _end_by_signal(os.WTERMSIG(wait_status))
        finally:
            os._exit(status)
    os.close(pid_w)
    os.close(go_r)
    os.close(err_w)
    message = _read_all(pid_r)
    os.close(pid_r)
    if not message.startswith("pid "):
        os.close(go_w)
        os.close(err_r)
        os.waitpid(spawner, 0)
        raise BdevError(message or "the container's spawner died before creating its init",
                        container=plan.spec.ref.label)
    return Spawned(spawner, int(message[4:]), go_w, err_r)


def _end_by_signal(sig: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of the spawner
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)


def wait_exec(spawned: Spawned) -> str | None:
    """Let the init go on and wait until it ``exec``ed (None) or failed (its sentence)."""
    os.write(spawned.go_fd, b"g")
    message = _read_all(spawned.error_fd)
    spawned.close()
    return message or None


# ---------------------------------------------------------------------------- in the init


def _reset_signals() -> None:
    """Undo what the Python interpreter and the monitor set: handlers, ignored SIGPIPE."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGPWR):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _mount_rootfs(plan: InitPlan) -> str:
    """Mount the rootfs in this mount namespace (after the ``lxc.hook.pre-mount`` hooks);
    returns where it is.

    A mapped container's root cannot be trusted to search the directories above its rootfs
    (the lxcpath may be private to its owner): its rootfs is bound onto the shared, searchable
    mount point while this process still has the caller's ids.
    """
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    if plan.spec.pre_mount_hooks:  # here, after the slave remount: what they mount stays in this namespace
        run_hooks(plan.spec.pre_mount_hooks, plan.spec.ref,
                  hook_environment(plan.spec.ref, plan.rootfs, str(plan.root_path), PRE_MOUNT), PRE_MOUNT)
    direct = plan.backend.data_path(plan.rootfs)
    if direct is not None and plan.spec.idmap is None:
        return str(direct)
    target = plan.mount_point
    if direct is not None:
        linux.mount(str(direct), str(target), None, linux.MS_BIND | linux.MS_REC)
    else:
        plan.backend.mount(plan.rootfs, target)
    return str(target)


def _use_console(path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    if fd > 2:
        os.close(fd)
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError:
        pass  # no controlling terminal is not fatal: init still has its streams


def _init_main(plan: InitPlan, go_fd: int, err_fd: int) -> None:
    """The container's first process: set everything up, then exec (never returns)."""
    try:
        _die_with_parent(None)
        _reset_signals()
        if os.read(go_fd, 1) != b"g":  # the monitor gave up
            os._exit(1)
        os.close(go_fd)
        os.setsid()
        if linux.has_namespace("cgroup"):
            linux.unshare(linux.CLONE_NEWCGROUP)  # now in its cgroup: that is its cgroup root
        plan.parts.network.setup_inside()
        rootfs_setup.set_hostname(plan.spec.hostname)
        root = _mount_rootfs(plan)
        if plan.spec.idmap is not None:
            become_root()
        rootfs_setup.build_root(root, plan.spec, plan.terminals)
        rootfs_setup.enter_root(root)
        if plan.stdio_console and plan.terminals.console is not None:
            _use_console("/dev/console")
        os.chdir(plan.spec.init_cwd)
        plan.parts.security.apply_in_child()
        if plan.spec.init_gid is not None:
            os.setgroups([])
            os.setgid(plan.spec.init_gid)
        if plan.spec.init_uid is not None:
            os.setuid(plan.spec.init_uid)
        argv = plan.argv
        if plan.command:
            run_init(argv, plan.environment, err_fd)  # never returns
        try:
            os.execvpe(argv[0], argv, plan.environment)
        except OSError as exc:
            os.write(err_fd, rootfs_setup.exec_error(argv, exc).encode())
    except BdevError as exc:
        os.write(err_fd, exc.cause.encode())
    except OSError as exc:
        os.write(err_fd, f"setting up the container failed: {exc}".encode())
    except BaseException as exc:  # noqa: BLE001 - a bug: say so rather than die silently
        os.write(err_fd, f"internal error while setting up the container: {type(exc).__name__}: {exc}".encode())
    finally:
        os._exit(1)


def init_environment(spec: ContainerSpec, *, execute: bool) -> dict[str, str]:
    """The environment of the container's init: ``container=lxc``, ``lxc.environment``, and
    a ``PATH`` for an application container's command."""
    env = {"container": "lxc"}
    if execute:
        env["PATH"] = DEFAULT_PATH
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
    env.update(spec.environment)
    return env
