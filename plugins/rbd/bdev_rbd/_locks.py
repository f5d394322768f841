"""The advisory lock that keeps two hosts (or two mounts on one host) from mounting one image
read-write: an RBD exclusive lock whose cookie says which host mounted it where.

The lock outlives the process that took it (the image stays mounted after ``bdev`` exits), so
it is released by cookie (``break_lock``) when the mount goes, and a lock this host holds for a
mount that is no longer there is stale and broken on the next mount.  A lock held by another
host is reported, naming it; ``bdev rbd break-lock`` removes it once that host is known dead.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rbd

from bdev.errors import BdevError, Busy

from ._cluster import BACKEND, explain
from ._i18n import _

KEY_HOST = "lxc.bdev.rbd.hostname"
TAG = "bdev"
CONTAINER_PREFIX = "container "


def host_name(settings: Mapping[str, str]) -> str:
    """This host's name in lock cookies: ``lxc.bdev.rbd.hostname``, else the host name."""
    return settings.get(KEY_HOST) or socket.gethostname()


@dataclass(frozen=True)
class Holder:
    """Who holds an image's lock: ``host`` mounted it at ``mount``."""

    host: str
    mount: str
    client: str
    cookie: str

    def describe(self) -> str:
        if self.mount.startswith(CONTAINER_PREFIX):
            return _("host {host} (container {container} runs on it)").format(
                host=self.host, container=self.mount[len(CONTAINER_PREFIX):])
        return _("host {host} (mounted at {mount})").format(host=self.host, mount=self.mount) if self.mount else _("host {host}").format(
            host=self.host)


def container_mount(container: str) -> str:
    """The ``mount`` of a lock a running ``container`` holds (its rootfs is mounted in the
    container's own mount namespace, at no path the host sees)."""
    return CONTAINER_PREFIX + container


def holders(image: Any) -> list[Holder]:
    """The image's lock holders (other tools' locks are listed with their client as host)."""
    try:
        info = image.list_lockers()
    except rbd.Error as exc:
        raise explain(exc, _("reading the image's locks")) from None
    found = []
    for client, cookie, _address in (info or {}).get("lockers", []):
        try:
            data = json.loads(cookie)
            found.append(Holder(str(data["host"]), str(data["mount"]), client, cookie))
        except (ValueError, KeyError, TypeError):
            found.append(Holder(client, "", client, cookie))
    return found


def take(image: Any, name: str, host: str, mount: str, is_live: Callable[[Holder], bool]) -> None:
    """Lock ``image`` (named ``name``) for a read-write mount at ``mount`` on ``host``.

    A lock of this host whose mount ``is_live`` says is gone is stale and broken first.

    :raises Busy: another host, or a live mount of this host, holds it.
    """
    for holder in holders(image):
        if holder.host == host and not is_live(holder):
            release(image, holder)
            continue
        raise Busy(
            _("RBD image {name} is mounted read-write by {users}; unmount it there first (if that host is gone: "
              "bdev rbd break-lock)").format(
                name=name, users=holder.describe()),
            backend=BACKEND,
        )
    cookie = json.dumps({"host": host, "mount": os.fspath(mount)}, sort_keys=True)
    try:
        image.lock_exclusive(cookie)
    except (rbd.ImageBusy, rbd.ImageExists):
        raise Busy(_("RBD image {name} was just locked by another host").format(name=name), backend=BACKEND) from None
    except rbd.Error as exc:
        raise explain(exc, _("locking RBD image {name}").format(name=name)) from None


def release(image: Any, holder: Holder) -> None:
    """Remove ``holder``'s lock (its client may be long gone)."""
    try:
        image.break_lock(holder.client, holder.cookie)
    except rbd.ImageNotFound:
        return
    except rbd.Error as exc:
        raise BdevError(_("cannot release the lock of {users}: {cause}").format(
            users=holder.describe(), cause=explain(exc, 'unlocking').cause), backend=BACKEND) from None


def release_mount(image: Any, host: str, mount: str) -> None:
    """Release this host's lock for the mount at ``mount``, if any."""
    for holder in holders(image):
        if holder.host == host and holder.mount == os.fspath(mount):
            release(image, holder)
