"""Ephemeral containers (``lxc-copy -e``, ``lxc-start-ephemeral``, ``bdev run --ephemeral``):
a copy-on-write clone of a container, started, and destroyed when it stops.

The clone is made by the engine (a native snapshot where the backend has one, such as btrfs;
an overlay over the origin otherwise, as LXC does) and marked with LXC's own key
``lxc.ephemeral = 1``.  The monitor destroys a container so marked once it has stopped and
cleaned up; if the monitor died instead, the next runtime command does it
(:func:`bdev_runtime.lifecycle.clean_stale`).  A start that fails destroys the clone at once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
from pathlib import Path

from bdev.api import Container
from bdev.errors import BdevError, NotFound
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

log = logging.getLogger("bdev.runtime.ephemeral")

EPHEMERAL_KEY = "lxc.ephemeral"
_NAME_CHARS = string.ascii_letters + string.digits


def ephemeral_name(origin: str) -> str:
    """A fresh name for a clone of ``origin``, as ``lxc-copy -e`` makes them (``c1_a8Xk2q``)."""
    return f"{origin}_{''.join(secrets.choice(_NAME_CHARS) for _ in range(6))}"


def is_ephemeral(config: LxcConfig) -> bool:
    """Whether ``config`` says ``lxc.ephemeral = 1``."""
    return (config.get(EPHEMERAL_KEY) or "0").strip() == "1"


def clone_for_run(origin: ContainerRef, name: str | None = None, *, lxcpath: Path | None = None,
                  keep: bool = False, keepname: bool = False, keepmac: bool = False,
                  backend: str | None = None) -> ContainerRef:
    """A copy-on-write clone of ``origin`` to start; marked ephemeral unless ``keep``
    (``-D``/``--keep-data``: a persistent snapshot clone).

    :raises BdevError: the clone cannot be made (the engine says why).
    """
    target = ContainerRef(lxcpath or origin.lxcpath, name or ephemeral_name(origin.name))
    Container(origin.name, origin.lxcpath).clone(target.name, lxcpath=target.lxcpath, snapshot=True, backend=backend,
                                                keepname=keepname, keepmac=keepmac)
    if not keep:
        try:
            config = LxcConfig.load(target.config_path)
            config.set(EPHEMERAL_KEY, "1")
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
