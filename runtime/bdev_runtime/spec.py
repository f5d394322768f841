"""What to run, read from a container's LXC config: the runtime's view of ``config``.

:func:`load_config` reads a container config with its ``lxc.include`` files expanded in place
(as LXC does: a file, or every ``*.conf`` of a directory).  :func:`container_spec` turns it
into a :class:`ContainerSpec`, refusing values the runtime cannot honour with one sentence
naming the key, before anything is mounted or started.  Keys owned by the cgroup, security and
network parts (``lxc.cgroup*``, ``lxc.cap.*``, ``lxc.seccomp.*``, ``lxc.apparmor.*``,
``lxc.net.*``) are left to them.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bdev.errors import ConfigError, InvalidInput
from bdev.idmap import IdMap, parse_idmaps
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from . import linux
from ._i18n import _

INCLUDE_KEY = "lxc.include"
CONSOLE_PATH_KEY = "lxc.console.path"
MAX_INCLUDE_DEPTH = 8
DEFAULT_INIT = "/sbin/init"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: ``lxc.mount.auto`` values understood, by kind.
AUTO_PROC = {"proc:mixed", "proc:rw", "proc"}
AUTO_SYS = {"sys:ro", "sys:mixed", "sys:rw", "sys"}
AUTO_CGROUP = {
    "cgroup", "cgroup:mixed", "cgroup:ro", "cgroup:rw",
    "cgroup-full", "cgroup-full:mixed", "cgroup-full:ro", "cgroup-full:rw",
    "cgroup:force", "cgroup:mixed:force", "cgroup:ro:force", "cgroup:rw:force",
}
AUTO_ALL = AUTO_PROC | AUTO_SYS | AUTO_CGROUP | {"shmounts"}

#: mount(8) option words and their ``MS_*`` flags: (flags to set, flags to clear).
MOUNT_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (linux.MS_RDONLY, 0), "rw": (0, linux.MS_RDONLY),
    "nosuid": (linux.MS_NOSUID, 0), "suid": (0, linux.MS_NOSUID),
    "nodev": (linux.MS_NODEV, 0), "dev": (0, linux.MS_NODEV),
    "noexec": (linux.MS_NOEXEC, 0), "exec": (0, linux.MS_NOEXEC),
    "sync": (linux.MS_SYNCHRONOUS, 0), "async": (0, linux.MS_SYNCHRONOUS),
    "dirsync": (linux.MS_DIRSYNC, 0),
    "remount": (linux.MS_REMOUNT, 0),
    "mand": (linux.MS_MANDLOCK, 0), "nomand": (0, linux.MS_MANDLOCK),
    "noatime": (linux.MS_NOATIME, 0), "atime": (0, linux.MS_NOATIME),
    "nodiratime": (linux.MS_NODIRATIME, 0), "diratime": (0, linux.MS_NODIRATIME),
    "relatime": (linux.MS_RELATIME, 0), "norelatime": (0, linux.MS_RELATIME),
    "strictatime": (linux.MS_STRICTATIME, 0), "nostrictatime": (0, linux.MS_STRICTATIME),
    "lazytime": (linux.MS_LAZYTIME, 0), "nolazytime": (0, linux.MS_LAZYTIME),
    "nosymfollow": (linux.MS_NOSYMFOLLOW, 0),
    "bind": (linux.MS_BIND, 0), "rbind": (linux.MS_BIND | linux.MS_REC, 0),
}
PROPAGATION_FLAGS: dict[str, int] = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}


# ---------------------------------------------------------------------------- config files


def load_config(ref: ContainerRef) -> LxcConfig:
    """``ref``'s config with every ``lxc.include`` replaced by the included text.

    :raises ConfigError: an included file is missing or unreadable, or includes nest too deep.
    """
    return LxcConfig.parse(_expanded(ref.config_path, ref, 0), source=str(ref.config_path))


def parse_define(text: str) -> tuple[str, str]:
    """``lxc-start -s KEY=VAL``: the key and the value (whitespace around them dropped).

    :raises InvalidInput: no ``=``, or a key that is not an ``lxc.`` key.
    """
    key, equals, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not equals or not key.startswith("lxc.") or len(key) <= len("lxc.") or any(c.isspace() for c in key):
        raise InvalidInput(_("-s {text!r}: expected KEY=VALUE with an lxc. configuration key").format(text=text))
    return key, value


def apply_defines(config: LxcConfig, defines: Sequence[tuple[str, str]]) -> None:
    """Apply ``-s`` assignments to ``config`` (in memory) as LXC does: a single-valued key
    takes the new value (the last line wins), a list key (``lxc.mount.entry``,
    ``lxc.cap.drop`` ...) gets one more, and an empty value clears the key.

    :raises InvalidInput: a value that would break the config's line structure.
    """
    for key, value in defines:
        if value:
            config.append(key, value)
        else:
            config.remove(key)


def _expanded(path: Path, ref: ContainerRef, depth: int) -> str:
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(_("lxc.include nests deeper than {max_include_depth} files at {path}").format(
            max_include_depth=MAX_INCLUDE_DEPTH, path=path), container=ref.label)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(_("cannot read {path}: {cause}").format(path=path, cause=exc.strerror),
                          container=ref.label) from None
    out = []
    for line in text.splitlines(keepends=True):
        parsed = LxcConfig.parse(line)
        included = parsed.get(INCLUDE_KEY)
        if included is None:
            out.append(line if line.endswith("\n") else line + "\n")
            continue
        target = Path(included)
        files = sorted(target.glob("*.conf")) if target.is_dir() else [target]
        for file in files:
            out.append(_expanded(file, ref, depth + 1))
    return "".join(out)


# ---------------------------------------------------------------------------- values


def parse_signal(value: str, key: str) -> int:
    """A signal number from ``SIGUSR1``, ``USR1``, ``10`` or ``SIGRTMIN+3`` (LXC's forms).

    :raises ConfigError: not a signal.
    """
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if name.startswith(("SIGRTMIN+", "SIGRTMAX-")) and name[9:].isdigit():
            number = signal.SIGRTMIN + int(name[9:]) if "+" in name else signal.SIGRTMAX - int(name[9:])
        else:
            member = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
            if member is None:
                raise ConfigError(_("{key} = {value}: not a signal name or number").format(key=key, value=value))
            number = int(member)
    if not 0 < number < signal.NSIG:
        raise ConfigError(_("{key} = {value}: signal numbers go from 1 to {value2}").format(
            key=key, value=value, value2=signal.NSIG - 1))
    return number


def _count(config: LxcConfig, key: str, default: int, legacy: str | None = None) -> int:
    value = config.get(key, config.get(legacy) if legacy else None)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise ConfigError(_("{key} = {value}: not a number").format(key=key, value=value))
    return int(value)


def _flag(config: LxcConfig, key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None or value == "":
        return default
    if value not in ("0", "1"):
        raise ConfigError(_("{key} = {value}: use 0 or 1").format(key=key, value=value))
    return value == "1"


@dataclass(frozen=True)
class MountSpec:
    """One ``lxc.mount.entry`` (fstab format: source, target, type, options, dump, pass).

    :param target: as written; relative paths are below the rootfs.
    :param flags: ``MS_*`` flags from the options; ``propagation`` the propagation flags.
    :param data: the options the filesystem itself reads (``size=64m``, ``mode=755``).
    :param create: ``dir`` or ``file`` (LXC's ``create=``), or None.
    :param optional: a failure is ignored (LXC's ``optional``).
    """

    source: str
    target: str
    fstype: str
    flags: int
    propagation: int
    data: str
    create: str | None
    optional: bool
    text: str

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & linux.MS_BIND)


def _unescape_fstab(field_: str) -> str:
    from bdev.mounts import unescape

    return unescape(field_)


def parse_mount_entry(text: str, key: str = "lxc.mount.entry") -> MountSpec:
    """Parse one fstab-format line.

    :raises ConfigError: fewer than four fields, or a ``create=`` other than dir/file.
    """
    fields = text.split()
    if len(fields) < 4:
        raise ConfigError(_("{key} = {text}: needs at least source, target, type and options").format(
            key=key, text=text))
    source, target, fstype, options = (_unescape_fstab(f) for f in fields[:4])
    flags = propagation = 0
    data: list[str] = []
    create = None
    optional = False
    for option in options.split(","):
        if option in MOUNT_FLAGS:
            set_, clear = MOUNT_FLAGS[option]
            flags = (flags | set_) & ~clear
        elif option in PROPAGATION_FLAGS:
            propagation |= PROPAGATION_FLAGS[option]
        elif option.startswith("create="):
            create = option[len("create="):]
            if create not in ("dir", "file"):
                raise ConfigError(_("{key} = {text}: create= takes dir or file, not {create!r}").format(
                    key=key, text=text, create=create))
        elif option == "optional":
            optional = True
        elif option and not option.startswith(("idmap=", "x-")):
            data.append(option)
    return MountSpec(source, target, fstype, flags, propagation, ",".join(data), create, optional, text)


def _fstab_entries(config: LxcConfig, ref: ContainerRef) -> list[MountSpec]:
    fstab = config.get("lxc.mount.fstab")
    if not fstab:
        return []
    path = Path(fstab) if os.path.isabs(fstab) else ref.directory / fstab
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(_("lxc.mount.fstab = {fstab}: cannot read it ({cause})").format(
            fstab=fstab, cause=exc.strerror), container=ref.label) from None
    return [parse_mount_entry(line, "lxc.mount.fstab") for line in lines if line.strip() and not line.lstrip().startswith("#")]


def parse_mount_auto(values: list[str]) -> frozenset[str]:
    """The words of every ``lxc.mount.auto`` line (an empty value resets, as in LXC).

    :raises ConfigError: a word LXC does not know.
    """
    words: set[str] = set()
    for value in values:
        if not value.strip():
            words.clear()
            continue
        for word in value.split():
            if word not in AUTO_ALL:
                raise ConfigError(_("lxc.mount.auto: unknown value {word!r} (known: proc:mixed, proc:rw, sys:ro, "
                                    "sys:mixed, sys:rw, cgroup[:mixed|:ro|:rw], cgroup-full[...], shmounts)").format(
                    word=word))
            words.add(word)
    return frozenset(words)


def _environment(values: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values:
        name, sep, val = value.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError(_("lxc.environment = {value}: expected NAME=VALUE or NAME").format(value=value))
        if sep:
            env[name] = val
        elif name in os.environ:  # LXC 5: a bare name passes the host's value
            env[name] = os.environ[name]
    return env


def _init_command(config: LxcConfig) -> list[str]:
    value = config.get("lxc.init.cmd") or config.get("lxc.init_cmd") or DEFAULT_INIT
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ConfigError(_("lxc.init.cmd = {value}: {error}").format(value=value, error=exc)) from None
    if not argv:
        raise ConfigError(_("lxc.init.cmd is empty"))
    return argv


def _optional_id(config: LxcConfig, key: str) -> int | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise ConfigError(_("{key} = {value}: not a numeric id").format(key=key, value=value))
    return int(value)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the core runtime needs to start one container.

    :param idmaps: ``lxc.idmap`` lines; non-empty means a user namespace (unprivileged).
    :param idmap: those lines parsed and checked (None: a privileged container).
    :param console_path: ``lxc.console.path``; ``none`` means no console device.
    :param console_logfile: where the console's output is copied (``lxc.console.logfile``).
    :param ephemeral: destroy the container once it stopped (``lxc.ephemeral = 1``).
    :param pre_start_hooks: ``lxc.hook.pre-start`` command lines, run on the host first.
    :param pre_mount_hooks: ``lxc.hook.pre-mount`` command lines, run in the container's
        mount namespace before its rootfs is mounted.
    """

    ref: ContainerRef
    hostname: str
    init: list[str]
    init_cwd: str
    init_uid: int | None
    init_gid: int | None
    environment: dict[str, str]
    autodev: bool
    mount_auto: frozenset[str]
    mounts: list[MountSpec]
    halt_signal: int
    stop_signal: int
    reboot_signal: int
    tty_max: int
    pty_max: int
    console_path: str
    console_logfile: str | None
    ephemeral: bool = False
    pre_start_hooks: list[str] = field(default_factory=list)
    pre_mount_hooks: list[str] = field(default_factory=list)
    idmaps: list[str] = field(default_factory=list)
    idmap: IdMap | None = None

    @property
    def namespaces(self) -> int:
        """The ``CLONE_NEW*`` flags of the container's namespaces (network added by the plan)."""
        flags = linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
        return flags | (linux.CLONE_NEWUSER if self.idmaps else 0)

    def auto(self, prefix: str) -> str | None:
        """The ``lxc.mount.auto`` word starting with ``prefix`` (``proc``, ``sys``, ``cgroup``)."""
        return next((w for w in sorted(self.mount_auto) if w == prefix or w.startswith(prefix + ":")
                     or (prefix == "cgroup" and w.startswith("cgroup-full"))), None)


def container_spec(ref: ContainerRef, config: LxcConfig) -> ContainerSpec:
    """Read and check what the core runtime needs from ``config``.

    :raises ConfigError: a value that cannot be honoured, naming the key and the container.
    """
    try:
        hostname = config.uts_name() or ref.name
        if len(hostname.encode()) > 64:
            raise ConfigError(_("lxc.uts.name {hostname!r} is longer than 64 bytes").format(hostname=hostname))
        return ContainerSpec(
            ref=ref,
            hostname=hostname,
            init=_init_command(config),
            init_cwd=config.get("lxc.init.cwd") or "/",
            init_uid=_optional_id(config, "lxc.init.uid"),
            init_gid=_optional_id(config, "lxc.init.gid"),
            environment=_environment(config.get_all("lxc.environment")),
            autodev=_flag(config, "lxc.autodev", True),
            mount_auto=parse_mount_auto(config.get_all("lxc.mount.auto")),
            mounts=_fstab_entries(config, ref) + [parse_mount_entry(v) for v in config.get_all("lxc.mount.entry")],
            halt_signal=parse_signal(config.get("lxc.signal.halt") or config.get("lxc.haltsignal") or "SIGPWR",
                                     "lxc.signal.halt"),
            stop_signal=parse_signal(config.get("lxc.signal.stop") or config.get("lxc.stopsignal") or "SIGKILL",
                                     "lxc.signal.stop"),
            reboot_signal=parse_signal(config.get("lxc.signal.reboot") or config.get("lxc.rebootsignal") or "SIGINT",
                                       "lxc.signal.reboot"),
            tty_max=_count(config, "lxc.tty.max", 0, "lxc.tty"),
            pty_max=_count(config, "lxc.pty.max", 0, "lxc.pts"),
            console_path=config.get(CONSOLE_PATH_KEY) or config.get("lxc.console") or "auto",
            pre_start_hooks=[hook for hook in config.get_all("lxc.hook.pre-start") if hook.strip()],
            pre_mount_hooks=[hook for hook in config.get_all("lxc.hook.pre-mount") if hook.strip()],
            console_logfile=config.get("lxc.console.logfile") or None,
            ephemeral=_flag(config, "lxc.ephemeral", False),
            idmaps=config.get_all("lxc.idmap") + config.get_all("lxc.id_map"),
            idmap=parse_idmaps(config.get_all("lxc.idmap") + config.get_all("lxc.id_map")),
        )
    except ConfigError as exc:
        raise exc.about(container=ref.label) from None
