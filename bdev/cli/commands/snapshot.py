"""``bdev snapshot create|list|restore|destroy``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput
from ..completion import container_names, snapshot_names
from ..output import emit_json, format_option, table
from ..session import get_session

if TYPE_CHECKING:
    from ...api import SnapshotInfo


@click.group("snapshot", help=N_("Snapshots of a container (kept in <lxcpath>/<name>/snaps, as LXC keeps them)."))
def snapshot() -> None:
    """Snapshots of a container (kept in <lxcpath>/<name>/snaps, as LXC keeps them)."""


@snapshot.command("create", help=N_("Snapshot container NAME; prints the new snapshot's name (snapN) on stdout."))
@click.argument("name", shell_complete=container_names)
@option("-c", "--comment", metavar="TEXT", help=N_("A comment stored with the snapshot."))
@option("--comment-file", metavar="FILE", help=N_("A file whose text is the comment (LXC's -c)."))
def create(name: str, comment: str | None, comment_file: str | None) -> None:
    """Snapshot container NAME; prints the new snapshot's name (snapN) on stdout."""
    if comment is not None and comment_file is not None:
        raise click.UsageError(_("give either --comment or --comment-file, not both"))
    session = get_session()
    if comment_file is not None:
        from ..options import existing_file

        existing_file(comment_file, N_("comment file"))
    container = session.container(name)
    snapname = container.snapshot(comment, comment_file=comment_file, progress=session.progress(_(
        "snapshotting {name}"
    ).format(name=name)))
    click.echo(snapname)


def snapshot_record(info: "SnapshotInfo") -> dict[str, object]:
    """The JSON record of one snapshot (keys: name, path, timestamp, comment, rootfs, backend)."""
    return {
        "name": info.name,
        "path": str(info.path),
        "timestamp": info.timestamp,
        "comment": info.comment,
        "rootfs": info.rootfs.config_value if info.rootfs else None,
        "backend": info.rootfs.backend if info.rootfs else None,
    }


def first_line(text: str | None) -> str | None:
    """The first non-empty line of a comment, for tables."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return None


@snapshot.command("list", help=N_(
    "List the snapshots of container NAME.\n\n"
    'JSON: {"container": NAME, "lxcpath": PATH, "snapshots": [{"name", "path", "timestamp" ("YYYY:MM:DD HH:MM:SS", '
    'local time), "comment" (text or null), "rootfs" (lxc.rootfs.path value or null), "backend"}]}.'))
@click.argument("name", shell_complete=container_names)
@format_option
def list_(name: str, output_format: str) -> None:
    """List the snapshots of container NAME.

    JSON: {"container": NAME, "lxcpath": PATH, "snapshots": [{"name", "path", "timestamp"
    ("YYYY:MM:DD HH:MM:SS", local time), "comment" (text or null), "rootfs" (lxc.rootfs.path
    value or null), "backend"}]}.
    """
    session = get_session()
    container = session.container(name)
    snaps = container.snapshot_list()
    if output_format == "json":
        emit_json({
            "container": container.name,
            "lxcpath": str(container.lxcpath),
            "snapshots": [snapshot_record(s) for s in snaps],
        })
        return
    if not snaps:
        click.echo("No snapshots")
        return
    rows = [(s.name, s.timestamp, s.rootfs.backend if s.rootfs else None, first_line(s.comment)) for s in snaps]
    click.echo(table(("NAME", "TIMESTAMP", "BACKEND", "COMMENT"), rows))


@snapshot.command("restore", help=N_(
    "Restore snapshot SNAP of NAME: in place (atomically) or, given NEWNAME, as a new container."
))
@click.argument("name", shell_complete=container_names)
@click.argument("snap", shell_complete=snapshot_names)
@click.argument("newname", required=False)
def restore(name: str, snap: str, newname: str | None) -> None:
    """Restore snapshot SNAP of NAME: in place (atomically) or, given NEWNAME, as a new
    container."""
    session = get_session()
    container = session.container(name)
    if newname is not None:
        session.container(newname)  # validate before anything happens
    container.snapshot_restore(snap, newname, progress=session.progress(_("restoring {snap}").format(snap=snap)))


@snapshot.command("destroy", help=N_("Destroy snapshot SNAP of NAME, or all its snapshots with --all."))
@click.argument("name", shell_complete=container_names)
@click.argument("snap", required=False, shell_complete=snapshot_names)
@option("--all", "all_", is_flag=True, help=N_("Destroy every snapshot of NAME."))
def destroy(name: str, snap: str | None, all_: bool) -> None:
    """Destroy snapshot SNAP of NAME, or all its snapshots with --all."""
    if (snap is None) == (not all_):
        raise click.UsageError(_("give either a snapshot name or --all"))
    session = get_session()
    container = session.container(name)
    if all_:
        container.snapshot_destroy_all()
    else:
        if not snap:
            raise InvalidInput(_("the snapshot name is empty"))
        container.snapshot_destroy(snap)
