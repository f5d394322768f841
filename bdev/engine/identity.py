"""A clone's identity: its config's name, paths and MAC addresses, and the hostname files
inside its rootfs (LXC rewrites these unless told to keep them)."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from ..records import Rootfs
from ..store.config import LxcConfig
from ..store.legacy import upgrade_in_place
from ..store.layout import ContainerRef


def clone_config(
    source_config: LxcConfig,
    source: ContainerRef,
    target: ContainerRef,
    rootfs: Rootfs,
    *,
    keepname: bool,
    keepmac: bool,
) -> LxcConfig:
    """The config of a clone of ``source`` at ``target``: paths under the source's directory
    point under the target's (mount entries, hooks), ``lxc.rootfs.path`` names the new rootfs,
    ``lxc.uts.name`` becomes the new name unless ``keepname``, MACs are new unless ``keepmac``."""
    config = source_config.copy()
    upgrade_in_place(config)  # bdev writes current keys; LXC 5 refuses to load LXC 1.0 ones
    if source.directory != target.directory:
        config.replace_in_values(str(source.directory), str(target.directory))
    config.set_rootfs(rootfs.config_value)
    if not keepname:
        config.set_uts_name(target.name)
    if not keepmac:
        config.randomize_hwaddrs()
    return config


FILE_KEYS = ("lxc.mount.fstab", "lxc.mount")
HOOK_PREFIX = "lxc.hook."


def copy_container_files(config: LxcConfig, source: ContainerRef, target: ContainerRef) -> list[str]:
    """Copy the files a config names inside the source's directory (an ``lxc.mount.fstab``,
    hook scripts) to the same place in the target's, as ``lxc-copy`` does; the caller's
    config already points there.  Returns the relative paths copied."""
    copied = []
    for key, value in config.items():
        if key in FILE_KEYS:
            path = value.strip()
        elif key.startswith(HOOK_PREFIX):
            path = value.strip().split()[0] if value.strip() else ""
        else:
            continue
        if not path.startswith(str(target.directory) + "/"):
            continue
        relative = os.path.relpath(path, target.directory)
        origin = source.directory / relative
        if not _is_regular(origin):
            continue
        destination = target.directory / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, destination, follow_symlinks=False)
        copied.append(relative)
    return copied


def rewrite_hostname(rootfs_path: Path, old: str, new: str) -> list[str]:
    """Write ``new`` into ``etc/hostname`` and replace the word ``old`` in ``etc/hosts`` inside
    the rootfs, never following a symlink (a container's ``/etc/hostname`` pointing at a host
    path must not be written).  Returns the files changed."""
    changed = []
    etc = rootfs_path / "etc"
    if not _is_plain_dir(etc):
        return changed
    hostname = etc / "hostname"
    if _is_regular(hostname):
        _write_nofollow(hostname, f"{new}\n")
        changed.append("/etc/hostname")
    hosts = etc / "hosts"
    if old and old != new and _is_regular(hosts):
        text = hosts.read_text(errors="surrogateescape")
        pattern = re.compile(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])")
        lines = []
        for line in text.splitlines(keepends=True):
            body, sep, comment = line.partition("#")
            lines.append(pattern.sub(new, body) + sep + comment)
        updated = "".join(lines)
        if updated != text:
            _write_nofollow(hosts, updated)
            changed.append("/etc/hosts")
    return changed


def _is_plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _write_nofollow(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "w", errors="surrogateescape") as fh:
        fh.write(text)
