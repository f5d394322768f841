"""The Python API: a :class:`Container` like python3-lxc's, for storage.

Unlike python3-lxc, failures raise :class:`~bdev.errors.BdevError` subclasses with a sentence
saying what went wrong instead of returning False.

>>> from bdev import Container
>>> c = Container("base", lxcpath="/var/lib/lxc")
>>> c.create("busybox", backend="dir")
>>> c.snapshot(comment="before upgrade")
'snap0'
>>> web1 = c.clone("web1", backend="dir", snapshot=True)
>>> c.snapshot_restore("snap0")            # in place, atomically
>>> [s.name for s in c.snapshot_list()]
['snap0']
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import from_os_error
from .records import Change, CloneOutcome, CreateOptions, Rootfs, Usage

if TYPE_CHECKING:
    from .engine.context import Context
    from .registry import Registry
    from .store.layout import ContainerRef

Notify = Callable[[str], None]
F = TypeVar("F", bound=Callable[..., Any])


def _explained(method: F) -> F:
    """Turn an ``OSError`` escaping an operation (permission denied on an lxcpath, a full disk
    inside a template) into a one-sentence :class:`~bdev.errors.BdevError` naming the container."""

    @functools.wraps(method)
    def wrapper(self: "Container", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise from_os_error(exc, container=self.name) from exc

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a container, as ``lxc-snapshot -L`` lists it.

    :param name: ``snapN``.
    :param lxcpath: the directory holding the snapshot directories (``<container>/snaps``, or
        LXC 1.0's ``<lxcpath>snaps/<name>``).
    :param timestamp: the ``ts`` file's text, ``YYYY:MM:DD HH:MM:SS`` (local time).
    :param comment: the ``comment`` file's text, or None.
    :param rootfs: the snapshot's rootfs.
    """

    name: str
    lxcpath: Path
    timestamp: str
    comment: str | None
    rootfs: Rootfs | None

    @property
    def path(self) -> Path:
        return self.lxcpath / self.name

    @property
    def created(self) -> datetime | None:
        try:
            return datetime.strptime(self.timestamp, "%Y:%m:%d %H:%M:%S")
        except ValueError:
            return None


class Container:
    """A container in an lxcpath, defined or not yet.

    :param name: the container's name (validated: no ``/``, ``..``, control characters,
        leading ``-`` or ``.``, at most 255 bytes).
    :param lxcpath: the lxcpath; None resolves it like LXC (``lxc.lxcpath`` in ``lxc.conf``,
        ``/var/lib/lxc`` for root, ``~/.local/share/lxc`` otherwise).
    :param registry: the plugin registry; None loads the default one once per process.
    :param notify: called with one-line messages about what an operation did (``snapshot snap0:
        reflinked copy (812 files, 3.1 MiB, 812 reflinked)``); the CLI prints them.
    """

    def __init__(
        self,
        name: str,
        lxcpath: str | os.PathLike[str] | None = None,
        *,
        registry: "Registry | None" = None,
        notify: Notify | None = None,
    ):
        from .engine.context import Context

        self._ctx = Context.create(lxcpath, registry=registry, notify=notify)
        self._ref = self._ctx.ref(name)
        self.outcome: CloneOutcome | None = None

    # ---------------------------------------------------------------- state

    @property
    def name(self) -> str:
        return self._ref.name

    @property
    def lxcpath(self) -> Path:
        return self._ref.lxcpath

    @property
    def directory(self) -> Path:
        return self._ref.directory

    @property
    def config_file_name(self) -> Path:
        """``<lxcpath>/<name>/config`` (python3-lxc's name for it)."""
        return self._ref.config_path

    @property
    def defined(self) -> bool:
        """Whether the container exists (has a loadable config and no failed create)."""
        return self._ctx.store.is_defined(self._ref)

    @property
    def running(self) -> bool:
        """Whether real LXC (or a runtime speaking its protocol) runs this container now."""
        from .store.running import is_running

        return is_running(self._ref)

    @property
    def state(self) -> str:
        """``RUNNING`` or ``STOPPED``, as ``lxc-info -s`` says."""
        return "RUNNING" if self.running else "STOPPED"

    @property
    @_explained
    def rootfs(self) -> Rootfs:
        """The container's rootfs as its config names it.

        :raises NotFound: the container does not exist.
        """
        return self._ctx.store.rootfs_of(self._ref)

    @_explained
    def get_config_item(self, key: str) -> list[str]:
        """Every value of ``key`` in the container's config, in order."""
        return self._ctx.store.load_config(self._ref).get_all(key)

    @_explained
    def usage(self) -> Usage:
        """Space used by the rootfs."""
        from .engine import inspect

        return inspect.usage(self._ctx, self._ref)

    @_explained
    def resize(self, size: int) -> None:
        """Grow the (stopped) container's rootfs to ``size`` bytes, where its backend can."""
        from .engine import resize

        resize.resize(self._ctx, self._ref, size)

    @_explained
    def diff(self) -> list[Change]:
        """What changed in this container relative to its origin (overlay clones)."""
        from .engine import inspect

        return inspect.diff(self._ctx, self._ref)

    def dependents(self) -> list["Container"]:
        """Containers whose rootfs depends on this one (``lxc_snapshots``)."""
        return [Container(n, p, registry=self._ctx.registry) for p, n in self._ctx.store.dependents(self._ref)]

    @_explained
    def origin(self) -> "Container | None":
        """The container this one depends on (``lxc_rdepends``), if any."""
        found = self._ctx.store.origin(self._ref)
        return None if found is None else Container(found[1], found[0], registry=self._ctx.registry)

    # ---------------------------------------------------------------- lifecycle

    @_explained
    def create(
        self,
        template: str | None = None,
        backend: str | Sequence[str] = "dir",
        *,
        args: Sequence[str] = (),
        options: CreateOptions | None = None,
        source: str | os.PathLike[str] | None = None,
        config: Sequence[tuple[str, str]] = (),
        progress: object | None = None,
    ) -> None:
        """Create the container: a rootfs on ``backend`` filled by ``template`` (with its
        ``args``) or copied from ``source`` (a directory or tarball), and a config.

        ``backend`` may be ``best`` or a list tried in order (LXC's ``-B lvm,dir``).  A failure
        at any point removes everything created.

        :raises AlreadyExists: the container exists.
        """
        from .engine import create

        create.create(
            self._ctx, self._ref, template=template, backend=backend, args=list(args),
            options=options or CreateOptions(), source=source, config=list(config), progress=progress,
        )

    @_explained
    def clone(
        self,
        newname: str,
        *,
        lxcpath: str | os.PathLike[str] | None = None,
        backend: str | None = None,
        snapshot: bool = False,
        maybe_snapshot: bool = False,
        keepname: bool = False,
        keepmac: bool = False,
        options: CreateOptions | None = None,
        progress: object | None = None,
    ) -> "Container":
        """Clone into ``newname`` (in ``lxcpath``, default this container's).

        :param backend: the new rootfs's backend; None keeps this one's (or, for a snapshot of a
            backend without native snapshots, a backend that layers over it, as LXC picks
            overlay for a dir).
        :param snapshot: make a copy-on-write clone; refused if impossible unless
            ``maybe_snapshot`` allows a full copy instead.
        :param keepname: keep ``lxc.uts.name`` and ``/etc/hostname`` (LXC's ``-K``).
        :param keepmac: keep MAC addresses (LXC's ``-M``); otherwise new random ones.
        :return: the new container; its ``outcome`` (a :class:`~bdev.records.CloneOutcome`)
            says whether it is a native snapshot, a layer or a copy.
        :raises AlreadyExists: ``newname`` exists.
        """
        from .engine import clone

        ref, outcome = clone.clone(
            self._ctx, self._ref, newname, lxcpath=lxcpath, backend=backend, snapshot=snapshot,
            maybe_snapshot=maybe_snapshot, keepname=keepname, keepmac=keepmac,
            options=options or CreateOptions(), progress=progress,
        )
        made = Container(ref.name, ref.lxcpath, registry=self._ctx.registry, notify=self._ctx.notify)
        made.outcome = outcome
        return made

    @_explained
    def destroy(self, *, with_snapshots: bool = False) -> None:
        """Destroy the container.

        :param with_snapshots: also destroy its snapshots (``lxc-destroy -s``); without it a
            container that has snapshots is refused.
        :raises HasDependents: it has snapshots (and ``with_snapshots`` is off) or clones that
            depend on it; nothing is changed.
        """
        from .engine import destroy

        destroy.destroy(self._ctx, self._ref, with_snapshots=with_snapshots)

    # ---------------------------------------------------------------- snapshots

    @_explained
    def snapshot(
        self,
        comment: str | None = None,
        *,
        comment_file: str | os.PathLike[str] | None = None,
        progress: object | None = None,
    ) -> str:
        """Snapshot the container into ``snaps/snapN`` (first free N) and return ``snapN``.

        A native copy-on-write snapshot where the backend has one, else a full (reflinked where
        possible) copy, as LXC does.
        """
        from .engine import snapshot

        return snapshot.snapshot(self._ctx, self._ref, comment=comment, comment_file=comment_file, progress=progress)

    @_explained
    def snapshot_list(self) -> list[SnapshotInfo]:
        """The container's snapshots in ``snapN`` order."""
        from .engine import snapshot

        return snapshot.snapshot_list(self._ctx, self._ref)

    @_explained
    def snapshot_restore(self, snapname: str, newname: str | None = None, *, progress: object | None = None) -> "Container":
        """Restore ``snapname``: in place (``newname`` None or this container's name), atomically,
        or into a new container ``newname``.  Returns the restored container."""
        from .engine import restore

        ref = restore.snapshot_restore(self._ctx, self._ref, snapname, newname, progress=progress)
        return Container(ref.name, ref.lxcpath, registry=self._ctx.registry, notify=self._ctx.notify)

    @_explained
    def snapshot_destroy(self, snapname: str) -> None:
        """Destroy one snapshot (refused while a clone depends on it)."""
        from .engine import snapshot

        snapshot.snapshot_destroy(self._ctx, self._ref, snapname)

    @_explained
    def snapshot_destroy_all(self) -> None:
        """Destroy every snapshot of the container."""
        from .engine import snapshot

        snapshot.snapshot_destroy_all(self._ctx, self._ref)

    def __repr__(self) -> str:
        return f"Container({self.name!r}, lxcpath={str(self.lxcpath)!r})"

    @classmethod
    def _in_context(cls, ctx: "Context", ref: "ContainerRef") -> "Container":
        """A container sharing ``ctx`` (settings, registry: loaded once, lazily)."""
        made = cls.__new__(cls)
        made._ctx, made._ref, made.outcome = ctx, ref, None
        return made


def list_containers(lxcpath: str | os.PathLike[str] | None = None, *, registry: "Registry | None" = None) -> list[Container]:
    """Every container of ``lxcpath`` (directories holding a loadable ``config``), sorted."""
    from .engine.context import Context

    ctx = Context.create(lxcpath, registry=registry)
    ctx.repair_all(ctx.lxcpath)
    try:
        refs = ctx.store.list_refs(ctx.lxcpath)
    except OSError as exc:
        raise from_os_error(exc) from exc
    return [Container._in_context(ctx, ref) for ref in refs]


__all__ = ["Container", "SnapshotInfo", "list_containers", "CloneOutcome"]
