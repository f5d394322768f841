"""RBD image operations through librbd, on an open pool (``rados.Ioctx``): create, snapshot +
protect + clone, hide an origin that clones still need, collect it when its last clone goes,
swap two names, usage.  librbd errors become one sentence (:func:`bdev_rbd._cluster.explain`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import rbd

from bdev.errors import AlreadyExists, BdevError, NotFound

from ._cluster import BACKEND, PoolFull, explain
from ._i18n import _
from ._names import DELETED, SWAP_SUFFIX

log = logging.getLogger("bdev.rbd")
FEATURES = rbd.RBD_FEATURE_LAYERING
SWAP_KEY = "bdev.swap-with"
CONFIG_KEY = "bdev.config"
NAME_KEY = "bdev.container"
ROOM_TIMEOUT = 45.0
"""How long removing an image waits for Ceph to see the room its freed data left in a full
pool (the monitor lifts a pool's full flag at its next statistics report: every 5 to 15 s
with Ceph's defaults), or for a killed client's watch to expire (30 s by default)."""
ROOM_POLL = 0.5


def exists(ioctx: Any, name: str) -> bool:
    """Whether image ``name`` exists in the pool."""
    try:
        with rbd.Image(ioctx, name, read_only=True):
            return True
    except rbd.ImageNotFound:
        return False
    except rbd.Error as exc:
        raise explain(exc, _("looking for image {name}").format(name=name)) from None


@contextlib.contextmanager
def opened(ioctx: Any, name: str, *, snapshot: str | None = None, read_only: bool = False) -> Iterator[Any]:
    """Image ``name`` (at ``snapshot``), closed on exit.

    :raises NotFound: no such image.
    """
    try:
        image = rbd.Image(ioctx, name, snapshot=snapshot, read_only=read_only)
    except rbd.ImageNotFound:
        raise NotFound(_("RBD image {name}{snapshot} does not exist").format(
            name=name, snapshot='@' + snapshot if snapshot else ''), backend=BACKEND) from None
    except rbd.Error as exc:
        raise explain(exc, _("opening RBD image {name}").format(name=name)) from None
    try:
        yield image
    finally:
        image.close()


def create(ioctx: Any, name: str, size: int) -> None:
    """A new image of ``size`` bytes with layering (so it can be cloned).

    :raises AlreadyExists: the name is taken.
    """
    try:
        rbd.RBD().create(ioctx, name, size, old_format=False, features=FEATURES)
    except rbd.ImageExists:
        raise AlreadyExists(_("RBD image {name} already exists").format(name=name), backend=BACKEND) from None
    except (rbd.Error, OSError) as exc:
        raise explain(exc, _("creating RBD image {name}").format(name=name)) from None


def remove(ioctx: Any, name: str) -> None:
    """Remove image ``name`` (it has no snapshots left); one that is gone is fine.

    After a watchdog aborted an attachment because the pool is full, removing the image
    meets two obstacles, each retried for up to :data:`ROOM_TIMEOUT` seconds:

    * librbd cannot move the image to the pool's trash, its first step (it then says the image
      does not exist, or that the pool is full): the image's data is freed (:func:`_free_data`)
      and the removal retried until Ceph sees the room;
    * the killed rbd-fuse daemon's watch on the image stays until the OSD's watch timeout
      (``osd_client_watch_timeout``, 30 s by default): librbd says the image is in use.

    :raises PoolFull: the pool still had no room then; the image stays, without its data.
    :raises BdevError: the image was still in use then, or Ceph failed otherwise.
    """
    doing = _("removing RBD image {name}").format(name=name)
    deadline, freed = time.monotonic() + ROOM_TIMEOUT, False
    while True:
        try:
            rbd.RBD().remove(ioctx, name)
            return
        except rbd.ImageNotFound:
            if not exists(ioctx, name):
                return
            error: BdevError = PoolFull(doing)
        except (rbd.DiskQuotaExceeded, rbd.NoSpace, rbd.ImageBusy) as exc:
            error = explain(exc, doing)
        except rbd.Error as exc:
            raise explain(exc, doing) from None
        if isinstance(error, PoolFull) and not freed:
            _free_data(ioctx, name)
            freed = True
        if time.monotonic() > deadline:
            raise error
        time.sleep(ROOM_POLL)


def _free_data(ioctx: Any, name: str) -> None:
    """Discard every extent of image ``name``: Ceph deletes its data objects, which a full
    pool allows, and the pool's usage drops at the next statistics report.  Best effort."""
    with opened(ioctx, name) as image:
        try:
            image.discard(0, image.size())
        except rbd.Error as exc:  # a clone's discard writes (its parent must not show): no room for it
            log.info("could not free the data of RBD image %s in its full pool: %s", name, exc)
            return
    log.info("freed the data of RBD image %s: its pool is full, so it cannot go yet", name)


def rename(ioctx: Any, old: str, new: str) -> None:
    """Rename an image (its id, snapshots and clones stay)."""
    try:
        rbd.RBD().rename(ioctx, old, new)
    except rbd.Error as exc:
        raise explain(exc, _("renaming RBD image {old} to {new}").format(old=old, new=new)) from None


def snapshots(image: Any) -> list[str]:
    """The image's snapshot names, oldest first."""
    return [s["name"] for s in sorted(image.list_snaps(), key=lambda s: s["id"])]


def children(ioctx: Any, name: str, snap: str) -> list[str]:
    """Images cloned from ``name@snap`` (``pool/image``)."""
    with opened(ioctx, name, snapshot=snap, read_only=True) as image:
        return [f"{pool}/{child}" for pool, child in image.list_children()]


def parent(image: Any) -> tuple[str, str, str] | None:
    """``(pool, image, snapshot)`` this image was cloned from, or None (not a clone, or
    flattened)."""
    try:
        return tuple(image.parent_info())  # type: ignore[return-value]
    except rbd.ImageNotFound:
        return None


def free_snapshot_name(image: Any, base: str) -> str:
    """``base``, or ``base.2``, ``base.3`` ... whichever the image does not have yet."""
    taken, candidate, n = set(snapshots(image)), base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}.{n}"
    return candidate


def clone(ioctx: Any, source: str, snap: str, target: str) -> None:
    """Snapshot ``source`` as ``snap``, protect it and clone it to ``target`` (layering); on
    failure the snapshot goes again and nothing is left."""
    with opened(ioctx, source) as image:
        try:
            image.create_snap(snap)
        except rbd.Error as exc:
            raise explain(exc, _("snapshotting RBD image {source}").format(source=source)) from None
        try:
            image.protect_snap(snap)
            rbd.RBD().clone(ioctx, source, snap, ioctx, target, features=FEATURES)
        except rbd.ImageExists:
            _drop_snapshot(image, snap)
            raise AlreadyExists(_("RBD image {target} already exists").format(target=target), backend=BACKEND) from None
        except (rbd.Error, OSError) as exc:
            with contextlib.suppress(rbd.Error, BdevError):
                _drop_snapshot(image, snap)
            raise explain(exc, _("cloning {source}@{snap} to {target}").format(
                source=source, snap=snap, target=target)) from None


def _drop_snapshot(image: Any, snap: str) -> None:
    if image.is_protected_snap(snap):
        image.unprotect_snap(snap)
    image.remove_snap(snap)


def drop_unused_snapshots(ioctx: Any, name: str) -> list[str]:
    """Remove the snapshots of ``name`` that no clone uses; returns those that remain."""
    remaining = []
    with opened(ioctx, name) as image:
        for snap in snapshots(image):
            if children(ioctx, name, snap):
                remaining.append(snap)
                continue
            try:
                _drop_snapshot(image, snap)
            except rbd.Error as exc:
                raise explain(exc, _("removing snapshot {name}@{snap}").format(name=name, snap=snap)) from None
    return remaining


def hide(ioctx: Any, name: str) -> str:
    """Rename ``name`` (clones still need some of its snapshots) to a hidden
    ``.bdev-deleted.<name>.<id>`` after dropping its unused snapshots; returns the new name."""
    with opened(ioctx, name, read_only=True) as image:
        hidden = f"{DELETED}{name}.{image.id()}"
    rename(ioctx, name, hidden)
    log.info("RBD image %s is hidden as %s until its last clone goes", name, hidden)
    return hidden


def collect(ioctx_for: Any, origin: tuple[str, str, str] | None) -> None:
    """After a clone of ``origin`` (pool, image, snapshot) went away or was flattened: remove
    the snapshot if no clone uses it any more, then the image if it is hidden and has no
    snapshots left, and so on up its own origins.  ``ioctx_for(pool)`` opens a pool."""
    while origin is not None:
        pool_name, name, snap = origin
        with ioctx_for(pool_name) as ioctx:
            if not exists(ioctx, name):
                return
            with opened(ioctx, name) as image:
                if snap not in snapshots(image) or children(ioctx, name, snap):
                    return
                try:
                    _drop_snapshot(image, snap)
                except rbd.Error as exc:
                    raise explain(exc, _("removing snapshot {name}@{snap}").format(name=name, snap=snap)) from None
                left, origin = snapshots(image), parent(image)
            if not name.startswith(DELETED) or left:
                return
            remove(ioctx, name)


def image_id(ioctx: Any, name: str) -> str:
    """The image's id (kept by a rename, so a swap of names changes the id behind a name)."""
    with opened(ioctx, name, read_only=True) as image:
        return image.id()


def metadata(ioctx: Any, name: str) -> dict[str, str]:
    """The image's metadata (``bdev.*`` keys hold what bdev keeps with the image)."""
    with opened(ioctx, name, read_only=True) as image:
        return dict(image.metadata_list())


def set_metadata(ioctx: Any, name: str, key: str, value: str | None) -> None:
    """Set (or, with None, remove) one metadata key."""
    with opened(ioctx, name) as image:
        try:
            if value is None:
                with contextlib.suppress(KeyError, rbd.ObjectNotFound):
                    image.metadata_remove(key)
            else:
                image.metadata_set(key, value)
        except rbd.Error as exc:
            raise explain(exc, _("writing metadata of RBD image {name}").format(name=name)) from None


def allocated(image: Any, *, include_parent: bool) -> int:
    """Bytes of the image's extents that hold data (with those it reads from its parent, if
    asked), measured with ``diff_iterate``."""
    total = 0

    def count(_offset: int, length: int, exists_: bool) -> None:
        nonlocal total
        if exists_:
            total += length

    image.diff_iterate(0, image.size(), None, count, include_parent=include_parent)
    return total


# ---------------------------------------------------------------------------- swapping names


def swap(ioctx: Any, a: str, b: str) -> None:
    """Exchange the names of images ``a`` and ``b`` by three renames through
    ``<a>.bdev-swap``; ``a`` first records ``b`` in its metadata, so :func:`repair` can roll an
    interrupted swap back (one rename done) or forward (two done)."""
    tmp = a + SWAP_SUFFIX
    set_metadata(ioctx, a, SWAP_KEY, b)
    rename(ioctx, a, tmp)
    rename(ioctx, b, a)
    rename(ioctx, tmp, b)
    set_metadata(ioctx, b, SWAP_KEY, None)


def repair(ioctx: Any, name: str) -> None:
    """Finish a swap of ``name`` that a crash interrupted (see :func:`swap`)."""
    tmp = name + SWAP_SUFFIX
    if name.endswith(SWAP_SUFFIX) or not exists(ioctx, tmp):
        return
    if not exists(ioctx, name):
        rename(ioctx, tmp, name)  # only the first rename happened: roll back
        set_metadata(ioctx, name, SWAP_KEY, None)
        return
    partner = metadata(ioctx, tmp).get(SWAP_KEY)
    if partner and not exists(ioctx, partner):
        rename(ioctx, tmp, partner)  # two renames happened: roll forward
        set_metadata(ioctx, partner, SWAP_KEY, None)

