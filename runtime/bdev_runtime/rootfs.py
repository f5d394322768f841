"""The container's filesystem view, built inside its new mount namespace, then entered.

:func:`build_root` runs in the container's first process, after ``unshare(CLONE_NEWNS)``:
it makes every mount a slave (nothing propagates back to the host), binds the rootfs onto
itself, then mounts ``/dev`` (a tmpfs with the usual nodes, a private ``devpts``, the console
and ``lxc.tty.max`` terminals), ``/proc``, ``/sys`` and the cgroup hierarchies as
``lxc.mount.auto`` asks, and the ``lxc.mount.entry`` lines.  :func:`enter_root` then
``pivot_root``s into it and detaches the host's tree.

Targets are resolved inside the rootfs (:func:`resolve_in_root`): a symlink in the container's
files cannot send a mount to the host.  Sources of bind mounts are host paths, as in LXC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from bdev.errors import BdevError

from . import linux
from ._i18n import _
from .spec import ContainerSpec, MountSpec

MAX_SYMLINKS = 40
DEV_TMPFS_OPTIONS = "size=500000,mode=755"

#: The device nodes of an autodev ``/dev``: (name, major, minor, mode).
DEVICES: tuple[tuple[str, int, int, int], ...] = (
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
)
DEV_LINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
#: What ``proc:mixed`` makes read-only below ``/proc``, and what it leaves writable below those.
PROC_READONLY = ("sys", "sysrq-trigger")
PROC_WRITABLE_BELOW_READONLY = ("sys/net",)


class SetupError(BdevError):
    """A step of building the container's filesystem failed."""


@dataclass(frozen=True)
class Terminals:
    """Host pseudo-terminal slaves to bind into the container: ``console`` onto
    ``/dev/console`` (None: no console), ``ttys[i]`` onto ``/dev/tty<i+1>``."""

    console: str | None
    ttys: Sequence[str] = ()


# ---------------------------------------------------------------------------- paths


def resolve_in_root(root: str, path: str) -> str:
    """The host path of ``path`` seen from inside ``root``: symlinks are followed as the
    container would follow them (absolute links start at ``root``), and ``..`` stops at ``root``.
    Components that do not exist yet are kept as written.

    :raises SetupError: more than 40 symlinks on the way (a loop).
    """
    root = os.path.realpath(root)
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except FileNotFoundError:
            is_link = False
        if not is_link:
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise SetupError(_("too many symbolic links below the rootfs at {path}").format(path=path))
        link = os.readlink(candidate)
        if link.startswith("/"):
            resolved = []
        parts = [p for p in link.split("/") if p and p != "."] + parts
    return os.path.join(root, *resolved)


def mount_target(root: str, spec_target: str) -> str:
    """Where an ``lxc.mount.entry`` target lands: relative to the rootfs; an absolute target
    below the rootfs path is taken relative to it, any other absolute one inside the rootfs."""
    rel = spec_target
    if os.path.isabs(rel):
        real_root = os.path.realpath(root)
        rel = rel[len(real_root):] if rel.startswith(real_root.rstrip("/") + "/") else rel
    return resolve_in_root(root, rel)


def _create(target: str, kind: str) -> None:
    if kind == "dir":
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _bind(source: str, target: str, *, readonly: bool = False, recursive: bool = False, extra: int = 0) -> None:
    linux.mount(source, target, None, linux.MS_BIND | (linux.MS_REC if recursive else 0))
    if readonly or extra:
        flags = linux.MS_BIND | linux.MS_REMOUNT | extra | (linux.MS_RDONLY if readonly else 0)
        try:
            linux.mount(None, target, None, flags)
        except PermissionError:  # locked flags of the source mount must be kept
            linux.mount(None, target, None, flags | _locked_flags(target))


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    table = ((os.ST_NOSUID, linux.MS_NOSUID), (os.ST_NODEV, linux.MS_NODEV), (os.ST_NOEXEC, linux.MS_NOEXEC))
    return sum(ms for st_flag, ms in table if st.f_flag & st_flag)


# ---------------------------------------------------------------------------- mounts


def mount_entry(root: str, entry: MountSpec) -> None:
    """Mount one ``lxc.mount.entry`` below ``root`` (``optional`` ones may fail quietly).

    :raises SetupError: it failed and is not optional.
    """
    try:
        target = mount_target(root, entry.target)
        if entry.create:
            _create(target, entry.create)
        if entry.is_bind:
            _bind(entry.source, target, readonly=bool(entry.flags & linux.MS_RDONLY),
                  recursive=bool(entry.flags & linux.MS_REC),
                  extra=entry.flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY | linux.MS_REMOUNT))
        else:
            linux.mount(entry.source, target, entry.fstype, entry.flags, entry.data or None)
        if entry.propagation:
            linux.mount(None, target, None, entry.propagation)
    except OSError as exc:
        if entry.optional:
            return
        raise SetupError(_("lxc.mount.entry = {text}: {cause}").format(text=entry.text, cause=exc.strerror)) from None


def _mount_proc(root: str, mode: str) -> None:
    proc = resolve_in_root(root, "proc")
    os.makedirs(proc, exist_ok=True)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if mode == "proc:rw":
        return
    for rel in PROC_READONLY:
        path = os.path.join(proc, rel)
        if os.path.exists(path):
            _bind(path, path, readonly=True)
    for rel in PROC_WRITABLE_BELOW_READONLY:  # a bind copies the read-only flag: remount it
        path = os.path.join(proc, rel)
        if os.path.isdir(path):
            _bind(path, path)
            linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | _locked_flags(path))


def _mount_sys(root: str, mode: str) -> None:
    sys_dir = resolve_in_root(root, "sys")
    os.makedirs(sys_dir, exist_ok=True)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    linux.mount("sysfs", sys_dir, "sysfs", flags | (0 if mode == "sys:rw" else linux.MS_RDONLY))
    if mode == "sys:mixed":
        net = os.path.join(sys_dir, "devices/virtual/net")
        if os.path.isdir(net):
            _bind(net, net)
            linux.mount(None, net, None, linux.MS_BIND | linux.MS_REMOUNT | flags)


def host_cgroup_hierarchies(proc_self_cgroup: str = "/proc/self/cgroup") -> list[tuple[str, str]]:
    """This process's cgroup hierarchies as (mount options, directory name under
    ``/sys/fs/cgroup``): v1 controllers (``cpu,cpuacct``), named ones (``name=systemd``),
    and the v2 hierarchy (``""``, mounted as ``cgroup2``)."""
    found = []
    with open(proc_self_cgroup) as fh:
        for line in fh:
            number, controllers, _path = line.rstrip("\n").split(":", 2)
            if number == "0" and not controllers:
                found.append(("", "unified"))
            elif controllers:
                name = controllers[len("name="):] if controllers.startswith("name=") else controllers
                found.append((controllers, name))
    return found


def _mount_cgroups(root: str, mode: str) -> None:
    """``cgroup[:mixed|:ro|:rw]``: a tmpfs on ``/sys/fs/cgroup`` holding each hierarchy,
    mounted after the cgroup namespace was entered so each shows the container's own cgroup
    as its root.  ``mixed`` (the default) leaves the hierarchies writable, the tmpfs read-only."""
    cgroup_root = resolve_in_root(root, "sys/fs/cgroup")
    if not os.path.isdir(cgroup_root):
        return
    hierarchies = host_cgroup_hierarchies()
    v1 = [h for h in hierarchies if h[0]]
    readonly = ":ro" in mode
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    if not v1:  # pure cgroup v2: the hierarchy itself is /sys/fs/cgroup
        linux.mount("cgroup2", cgroup_root, "cgroup2", flags | (linux.MS_RDONLY if readonly else 0))
        return
    linux.mount("cgroup", cgroup_root, "tmpfs", flags, "mode=755")
    for options, name in hierarchies:
        directory = os.path.join(cgroup_root, name)
        os.makedirs(directory, exist_ok=True)
        hflags = flags | (linux.MS_RDONLY if readonly else 0)
        try:
            if options:
                linux.mount("cgroup", directory, "cgroup", hflags, options)
            else:
                linux.mount("cgroup2", directory, "cgroup2", hflags)
        except OSError:
            os.rmdir(directory)  # a hierarchy this kernel will not mount twice: leave it out
            continue
        for controller in options.split(","):  # cpu -> cpu,cpuacct links, as the host has
            if "," in options and not controller.startswith("name="):
                with contextlib.suppress(FileExistsError):
                    os.symlink(name, os.path.join(cgroup_root, controller))
    if ":rw" not in mode:
        linux.mount(None, cgroup_root, None, linux.MS_REMOUNT | flags | linux.MS_RDONLY, "mode=755")


def _fill_dev(root: str, spec: ContainerSpec, terminals: Terminals) -> None:
    dev = resolve_in_root(root, "dev")
    os.makedirs(dev, exist_ok=True)
    if spec.autodev:
        linux.mount("none", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, DEV_TMPFS_OPTIONS)
        for name, major, minor, mode in DEVICES:
            path = os.path.join(dev, name)
            if spec.idmaps:  # a user namespace cannot mknod: bind the host's node
                _create(path, "file")
                _bind(f"/dev/{name}", path)
            else:
                os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
                os.chmod(path, mode)
    pts = os.path.join(dev, "pts")
    os.makedirs(pts, exist_ok=True)
    pty_data = "newinstance,ptmxmode=0666,mode=0620" + ("" if spec.idmaps else ",gid=5")
    if spec.pty_max:
        pty_data += f",max={spec.pty_max + 1 + spec.tty_max}"
    linux.mount("devpts", pts, "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, pty_data)
    if spec.autodev:
        for name, target in DEV_LINKS:
            with contextlib.suppress(FileExistsError):
                os.symlink(target, os.path.join(dev, name))
    if terminals.console is not None:
        console = os.path.join(dev, "console")
        _create(console, "file")
        _bind(terminals.console, console)
    for number, slave in enumerate(terminals.ttys, start=1):
        tty = os.path.join(dev, f"tty{number}")
        _create(tty, "file")
        _bind(slave, tty)


def build_root(root: str, spec: ContainerSpec, terminals: Terminals) -> None:
    """Build the container's tree on ``root`` in this (new, unshared) mount namespace.

    :raises SetupError: a step failed; the sentence names it.
    """
    step = _("making mounts private")
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
        step = _("binding the rootfs")
        linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, root, None, linux.MS_PRIVATE)
        proc, sys_, cgroup = spec.auto("proc"), spec.auto("sys"), spec.auto("cgroup")
        if proc:
            step = _("mounting /proc")
            _mount_proc(root, proc)
        if sys_:
            step = _("mounting /sys")
            _mount_sys(root, sys_)
        if cgroup:
            step = _("mounting the cgroup hierarchies")
            _mount_cgroups(root, cgroup)
        step = _("setting up /dev")
        _fill_dev(root, spec, terminals)
    except OSError as exc:
        raise SetupError(_("{step} failed: {cause}").format(step=step, cause=exc.strerror)) from None
    for entry in spec.mounts:
        mount_entry(root, entry)


def enter_root(root: str) -> None:
    """``pivot_root`` into ``root`` and detach the host's tree (the old root stacked under
    the new one by ``pivot_root(".", ".")``), leaving this process in ``/`` of the container.

    :raises SetupError: the kernel refused.
    """
    try:
        os.chdir(root)
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")
    except OSError as exc:
        raise SetupError(_("pivot_root into the rootfs failed: {cause}").format(cause=exc.strerror)) from None


def set_hostname(name: str) -> None:
    """Set the container's host name (in its own UTS namespace)."""
    try:
        linux.sethostname(name)
    except OSError as exc:
        raise SetupError(_("setting the host name {name!r} failed: {cause}").format(
            name=name, cause=exc.strerror)) from None


def exec_error(argv: Sequence[str], exc: OSError) -> str:
    """The sentence for an init that cannot be run inside the rootfs."""
    if exc.errno == errno.ENOENT:
        return _("the rootfs has no {argv} to run as init (lxc.init.cmd)").format(argv=argv[0])
    return _("cannot run {argv} in the container: {cause}").format(argv=argv[0], cause=exc.strerror)
