"""A round trip of a container through other backends, shared by the tests of backends whose
storage is not a host directory (zfs, rbd): copied onto btrfs on a loop file, back, onto dir
and back again, with the tree checked at every step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bdev.api import Container
from bdev.testing.storage import loop_filesystem

Matches = Callable[[Container, Path], list[str]]


def copy_through_btrfs_and_dir(backend: str, lxcpath: Path, sample: Path, scratch: Path, matches: Matches) -> None:
    """Create a ``backend`` container from ``sample`` in ``lxcpath``, copy it to btrfs and back,
    to dir and back; ``matches(container, sample)`` lists the differences, which must be none.
    Everything made is destroyed."""
    origin = Container("origin", lxcpath)
    origin.create(backend=backend, source=sample)
    with loop_filesystem("btrfs", scratch / "btrfs") as mnt:
        bpath = mnt / "lxc"
        bpath.mkdir()
        on_btrfs = origin.clone("onbtrfs", lxcpath=bpath, backend="btrfs")
        assert matches(on_btrfs, sample) == []
        back = on_btrfs.clone("back", lxcpath=lxcpath, backend=backend)
        assert matches(back, sample) == []
        on_btrfs.destroy()
    on_dir = back.clone("ondir", backend="dir")
    assert matches(on_dir, sample) == []
    again = on_dir.clone("again", backend=backend)
    assert matches(again, sample) == []
    for container in (again, on_dir, back, origin):
        container.destroy()
