"""``bdev snapshot create|list|restore|destroy``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ...errors import InvalidInput
from ..output import emit_json, format_option, table
from ..session import get_session

if TYPE_CHECKING:
    from ...api import SnapshotInfo


@click.group("snapshot")
def snapshot() -> None:
    """Snapshots of a container (kept in <lxcpath>/<name>/snaps, as LXC keeps them)."""


@snapshot.command("create")
@click.argument("name")
@click.option("-c", "--comment", metavar="TEXT", help="A comment stored with the snapshot.")
@click.option("--comment-file", metavar="FILE", help="A file whose text is the comment (LXC's -c).")
def create(name: str, comment: str | None, comment_file: str | None) -> None:
    """Snapshot container NAME; prints the new snapshot's name (snapN) on stdout."""
    if comment is not None and comment_file is not None:
        raise click.UsageError("give either --comment or --comment-file, not both")
    session = get_session()
    if comment_file is not None:
        from ..options import existing_file

        existing_file(comment_file, "comment file")
    container = session.container(name)
    snapname = container.snapshot(comment, comment_file=comment_file, progress=session.progress(f"snapshotting {name}"))
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


@snapshot.command("list")
@click.argument("name")
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


@snapshot.command("restore")
@click.argument("name")
@click.argument("snap")
@click.argument("newname", required=False)
def restore(name: str, snap: str, newname: str | None) -> None:
    """Restore snapshot SNAP of NAME: in place (atomically) or, given NEWNAME, as a new
    container."""
    session = get_session()
    container = session.container(name)
    if newname is not None:
        session.container(newname)  # validate before anything happens
    container.snapshot_restore(snap, newname, progress=session.progress(f"restoring {snap}"))


@snapshot.command("destroy")
@click.argument("name")
@click.argument("snap", required=False)
@click.option("--all", "all_", is_flag=True, help="Destroy every snapshot of NAME.")
def destroy(name: str, snap: str | None, all_: bool) -> None:
    """Destroy snapshot SNAP of NAME, or all its snapshots with --all."""
    if (snap is None) == (not all_):
        raise click.UsageError("give either a snapshot name or --all")
    session = get_session()
    container = session.container(name)
    if all_:
        container.snapshot_destroy_all()
    else:
        if not snap:
            raise InvalidInput("the snapshot name is empty")
        container.snapshot_destroy(snap)
