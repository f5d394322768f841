"""The command trees the manual pages describe: every program :func:`~bdev.cli.programs.programs`
finds (``bdev`` with the subcommands plugins add, every ``lxc-*``), each subcommand its own
page, so a new program, subcommand or option cannot miss its page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import click

from ..cli.programs import Program, programs


@dataclass(frozen=True)
class CommandPage:
    """One page of section 1: ``bdev snapshot create`` is ``bdev-snapshot-create``.

    :param path: the words that run the command (``("bdev", "snapshot", "create")``).
    :param ctx: a click context for the command, its parents linked (for usage and help).
    """

    path: tuple[str, ...]
    command: click.Command
    ctx: click.Context
    program: Program

    @property
    def name(self) -> str:
        """The page name (``bdev-snapshot-create``)."""
        return "-".join(self.path)

    def subcommands(self) -> list[tuple[str, click.Command]]:
        """The subcommands of a group, sorted; empty for a plain command."""
        if not isinstance(self.command, click.Group):
            return []
        found = []
        for name in self.command.list_commands(self.ctx):
            sub = self.command.get_command(self.ctx, name)
            if sub is not None and not sub.hidden:
                found.append((name, sub))
        return found


def pages(program: Program) -> Iterator[CommandPage]:
    """The program's page, then one per subcommand, depth first."""
    root = click.Context(program.command, info_name=program.name, resilient_parsing=True,
                         **program.command.context_settings)
    yield from _walk(CommandPage((program.name,), program.command, root, program))


def _walk(page: CommandPage) -> Iterator[CommandPage]:
    yield page
    for name, sub in page.subcommands():
        ctx = click.Context(sub, info_name=name, parent=page.ctx, resilient_parsing=True, **sub.context_settings)
        yield from _walk(CommandPage((*page.path, name), sub, ctx, page.program))


def all_pages() -> list[CommandPage]:
    """Every section-1 page of every installed program."""
    return [page for program in programs() for page in pages(program)]
