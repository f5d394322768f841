"""Plain records passed between the core and backends."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Rootfs:
    """A container's root filesystem as LXC names it: ``<backend>:<source>``.

    :param backend: the canonical backend name (never an alias).
    :param source: the backend-specific locator written after the prefix in
        ``lxc.rootfs.path`` (a directory, an image file, a dataset, ``lower:upper`` ...).
    """

    backend: str
    source: str

    @property
    def config_value(self) -> str:
        """The value to write to ``lxc.rootfs.path``."""
        return f"{self.backend}:{self.source}"

    def __str__(self) -> str:
        return self.config_value


@dataclass(frozen=True)
class Placement:
    """Where a container's storage is to live.

    A container ``web1`` in ``/var/lib/lxc`` has the placement ``(/var/lib/lxc, web1)``; its
    snapshot ``snap0`` has ``(/var/lib/lxc/web1/snaps, snap0, owner='web1')``.  A *staged*
    placement (``stage='restore'``) is a sibling used to build something aside before an
    atomic swap: same directory, hidden names.  Backends derive every name from this record
    (``rootfs_dir``, ``path('rootdev')``, ``storage_name``) so the core can stage any backend.
    ``near`` is the source of the live rootfs a staged one will be swapped with: a backend puts
    staged storage beside it (same directory, filesystem or pool), so the swap can be atomic.

    :param lxcpath: the directory holding the container directory.
    :param name: the container (or snapshot) name.
    :param owner: for a snapshot, the container it belongs to.
    :param stage: None for real storage, else the hidden staged sibling's purpose (``restore``).
    :param near: see above.
    """

    lxcpath: Path
    name: str
    owner: str | None = None
    stage: str | None = None
    near: str | None = None

    @property
    def directory(self) -> Path:
        """The container directory ``<lxcpath>/<name>`` holding ``config``."""
        return self.lxcpath / self.name

    @property
    def rootfs_dir(self) -> Path:
        """The rootfs directory (dir, btrfs) or mount point (block and pool backends)."""
        return self.path("rootfs")

    def path(self, leaf: str) -> Path:
        """A file or directory of this container's storage: ``rootfs``, ``rootdev``, ``overlay``."""
        if self.stage is None:
            return self.directory / leaf
        return self.directory / f".{leaf}.bdev-{self.stage}"

    @property
    def storage_name(self) -> str:
        """A name unique among all containers and snapshots of one lxcpath tree, for pools.

        ``web1``; ``web1.snap0`` for a snapshot (so two containers' ``snap0`` never collide);
        with a ``.bdev-<stage>`` suffix when staged.
        """
        base = f"{self.owner}.{self.name}" if self.owner else self.name
        return base if self.stage is None else f"{base}.bdev-{self.stage}"

    def staged_beside(self, live: str | None = None) -> str | None:
        """For a staged placement: the hidden sibling ``<dir>/.<name>.bdev-<stage>`` of the live
        rootfs ``live`` (default: ``near``), so the swap stays in one directory and filesystem.
        None when this placement is not staged or has nothing to stand beside."""
        anchor = live or self.near
        if self.stage is None or not anchor:
            return None
        path = Path(os.path.normpath(os.path.abspath(anchor)))
        return str(path.parent / f".{path.name}.bdev-{self.stage}")

    def staged(self, stage: str, near: str | None = None) -> "Placement":
        """The hidden sibling of this placement used while building ``stage``, beside the live
        rootfs ``near`` if given."""
        return replace(self, stage=stage, near=near)


@dataclass(frozen=True)
class CreateOptions:
    """What the user asked for when creating or copying into a backend.

    :param fstype: filesystem for block-backed backends (``ext4`` by default).
    :param fssize: size in bytes for block-backed backends, or None for the backend default.
    :param extra: backend-specific settings, LXC option names without dashes
        (``zfsroot``, ``vgname``, ``lvname``, ``thinpool``, ``dir``, ``rbdpool`` ...).
    """

    fstype: str | None = None
    fssize: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; ``bdev backends`` prints these.

    :param native_snapshot: ``snapshot()`` makes a copy-on-write clone within this backend.
    :param snapshot_depends_on_origin: such a clone needs its origin to stay (overlay, thick LVM):
        the core records the dependency in ``lxc_snapshots``/``lxc_rdepends``.
    :param layers_over: backends whose rootfs this one can use as a read-only lower layer for a
        snapshot clone (overlay over dir or btrfs); ``"*"`` means any backend.
    :param block_backed: the rootfs is a filesystem on a block device or image.
    :param needs_pool: the backend stores data in a pool or volume group that must exist.
    :param needs_mount: the files are reachable only through ``mount()`` (no ``data_path``).
    :param unprivileged: works for an ordinary user (in a user namespace where needed).
    :param unprivileged_note: one sentence on what an ordinary user may do with it: its limits
        when ``unprivileged``, why not otherwise (``bdev backends`` shows it).
    :param can_backup: ``lxc-snapshot`` may snapshot it (LXC's ``can_backup``).
    :param sized: honours ``--fssize``.
    :param read_only: the rootfs is an immutable image (squashfs, erofs): it is written once,
        when created from a source tree, and containers that must change run as layered clones
        (overlay) on top of it; write tests are skipped for it.
    :param copy_by_snapshot: a snapshot of this backend shares nothing visible with its origin
        (btrfs), so the core snapshots even when a plain copy was asked for (as LXC does for
        btrfs on one filesystem).
    """

    native_snapshot: bool = False
    snapshot_depends_on_origin: bool = False
    layers_over: tuple[str, ...] = ()
    block_backed: bool = False
    needs_pool: bool = False
    needs_mount: bool = False
    unprivileged: bool = False
    can_backup: bool = True
    sized: bool = False
    copy_by_snapshot: bool = False
    read_only: bool = False
    unprivileged_note: str = ""

    def flags(self) -> list[str]:
        """The set flags as short words, for listings."""
        names = [
            "native_snapshot",
            "snapshot_depends_on_origin",
            "block_backed",
            "needs_pool",
            "needs_mount",
            "unprivileged",
            "can_backup",
            "sized",
            "copy_by_snapshot",
            "read_only",
        ]
        out = [n for n in names if getattr(self, n)]
        if self.layers_over:
            out.append("layers_over=" + ",".join(self.layers_over))
        return out

    def unprivileged_sentence(self) -> str:
        """What an ordinary user may do with the backend: the backend's own sentence, or one
        derived from what it needs."""
        if self.unprivileged_note:
            return self.unprivileged_note
        if self.unprivileged:
            return "works for an ordinary user in directories they own"
        if self.block_backed:
            return "needs root: attaching block devices and mounting their filesystems is root's"
        if self.needs_pool:
            return "needs root: its pool or volume group is managed by root"
        return "needs root (the backend does not declare that it works for an ordinary user)"


@dataclass(frozen=True)
class Usage:
    """Space used by a rootfs; None where the backend cannot tell (and ``note`` says why)."""

    used_bytes: int | None
    limit_bytes: int | None = None
    note: str = ""


@dataclass
class CopyStats:
    """What a tree copy did, for the user and for benchmarks."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    special: int = 0
    bytes: int = 0
    reflinked_files: int = 0
    sparse_files: int = 0
    mount_points: int = 0

    def describe(self) -> str:
        """A short human sentence: ``812 files, 3.1 MB, 812 reflinked``."""
        from .i18n import _
        from .units import format_size

        text = _("{files} files, {size}").format(files=self.files, size=format_size(self.bytes))
        if self.reflinked_files:
            text += _(", {count} reflinked").format(count=self.reflinked_files)
        return text


@dataclass(frozen=True)
class CloneOutcome:
    """How a rootfs was produced from another one.

    :param rootfs: the new rootfs.
    :param method: ``snapshot`` (native copy-on-write), ``layer`` (a backend layered over the
        origin, such as overlay) or ``copy`` (a full copy).
    :param depends_on_origin: the new rootfs needs the origin to stay.
    :param stats: copy statistics when a copy was made.
    :param note: why the core chose this method (a snapshot that became a copy, say).
    """

    rootfs: Rootfs
    method: str
    depends_on_origin: bool = False
    stats: CopyStats | None = None
    note: str = ""

    def describe(self) -> str:
        """One phrase for the user: ``reflinked copy (812 files, 3.1 MiB, 812 reflinked)``."""
        from .i18n import _

        if self.method == "copy" and self.stats is not None:
            how = _("reflinked copy") if self.stats.reflinked_files else _("full copy")
        elif self.method == "snapshot":
            how = _("native snapshot")
        elif self.method == "layer":
            how = _("{backend} layer over the origin").format(backend=self.rootfs.backend)
        else:
            how = self.method
        if self.stats is not None:
            how = _("{how} ({stats})").format(how=how, stats=self.stats.describe())
        return _("{how}, because {note}").format(how=how, note=self.note) if self.note else how


@dataclass(frozen=True)
class Change:
    """One difference between a rootfs and its origin (``bdev diff``).

    :param path: the path inside the rootfs, starting with ``/``.
    :param kind: ``added``, ``modified`` (content), ``metadata`` (owner, mode, xattrs only),
        ``deleted``, ``renamed`` (``source`` says from where) or ``opaque`` (a directory
        replaced whole).
    :param source: the old path of a renamed entry.
    """

    path: str
    kind: str
    source: str | None = None
