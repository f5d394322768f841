"""``bdev limits``: show and set a container's resource limits in friendly terms.

``bdev limits web1`` prints each limit (configured, live when the container runs), the config
key that holds it and the cgroup file it lands in; ``bdev limits web1 memory=512M cpu=1.5``
sets limits (checked first, then written atomically under the container's lock, then applied
to the running container where the kernel allows); ``--unset KEY`` removes one.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import GuardedCommand
from bdev.cli.output import emit_json, format_option, table
from bdev.cli.session import get_session
from bdev.errors import BdevError, InvalidInput
from bdev.i18n import option, text
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from .._i18n import _, N_, ngettext
from .configured import edit_config, parse_assignments
from .group import ContainerCgroup
from .hierarchy import CgroupHost
from .limits import LIMITS, limit_named

if TYPE_CHECKING:
    from bdev.cli.session import Session
    from bdev.engine.context import Context


def _assignments(items: tuple[str, ...], unset: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """``KEY=VALUE`` arguments as a map, ``--unset`` keys as limit names; each key once."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(_("{item!r} is not KEY=VALUE (example: memory=512M)").format(item=item))
        name = limit_named(key).name
        if name in found:
            raise InvalidInput(_("{name} is given twice").format(name=name))
        found[name] = value
    names = []
    for key in unset:
        name = limit_named(key).name
        if name in found or name in names:
            raise InvalidInput(_("{name} is both set and unset").format(name=name) if name in found else _("{name} is unset twice").format(
                name=name))
        names.append(name)
    return found, names


def _effective_config(ref: ContainerRef) -> LxcConfig:
    """The config as the runtime reads it (``lxc.include`` files expanded)."""
    from ..spec import load_config

    return load_config(ref)


def _document(cgroup: ContainerCgroup) -> dict[str, Any]:
    """What ``bdev limits`` shows, as the JSON document its help describes."""
    running = bool(cgroup.pids())
    live = cgroup.live_values() if running else {}
    limits = cgroup.limits
    records = []
    for name, limit in LIMITS.items():
        configured = limits.configured.get(name)
        version, keys, files = cgroup.mapping(name)
        note = None
        if version is None:
            note = cgroup.host.missing(limit.controller(cgroup.host.preferred_version()))
        elif configured is not None and configured.version != version:
            note = _("read from cgroup v{configured} keys, applied on this host's cgroup v{version}").format(
                configured=configured.version, version=version)
        records.append({
            "name": name,
            "summary": text(limit.summary),
            "configured": configured.shown if configured is not None else None,
            "live": limit.show(live[name]) if name in live else None,
            "cgroup_version": version,
            "config_keys": keys,
            "cgroup_files": [str(f) for f in files],
            "read_from": list(configured.keys) if configured is not None else [],
            "note": note,
        })
    ignored = set(cgroup.ignored())
    return {
        "name": cgroup.ref.name,
        "lxcpath": str(cgroup.ref.lxcpath),
        "cgroup_layout": cgroup.host.layout,
        "running": running,
        "cgroup": [{"hierarchy": p.hierarchy.label, "path": str(p.limit_dir), "exists": p.limit_dir.is_dir()}
                   for p in cgroup.placements],
        "limits": records,
        "raw": [{"key": r.key, "value": r.value, "applied": r.key not in ignored} for r in limits.raw],
        "unused": [{"keys": list(c.keys), "value": c.shown, "limit": c.limit.name}
                   for c in limits.shadowed if c.value != limits.configured[c.limit.name].value],
    }


def _print_text(document: dict[str, Any]) -> None:
    rules: list[str] = []
    rows = []
    for record in document["limits"]:
        configured, live = record["configured"], record["live"] if document["running"] else _("(stopped)")
        if record["name"] == "devices" and configured and "," in configured:
            rules = configured.split(", ")
            configured = ngettext("{count} rule (below)", "{count} rules (below)", len(rules)).format(count=len(rules))
            if live and live == record["configured"]:
                live = _("as configured")
        rows.append((record["name"], configured, live, ", ".join(record["config_keys"]) or "-",
                     ", ".join(record["cgroup_files"]) or record["note"]))
    click.echo(table(("LIMIT", "CONFIGURED", "LIVE", "CONFIG KEY", "CGROUP FILE"), rows))
    if rules:
        click.echo("\n" + _("devices allowed: {rules}").format(rules=", ".join(rules)))
    if document["raw"]:
        click.echo("\n" + _("other cgroup settings:"))
        for raw in document["raw"]:
            ignored = "" if raw["applied"] else "  " + _("(ignored on this host)")
            click.echo(f"  {raw['key']} = {raw['value']}{ignored}")
    notes = [f"{r['name']}: {r['note']}" for r in document["limits"] if r["note"] and r["configured"]]
    notes += [_("{keys} ({limit} {value}) is not used on this host: the value above applies").format(
        keys=", ".join(u["keys"]), limit=u["limit"], value=u["value"]) for u in document["unused"]]
    for note in notes:
        click.echo(_("note: {note}").format(note=note))


@click.command("limits", cls=GuardedCommand, help=N_(
    """Show or set container NAME's resource limits.

\b
Limits (KEY=VALUE):
  memory=512M     RAM (K, M, G suffixes; max for none)
  swap=1G         swap on top of memory (0 for none)
  cpu=1.5         CPU time in cores
  cpuset=0-1      CPUs it may run on
  pids=200        processes and threads
  io-weight=500   block I/O share, 1-1000 (default 100)
  devices="c 1:3 rwm, c 1:5 rwm"   device allow-list (TYPE MAJOR:MINOR ACCESS)

Limits are written as lxc.cgroup.* (cgroup v1) or lxc.cgroup2.* (v2) lines, which real LXC
applies too, and applied at once to a running container where the kernel allows.

JSON: {"name", "lxcpath", "cgroup_layout" ("legacy", "hybrid", "unified" or "none"),
"running" (bool), "cgroup": [{"hierarchy", "path", "exists" (bool)}], "limits": [{"name", "summary",
"configured" (text or null), "live" (text or null), "cgroup_version" (1, 2 or null),
"config_keys" (list), "cgroup_files" (list), "read_from" (config keys holding the value),
"note" (text or null)}], "raw": [{"key", "value", "applied" (bool)}], "unused": [{"keys",
"value", "limit"}] (the other cgroup version's lines, when they differ)}."""))
@click.argument("name", shell_complete=container_names)
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@option("--unset", "unset", multiple=True, metavar="KEY", help=N_("Remove limit KEY (repeatable)."))
@option("--cgroup-version", type=click.Choice(["1", "2"]), default=None,
        help=N_("Write lxc.cgroup.* (1) or lxc.cgroup2.* (2) keys instead of those this host uses."))
@format_option
def limits_command(name: str, assignments: tuple[str, ...], unset: tuple[str, ...], cgroup_version: str | None,
                   output_format: str) -> None:
    """``bdev limits``: show, or set then apply, container NAME's limits (the help above says how)."""
    from bdev.engine.context import Context

    session = get_session()
    context = Context.create(session.lxcpath(), notify=session.notify)
    ref = context.ref(name)
    try:
        _limits(session, context, ref, assignments, unset, int(cgroup_version) if cgroup_version else None, output_format)
    except BdevError as err:
        raise err.about(container=ref.label) from None


def _limits(session: "Session", context: "Context", ref: ContainerRef, assignments: tuple[str, ...], unset: tuple[str, ...],
            version: int | None, output_format: str) -> None:
    host = CgroupHost.discover()
    values, unset_names = _assignments(assignments, unset)
    if values or unset_names:
        cgroup = _change(session, context, ref, host, parse_assignments(values, host), unset_names, version)
        if output_format != "json":
            return
    else:
        context.store.require(ref)
        cgroup = ContainerCgroup(ref, _effective_config(ref), host)
    document = _document(cgroup)
    if output_format == "json":
        emit_json(document)
    else:
        _print_text(document)


def _change(session: "Session", context: "Context", ref: ContainerRef, host: CgroupHost, values: dict[str, Any],
            unset_names: list[str], version: int | None) -> ContainerCgroup:
    """Write the changes into the config under the container's lock, then into its running
    cgroup; returns the cgroup as it is afterwards."""
    changes: dict[str, Any] = {**values, **dict.fromkeys(unset_names)}
    with context.locked(ref):
        context.store.require(ref)
        config = context.store.load_config(ref)
        changed = edit_config(config, changes, host, version)
        config.save(ref.config_path, mode=stat.S_IMODE(os.stat(ref.config_path).st_mode))
        cgroup = ContainerCgroup(ref, _effective_config(ref), host)
        still = [n for n in unset_names if n in cgroup.limits.configured]
        for limit_name in still:
            session.notify(_("{label}: {limit_name} is still set by a file its config includes (lxc.include)").format(
                label=ref.label, limit_name=limit_name))
        live = bool(cgroup.pids())
        if live:  # the changed limits, and those computed from them (v1 swap from memory)
            names = [n for n in cgroup.limits.configured
                     if n in values or any(dep in changes for v in (1, 2) for dep in LIMITS[n].needs(v))]
            try:
                cgroup.apply_live(names, unset=tuple(n for n in unset_names if n not in still))
            except BdevError as err:
                raise BdevError(_("the config is saved, but the running container did not take it: {cause}").format(
                    cause=err.cause)) from None
    where = "config and running container" if live else "config"
    session.notify(_("{label}: updated {changed} ({where})").format(
        label=ref.label, changed=', '.join(changed) or 'nothing', where=where))
    return cgroup
