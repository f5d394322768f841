"""``lxc-snapshot``: create (``-n N [-c commentfile]``), list (``-L [-C]``), restore
(``-r snap [newname]`` as LXC 1.0, or ``-r snap -N newname``) and destroy (``-d snap``,
``-d ALL``) snapshots.

``-L`` prints exactly LXC's lines, ``snapN (<dir>) YYYY:MM:DD HH:MM:SS``, each followed with
``-C`` by the comment when there is one, or ``No snapshots``.  Creating prints nothing on
standard output (as LXC 5); operation messages go to standard error unless ``-q``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput
from ..completion import container_names, snapshot_names
from ..errors import run
from ..options import existing_file
from .common import common_options, lxc_command, require, start

if TYPE_CHECKING:
    from ...api import SnapshotInfo

PROG = "lxc-snapshot"


def in_directory_order(snapshots: Sequence["SnapshotInfo"]) -> list["SnapshotInfo"]:
    """``snapshots`` in the order their directory lists them, as LXC prints them (it walks
    the snapshot directory with ``readdir``); the API's order where that cannot be read."""
    order: dict[tuple[str, str], int] = {}
    for directory in dict.fromkeys(str(s.lxcpath) for s in snapshots):
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        order.update({(directory, entry): index for index, entry in enumerate(entries)})
    fallback = len(order)
    return sorted(snapshots, key=lambda s: order.get((str(s.lxcpath), s.name), fallback))


def format_list(snapshots: Sequence["SnapshotInfo"], *, comments: bool) -> str:
    """``lxc-snapshot -L [-C]`` output for ``snapshots`` (LXC's ``do_snapshot_list``).

    LXC prints the comment file as it is; a comment that does not end with a newline gets
    one here so the next snapshot starts on its own line.
    """
    if not snapshots:
        return "No snapshots\n"
    out = []
    for snap in snapshots:
        out.append(f"{snap.name} ({snap.lxcpath}) {snap.timestamp}\n")
        if comments and snap.comment:
            out.append(snap.comment if snap.comment.endswith("\n") else snap.comment + "\n")
    return "".join(out)


@lxc_command(PROG, help_text=N_(
    "lxc-snapshot snapshots a container"
), usage="-n NAME [-L [-C] | -c FILE | -r SNAP [-N NEWNAME] | -d SNAP|ALL] [OPTIONS]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-L", "--list", "list_", is_flag=True, help=N_("List all snapshots."))
@option("-r", "--restore", metavar="NAME", shell_complete=snapshot_names, help=N_(
    "Restore snapshot NAME, e.g. 'snap0'."
))
@option("-N", "--newname", metavar="NEWNAME", help=N_("NEWNAME for the restored container."))
@option("-d", "--destroy", metavar="NAME", shell_complete=snapshot_names, help=N_(
    "Destroy snapshot NAME, e.g. 'snap0'; ALL destroys all snapshots."
))
@option("-f", "--force", is_flag=True, help=N_("Snapshot even if the container is running."))
@option("-c", "--comment", metavar="FILE", help=N_("Add FILE as a comment."))
@option("-C", "--showcomments", is_flag=True, help=N_("Show snapshot comments."))
@common_options()
@click.argument("newname_arg", nargs=-1, metavar="[newname]")
@click.pass_context
def command(
    ctx: click.Context,
    name: str | None,
    list_: bool,
    restore: str | None,
    newname: str | None,
    destroy: str | None,
    force: bool,
    comment: str | None,
    showcomments: bool,
    newname_arg: tuple[str, ...],
    **common: object,
) -> None:
    """lxc-snapshot snapshots a container."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", N_("container name"))
    tasks = [flag for flag, given in (("-L", list_), ("-r", restore is not None), ("-d", destroy is not None)) if given]
    if len(tasks) > 1:
        raise click.UsageError(_("{tasks} cannot be combined").format(tasks=' and '.join(tasks)))
    if comment is not None and tasks:
        raise click.UsageError(_("-c only applies when creating a snapshot"))
    if restore is None:
        if newname is not None:
            raise click.UsageError(_("-N only applies with -r"))
        if newname_arg:
            raise click.UsageError(_("unexpected argument {argument!r}").format(argument=newname_arg[0]))
    elif newname_arg and (newname is not None or len(newname_arg) > 1):
        raise click.UsageError(_("too many arguments: give the new name once, as -N NEWNAME or after -r SNAP"))
    container = session.container(name)
    if list_:
        snapshots = in_directory_order(container.snapshot_list())
        click.echo(format_list(snapshots, comments=showcomments), nl=False)
    elif restore is not None:
        if not restore:
            raise InvalidInput(_("the snapshot name is empty"))
        target = newname if newname is not None else (newname_arg[0] if newname_arg else None)
        if target is not None:
            session.container(target)  # validate before anything happens
        container.snapshot_restore(restore, target, progress=session.progress(_(
            "restoring {restore}"
        ).format(restore=restore)))
    elif destroy is not None:
        if destroy == "ALL":
            container.snapshot_destroy_all()
        elif not destroy:
            raise InvalidInput(_("the snapshot name is empty"))
        else:
            container.snapshot_destroy(destroy)
    else:
        if comment is not None:
            existing_file(comment, N_("comment file"))
        container.snapshot(comment_file=comment, progress=session.progress(_(
            "snapshotting {name}"
        ).format(name=container.name)))


def main() -> NoReturn:
    """Entry point of ``lxc-snapshot``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
