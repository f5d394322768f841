"""Ephemeral containers (``lxc-copy -e``, ``lxc-start-ephemeral``, ``bdev run --ephemeral``):
a copy-on-write clone of a container, started, and destroyed when it stops.

The clone is made by the engine (a native snapshot where the backend has one, such as btrfs;
an overlay over the origin otherwise, as LXC does) and marked with LXC's own key
``lxc.ephemeral = 1``.  The monitor destroys a container so marked once it has stopped and
cleaned up; if the monitor died instead, the next runtime command does it
(:func:`bdev_runtime.lifecycle.clean_stale`).  A start that fails destroys the clone at once.

``lxc-copy -m bind=SRC[:DEST][:ro|rw],overlay=SRC[:DEST]`` adds mounts to the clone, as LXC
writes them: ``lxc.mount.entry`` lines, an overlay one with its own upper and work directories
in the clone's directory (gone with the clone).  ``lxc-copy -t`` keeps the clone's overlay
layer in memory, as LXC does it: an ``lxc.hook.pre-mount`` script mounts a tmpfs over the
clone's overlay directory (seeded with what the clone wrote there) in the container's own
mount namespace, so nothing it writes reaches the disk, with bdev's runtime or real LXC.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bdev.api import Container
from bdev.errors import BdevError, InvalidInput, NotFound
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from ._i18n import _

log = logging.getLogger("bdev.runtime.ephemeral")

EPHEMERAL_KEY = "lxc.ephemeral"
_NAME_CHARS = string.ascii_letters + string.digits


def ephemeral_name(origin: str) -> str:
    """A fresh name for a clone of ``origin``, as ``lxc-copy -e`` makes them (``c1_a8Xk2q``)."""
    return f"{origin}_{''.join(secrets.choice(_NAME_CHARS) for _ in range(6))}"


def is_ephemeral(config: LxcConfig) -> bool:
    """Whether ``config`` says ``lxc.ephemeral = 1``."""
    return (config.get(EPHEMERAL_KEY) or "0").strip() == "1"


@dataclass(frozen=True)
class CopyMount:
    """One ``lxc-copy -m`` mount: ``kind`` ``bind`` or ``overlay``, a host ``source``, a
    ``target`` inside the container (relative), and for a bind ``ro`` or ``rw``."""

    kind: str
    source: str
    target: str
    mode: str = "rw"


def parse_copy_mounts(texts: list[str] | tuple[str, ...]) -> list[CopyMount]:
    """``-m`` values (each a comma-separated list of ``bind=SRC[:DEST][:ro|rw]`` and
    ``overlay=SRC[:DEST]``, LXC's syntax; DEST defaults to SRC).

    :raises InvalidInput: an unknown kind, a relative source, too many fields, a bad mode.
    """
    mounts = []
    for text in texts:
        for item in filter(None, text.split(",")):
            kind, equals, spec = item.partition("=")
            fields = spec.split(":")
            if not equals or kind not in ("bind", "overlay") or not fields[0]:
                raise InvalidInput(_("-m {item!r}: expected bind=SRC[:DEST][:ro|rw] or overlay=SRC[:DEST]").format(
                    item=item))
            mode = "rw"
            if kind == "bind" and len(fields) in (2, 3) and fields[-1] in ("ro", "rw"):
                mode = fields.pop()
            if len(fields) > 2:
                raise InvalidInput(_("-m {item!r}: too many fields").format(item=item))
            source = os.path.normpath(fields[0])
            if not os.path.isabs(source):
                raise InvalidInput(_("-m {item!r}: the source must be an absolute host path").format(item=item))
            target = os.path.normpath("/" + (fields[1] if len(fields) == 2 and fields[1] else source)).lstrip("/")
            if not target:
                raise InvalidInput(_("-m {item!r}: cannot mount over the container's /").format(item=item))
            mounts.append(CopyMount(kind, source, target, mode))
    return mounts


def mount_entry_for(mount: CopyMount, clone: ContainerRef) -> str:
    """The ``lxc.mount.entry`` value of ``mount`` in ``clone`` (as lxc-copy writes it); an
    overlay gets fresh upper and work directories in the clone's directory."""
    if mount.kind == "bind":
        create = "dir" if os.path.isdir(mount.source) else "file"
        return f"{mount.source} {mount.target} none bind,optional,{mount.mode},create={create} 0 0"
    upper = tempfile.mkdtemp(prefix="delta_", dir=clone.directory)
    work = tempfile.mkdtemp(prefix="work_", dir=clone.directory)
    return f"{mount.source} {mount.target} overlay lowerdir={mount.source},upperdir={upper},workdir={work},create=dir 0 0"


TMPFS_HOOK = "tmpfs-pre-mount"
TMPFS_SEED = ".tmpfs-seed"


def tmpfs_hook(clone: ContainerRef, rootfs_value: str) -> str:
    """Write the ``lxc.hook.pre-mount`` script that keeps ``clone``'s overlay layer (the
    directory of its upper and work directories) on a tmpfs; returns its path.

    :raises InvalidInput: the clone's rootfs is not an overlay.
    """
    backend, _sep, source = rootfs_value.partition(":")
    if backend not in ("overlay", "overlayfs") or ":" not in source:
        raise InvalidInput(_("-t places only an overlay clone on a tmpfs, and this clone's rootfs is {value}").format(
            value=rootfs_value), container=clone.label)
    layer = os.path.dirname(source.rsplit(":", 1)[1])  # the upper's directory holds the work directory too
    seed = clone.directory / TMPFS_SEED
    seed.mkdir(mode=0o700)
    script = clone.directory / TMPFS_HOOK
    script.write_text(
        "#!/bin/sh\n"
        "# lxc-copy -t: this ephemeral container's overlay layer on a tmpfs, in its own mount namespace\n"
        "set -e\n"
        f"layer={shlex.quote(layer)}\n"
        f"seed={shlex.quote(str(seed))}\n"
        'mount -n --bind "$layer" "$seed"\n'
        'mount -n -t tmpfs -o mode=0755 tmpfs "$layer"\n'
        'cp -a "$seed/." "$layer/"\n'
        'umount -n "$seed"\n')
    script.chmod(0o755)
    return str(script)


def clone_for_run(origin: ContainerRef, name: str | None = None, *, lxcpath: Path | None = None,
                  keep: bool = False, keepname: bool = False, keepmac: bool = False,
                  backend: str | None = None, mounts: list[CopyMount] | None = None,
                  tmpfs: bool = False) -> ContainerRef:
    """A copy-on-write clone of ``origin`` to start, with ``mounts`` added (``lxc-copy -m``);
    marked ephemeral unless ``keep`` (``-D``/``--keep-data``: a persistent snapshot clone);
    with ``tmpfs`` an overlay clone whose changes stay in memory (``lxc-copy -t``).

    :raises InvalidInput: ``tmpfs`` with ``keep``, or with a backend other than overlay.
    :raises BdevError: the clone cannot be made (the engine says why).
    """
    target = ContainerRef(lxcpath or origin.lxcpath, name or ephemeral_name(origin.name))
    if tmpfs and keep:
        raise InvalidInput(_("a copy on a tmpfs (-t) keeps nothing, so it cannot be kept (-D)"), container=target.label)
    if tmpfs and backend not in (None, "overlay", "overlayfs"):
        raise InvalidInput(_("only an overlay copy can be placed on a tmpfs (-t), not {backend}").format(
            backend=backend), container=target.label)
    Container(origin.name, origin.lxcpath).clone(target.name, lxcpath=target.lxcpath, snapshot=True,
                                                backend="overlay" if tmpfs else backend,
                                                keepname=keepname, keepmac=keepmac)
    if keep and not mounts:
        return target
    try:
        config = LxcConfig.load(target.config_path)
        if not keep:
            config.set(EPHEMERAL_KEY, "1")
        for mount in mounts or []:
            config.append("lxc.mount.entry", mount_entry_for(mount, target))
        if tmpfs:
            config.append("lxc.hook.pre-mount", tmpfs_hook(target, config.get("lxc.rootfs.path") or ""))
        config.save(target.config_path)
    except BaseException:
        destroy_ephemeral(target, force=True)
        raise
    return target


def destroy_ephemeral(ref: ContainerRef, *, force: bool = False) -> bool:
    """Destroy ``ref`` if its config marks it ephemeral (or ``force``); True if destroyed.
    Problems are logged, not raised: the container already stopped."""
    try:
        if not force and not is_ephemeral(LxcConfig.load(ref.config_path)):
            return False
    except (OSError, BdevError):
        return False
    with contextlib.suppress(NotFound):
        try:
            Container(ref.name, ref.lxcpath).destroy()
        except BdevError as exc:
            log.warning("could not destroy the ephemeral container %s: %s", ref.label, exc)
            return False
    log.info("destroyed the ephemeral container %s", ref.label)
    return True
