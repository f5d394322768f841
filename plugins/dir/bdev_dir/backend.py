"""The dir backend: create, destroy, bind mount, full copy (reflinked where the filesystem
allows, through the core's copy engine) and an atomic swap for in-place restore."""

from __future__ import annotations

import os
from pathlib import Path

from bdev import Capabilities, CreateOptions, Placement, Rootfs, Usage
from bdev.backend import PathBackend
from bdev.command import run
from bdev.errors import AlreadyExists, Busy, InvalidInput
from bdev.naming import validate_path
from bdev.fsops import mounted_inside, remove_tree, tree_usage
from bdev.requirements import Tool
from ._i18n import _, N_


class DirBackend(PathBackend):
    """A rootfs that is a directory, by default ``<lxcpath>/<name>/rootfs``.

    Snapshots are full copies (the core falls back to a copy when a snapshot is allowed to be
    one, as LXC's ``MAYBE_SNAPSHOT``); the copy engine reflinks each file when the filesystem
    supports it, which makes them nearly free on btrfs and xfs.
    """

    name = "dir"
    aliases = ("directory",)
    description = N_("a plain directory; snapshots are (reflinked) copies")
    capabilities = Capabilities(
        unprivileged=True, can_backup=True,
        unprivileged_note=N_("works for an ordinary user in directories they own; a mapped (lxc.idmap) rootfs "
                            "is copied and removed in a user namespace of their /etc/subuid range"),
    )
    requires = (Tool("mount", "mount"),)
    detect_priority = 1000
    best_priority = 1000

    def detect(self, source: str) -> bool:
        """Any existing directory is a dir rootfs (checked last, after specific backends)."""
        return os.path.isdir(source)

    def parse(self, source: str) -> Rootfs:
        """Accept an absolute directory path without control characters."""
        if not source.startswith("/"):
            raise InvalidInput(_("dir rootfs {source!r} is not an absolute path").format(source=source),
                               backend=self.name)
        validate_path(source, "dir rootfs")
        return Rootfs(self.name, os.path.normpath(source))

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``--dir`` if given, else ``<lxcpath>/<name>/rootfs``; a staged rootfs goes beside the
        live one it will be swapped with (``.<name>.bdev-<stage>``), on the same filesystem."""
        custom = options.extra.get("dir")
        if placement.stage is not None:
            return placement.staged_beside(placement.near or custom) or str(placement.rootfs_dir)
        if custom:
            return os.path.normpath(os.path.abspath(custom))
        return str(placement.rootfs_dir)

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """Make an empty directory (mode 0755, as LXC) at the default source."""
        path = Path(self.default_source(placement, options))
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise AlreadyExists(_("{path} already exists and is not empty").format(path=path), backend=self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)
        return Rootfs(self.name, str(path))

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove the directory tree, refusing to descend into anything mounted inside it."""
        refusal = self.destroy_refusal(rootfs)
        if refusal is not None:
            raise Busy(refusal, backend=self.name)
        remove_tree(Path(rootfs.source))

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse now: something is mounted inside the tree."""
        return mounted_inside(Path(rootfs.source))

    def data_path(self, rootfs: Rootfs) -> Path:
        """The directory itself: no mount needed."""
        return Path(rootfs.source)

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Bind-mount the directory (read-only if asked)."""
        argv = ["mount", "--bind"]
        if readonly:
            argv += ["-o", "ro"]
        run([*argv, rootfs.source, str(mountpoint)], backend=self.name)

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount the bind mount."""
        run(["umount", str(mountpoint)], backend=self.name)

    def usage(self, rootfs: Rootfs) -> Usage:
        """Allocated bytes under the directory, as ``du -s`` counts them."""
        return Usage(tree_usage(Path(rootfs.source)))
