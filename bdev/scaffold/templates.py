'''The files ``bdev plugin new NAME`` writes, as string templates.

Placeholders: ``{name}`` (the backend and entry-point name), ``{package}`` (``bdev_<name>``),
``{distribution}`` (``bdev-<name>``), ``{cls}`` (``<Name>Backend``), ``{test_cls}``
(``Test<Name>``).  Literal braces are doubled.
'''

from __future__ import annotations

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "0.1.0"
description = "bdev backend: {name}"
requires-python = ">=3.11"
dependencies = ["bdev"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."bdev.plugins"]
{name} = "{package}"

[tool.setuptools.packages.find]
include = ["{package}", "{package}.*"]
"""

INIT = '''\
"""bdev's {name} backend, registered through the ``bdev.plugins`` entry point."""

from bdev import hookimpl

from .backend import {cls}

__all__ = ["{cls}"]


@hookimpl
def bdev_backends():
    """Offer the {name} backend."""
    return [{cls}]
'''

BACKEND = '''\
"""The {name} backend.

Every operation below raises :class:`~bdev.errors.NotSupported`, as the base class does, until
you implement it; declare a capability in ``capabilities`` only once it works, and the
conformance kit (``pytest tests``) starts testing it.  The plugin guide, ``docs/writing-a-backend.md``
in bdev's source, explains each operation and what the core expects of it.
"""

from __future__ import annotations

from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from bdev.errors import NotSupported
from bdev.records import Change
from bdev.requirements import Requirement


class {cls}(Backend):
    """A container rootfs stored by {name}."""

    name = "{name}"
    description = "{name} (a new backend, nothing implemented yet)"
    capabilities = Capabilities(
        native_snapshot=False,
        snapshot_depends_on_origin=False,
        layers_over=(),
        block_backed=False,
        needs_pool=False,
        needs_mount=False,
        unprivileged=False,
        can_backup=False,
        sized=False,
        copy_by_snapshot=False,
        read_only=False,
    )
    # Tools, Python modules and kernel filesystems it needs, e.g. Tool("mkfs.{name}", package="...").
    requires: tuple[Requirement, ...] = ()
    detect_priority = None  # set only if detect() can recognise a bare LXC 1.0 rootfs path
    best_priority = None  # set to take part in -B best (btrfs 10, dir 1000)

    def _todo(self, operation: str) -> NotSupported:
        return NotSupported(f"the {{self.name}} backend does not support {{operation}} yet", backend=self.name)

    # ------------------------------------------------------------------ identity

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """TODO: the locator create(), copy_from() and snapshot() will give a rootfs at
        ``placement``, without creating anything (``str(placement.rootfs_dir)``, say); put a
        staged placement beside ``placement.near``."""
        raise self._todo("naming a new rootfs")

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """TODO: create an empty, unmounted rootfs at ``default_source(placement, options)``;
        leave nothing behind on failure; refuse an occupied target with AlreadyExists."""
        raise self._todo("create")

    def destroy(self, rootfs: Rootfs) -> None:
        """TODO: remove ``rootfs`` and its data; one already gone, or half made, is fine."""
        raise self._todo("destroy")

    def exists(self, rootfs: Rootfs) -> bool:
        """TODO: whether the storage behind ``rootfs`` exists."""
        raise self._todo("checking existence")

    def identity(self, rootfs: Rootfs) -> str:
        """TODO: a token that changes when other storage appears under the same locator
        (device and inode, a guid); the core uses it to tell whether a swap happened."""
        raise self._todo("identity")

    def data_path(self, rootfs: Rootfs) -> Path | None:
        """TODO: a path where the files are reachable without mounting, or None (then
        mount() and umount() are used)."""
        return None

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """TODO: mount ``rootfs`` on the existing directory ``mountpoint`` (read-only if asked),
        running programs through bdev.command.run."""
        raise self._todo("mount")

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """TODO: undo mount()."""
        raise self._todo("umount")

    def usage(self, rootfs: Rootfs) -> Usage:
        """TODO: the space ``rootfs`` uses (and its limit)."""
        return Usage(None, note=f"the {{self.name}} backend cannot measure usage yet")

    def resize(self, rootfs: Rootfs, size: int) -> None:
        """TODO: grow ``rootfs`` to ``size`` bytes (declare ``sized``); refuse losing data."""
        raise self._todo("resizing")

    def diff(self, rootfs: Rootfs) -> list[Change]:
        """TODO: for a layered backend, what changed relative to the origin."""
        raise self._todo("diffs against an origin")

    # ------------------------------------------------------------------ cloning

    def snapshot(
        self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """TODO: a copy-on-write clone of ``source`` at ``placement`` (declare
        ``native_snapshot``, or ``layers_over`` for a layer over another backend).  Full
        copies come from the base class's copy_from() without any code here."""
        raise self._todo("snapshot")

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs | None:
        """TODO: a read-only point-in-time copy for another backend to layer over, or None
        when this backend cannot make one cheaply."""
        return None

    # ------------------------------------------------------------------ atomic restore
    #
    # TODO: define swap(self, live: Rootfs, staged: Rootfs) -> None once it exchanges two rootfs
    # atomically.  While it is absent, bdev refuses to restore a snapshot in place and says to
    # restore to a new name instead, which is the safe answer.
'''

TEST = '''\
"""The bdev conformance kit against the {name} backend.

Capabilities the backend does not declare are skipped with the reason; run as root for the
tests that need real mounts and loop devices.
"""

from bdev.testing.kit import BackendContract


class {test_cls}(BackendContract):
    """Every contract test, for {name}."""

    backend_name = "{name}"
'''

README = """\
# {distribution}

A bdev storage backend: `{name}`.

```sh
pip install -e .
bdev backends            # {name} is listed
pytest tests             # the bdev conformance kit
```

Layout: `{package}/__init__.py` registers the backend through the `bdev.plugins` entry point
(see `pyproject.toml`); `{package}/backend.py` is the `Backend` subclass, every operation
raising "not supported" until it is implemented; `tests/test_{name}.py` runs bdev's
conformance kit against it. Declare a capability once it works and the kit tests it.
"""
