"""Creating a new container directory all-or-nothing.

:func:`new_container` makes ``<lxcpath>/<name>`` with LXC's locked ``partial`` marker and an
intent journal, yields a :class:`NewContainer` on which the operation records what it is about
to create, and on success removes both markers.  On an exception it undoes everything; after
a crash, :func:`undo_new_container` (called by recovery) does the same from the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AlreadyExists, BdevError, from_os_error
from ..fsops import remove_tree
from ..i18n import _
from ..idmap import parse_idmaps
from ..records import Rootfs
from ..store import deps
from ..store.journal import Journal
from ..store.layout import DEPENDENTS, JOURNAL, PARTIAL, ContainerRef
from ..store.lock import _try_lock
from .idshift import as_mapped_owner, helper_idmap

if TYPE_CHECKING:
    from ..idmap import IdMap
    from .context import Context

log = logging.getLogger("bdev.engine")


class NewContainer:
    """Handle of a container being created: record intentions before acting on them."""

    def __init__(self, ref: ContainerRef, journal: Journal):
        self.ref = ref
        self.journal = journal

    def intend_rootfs(self, rootfs: Rootfs) -> None:
        """Record the rootfs about to be created, so a crash can remove it."""
        self.journal.update(**_rootfs_intent(rootfs))

    def intend_dependency(self, origin: ContainerRef) -> None:
        """Record that the origin's ``lxc_snapshots`` is about to list this container (no
        write when the journal's first write already named that origin)."""
        intent = _origin_intent(origin)
        if any(self.journal.get(key) != value for key, value in intent.items()):
            self.journal.update(**intent)


def _rootfs_intent(rootfs: Rootfs) -> dict[str, str]:
    """The journal fields naming a rootfs about to be created."""
    return {"rootfs": rootfs.config_value, "backend": rootfs.backend, "source": rootfs.source}


def _origin_intent(origin: ContainerRef) -> dict[str, str]:
    """The journal fields naming an origin whose ``lxc_snapshots`` may come to list the new
    container (undoing removes the container from it, if it is there)."""
    return {"origin_lxcpath": str(origin.lxcpath), "origin_name": origin.name}


@contextlib.contextmanager
def new_container(
    ctx: "Context", ref: ContainerRef, op: str, rootfs: Rootfs | None = None, origin: ContainerRef | None = None,
    idmap: "IdMap | None" = None,
) -> Iterator[NewContainer]:
    """Create ``ref``'s directory for ``op`` (create, clone, snapshot) all-or-nothing.

    ``rootfs``, when known, is recorded in the journal's first write (as
    :meth:`NewContainer.intend_rootfs` would, one durable write sooner: each costs two fsyncs),
    and so is ``origin``, a clone's origin that may come to list it as a dependent (as
    :meth:`NewContainer.intend_dependency` would; undoing when it does not is harmless).

    ``idmap``, an ordinary user's map the new rootfs is written in (a mapped clone), is
    recorded too: an undo removes that rootfs in those ids, even after a crash.

    :raises AlreadyExists: something already occupies the directory.
    """
    if os.path.lexists(ref.directory):
        what = "snapshot" if ref.owner else "container"
        raise AlreadyExists(_(
            "{what} already exists in {lxcpath}"
        ).format(what=what, lxcpath=ref.lxcpath), container=ref.label)
    made_lxcpath = _make_dirs(ref.lxcpath)
    try:
        os.mkdir(ref.directory, 0o770)
    except FileExistsError:
        raise AlreadyExists(_(
            "container already exists in {lxcpath}"
        ).format(lxcpath=ref.lxcpath), container=ref.label) from None
    os.chmod(ref.directory, 0o770)
    partial_fd = os.open(ref.file(PARTIAL), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    intent: dict = {"op": op}
    try:
        _try_lock(partial_fd, fcntl.F_WRLCK)
        journal = Journal.begin(ref.file(JOURNAL), op, **(_rootfs_intent(rootfs) if rootfs is not None else {}),
                                **(_origin_intent(origin) if origin is not None else {}),
                                **({"idmap": [value for _key, value in idmap.config_lines()]} if idmap else {}))
        intent = journal.data
        yield NewContainer(ref, journal)
        journal.finish()
        os.unlink(ref.file(PARTIAL))
    except BaseException as exc:
        undo_failure = _undo_reporting(ctx, ref, intent)
        for directory in reversed(made_lxcpath):  # an lxcpath (or snaps/) this operation made, if still empty
            with contextlib.suppress(OSError):
                directory.rmdir()
        error = from_os_error(exc, container=ref.label) if isinstance(exc, OSError) else exc
        if undo_failure is not None:  # the first failure is what the user must hear; then this
            if isinstance(error, BdevError):
                error.cause = _("{cause}; undoing it failed too, leaving {directory} ({undo})").format(
                    cause=error.cause, directory=ref.directory, undo=undo_failure)
            else:
                error.add_note(f"undoing it failed too: {undo_failure}")
        if error is not exc:
            raise error from exc
        raise
    finally:
        os.close(partial_fd)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p`` (mode 0755); returns the directories it created, outermost first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o755)
    return list(reversed(missing))


def _undo_reporting(ctx: "Context", ref: ContainerRef, intent: dict) -> str | None:
    """:func:`undo_new_container`, returning why it failed (logged) instead of raising."""
    try:
        undo_new_container(ctx, ref, intent)
    except Exception as exc:  # noqa: BLE001 - reported with the failure that caused the undo
        log.warning("undoing the new container %s failed: %s", ref.label, exc)
        return exc.cause if isinstance(exc, BdevError) else str(exc)
    return None


def undo_new_container(ctx: "Context", ref: ContainerRef, intent: dict) -> None:
    """Remove everything a create, clone or snapshot of ``ref`` may have made, following its
    journal ``intent``: the rootfs, the origin's record of the dependency, the directory.
    An ordinary user's mapped rootfs (the intent's ``idmap``, else its config's ``lxc.idmap``)
    is removed in its ids."""
    rootfs_value = intent.get("rootfs")
    if rootfs_value:
        rootfs = Rootfs(intent["backend"], intent["source"])
        backend = ctx.registry.backend(rootfs.backend)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                if backend.exists(rootfs):
                    backend.destroy(rootfs)

        as_mapped_owner(parse_idmaps(intent.get("idmap") or []) or _mapped_ids(ctx, ref), remove,
                        container=ref.label)
    if intent.get("origin_name"):
        origin_dir = Path(intent["origin_lxcpath"]) / intent["origin_name"]
        deps.remove_pair(origin_dir / DEPENDENTS, (ref.lxcpath, ref.name))
    remove_tree(ref.directory)


def _mapped_ids(ctx: "Context", ref: ContainerRef) -> "IdMap | None":
    """The id map to remove ``ref``'s rootfs in, if its config (when written yet) has one
    (None for root, who removes anything directly)."""
    if not ref.config_path.exists():
        return None
    try:
        return helper_idmap(ctx.store.load_config(ref))
    except BdevError:
        return None
