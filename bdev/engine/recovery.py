"""Cleaning up after a command that died midway (crash, ``kill -9``, power loss).

Called by :meth:`Context.locked` for every container it locks, so the next command touching a
container repairs it first:

* a ``partial`` marker nobody holds locked: a create, clone or snapshot died; everything it
  made is removed (LXC removes such containers too);
* a ``restore`` journal: completed or rolled back, see :mod:`bdev.engine.restore`;
* a ``destroy`` journal: the destroy is finished;
* a ``convert`` journal: finished or rolled back, see :mod:`bdev.engine.convert`.

The container's snapshots are checked too, since snapshot operations hold the container's lock.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ..errors import BdevError
from ..i18n import N_, _
from ..store.journal import Journal
from ..store.layout import JOURNAL, PARTIAL, ContainerRef, snapshots_dir
from ..store.lock import is_locked

if TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("bdev.recovery")


# How the words the journal and the recovery steps use read in a message.
_OUTCOMES = {"completed": N_("completed"), "rolled back": N_("rolled back"), "finished": N_("finished")}
_OPERATIONS = {"create": N_("create"), "clone": N_("clone"), "snapshot": N_("snapshot"), "restore": N_("restore"),
               "convert": N_("convert")}

def recover(ctx: "Context", ref: ContainerRef) -> None:
    """Repair ``ref`` and its snapshots if an earlier command left them midway."""
    _recover_one(ctx, ref)
    if ref.owner is None:
        directory = snapshots_dir(ref)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            _recover_one(ctx, ContainerRef(directory, name, owner=ref.name))


def needs_recovery(ref: ContainerRef) -> bool:
    """Whether ``ref`` or one of its snapshots carries a ``partial`` marker or a journal."""
    dirs = [ref.directory]
    if ref.owner is None:
        directory = snapshots_dir(ref)
        try:
            dirs += [directory / n for n in os.listdir(directory)]
        except OSError:  # none, or unreadable: the operation itself will say so
            pass
    return any(os.path.lexists(d / PARTIAL) or os.path.lexists(d / JOURNAL) for d in dirs)


def _recover_one(ctx: "Context", ref: ContainerRef) -> None:
    from .convert import rollback_or_finish_convert
    from .destroy import finish_destroy
    from .newdir import undo_new_container
    from .restore import rollback_or_finish_restore

    partial = ref.file(PARTIAL)
    journal_path = ref.file(JOURNAL)
    if not os.path.lexists(partial) and not os.path.lexists(journal_path):
        return
    journal = Journal.load(journal_path)
    if os.path.lexists(partial):
        if is_locked(partial):
            return  # a create is running right now (LXC's "ongoing create")
        intent = journal.data if journal else _intent_from_config(ctx, ref)
        undo_new_container(ctx, ref, intent)
        ctx.notify(_("cleaned up {label}: removed what an interrupted {operation} had left").format(
            label=ref.label, operation=_OPERATIONS.get(intent.get('op', 'create'), intent.get('op', 'create'))))
        return
    assert journal is not None
    op = journal.get("op")
    if op == "restore":
        done = rollback_or_finish_restore(ctx, ref, journal)
        ctx.notify(_(
            "recovered {label}: an interrupted restore of {snapshot} was {done}"
        ).format(label=ref.label, snapshot=journal.get('snapshot'), done=_OUTCOMES.get(done, done)))
    elif op == "convert":
        done = rollback_or_finish_convert(ctx, ref, journal)
        ctx.notify(_(
            "recovered {label}: an interrupted conversion to {target} was {done}"
        ).format(label=ref.label, target=journal.get('target'), done=_OUTCOMES.get(done, done)))
    elif op == "destroy":
        finish_destroy(ctx, ref, journal)
        ctx.notify(_("recovered {label}: finished an interrupted destroy").format(label=ref.label))
    else:
        raise BdevError(_(
            "unknown operation {op!r} in {journal_path}"
        ).format(op=op, journal_path=journal_path), container=ref.label)


def _intent_from_config(ctx: "Context", ref: ContainerRef) -> dict:
    """For a ``partial`` left by real LXC (no journal): the rootfs its config names, if any."""
    try:
        rootfs = ctx.store.rootfs_of(ref)
    except BdevError:
        return {"op": "create"}
    return {"op": "create", "backend": rootfs.backend, "source": rootfs.source, "rootfs": rootfs.config_value}
