"""Where an overlay rootfs keeps its parts, and how its ``lxc.rootfs.path`` value reads.

The value is LXC's ``<lower>[:<lower2>...]:<upper>``: lowers in kernel order (topmost first),
the upper last.  The work directory is derived from the upper as LXC derives it:
``dirname(upper)/work`` (LXC >= 4.0, upper ``<container>/overlay/delta``), or
``dirname(upper)/olwork`` for LXC 1.x-3.x's upper ``<container>/delta0``.

Everything bdev adds for a rootfs lives in its *private directory*, ``dirname(upper)``
(``<container>/overlay``, or ``<container>/.overlay.bdev-restore`` while a restore is staged):
the upper ``delta``, ``work``, the layer record ``lowers.json``, copied layers ``layerN`` and
frozen lowers ``lowerN/`` (another backend's read-only copy of an origin, mounted at
``lowerN/rootfs`` when it needs mounting).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import InvalidInput
from bdev.naming import validate_path
from bdev.records import Placement
from ._i18n import _

PRIVATE = "overlay"
UPPER = "delta"
WORK = "work"
LEGACY_UPPER = "delta0"
LEGACY_WORK = "olwork"
RECORD = "lowers.json"
FORBIDDEN = (":", ",")
"""Characters no layer path may hold: ``:`` separates layers in LXC's value and in the kernel's
``lowerdir=``, ``,`` separates mount options."""


@dataclass(frozen=True)
class OverlayPaths:
    """The parts of one overlay rootfs value.

    :param lowers: lower directories, topmost first, as the kernel stacks them.
    :param upper: the upper (delta) directory.
    """

    lowers: tuple[Path, ...]
    upper: Path

    @classmethod
    def parse(cls, source: str, backend: str = "overlay") -> "OverlayPaths":
        """Read ``<lower>[:<lower2>...]:<upper>``; each part must be an absolute path.

        :raises InvalidInput: one sentence saying what is malformed.
        """
        parts = source.split(":")
        if len(parts) < 2 or any(not part for part in parts):
            raise InvalidInput(
                _("overlay rootfs {source!r} is not <lower>[:<lower>...]:<upper>").format(
                    source=source), backend=backend
            )
        paths = []
        for part in parts:
            if not part.startswith("/"):
                raise InvalidInput(_("overlay layer {part!r} in {source!r} is not an absolute path").format(
                    part=part, source=source), backend=backend)
            paths.append(validate_path(part, "overlay layer"))
        return cls(tuple(paths[:-1]), paths[-1])

    @property
    def value(self) -> str:
        """The text after ``overlay:`` in ``lxc.rootfs.path``."""
        return ":".join(str(p) for p in (*self.lowers, self.upper))

    @property
    def legacy(self) -> bool:
        """LXC 1.x-3.x layout: upper ``<container>/delta0``, work ``<container>/olwork``."""
        return self.upper.name == LEGACY_UPPER

    @property
    def private_dir(self) -> Path:
        """``dirname(upper)``: where the work directory and bdev's layer record live."""
        return self.upper.parent

    @property
    def workdir(self) -> Path:
        """The kernel's work directory, on the upper's filesystem, as LXC names it."""
        return self.private_dir / (LEGACY_WORK if self.legacy else WORK)

    @property
    def record(self) -> Path:
        """bdev's record of what each lower is (``lowers.json`` beside the upper)."""
        return self.private_dir / RECORD

    @property
    def container_dir(self) -> Path:
        """The container directory the upper belongs to (``<lxcpath>/<name>``)."""
        return self.private_dir if self.legacy else self.private_dir.parent

    def inside_container(self, path: Path | str) -> bool:
        """Whether ``path`` lies inside this rootfs's container directory."""
        return _inside(Path(path), self.container_dir)

    def inside_private(self, path: Path | str) -> bool:
        """Whether ``path`` lies inside this rootfs's private directory (never true for the
        legacy layout, whose private directory is the container directory itself)."""
        return not self.legacy and _inside(Path(path), self.private_dir)


def _inside(path: Path, directory: Path) -> bool:
    return os.path.normpath(path) != os.path.normpath(directory) and os.path.normpath(path).startswith(
        os.path.normpath(directory).rstrip("/") + "/"
    )


def private_dir(placement: Placement) -> Path:
    """The private directory of a new rootfs at ``placement``: ``<container>/overlay`` (staged:
    ``<container>/.overlay.bdev-<stage>``)."""
    return placement.path(PRIVATE)


def new_paths(placement: Placement, lowers: list[Path] | tuple[Path, ...]) -> OverlayPaths:
    """The value of a new rootfs at ``placement`` over ``lowers``."""
    return OverlayPaths(tuple(lowers), private_dir(placement) / UPPER)


def check_usable(paths: OverlayPaths, backend: str = "overlay") -> None:
    """Refuse layer paths the kernel's mount options cannot carry.

    :raises InvalidInput: a path contains ``:`` or ``,``.
    """
    for path in (*paths.lowers, paths.upper, paths.workdir):
        bad = [c for c in FORBIDDEN if c in str(path)]
        if bad:
            raise InvalidInput(
                _("overlay layer {path!r} contains {bad!r}, which overlay mount options cannot carry").format(
                    path=str(path), bad=bad[0]),
                backend=backend,
            )
