"""The context every engine operation runs in: lxcpath, settings, registry, store, locking
and the message sink."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import BdevError, Busy
from ..naming import validate_name
from ..store.containers import ContainerStore
from ..store.layout import ContainerRef
from ..store.lock import container_lock_path, locked_file
from ..store.lxcpath import global_settings, lock_dir, resolve_lxcpath
from .recovery import needs_recovery

if TYPE_CHECKING:
    from ..registry import Registry

log = logging.getLogger("bdev.engine")

Notify = Callable[[str], None]


@functools.cache
def _cached_registry(settings_items: tuple[tuple[str, str], ...], disabled: str) -> "Registry":
    from ..registry import load_registry

    return load_registry(dict(settings_items))


def default_registry(settings: dict[str, str] | None = None) -> "Registry":
    """The registry of installed plugins, loaded once per process and settings."""
    settings = settings if settings is not None else global_settings()
    return _cached_registry(tuple(sorted(settings.items())), os.environ.get("BDEV_DISABLE_PLUGINS", ""))


class Context:
    """Everything an operation needs besides its arguments.  The plugin registry is loaded on
    first use, so commands that never interpret a rootfs (``lxc-ls``) do not import plugins."""

    def __init__(
        self,
        lxcpath: Path,
        settings: dict[str, str],
        notify: Notify,
        registry: "Registry | None" = None,
    ):
        self.lxcpath = lxcpath
        self.settings = settings
        self.notify = notify
        self._registry = registry

    @property
    def registry(self) -> "Registry":
        """The plugin registry (the default one, loaded once per process, unless given)."""
        if self._registry is None:
            self._registry = default_registry(self.settings)
        return self._registry

    @functools.cached_property
    def store(self) -> ContainerStore:
        """Read access to containers, interpreting rootfs values with :attr:`registry`."""
        return ContainerStore(self)

    @classmethod
    def create(
        cls,
        lxcpath: str | os.PathLike[str] | None = None,
        *,
        registry: "Registry | None" = None,
        notify: Notify | None = None,
    ) -> "Context":
        """A context for ``lxcpath`` (None: LXC's default)."""
        settings = dict(registry.settings) if registry is not None and registry.settings else global_settings()
        return cls(
            lxcpath=resolve_lxcpath(lxcpath, settings),
            settings=settings,
            notify=notify or (lambda message: log.info("%s", message)),
            registry=registry,
        )

    def ref(self, name: str, lxcpath: str | os.PathLike[str] | None = None) -> ContainerRef:
        """A validated reference to container ``name`` in ``lxcpath`` (default: this context's)."""
        validate_name(name)
        path = resolve_lxcpath(lxcpath, self.settings) if lxcpath is not None else self.lxcpath
        return ContainerRef(path, name)

    @contextlib.contextmanager
    def locked(self, *refs: ContainerRef, timeout: float | None = None) -> Iterator[None]:
        """Hold LXC-compatible locks on ``refs`` (in a fixed order, so two callers cannot
        deadlock), then finish or roll back whatever a crashed earlier command left in them.

        :raises Busy: another process kept a lock for ``timeout`` seconds (default
            ``BDEV_LOCK_TIMEOUT``, 60).
        """
        from ..mounts import reap_stale_mounts
        from .recovery import recover

        reap_stale_mounts()
        unique = sorted({(str(r.lxcpath), r.name): r for r in refs}.values(), key=lambda r: (str(r.lxcpath), r.name))
        wait = {} if timeout is None else {"timeout": timeout}
        with contextlib.ExitStack() as stack:
            for ref in unique:
                path = container_lock_path(lock_dir(ref.lxcpath), ref.name)
                stack.enter_context(locked_file(path, what=f"container {ref.label!r}", **wait))
            for ref in unique:
                recover(self, ref)
            yield

    def repair(self, ref: ContainerRef) -> None:
        """Clean up what a crashed command left in ``ref``, if its lock is free right now
        (read-only commands call this; a container being created is left alone)."""
        try:
            if needs_recovery(ref):
                with self.locked(ref, timeout=0):
                    pass
        except Busy:
            pass  # being created or repaired right now by another process
        except (BdevError, OSError) as exc:  # an lxcpath we may only read: list it as it is
            log.warning("could not repair %s: %s", ref.label, exc)

    def repair_all(self, lxcpath: Path) -> None:
        """:meth:`repair` every container directory of ``lxcpath`` that needs it."""
        try:
            names = os.listdir(lxcpath)
        except OSError:  # missing or unreadable: listing says so, repairing has nothing to do
            return
        for name in names:
            if not name.startswith("."):
                self.repair(ContainerRef(lxcpath, name))
