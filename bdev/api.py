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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import from_os_error
from .i18n import N_, _
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

    def _status(self) -> Any:
        """The runtime's :class:`bdev_runtime.status.Status` of this container, or None
        without bdev-runtime (or for a container that does not exist)."""
        from .errors import NotFound
        from .runtime import runtime_module

        status = runtime_module("status")
        if status is None:
            return None
        try:
            return status.status(self._ctx, self._ref)
        except NotFound:
            return None

    @property
    def state(self) -> str:
        """``STOPPED``, ``STARTING``, ``RUNNING`` or ``STOPPING``, as ``lxc-info -s`` says
        (for a container bdev's runtime or real LXC runs).  Without bdev-runtime only
        ``RUNNING`` or ``STOPPED``, from the command socket."""
        status = self._status()
        if status is None:
            return "RUNNING" if self.running else "STOPPED"
        return str(status.state.value)

    @property
    def init_pid(self) -> int:
        """The host pid of the container's init while it runs, else -1 (python3-lxc's value).
        Without bdev-runtime always -1."""
        status = self._status()
        return status.init_pid if status is not None and status.init_pid else -1

    def wait(self, state: str, timeout: float = -1) -> bool:
        """Wait until the container is in ``state`` (``RUNNING``, ``STOPPED`` ...), for at most
        ``timeout`` seconds (negative: without end), as python3-lxc's ``wait``; whether it got
        there."""
        wanted = state.upper()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while self.state != wanted:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def get_ips(self, family: str | None = None) -> tuple[str, ...]:
        """The running container's IP addresses (no loopback, no IPv6 link-local), as
        python3-lxc's ``get_ips``; ``family`` ``inet`` or ``inet6`` keeps one kind.  Empty
        when it does not run (or without bdev-runtime)."""
        status = self._status()
        found = status.addresses() if status is not None else []
        if family is not None:
            if family not in ("inet", "inet6"):
                from .errors import InvalidInput

                raise InvalidInput(_(
                    "family {family!r}: use 'inet' or 'inet6'"
                ).format(family=family), container=self.name)
            found = [a for a in found if (":" in a) == (family == "inet6")]
        return tuple(found)

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
    def destroy(self, *, with_snapshots: bool = False, force: bool = False) -> None:
        """Destroy the container.

        :param with_snapshots: also destroy its snapshots (``lxc-destroy -s``); without it a
            container that has snapshots is refused.
        :param force: stop it first if it runs (``lxc-destroy -f``: killed at once, through
            bdev-runtime; refused without it).  Without ``force`` a running container is
            refused.
        :raises HasDependents: it has snapshots (and ``with_snapshots`` is off) or clones that
            depend on it; nothing is changed.
        :raises Busy: it runs (and ``force`` is off, or it could not be stopped).
        """
        from .engine import destroy

        destroy.destroy(self._ctx, self._ref, with_snapshots=with_snapshots, force=force)

    # ---------------------------------------------------------------- running (bdev-runtime)

    def start(self, *, daemonize: bool = True, cmd: Sequence[str] | None = None) -> None:
        """Start the container (python3-lxc's ``start``): in the background, or with
        ``daemonize=False`` in this process until it stops.  ``cmd`` replaces its init.

        :raises NotSupported: bdev-runtime is not installed.
        :raises Busy: it runs already.
        """
        from .runtime import require_runtime

        lifecycle = require_runtime("lifecycle", N_("starting a container"), self.name)
        lifecycle.start(self._ctx, self._ref, foreground=not daemonize, init=list(cmd) if cmd else None)

    def stop(self) -> None:
        """Kill the container at once and wait until it stopped (python3-lxc's ``stop``,
        ``lxc-stop -k``), whether bdev's runtime or real LXC runs it.

        :raises NotSupported: bdev-runtime is not installed.
        :raises NotFound: no such container.
        :raises BdevError: it is not running, or did not stop.
        """
        from .runtime import require_runtime

        lifecycle = require_runtime("lifecycle", N_("stopping a container"), self.name)
        self._ctx.store.require(self._ref)
        if self.state == "STOPPED":
            raise lifecycle.NotRunning("is not running", container=self.name)
        require_runtime("status", N_("stopping a container"), self.name).stop_now(self._ctx, self._ref)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Ask the container's init to halt (``lxc.signal.halt``) and wait; unlike
        python3-lxc's ``shutdown``, kill it after ``timeout`` seconds (as ``lxc-stop -t``;
        negative: wait forever).

        :raises NotSupported: bdev-runtime is not installed.
        :raises BdevError: it is not running (under bdev's runtime).
        """
        from .runtime import require_runtime

        lifecycle = require_runtime("lifecycle", N_("stopping a container"), self.name)
        lifecycle.stop(self._ctx, self._ref, timeout=timeout)

    def attach_wait(
        self,
        command: Sequence[str] = (),
        *,
        env_policy: str = "keep",
        extra_env_vars: Sequence[str] = (),
        extra_keep_env: Sequence[str] = (),
        uid: int | None = None,
        gid: int | None = None,
        initial_cwd: str = "/",
        elevated: bool = False,
    ) -> int:
        """Run ``command`` (default: a shell) inside the running container and return its
        exit status (python3-lxc's ``attach_wait`` with ``attach_run_command``), with this
        process's standard streams.

        :param env_policy: ``keep`` this process's environment or ``clear`` it
            (``LXC_ATTACH_KEEP_ENV`` / ``LXC_ATTACH_CLEAR_ENV``).
        :param extra_env_vars: ``NAME=VALUE`` words to set.
        :param extra_keep_env: with ``clear``, variables of this process to keep.
        :param uid: the user id to run as in the container (default 0); ``gid`` likewise.
        :param elevated: skip the container's security plan (``lxc-attach -e``).
        :raises NotSupported: bdev-runtime is not installed.
        :raises BdevError: it is not running, or the command could not be started.
        """
        from .errors import InvalidInput
        from .runtime import require_runtime

        lifecycle = require_runtime("lifecycle", N_("attaching to a container"), self.name)
        attach = require_runtime("attach", N_("attaching to a container"), self.name)
        if env_policy not in ("keep", "clear"):
            raise InvalidInput(_(
                "env_policy {env_policy!r}: use 'keep' or 'clear'"
            ).format(env_policy=env_policy), container=self.name)
        options = attach.AttachOptions(
            clear_env=env_policy == "clear", keep_vars=tuple(extra_keep_env),
            set_vars=attach.parse_assignments(tuple(extra_env_vars), "extra_env_vars"),
            elevated=elevated, cwd=initial_cwd, uid=uid, gid=gid)
        return int(lifecycle.attach(self._ctx, self._ref, list(command), options))

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
