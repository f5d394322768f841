"""``bdev backends``, ``bdev templates`` and ``bdev --version``: what the plugins offer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ...i18n import N_
from ..output import emit_json, format_option, table
from ..session import Session, get_session

if TYPE_CHECKING:
    from ...registry import BackendEntry, PluginInfo


def version_text(session: Session, *, with_plugins: bool = False) -> str:
    """``bdev <version>``; ``with_plugins``, then one line per plugin: name, distribution,
    version, status (which loads every plugin: plain ``bdev --version`` stays quick)."""
    from ... import __version__

    lines = [f"bdev {__version__}"]
    if not with_plugins:
        return lines[0]
    registry = session.registry
    for plugin in sorted(registry.plugins, key=lambda p: p.name):
        dist = plugin.distribution or "(not from a distribution)"
        version = plugin.version or ""
        status = "" if plugin.status == "loaded" else f" [{plugin.status}]"
        lines.append(f"  {plugin.name}: {dist} {version}".rstrip() + status)
    return "\n".join(lines)


def _call(label: str, function: Any, default: Any) -> tuple[Any, str | None]:
    """Run a plugin's method; a plugin's bug becomes a reason instead of a crash."""
    try:
        return function(), None
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
        return default, f"{label} failed: {type(exc).__name__}: {exc}"


def _origin(entry: "BackendEntry", plugins: "list[PluginInfo]") -> tuple[str | None, str | None]:
    """The distribution and version the backend's plugin came from (None, None for a plugin
    registered by hand rather than through an entry point)."""
    for plugin in plugins:
        if plugin.name == entry.plugin:
            return plugin.distribution, plugin.version
    return None, None


def backend_record(entry: "BackendEntry", plugins: "list[PluginInfo] | None" = None) -> dict[str, Any]:
    """The JSON record of one backend (see ``bdev backends --help``); ``plugins`` (the
    registry's) gives the distribution and version it came from."""
    from ...requirements import describe

    distribution, version = _origin(entry, plugins or [])

    backend = entry.backend
    reasons, failure = _call("availability check", backend.unavailable_reasons, [])
    reasons = list(reasons) + ([failure] if failure else [])
    implementation, failure = _call("implementation()", backend.implementation, "")
    if failure:
        reasons.append(failure)
    return {
        "name": backend.name,
        "aliases": list(backend.aliases),
        "description": backend.description,
        "usable": not reasons,
        "unavailable_reasons": reasons,
        "capabilities": backend.capabilities.flags(),
        "unprivileged": backend.capabilities.unprivileged_sentence(),
        "implementation": implementation or None,
        "requires": [describe(r) for r in backend.requires],
        "plugin": entry.plugin,
        "distribution": distribution,
        "version": version,
    }


_KIND_WORDS = {"tool": "", "python-module": "python ", "kernel-filesystem": "kernel "}


def _needs(requirement: dict[str, Any]) -> str:
    """``mkfs.btrfs``, ``python btrfsutil (optional)``, ``kernel zfs (missing)``."""
    text = _KIND_WORDS.get(str(requirement["kind"]), "") + str(requirement["name"])
    notes = [word for word, flag in (("optional", requirement["optional"]), ("missing", not requirement["met"])) if flag]
    return f"{text} ({', '.join(notes)})" if notes else text


def _from(record: dict[str, Any]) -> str:
    """``bdev-dir 0.1.0``, or a note for a plugin that no distribution installed."""
    if not record["distribution"]:
        return "not from an installed distribution"
    return f"{record['distribution']} {record['version'] or ''}".rstrip()


@click.command(
    "backends",
    short_help=N_("List the backends, whether each is usable here and why not."),
    help=N_(
        "List every backend the plugins offer, whether it is usable here and why not, its capabilities and "
        "implementation; then any plugin problems.\n\n"
        'JSON: {"backends": [{"name", "aliases", "description", "usable" (bool), "unavailable_reasons" '
        '(list), "capabilities" (list of flags), "unprivileged" (what an ordinary user may do with it, one '
        'sentence), "implementation" (or null), "requires": [{"kind" (tool, python-module, '
        'kernel-filesystem), "name", "package" (or null), "optional", "met"}], "plugin" (entry-point name), '
        '"distribution" (or null), "version" (or null)}], "plugins": [{"name", "distribution", "version", '
        '"status" (loaded, disabled, failed)}], "problems": [{"plugin", "message"}]}.'
    ),
)
@format_option
def backends(output_format: str) -> None:
    """List every backend the plugins offer, whether it is usable here and why not, its
    capabilities and implementation; then any plugin problems.

    JSON: {"backends": [{"name", "aliases", "description", "usable" (bool),
    "unavailable_reasons" (list), "capabilities" (list of flags), "unprivileged" (what an
    ordinary user may do with it, one sentence), "implementation" (or null),
    "requires": [{"kind" (tool, python-module, kernel-filesystem), "name", "package" (or null),
    "optional", "met"}], "plugin" (entry-point name), "distribution" (or null), "version" (or
    null)}], "plugins": [{"name", "distribution", "version", "status" (loaded, disabled,
    failed)}], "problems": [{"plugin", "message"}]}.
    """
    registry = get_session().registry
    records = [backend_record(e, registry.plugins) for e in registry.backend_entries()]
    if output_format == "json":
        emit_json({
            "backends": records,
            "plugins": [
                {"name": p.name, "distribution": p.distribution, "version": p.version, "status": p.status}
                for p in registry.plugins
            ],
            "problems": [{"plugin": p.plugin, "message": p.message} for p in registry.problems],
        })
        return
    rows = [(r["name"], ",".join(r["aliases"]) or "-", "yes" if r["usable"] else "no", r["plugin"]) for r in records]
    click.echo(table(("NAME", "ALIASES", "USABLE", "PLUGIN"), rows))
    for r in records:
        click.echo(f"\n{r['name']}: {r['description']}")
        click.echo(f"  from:           plugin {r['plugin']}, {_from(r)}")
        click.echo(f"  capabilities:   {', '.join(r['capabilities']) or '-'}")
        click.echo(f"  ordinary users: {r['unprivileged']}")
        if r["implementation"]:
            click.echo(f"  implementation: {r['implementation']}")
        if r["requires"]:
            click.echo(f"  needs:          {', '.join(_needs(q) for q in r['requires'])}")
        if not r["usable"]:
            click.echo(f"  unusable here:  {'; '.join(r['unavailable_reasons'])}")
    unusable = [r for r in records if not r["usable"]]
    if unusable:
        click.echo("\nNot usable here:")
        for record in unusable:
            click.echo(f"  {record['name']}: " + "; ".join(record["unavailable_reasons"]))
    disabled = [p.name for p in registry.plugins if p.status == "disabled"]
    if disabled:
        click.echo("\nDisabled plugins (BDEV_DISABLE_PLUGINS): " + ", ".join(sorted(disabled)))
    commands = registry.commands()
    if commands:
        click.echo("\nPlugin commands: " + ", ".join(f"{command.name} ({plugin})" for command, plugin in commands))
    if registry.problems:
        click.echo("\nPlugin problems:")
        for problem in registry.problems:
            click.echo(f"  {problem}")


@click.command("templates", help=N_(
    "List the templates the plugins offer (bdev create -t NAME).\n\n"
    'JSON: {"templates": [{"name", "description", "plugin", "usage"}]}.'
))
@format_option
def templates(output_format: str) -> None:
    """List the templates the plugins offer (bdev create -t NAME).

    JSON: {"templates": [{"name", "description", "plugin", "usage"}]}.
    """
    registry = get_session().registry
    entries = registry.templates()
    if output_format == "json":
        emit_json({
            "templates": [
                {"name": t.name, "description": t.description, "plugin": plugin, "usage": t.usage or None}
                for t, plugin in entries
            ]
        })
        return
    click.echo(table(("NAME", "PLUGIN", "DESCRIPTION"), [(t.name, plugin, t.description) for t, plugin in entries]))
    for t, _ in entries:  # each template's own options (what follows -- on create)
        click.echo(f"\n{t.name} options:")
        click.echo("\n".join(f"  {line}" for line in (t.usage or "(none described)").splitlines()))
