"""LXC 1.0 – 2.x config keys, mapped to the keys LXC >= 3.0 understands.

LXC 3.0 dropped the old keys (``lxc-update-config`` rewrites a file).  bdev reads old configs
through :func:`upgrade_keys`, a view that never touches the user's file; only
:func:`upgrade_in_place` renames keys, line by line, keeping order, comments and spacing.

The mapping is that of LXC's ``lxc-update-config`` (5.0), with its slips corrected: the
rootfs value keeps its own prefix (the script writes ``dir:overlayfs:...``), ``lxc.limit.*``
and indexed ``lxc.network.N.ipv4`` are renamed too.
"""

from __future__ import annotations

import re

from .config import LxcConfig

RENAMED: dict[str, str] = {
    "lxc.utsname": "lxc.uts.name",
    "lxc.rootfs": "lxc.rootfs.path",
    "lxc.tty": "lxc.tty.max",
    "lxc.pts": "lxc.pty.max",
    "lxc.devttydir": "lxc.tty.dir",
    "lxc.aa_profile": "lxc.apparmor.profile",
    "lxc.aa_allow_incomplete": "lxc.apparmor.allow_incomplete",
    "lxc.se_context": "lxc.selinux.context",
    "lxc.seccomp": "lxc.seccomp.profile",
    "lxc.console": "lxc.console.path",
    "lxc.haltsignal": "lxc.signal.halt",
    "lxc.rebootsignal": "lxc.signal.reboot",
    "lxc.stopsignal": "lxc.signal.stop",
    "lxc.id_map": "lxc.idmap",
    "lxc.init_cmd": "lxc.init.cmd",
    "lxc.init_uid": "lxc.init.uid",
    "lxc.init_gid": "lxc.init.gid",
    "lxc.loglevel": "lxc.log.level",
    "lxc.logfile": "lxc.log.file",
    "lxc.syslog": "lxc.log.syslog",
    "lxc.mount": "lxc.mount.fstab",
}
"""Keys renamed one to one."""

RENAMED_PREFIXES: dict[str, str] = {"lxc.limit.": "lxc.prlimit."}
"""Key families renamed by prefix."""

DROPPED: frozenset[str] = frozenset({"lxc.rootfs.backend", "lxc.pivotdir", "lxc.kmsg"})
"""Keys that have no current equivalent (the rootfs backend moves into the rootfs prefix)."""

_INDEXED_NET = re.compile(r"^lxc\.network\.(\d+)\.(.+)$")
_PREFIXED = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*:")
_ADDRESS_SUBKEYS = {"ipv4": "ipv4.address", "ipv6": "ipv6.address"}


class _Upgrader:
    """Maps one entry at a time, in file order (network numbering depends on order)."""

    def __init__(self, config: LxcConfig):
        self.backend = config.get("lxc.rootfs.backend") or None
        self.index = -1

    def __call__(self, key: str, value: str) -> tuple[str, str] | None:
        if key in DROPPED:
            return None
        if key in ("lxc.rootfs", "lxc.rootfs.path"):
            if self.backend and value and not _PREFIXED.match(value):
                value = f"{self.backend}:{value}"
            return "lxc.rootfs.path", value
        if key in RENAMED:
            return RENAMED[key], value
        for old, new in RENAMED_PREFIXES.items():
            if key.startswith(old):
                return new + key[len(old):], value
        if key == "lxc.network":
            return "lxc.net", value
        match = _INDEXED_NET.match(key)
        if match:
            index, sub = match.groups()
            return f"lxc.net.{index}.{_ADDRESS_SUBKEYS.get(sub, sub)}", value
        if key.startswith("lxc.network."):
            sub = key[len("lxc.network."):]
            if sub == "type":  # each lxc.network.type starts a new interface
                self.index += 1
            return f"lxc.net.{max(self.index, 0)}.{_ADDRESS_SUBKEYS.get(sub, sub)}", value
        return key, value


def upgrade_keys(config: LxcConfig) -> list[tuple[str, str]]:
    """The entries of ``config`` as LXC >= 3.0 would name them, in order; ``config`` is not
    changed.  Current keys pass through; ``lxc.rootfs.backend`` is dropped (its value becomes
    the prefix of an unprefixed rootfs path); ``lxc.network.*`` become ``lxc.net.N.*`` with a
    new N at each ``lxc.network.type``."""
    upgrade = _Upgrader(config)
    out = []
    for key, value in config.items():
        mapped = upgrade(key, value)
        if mapped is not None:
            out.append(mapped)
    return out


def needs_upgrade(config: LxcConfig) -> bool:
    """Whether ``config`` uses any key LXC >= 3.0 no longer accepts."""
    return upgrade_keys(config) != config.items()


def upgrade_in_place(config: LxcConfig) -> list[tuple[str, str | None]]:
    """Rename legacy keys of ``config`` in place, keeping order, comments and spacing (and
    delete the dropped ones).  Returns ``(old_key, new_key)`` per changed line, ``new_key``
    None for a deleted line.  Call ``config.save(path)`` to write the result."""
    upgrade = _Upgrader(config)
    changes: list[tuple[str, str | None]] = []

    def change(key: str, value: str) -> tuple[str, str] | None:
        mapped = upgrade(key, value)
        if mapped is None:
            changes.append((key, None))
        elif mapped != (key, value):
            changes.append((key, mapped[0]))
        return mapped

    config.rewrite(change)
    return changes
