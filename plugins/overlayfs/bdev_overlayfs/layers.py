"""What each lower layer of an overlay rootfs is, kept in ``<private dir>/lowers.json``.

LXC's value only lists directories.  bdev also needs to know, for each, whether this rootfs
owns it (destroyed with it), whether it must be mounted first (a frozen loop image), and what
storage is behind it.  A lower is one of:

* ``layer``: a plain directory tree: a copied upper of the clone's source, or the empty
  ``rootfs`` directory a created container starts from;
* ``frozen``: a read-only, point-in-time copy made by another backend's ``freeze`` (a btrfs
  read-only snapshot, a reflinked loop image), never changed while used;
* ``live``: another container's rootfs in use (LXC's dir → overlay clone): the clone depends
  on it, and the engine records that dependency.

A rootfs made by real LXC has no record: a lower inside its own container directory (LXC's
``<container>/rootfs`` of ``lxc-create -B overlay``) reads as an owned layer, any other lower
as live.  The record is written before the things it describes are created, so a failure at
any point can be cleaned up from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bdev.errors import ConfigError
from bdev.fsops import write_atomic
from bdev.records import Rootfs

from ._i18n import _
from .layout import LEGACY_UPPER, UPPER, OverlayPaths

LAYER = "layer"
FROZEN = "frozen"
LIVE = "live"
ROLES = (LAYER, FROZEN, LIVE)
FORMAT = 1


@dataclass(frozen=True)
class Lower:
    """One lower layer.

    :param path: the directory given to the kernel (as written in ``lxc.rootfs.path``).
    :param role: ``layer``, ``frozen`` or ``live``.
    :param owned: the storage belongs to this rootfs and is destroyed with it.
    :param backend: for ``frozen`` and ``live``: the backend of the storage behind ``path``.
    :param source: that storage's locator (the rootfs value after the prefix).
    :param mount: the storage is mounted read-only at ``path`` before the overlay mount.
    :param home: a directory bdev made for this layer inside the private directory (a copied
        layer, a frozen copy's placement, a mount point); removed with the rootfs.
    """

    path: str
    role: str
    owned: bool
    backend: str | None = None
    source: str | None = None
    mount: bool = False
    home: str | None = None

    @property
    def storage(self) -> Rootfs | None:
        """The storage behind a frozen or live lower, when known."""
        if self.backend and self.source:
            return Rootfs(self.backend, self.source)
        return None

    def key(self) -> tuple[str, ...]:
        """What makes two lowers the same layer: the storage for a mounted lower (each rootfs
        mounts it at its own mount point), the directory otherwise."""
        if self.mount:
            return ("storage", self.backend or "", self.source or "")
        return ("path", os.path.normpath(self.path))

    def borrowed(self, path: str | None = None, home: str | None = None) -> "Lower":
        """The same layer used by another rootfs that does not own it."""
        return replace(self, owned=False, path=path or self.path, home=home)


def read_record(paths: OverlayPaths) -> list[Lower]:
    """The lowers recorded for ``paths`` (empty when there is no record, as for LXC's own)."""
    try:
        text = paths.record.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        data = json.loads(text)
        entries = data["lowers"]
        lowers = [Lower(**entry) for entry in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(_("the overlay layer record {record} is unreadable ({error})").format(
            record=paths.record, error=exc), backend="overlay") from None
    for lower in lowers:
        if lower.role not in ROLES:
            raise ConfigError(_("the overlay layer record {record} names an unknown role {role!r}").format(
                record=paths.record, role=lower.role), backend="overlay")
    return lowers


def write_record(paths: OverlayPaths, lowers: list[Lower]) -> None:
    """Record ``lowers`` atomically beside the upper."""
    data = {"format": FORMAT, "lowers": [asdict(lower) for lower in lowers]}
    write_atomic(paths.record, json.dumps(data, indent=1) + "\n", mode=0o644)


def describe(paths: OverlayPaths) -> list[Lower]:
    """What each lower of ``paths`` is, in kernel order: from the record, else guessed as LXC
    lays containers out (a lower inside the container directory is its own layer)."""
    recorded = {os.path.normpath(lower.path): lower for lower in read_record(paths)}
    out = []
    for path in paths.lowers:
        lower = recorded.get(os.path.normpath(path))
        out.append(lower if lower is not None else guess(paths, path))
    return out


def guess(paths: OverlayPaths, path: Path) -> Lower:
    """A lower without a record: owned layer if inside the (recognised) container directory."""
    known_layout = paths.upper.name in (UPPER, LEGACY_UPPER)
    if known_layout and paths.inside_container(path):
        return Lower(str(path), LAYER, owned=True, home=str(path))
    return Lower(str(path), LIVE, owned=False, backend="dir", source=str(path))


def all_known(paths: OverlayPaths) -> list[Lower]:
    """Every lower the record or the value names (a record may hold layers of a clone that
    failed before its value was complete): what a destroy must consider."""
    seen: dict[str, Lower] = {}
    for lower in [*read_record(paths), *describe(paths)]:
        seen.setdefault(os.path.normpath(lower.path), lower)
    return list(seen.values())


def keys(lowers: list[Lower]) -> list[tuple[str, ...]]:
    """The identity of a layer stack, for comparing two rootfs's lowers."""
    return [lower.key() for lower in lowers]
