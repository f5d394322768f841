"""``bdev``: the command line for bdev's storage backends and snapshots.

Global options come before the subcommand: ``bdev -P /srv/lxc -q snapshot create web1``.
"""

from __future__ import annotations

from typing import NoReturn

import click

from ..i18n import N_, _, option
from . import logsetup
from .commands import clone, convert, create, destroy, inspect, plugins, scaffold, snapshot, storage
from .errors import GuardedGroup, run
from .session import Session

PROG = "bdev"


class PluginCommandsGroup(GuardedGroup):
    """bdev's command group plus the subcommands plugins offer (``bdev_commands`` hook),
    looked up only when a name is not one of the core's; a plugin cannot replace a core
    command (the registry reports the clash)."""

    _loaded: dict[str, click.Command] | None = None

    def _plugin_commands(self) -> dict[str, click.Command]:
        if self._loaded is not None:
            return self._loaded
        from ..engine.context import default_registry
        from ..registry import PluginProblem

        commands = {}
        registry = default_registry()
        for command, plugin in registry.commands():
            if command.name in self.commands:
                registry.problems.append(PluginProblem(plugin, f"command {command.name!r} is a core command; ignored"))
            else:
                commands[command.name] = command
        self._loaded = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._plugin_commands().get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The help's command lists: the core's commands, then those the installed plugins
        add (the runtime's start, stop, attach ...), which loads the plugins: only a help
        asks for them, never ``--version`` or ``lxc-ls``."""
        click.Group(self.name, commands=self.commands).format_commands(ctx, formatter)
        offered = self._plugin_commands()
        if offered:
            limit = formatter.width - 6 - max(len(name) for name in offered)
            with formatter.section(_("Plugin commands")):
                formatter.write_dl([(name, offered[name].get_short_help_str(limit)) for name in sorted(offered)])


@click.group(
    PROG,
    cls=PluginCommandsGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=N_("Pluggable storage backends and snapshots for LXC-compatible containers."),
)
@option("-P", "--lxcpath", metavar="PATH", help=N_("The lxcpath (default: LXC's, from lxc.conf)."))
@option("-q", "--quiet", is_flag=True, help=N_("Do not print operation messages (errors still are)."))
@option("-v", "--verbose", is_flag=True, help=N_("Log what bdev does, each external command included, on stderr."))
@option("--version", is_flag=True, help=N_(
    "Print bdev's version; with -v, also each plugin's distribution and version."
))
@click.pass_context
def cli(ctx: click.Context, lxcpath: str | None, quiet: bool, verbose: bool, version: bool) -> None:
    """Pluggable storage backends and snapshots for LXC-compatible containers."""
    logsetup.configure(PROG, logsetup.DEBUG if verbose else None)
    session = Session(PROG, lxcpath=lxcpath, quiet=quiet)
    ctx.obj = session
    if version:
        click.echo(plugins.version_text(session, with_plugins=verbose))
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(2)


cli.add_command(create.create)
cli.add_command(clone.clone)
cli.add_command(snapshot.snapshot)
cli.add_command(destroy.destroy)
cli.add_command(inspect.ls)
cli.add_command(inspect.info)
cli.add_command(plugins.backends)
cli.add_command(plugins.templates)
cli.add_command(storage.resize)
cli.add_command(storage.diff)
cli.add_command(convert.convert)
cli.add_command(scaffold.plugin)


def main() -> NoReturn:
    """Entry point of the ``bdev`` program."""
    run(cli, PROG)


if __name__ == "__main__":
    main()
