"""``bdev ls`` and ``bdev info``: what containers exist and what their storage is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ...i18n import N_, _
from ...errors import BdevError, NotFound
from ..completion import container_names
from ..listing import Listed, containers, describe_or_error
from ..output import emit_json, format_option, table
from ..session import get_session
from .snapshot import first_line, snapshot_record

if TYPE_CHECKING:
    from ...api import Container


def _ref(container: "Container | None", home: "Container") -> dict[str, str] | None:
    if container is None:
        return None
    return {"name": container.name, "lxcpath": str(container.lxcpath)}


def _label(container: "Container | None", home: "Container") -> str | None:
    if container is None:
        return None
    if container.lxcpath == home.lxcpath:
        return container.name
    return f"{container.lxcpath}/{container.name}"


def _storage(container: "Container") -> tuple[str | None, str | None, str | None]:
    """(backend, lxc.rootfs.path value, error) of a container; never raises for a bad config."""
    try:
        rootfs = container.rootfs
    except BdevError as err:
        return None, None, str(err)
    return rootfs.backend, rootfs.config_value, None


def _origin(container: "Container") -> "Container | None":
    try:
        return container.origin()
    except BdevError:
        return None


@click.command("ls", help=N_(
    "List the containers of the lxcpath.\n\n"
    'JSON: {"lxcpath": PATH, "containers": [{"name", "state" ("STOPPED", "STARTING", "RUNNING", "STOPPING"; with no '
    'bdev-runtime installed only "RUNNING" or "STOPPED"), "backend", "rootfs" (lxc.rootfs.path value), "origin" '
    '({"name", "lxcpath"} or null), "autostart" (bool), "groups" (list), "unprivileged" (bool), "error" (why the '
    "storage could not be read, or null)}]}."
))
@format_option
def ls(output_format: str) -> None:
    """List the containers of the lxcpath.

    JSON: {"lxcpath": PATH, "containers": [{"name", "state" ("STOPPED", "STARTING", "RUNNING",
    "STOPPING"; with no bdev-runtime installed only "RUNNING" or "STOPPED"), "backend",
    "rootfs" (lxc.rootfs.path value), "origin" ({"name", "lxcpath"} or null), "autostart"
    (bool), "groups" (list), "unprivileged" (bool), "error" (why the storage could not be
    read, or null)}]}.
    """
    session = get_session()
    records = []
    for container in containers(session):
        facts = describe_or_error(container)
        if isinstance(facts, BdevError):
            records.append((container, Listed(container, container.name, False, (), False), None, None,
                            str(facts), None))
            continue
        backend, rootfs, error = _storage(container)
        records.append((container, facts, backend, rootfs, error, _origin(container)))
    if output_format == "json":
        emit_json({
            "lxcpath": str(session.lxcpath()),
            "containers": [
                {
                    "name": c.name,
                    "state": facts.state,
                    "backend": backend,
                    "rootfs": rootfs,
                    "origin": _ref(origin, c),
                    "autostart": facts.autostart,
                    "groups": list(facts.groups),
                    "unprivileged": facts.unprivileged,
                    "error": error,
                }
                for c, facts, backend, rootfs, error, origin in records
            ],
        })
        return
    if not records:
        return
    rows = [
        (c.name, facts.state, backend or "?", _label(origin, c), rootfs or f"({error})")
        for c, facts, backend, rootfs, error, origin in records
    ]
    click.echo(table(("NAME", "STATE", "BACKEND", "ORIGIN", "ROOTFS"), rows))


def _usage(container: "Container") -> dict[str, Any]:
    try:
        usage = container.usage()
    except BdevError as err:
        return {"used_bytes": None, "limit_bytes": None, "note": str(err)}
    return {"used_bytes": usage.used_bytes, "limit_bytes": usage.limit_bytes, "note": usage.note or None}


@click.command("info", help=N_(
    "Show container NAME: its state, init pid and addresses while it runs, and its storage: rootfs, backend, usage, "
    "origin, dependents, snapshots.\n\n"
    'JSON: {"name", "lxcpath", "directory", "config", "state" (as in `bdev ls`), "init_pid" (the host pid of its '
    'init, or null), "ips" (its addresses, no loopback), "rootfs", "backend", "error", "usage": {"used_bytes", '
    '"limit_bytes", "note"}, "origin" ({"name", "lxcpath"} or null), "dependents": [{"name", "lxcpath"}], '
    '"snapshots": [as in `bdev snapshot list`]}.'
))
@click.argument("name", shell_complete=container_names)
@format_option
def info(name: str, output_format: str) -> None:
    """Show container NAME: its state, init pid and addresses while it runs, and its storage:
    rootfs, backend, usage, origin, dependents, snapshots.

    JSON: {"name", "lxcpath", "directory", "config", "state" (as in `bdev ls`), "init_pid"
    (the host pid of its init, or null), "ips" (its addresses, no loopback), "rootfs",
    "backend", "error", "usage": {"used_bytes", "limit_bytes", "note"}, "origin" ({"name",
    "lxcpath"} or null), "dependents": [{"name", "lxcpath"}], "snapshots": [as in `bdev
    snapshot list`]}.
    """
    session = get_session()
    container = session.container(name)
    if not container.defined:
        raise NotFound(_("no such container in {lxcpath}").format(lxcpath=container.lxcpath), container=container.name)
    backend, rootfs, error = _storage(container)
    usage = _usage(container) if error is None else {"used_bytes": None, "limit_bytes": None, "note": None}
    origin = _origin(container)
    dependents = container.dependents()
    snaps = container.snapshot_list()
    state = container.state
    init_pid = container.init_pid if state != "STOPPED" else -1
    ips = list(container.get_ips()) if init_pid > 0 else []
    document = {
        "name": container.name,
        "lxcpath": str(container.lxcpath),
        "directory": str(container.directory),
        "config": str(container.config_file_name),
        "state": state,
        "init_pid": init_pid if init_pid > 0 else None,
        "ips": ips,
        "rootfs": rootfs,
        "backend": backend,
        "error": error,
        "usage": usage,
        "origin": _ref(origin, container),
        "dependents": [_ref(d, container) for d in dependents],
        "snapshots": [snapshot_record(s) for s in snaps],
    }
    if output_format == "json":
        emit_json(document)
        return
    from ...units import format_size

    used = usage["used_bytes"]
    usage_text = format_size(used) if used is not None else (usage["note"] or "unknown")
    if used is not None and usage["limit_bytes"] is not None:
        usage_text += f" of {format_size(usage['limit_bytes'])}"
    lines = [
        ("name", container.name),
        ("lxcpath", container.lxcpath),
        ("config", container.config_file_name),
        ("state", state),
        ("pid", document["init_pid"]),
        ("ips", ", ".join(ips)),
        ("backend", backend or f"? ({error})"),
        ("rootfs", rootfs),
        ("usage", usage_text),
        ("origin", _label(origin, container)),
        ("dependents", ", ".join(_label(d, container) or "" for d in dependents)),
        ("snapshots", len(snaps)),
    ]
    width = max(len(k) for k, _ in lines) + 1
    for key, value in lines:
        click.echo(f"{key + ':':<{width}} {value if value not in (None, '') else '-'}")
    for snap in snaps:
        comment = first_line(snap.comment)
        click.echo(f"  {snap.name}  {snap.timestamp}" + (f"  {comment}" if comment else ""))
