"""Where LXC keeps a container's files, and the names of its snapshots.

A :class:`ContainerRef` is a (lxcpath, name) pair; snapshots are containers too, living in
the container's snapshot directory: ``<lxcpath>/<name>/snaps`` (LXC >= 1.1), or LXC 1.0's
``<lxcpath>snaps/<name>`` (for example ``/var/lib/lxcsnaps/c1``) when that directory exists,
as current LXC still honours.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..records import Placement

CONFIG = "config"
PARTIAL = "partial"
JOURNAL = ".bdev-journal.json"
SNAPSHOTS = "snaps"
DEPENDENTS = "lxc_snapshots"
ORIGIN = "lxc_rdepends"
TIMESTAMP = "ts"
COMMENT = "comment"
SNAPSHOT_NAME = re.compile(r"^snap(\d+)$")


@dataclass(frozen=True)
class ContainerRef:
    """A container (or snapshot) by lxcpath and name; it need not exist.

    :param owner: for a snapshot, the name of the container it belongs to.
    """

    lxcpath: Path
    name: str
    owner: str | None = None

    @property
    def directory(self) -> Path:
        return self.lxcpath / self.name

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG

    @property
    def placement(self) -> Placement:
        """Where this container's storage goes, for backends."""
        return Placement(self.lxcpath, self.name, owner=self.owner)

    @property
    def label(self) -> str:
        """How errors name it: ``web1`` or ``web1/snap0``."""
        return f"{self.owner}/{self.name}" if self.owner else self.name

    def file(self, leaf: str) -> Path:
        return self.directory / leaf


def legacy_snapshots_root(lxcpath: Path) -> Path:
    """LXC 1.0's snapshot root for an lxcpath: ``<lxcpath>snaps`` (string concatenation)."""
    return Path(str(lxcpath).rstrip("/") + "snaps")


def legacy_snapshots_dir(ref: ContainerRef) -> Path:
    """LXC 1.0's snapshot directory of a container: ``<lxcpath>snaps/<name>``."""
    return legacy_snapshots_root(ref.lxcpath) / ref.name


def snapshots_dir(ref: ContainerRef) -> Path:
    """The directory holding ``ref``'s snapshots: LXC 1.0's ``<lxcpath>snaps/<name>`` whenever
    ``<lxcpath>snaps`` exists (for every container of that lxcpath, as LXC 5's
    ``get_snappath_dir`` decides), else ``<lxcpath>/<name>/snaps``."""
    if os.path.isdir(legacy_snapshots_root(ref.lxcpath)):
        return legacy_snapshots_dir(ref)
    return ref.directory / SNAPSHOTS


def snapshot_ref(ref: ContainerRef, snapname: str) -> ContainerRef:
    """The ref of ``ref``'s snapshot ``snapname``."""
    return ContainerRef(snapshots_dir(ref), snapname, owner=ref.name)


def snapshot_number(name: str) -> int | None:
    """N for ``snapN``, None for anything else."""
    match = SNAPSHOT_NAME.match(name)
    return int(match.group(1)) if match else None
