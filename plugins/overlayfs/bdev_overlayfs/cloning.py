"""Building overlay clones: the layer stack of a new rootfs for each way the core asks for one.

* **Layer over another backend** (``lxc-copy -s`` of a dir, btrfs, loop ... container): the
  lower is a read-only frozen copy of the origin when its backend can ``freeze`` one (stored
  under the clone's ``overlay/lowerN``, destroyed with the clone): safe by construction.
  Otherwise it is the origin's live rootfs, as LXC does, and the clone depends on the origin.
* **Clone of an overlay clone**: lowers are *stacked*, never overlay mounts: the new lowers are
  a read-only copy of the source's upper (reflinked where the filesystem can) on top of the
  source's lowers.  Layers the source owns are duplicated for the new clone cheaply (a frozen
  copy is frozen again: a btrfs snapshot or a reflinked image; a copied layer is copied with
  reflinks) so the new clone owns everything it uses except live rootfs of other containers;
  it depends on its source exactly when it uses such a live rootfs.
* **Container snapshot** (``lxc-snapshot``, a placement with an owner), as LXC makes them: the
  same lowers as the container and a copy of its upper as the snapshot's own upper.  A
  snapshot lives and dies with its container, so it records no dependency (LXC does not
  either) and the container can still be restored in place.
* **Staged restore** (``placement.stage``): the snapshot's upper is copied beside the live
  upper, over the live container's lowers, so that :meth:`swap` can exchange the two uppers
  atomically.  A snapshot whose lowers differ from the container's is refused.

Every layer is recorded in ``lowers.json`` before it is made, so a failure (or a crash, through
the engine's journal and :meth:`destroy`) removes exactly what was made.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bdev.copying import copytree
from bdev.errors import AlreadyExists, BdevError
from bdev.records import CloneOutcome, CreateOptions, Placement, Rootfs

from ._i18n import _
from ._util import copy_root_metadata
from .layers import FROZEN, LAYER, LIVE, Lower, describe, keys, write_record
from .layout import UPPER, WORK, OverlayPaths, check_usable, private_dir
from .mounting import lowers_mounted, missing_layer
from .removal import teardown

if TYPE_CHECKING:
    from bdev.backend import Backend

    from .backend import OverlayBackend

NAME = "overlay"


class NewRootfs:
    """A rootfs being built at a placement: its private directory, upper and work directory,
    and the lowers recorded so far (each recorded before it is made)."""

    def __init__(self, backend: "OverlayBackend", placement: Placement):
        self.backend = backend
        self.placement = placement
        self.private = private_dir(placement)
        self.upper = self.private / UPPER
        self.lowers: list[Lower] = []

    @property
    def paths(self) -> OverlayPaths:
        lowers = [Path(lower.path) for lower in self.lowers] or [self.placement.rootfs_dir]
        return OverlayPaths(tuple(lowers), self.upper)

    @property
    def rootfs(self) -> Rootfs:
        return Rootfs(NAME, self.paths.value)

    def start(self) -> None:
        """Make the private directory, the upper and the work directory (0755, as LXC)."""
        if os.path.lexists(self.upper):
            raise AlreadyExists(_("{upper} already exists").format(upper=self.upper), backend=NAME)
        self.private.mkdir(mode=0o755, parents=True, exist_ok=True)
        for directory in (self.upper, self.private / WORK):
            directory.mkdir(mode=0o755)
            os.chmod(directory, 0o755)

    def record(self, lower: Lower, index: int | None = None) -> None:
        """Add (or, with ``index``, replace) a lower and write the record at once."""
        if index is None:
            self.lowers.append(lower)
        else:
            self.lowers[index] = lower
        check_usable(self.paths)
        write_record(self.paths, self.lowers)

    def record_all(self, lowers: list[Lower]) -> None:
        """Add several lowers with one write of the record (each write is durable: two fsyncs)."""
        self.lowers.extend(lowers)
        check_usable(self.paths)
        write_record(self.paths, self.lowers)

    def layer_placement(self, index: int) -> Placement:
        """Where another backend puts lower ``index`` (a frozen copy): the directory
        ``overlay/lower<index>``, with a pool name unique to this rootfs
        (``<container>.overlay.lower<index>``), so pool backends never collide."""
        return Placement(self.private, f"lower{index}", owner=f"{self.placement.storage_name}.overlay")

    def borrow(self, lowers: list[Lower]) -> None:
        """Record lowers used but not owned (one write for all), then make the mount points of
        mounted ones."""
        self.record_all(lowers)
        for lower in lowers:
            if lower.mount and lower.home:
                Path(lower.path).mkdir(mode=0o755, parents=True, exist_ok=True)

    def forget(self, index: int) -> None:
        """Drop a recorded lower that was not made after all."""
        del self.lowers[index]
        write_record(self.paths, self.lowers)

    def abandon(self) -> None:
        """Remove everything made so far (after a failure)."""
        with contextlib.suppress(BdevError, OSError):
            teardown(self.backend.registry, self.paths, list(self.lowers))

    def outcome(self, method: str, depends: bool) -> CloneOutcome:
        """The result, once every layer is in place: the work directory is given the upper
        root's owner (the container's root, who mounts a mapped container's overlay)."""
        st = os.lstat(self.upper)
        with contextlib.suppress(PermissionError):  # an ordinary user outside a user namespace keeps theirs
            os.lchown(self.private / WORK, st.st_uid, st.st_gid)
        return CloneOutcome(self.rootfs, method, depends_on_origin=depends)


# ---------------------------------------------------------------------------- layer over others


def layer_over(backend: "OverlayBackend", source: Rootfs, source_backend: "Backend", placement: Placement) -> CloneOutcome:
    """A clone of another backend's rootfs: over a frozen copy if it can make one, else over
    the live rootfs (depends on the origin)."""
    if not source_backend.exists(source):
        raise BdevError(_("the origin's rootfs {source} does not exist").format(source=source), backend=NAME)
    new = NewRootfs(backend, placement)
    new.start()
    try:
        lower = _try_freeze(backend, new, 0, source, source_backend)
        depends = lower is None
        if lower is None:
            lower = _share_live(new, 0, source, source_backend)
        with lowers_mounted(backend.registry, [lower]):
            copy_root_metadata(Path(lower.path), new.upper)
        _make_mount_dir(placement)
        return new.outcome("layer", depends)
    except BaseException:
        new.abandon()
        raise


def _try_freeze(
    backend: "OverlayBackend", new: NewRootfs, index: int, storage: Rootfs, storage_backend: "Backend"
) -> Lower | None:
    """Record and make lower ``index`` of ``new`` as a frozen copy of ``storage`` owned by the
    new rootfs (in ``overlay/lower<index>``); None, with nothing left, when the backend cannot
    freeze (asked without a record first when it does not implement ``freeze`` at all, as dir)."""
    if not can_freeze(storage_backend):
        return None
    home = new.private / f"lower{index}"
    place = new.layer_placement(index)
    new.record(
        Lower(
            str(place.rootfs_dir), FROZEN, owned=True, backend=storage.backend,
            source=_likely_source(storage_backend, place), home=str(home),
        )
    )
    slot = len(new.lowers) - 1
    home.mkdir(mode=0o755)
    frozen = storage_backend.freeze(storage, place)
    if frozen is None:
        new.forget(slot)
        home.rmdir()
        return None
    frozen_backend = backend.registry.backend_for(frozen) if backend.registry else storage_backend
    path = frozen_backend.data_path(frozen)
    lower = Lower(
        str(path or place.rootfs_dir), FROZEN, owned=True, backend=frozen.backend, source=frozen.source,
        mount=path is None, home=str(home),
    )
    if path is None:
        place.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
    new.record(lower, slot)
    return lower


def can_freeze(backend: "Backend") -> bool:
    """Whether ``backend`` may freeze a rootfs: it overrides :meth:`Backend.freeze`, whose
    default makes nothing and answers None (dir).  Such a backend may still answer None for
    a given placement (btrfs off its filesystem)."""
    from bdev.backend import Backend

    return type(backend).freeze is not Backend.freeze


def _share_live(new: NewRootfs, index: int, source: Rootfs, source_backend: "Backend") -> Lower:
    """Use another container's live rootfs as lower ``index``: its directory, or (for a backend
    without one) its storage mounted read-only at ``overlay/lower<index>/rootfs``."""
    path = source_backend.data_path(source)
    if path is not None:
        lower = Lower(str(path), LIVE, owned=False, backend=source.backend, source=source.source)
        new.record(lower)
        return lower
    home = new.private / f"lower{index}"
    lower = Lower(
        str(home / "rootfs"), LIVE, owned=False, backend=source.backend, source=source.source, mount=True, home=str(home)
    )
    new.record(lower)
    (home / "rootfs").mkdir(mode=0o755, parents=True)
    return lower


def _likely_source(backend: "Backend", place: Placement) -> str | None:
    """Where ``backend`` would put a rootfs at ``place``: recorded before ``freeze`` runs, so a
    crash in the middle still lets :func:`teardown` find the frozen copy."""
    try:
        return backend.default_source(place, CreateOptions())
    except BdevError:
        return None


def _make_mount_dir(placement: Placement) -> None:
    """LXC makes ``<container>/rootfs`` for an overlay clone; do the same (not when staged)."""
    if placement.stage is None:
        placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)


# ---------------------------------------------------------------------------- overlay sources


def _source_layers(source: Rootfs) -> tuple[OverlayPaths, list[Lower]]:
    paths = OverlayPaths.parse(source.source)
    lowers = describe(paths)
    problem = missing_layer(paths, [lower for lower in lowers if not lower.mount])
    if problem:
        raise BdevError(_("the source cannot be layered over: {problem}").format(problem=problem), backend=NAME)
    return paths, lowers


def stack_clone(backend: "OverlayBackend", source: Rootfs, placement: Placement) -> CloneOutcome:
    """A clone of an overlay rootfs: a copy of its upper stacked on (duplicates of) its lowers."""
    src, src_lowers = _source_layers(source)
    new = NewRootfs(backend, placement)
    new.start()
    try:
        depends = False
        with os.scandir(src.upper) as entries:
            changed = any(entries)
        if changed:  # an empty upper adds nothing: no layer for it
            _copy_layer(new, "layer0", src.upper)
        for index, lower in enumerate(src_lowers, start=1):
            if lower.role == LIVE:
                _share(new, index, lower)
                depends = True
            elif lower.role == FROZEN and lower.storage is not None:
                _refreeze(backend, new, index, lower)
            else:
                _copy_layer(new, f"layer{index}", Path(lower.path))
        copy_root_metadata(src.upper, new.upper)
        _make_mount_dir(placement)
        return new.outcome("snapshot", depends)
    except BaseException:
        new.abandon()
        raise


def _copy_layer(new: NewRootfs, name: str, origin: Path) -> None:
    """A read-only layer owned by the new rootfs: a copy (reflinked where possible) of ``origin``."""
    target = new.private / name
    new.record(Lower(str(target), LAYER, owned=True, home=str(target)))
    target.mkdir(mode=0o755)
    copytree(origin, target)


def _share(new: NewRootfs, index: int, lower: Lower) -> None:
    """Use a live lower as it is (a mounted one at the new rootfs's own mount point)."""
    if lower.mount:
        home = new.private / f"lower{index}"
        new.borrow([lower.borrowed(path=str(home / "rootfs"), home=str(home))])
    else:
        new.borrow([lower.borrowed()])


def _refreeze(backend: "OverlayBackend", new: NewRootfs, index: int, lower: Lower) -> None:
    """Duplicate a frozen lower for the new rootfs: freeze the frozen copy again (O(1) for a
    btrfs snapshot or a reflinked image), or copy its files when its backend cannot."""
    storage = lower.storage
    assert storage is not None and backend.registry is not None
    frozen_backend = backend.registry.backend_for(storage)
    if _try_freeze(backend, new, index, storage, frozen_backend) is not None:
        return
    target = new.private / f"layer{index}"
    new.record(Lower(str(target), LAYER, owned=True, home=str(target)))
    target.mkdir(mode=0o755)
    with frozen_backend.accessed(storage, readonly=True) as files:
        copytree(files, target)


def container_snapshot(backend: "OverlayBackend", source: Rootfs, placement: Placement) -> CloneOutcome:
    """``lxc-snapshot`` of an overlay container: its lowers, a copy of its upper."""
    src, src_lowers = _source_layers(source)
    new = NewRootfs(backend, placement)
    new.start()
    try:
        new.borrow(staged_lowers(src_lowers, new.private))
        copytree(src.upper, new.upper)
        return new.outcome("snapshot", False)
    except BaseException:
        new.abandon()
        raise


def staged_lowers(lowers: list[Lower], private: Path) -> list[Lower]:
    """``lowers`` as used by another rootfs of the same container (its snapshot, or a staged
    restore): borrowed, each mounted one at a mount point of its own under ``private``."""
    out = []
    for index, lower in enumerate(lowers):
        if lower.mount:
            home = private / f"lower{index}"
            out.append(lower.borrowed(path=str(home / "rootfs"), home=str(home)))
        else:
            out.append(lower.borrowed())
    return out


def staged_copy(backend: "OverlayBackend", source: Rootfs, source_backend: "Backend", placement: Placement) -> CloneOutcome:
    """The snapshot ``source`` rebuilt beside the live rootfs ``placement.near`` for an atomic
    swap of the two uppers."""
    if source_backend.name != NAME:
        raise BdevError(
            _("a {name} snapshot cannot be restored in place over an overlay rootfs; restore it to a new name").format(
                name=source_backend.name),
            backend=NAME,
        )
    if not placement.near:
        raise BdevError(_("a staged overlay rootfs needs the live rootfs it will replace"), backend=NAME)
    live = OverlayPaths.parse(placement.near)
    live_lowers = describe(live)
    src, src_lowers = _source_layers(source)
    if keys(src_lowers) != keys(live_lowers):
        raise BdevError(
            _("the snapshot's lower layers differ from the container's, so its upper cannot be swapped in; restore "
              "it to a new name instead"),
            backend=NAME,
        )
    new = NewRootfs(backend, placement)
    new.start()
    try:
        new.borrow(staged_lowers(live_lowers, new.private))
        copytree(src.upper, new.upper)
        return new.outcome("snapshot", False)
    except BaseException:
        new.abandon()
        raise
