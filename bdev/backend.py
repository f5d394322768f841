"""The backend base class: what a storage plugin implements.

A plugin subclasses :class:`Backend`, sets the class attributes that describe it, and
overrides the operations it can do.  Everything else answers :class:`~bdev.errors.NotSupported`
with a sentence naming the backend, so a plugin implements only what it can.  The core decides
*which* operation to call (native snapshot or copy, staging and swapping for a restore); a
backend only does what it is asked, on the rootfs it is given.

Operations receive :class:`~bdev.records.Placement` records (where to put new storage) and
:class:`~bdev.records.Rootfs` records (existing storage), never container objects: backends
do not read or write container configs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .errors import BackendUnavailable, BdevError, NotSupported
from .i18n import N_, _
from .mounts import temporary_mountpoint
from .records import Capabilities, Change, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from .requirements import Requirement, unmet

if TYPE_CHECKING:
    from .registry import Registry


class Backend:
    """Base of every storage backend.

    Class attributes a plugin sets:

    * ``name``: canonical name, the prefix in ``lxc.rootfs.path`` (``dir``, ``btrfs`` ...).
    * ``aliases``: other accepted names (``overlayfs`` for ``overlay``).
    * ``description``: one line for ``bdev backends``.
    * ``capabilities``: a :class:`~bdev.records.Capabilities`.
    * ``requires``: tools, Python modules and kernel filesystems it needs.
    * ``detect_priority``: order in which an unprefixed rootfs path (LXC 1.0 configs) is probed,
      lower first; None means this backend never claims an unprefixed path.  Specific backends
      use small numbers (btrfs 10, zfs 20, lvm 30, rbd 40, loop 50); ``dir`` accepts any
      directory and comes last (1000), so a btrfs subvolume is not mistaken for a plain
      directory as LXC >= 2.1 does.
    * ``best_priority``: order tried by ``-B best`` (LXC: btrfs, zfs, lvm, dir; lower first);
      None means ``best`` never picks it.
    * ``time_granularity_ns``: the finest modification-time step the backend's filesystem
      keeps (1 ns usually; squashfs keeps whole seconds); tests compare times at that step.

    :param settings: the global ``lxc.conf`` values (``lxc.bdev.zfs.root`` ...), read-only.

    ``self.registry`` is the registry that loaded the backend (None when built by hand): a
    backend that builds on others, such as overlay over any origin, looks them up there
    (``self.registry.backend_for(rootfs)``) instead of importing them.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    requires: ClassVar[tuple[Requirement, ...]] = ()
    detect_priority: ClassVar[int | None] = None
    best_priority: ClassVar[int | None] = None
    time_granularity_ns: ClassVar[int] = 1

    def __init__(self, settings: Mapping[str, str] | None = None):
        self.settings: Mapping[str, str] = dict(settings or {})
        self.registry: "Registry | None" = None

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """Why this backend cannot work on this machine; empty when it can.

        The default checks ``requires``.  Override to add checks (a daemon, a pool) and call
        ``super()``.
        """
        return unmet(self.requires)

    def unavailable_error(self, reasons: list[str]) -> BackendUnavailable:
        """The error refusing this backend for ``reasons`` (what :meth:`unavailable_reasons`
        found).  A plugin may return its own subclass, whose ``about()`` completes the sentence
        once the core knows the container (aufs offers ``bdev convert NAME``)."""
        return BackendUnavailable("; ".join(reasons), reasons=reasons, backend=self.name)

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Why a new rootfs cannot be made at ``placement`` (btrfs: "… is on ext4, not btrfs"),
        or None.  Checked before anything is created, so a refusal leaves nothing behind."""
        return None

    def implementation(self) -> str:
        """How the backend does its work here, for ``bdev backends`` (``btrfsutil 6.2``, ``CLI``)."""
        return ""

    # ------------------------------------------------------------------ identity

    def detect(self, source: str) -> bool:
        """Whether an unprefixed ``lxc.rootfs.path`` value (LXC 1.0 configs) is this backend's.

        Called in ``detect_priority`` order; the first True wins.  Must not change anything.
        """
        return False

    def parse(self, source: str) -> Rootfs:
        """Turn the text after ``<name>:`` into a :class:`Rootfs`, refusing malformed values."""
        return Rootfs(self.name, source)

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """The locator a rootfs created at ``placement`` would get, without creating it."""
        raise self._unsupported(N_("naming a new rootfs"))

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """Create an empty, unmounted rootfs for ``placement`` and return it.

        On failure nothing may be left behind.  ``placement.directory`` exists already.
        """
        raise self._unsupported(N_("create"))

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove ``rootfs`` and all its data.  Removing one that is already gone is not an error.

        Raise :class:`~bdev.errors.Busy` only before removing anything (the rootfs is mounted
        elsewhere, another host holds it): the core then abandons the destroy and the
        container stays whole.  Any other error leaves the destroy journaled, and the next
        command finishes it."""
        raise self._unsupported(N_("destroy"))

    def destroy_refusal(self, rootfs: Rootfs) -> str | None:
        """Why :meth:`destroy` would refuse ``rootfs`` with :class:`~bdev.errors.Busy` now
        (mounted elsewhere, held by another host), found without changing anything; None
        when it would not.  The core asks it for a container and each of its snapshots
        before destroying any of them, so a refusal loses nothing.  Default: None."""
        return None

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the storage behind ``rootfs`` exists."""
        raise self._unsupported(N_("checking existence"))

    def identity(self, rootfs: Rootfs) -> str:
        """A token that changes when different storage appears under the same locator
        (a directory's device and inode, a dataset's guid).  Used to tell, after a crash,
        whether an atomic swap happened."""
        raise self._unsupported(N_("identity"))

    def data_path(self, rootfs: Rootfs) -> Path | None:
        """A path where the files are reachable without mounting (dir, btrfs), else None."""
        return None

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """Mount ``rootfs`` on the existing directory ``mountpoint``."""
        raise self._unsupported(N_("mount"))

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Undo :meth:`mount`."""
        raise self._unsupported(N_("umount"))

    @contextlib.contextmanager
    def accessed(self, rootfs: Rootfs, *, readonly: bool = False) -> Iterator[Path]:
        """Context manager yielding a path to the files of ``rootfs``: its ``data_path`` if it
        has one, otherwise a temporary mount that is undone on exit (and reaped by the next
        command if this process dies first: :mod:`bdev.mounts`)."""
        direct = self.data_path(rootfs)
        if direct is not None:
            yield direct
            return
        with temporary_mountpoint(self.name) as mountpoint:
            self.mount(rootfs, mountpoint, readonly=readonly)
            try:
                yield mountpoint
            finally:
                self.umount(rootfs, mountpoint)

    @contextlib.contextmanager
    def running(self, rootfs: Rootfs, *, container: str, readonly: bool = False) -> Iterator[None]:
        """Context manager holding, for as long as ``container`` runs on ``rootfs``, what its
        mount needs beyond the mount itself: an attached device, a daemon serving it, a lock.
        ``readonly``: the container mounts it read-only (a lower layer under its overlay).

        A runtime enters it in the host's namespaces before the container's init calls
        :meth:`mount` in its own (so nothing started here dies with the container's processes),
        and leaves it once the container's mount namespace is gone (its filesystem unmounted by
        the kernel, never by :meth:`umount`): flush, detach, unlock.  The default holds nothing.
        A failure on entry means the container cannot start (one sentence); a failure on exit
        is reported and leaves what it could not release for the next command to find stale.
        """
        yield

    def usage(self, rootfs: Rootfs) -> Usage:
        """Space used by ``rootfs`` (and its limit, if any)."""
        return Usage(None, note=f"the {self.name} backend cannot measure usage")

    def resize(self, rootfs: Rootfs, size: int) -> None:
        """Grow (or, where the filesystem allows, shrink) ``rootfs`` to ``size`` bytes.  The
        container is stopped; refuse a size that would lose data."""
        raise self._unsupported(N_("resizing"))

    def diff(self, rootfs: Rootfs) -> list[Change]:
        """What changed in ``rootfs`` relative to its origin (layered backends such as overlay
        read it from their upper layer), as :class:`~bdev.records.Change` records."""
        raise self._unsupported(N_("diffs against an origin"))

    # ------------------------------------------------------------------ cloning

    def copy_from(
        self,
        source_path: Path,
        placement: Placement,
        options: CreateOptions,
        progress: "object | None" = None,
        *,
        source: Rootfs | None = None,
        source_backend: "Backend | None" = None,
    ) -> CloneOutcome:
        """Make a new rootfs at ``placement`` holding a full copy of the tree at ``source_path``.

        The default creates an empty rootfs, copies with bdev's copy engine (which keeps what
        ``rsync -aHAXS --numeric-ids`` keeps and reflinks where it can) and destroys the new
        rootfs again if anything fails.  Override for a faster native path.

        When the core copies one container's rootfs into another it also passes ``source``
        (the rootfs whose files are at ``source_path``, mounted read-only) and its
        ``source_backend``, so a backend can copy natively from storage of its own kind (zfs:
        ``zfs send | zfs recv``).  Both are None when the files come from elsewhere (a
        template, ``--source DIR``).  An override that does not take them keeps working: the
        core passes them only to implementations that accept them.
        """
        from .copying import copytree

        rootfs = self.create(placement, options)
        try:
            with self.accessed(rootfs) as target:
                stats = copytree(source_path, target, progress=progress)
        except BaseException:
            with contextlib.suppress(Exception):
                self.destroy(rootfs)
            raise
        return CloneOutcome(rootfs, "copy", stats=stats)

    def layers_over(self, source_backend: "Backend") -> bool:
        """Whether this backend can use ``source_backend``'s rootfs as a lower layer
        (``capabilities.layers_over`` names it, or holds ``"*"`` for any backend)."""
        layers = self.capabilities.layers_over
        return source_backend.name != self.name and ("*" in layers or source_backend.name in layers)

    def snapshot_refusal(
        self, source: Rootfs, source_backend: "Backend", placement: Placement, options: CreateOptions | None = None
    ) -> str | None:
        """Why :meth:`snapshot` cannot clone ``source`` (of ``source_backend``) to ``placement``
        with ``options`` (``--dir``, pool settings), or None if it can.  The default: this
        backend has no native snapshot."""
        if source_backend.name == self.name:
            return None if self.capabilities.native_snapshot else f"the {self.name} backend has no native snapshot"
        if not self.layers_over(source_backend):
            return f"the {self.name} backend cannot snapshot a {source_backend.name} rootfs"
        return None

    def freeze(self, rootfs: Rootfs, placement: Placement) -> Rootfs | None:
        """A read-only, point-in-time copy of ``rootfs`` stored at ``placement``, for another
        backend to use as a lower layer that cannot change underneath it (btrfs: a read-only
        snapshot; loop: a reflinked image mounted read-only).  None when this backend cannot
        freeze (dir): the caller then layers over the live rootfs and records the dependency.
        The caller destroys the frozen rootfs with :meth:`destroy` when done with it."""
        return None

    def snapshot(
        self, source: Rootfs, source_backend: "Backend", placement: Placement, options: CreateOptions
    ) -> CloneOutcome:
        """Make a copy-on-write clone of ``source`` at ``placement`` (only called when
        :meth:`snapshot_refusal` returned None).  Return method ``snapshot`` for a native
        snapshot of the same backend or ``layer`` for a layer over another backend, and set
        ``depends_on_origin`` when the clone needs ``source`` to stay."""
        raise self._unsupported(N_("snapshot"))

    # ------------------------------------------------------------------ atomic restore

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the contents of two rootfs of this backend atomically: afterwards ``live``'s
        locator holds what ``staged`` held and the reverse.  A crash at any moment must leave
        each locator holding one of the two complete trees (check with :meth:`identity`)."""
        raise self._unsupported(N_("atomic swap"))

    def restore_natively(self, live: Rootfs, snapshot: Rootfs) -> bool:
        """Make ``live`` hold the tree of ``snapshot`` (the rootfs of one of the container's
        snapshots, of this backend) in place, by the backend's own means, or return False
        having changed nothing; the core then stages the snapshot beside ``live`` and swaps.

        zfs rolls the dataset back when the snapshot is its latest and the container snapshot
        is unchanged.  The default (False) always leaves the work to stage and swap.

        Rules for an implementation:

        * Atomic: when it returns False or raises, ``live`` is unchanged.
        * Nothing else is lost: never remove anything the user can still reach (a newer
          snapshot, another container's data); return False instead.
        * Idempotent: after a crash the core calls it again with the same arguments to finish
          the restore, so it must return True, harmlessly, when ``live`` already holds the
          snapshot's tree.  ``identity(live)`` need not change.
        """
        return False

    def conversion_source(self, rootfs: Rootfs, target: "Backend", placement: Placement, options: CreateOptions) -> str:
        """The locator :meth:`convert_into` will give the new ``target`` rootfs at
        ``placement``, computed without creating anything (the core journals it first).

        Only for a backend that overrides :meth:`convert_into`."""
        raise self._unsupported(N_("native conversion"))

    def convert_into(
        self,
        rootfs: Rootfs,
        target: "Backend",
        placement: Placement,
        options: CreateOptions,
        scratch: Path,
        progress: object | None = None,
    ) -> CloneOutcome:
        """Build a ``target`` rootfs at ``placement`` holding ``rootfs``'s files, by this
        backend's own means, for ``bdev convert`` (``scratch`` is an empty directory in the
        container for intermediate files, removed by the core afterwards).

        Override it when the generic conversion (mount ``rootfs``, let ``target`` copy from it)
        cannot work or loses something: aufs reads its branches directly because no current
        kernel mounts aufs, and gives overlay an upper layer with the whiteouts translated.
        A backend that overrides it also overrides :meth:`conversion_source` and
        :meth:`discard_converted`.  The default refuses; the core then never calls it."""
        raise self._unsupported(N_("native conversion"))

    def discard_converted(self, rootfs: Rootfs, new: Rootfs) -> None:
        """Remove the old ``rootfs`` once the converted ``new`` one is committed, keeping
        every layer ``new`` still uses (aufs's lower branch under overlay); safe to repeat
        after a crash."""
        raise self._unsupported(N_("native conversion"))

    # ------------------------------------------------------------------ helpers

    def _unsupported(self, operation: str) -> NotSupported:
        return NotSupported(_(
            "the {name} backend does not support {operation}"
        ).format(name=self.name, operation=operation),
                            backend=self.name)

    def error(self, cause: str, *, container: str | None = None) -> BdevError:
        """A :class:`BdevError` naming this backend."""
        return BdevError(cause, container=container, backend=self.name)


class PathBackend(Backend):
    """Base for backends whose rootfs source is one path of the host filesystem (a directory,
    an image file): existence, identity (device and inode) and an atomic swap of two such paths
    with ``renameat2(RENAME_EXCHANGE)``, so restore in place works without more code.  Put a
    staged rootfs where :meth:`~bdev.records.Placement.staged_beside` says."""

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the path exists (a dangling symlink counts)."""
        return os.path.lexists(rootfs.source)

    def identity(self, rootfs: Rootfs) -> str:
        """Device and inode of the path: a swap exchanges the inodes behind the names."""
        st = os.lstat(rootfs.source)
        return f"{st.st_dev}:{st.st_ino}"

    def swap(self, live: Rootfs, staged: Rootfs) -> None:
        """Exchange the two paths atomically and make the exchange durable."""
        from .errors import from_os_error
        from .fsops import fsync_dir, rename_exchange

        try:
            rename_exchange(Path(live.source), Path(staged.source))
        except OSError as exc:
            raise from_os_error(exc, backend=self.name) from None
        fsync_dir(Path(live.source).parent)


def same_filesystem(a: Path, b: Path) -> bool:
    """Whether two existing paths are on the same mounted filesystem (same st_dev)."""
    return os.stat(a).st_dev == os.stat(b).st_dev
