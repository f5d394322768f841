"""Section 1: a page per command, written from its click definition (usage, help, every
option and its help, subcommands), in the language the environment asks for."""

from __future__ import annotations

import click

from ..i18n import _, text
from . import roff
from .commands import CommandPage

MANUAL = "bdev"


def _short_help(command: click.Command) -> str:
    return text(command.get_short_help_str(limit=200)) or ""


def _usage(page: CommandPage) -> str:
    pieces = page.command.collect_usage_pieces(page.ctx)
    return " ".join(text(piece) for piece in pieces)


def option_records(page: CommandPage) -> list[tuple[str, str]]:
    """``(spec, help)`` of every visible option (``-s, --snapshot``, its help), help included."""
    records = []
    for param in page.command.get_params(page.ctx):
        if isinstance(param, click.Option):
            record = param.get_help_record(page.ctx)
            if record is not None:
                records.append((record[0], text(record[1])))
    return records


def render(page: CommandPage, see_also: list[str]) -> str:
    """The page's man(7) source.

    :param see_also: other pages to list under SEE ALSO, as ``name(section)``.
    """
    program = page.program
    out = roff.Page(page.name, 1, f"{program.distribution} {program.version}", MANUAL)
    out.section(_("NAME"))
    out.raw(f"{roff.escape(page.name)} \\- {roff.escape(_short_help(page.command))}")
    out.section(_("SYNOPSIS"))
    out.raw(f"{roff.bold(' '.join(page.path))} {roff.escape(_usage(page))}")
    help_text = text(page.command.help) if page.command.help else ""
    paragraphs = roff.paragraphs(help_text.partition("\f")[0]) if help_text else []
    if paragraphs:
        out.section(_("DESCRIPTION"))
        for para in paragraphs:
            out.text(para)
    records = option_records(page)
    if records:
        out.section(_("OPTIONS"))
        for spec, help_line in records:
            out.item(roff.bold(spec), [help_line] if help_line else [])
    subcommands = page.subcommands()
    if subcommands:
        out.section(_("COMMANDS"))
        for name, sub in subcommands:
            ref = f"{page.name}-{name}(1)"
            out.item(roff.bold(name), [_short_help(sub), _("See {page}.").format(page=ref)])
    if see_also:
        out.section(_("SEE ALSO"))
        out.raw(",\n".join(roff.bold(ref) for ref in see_also))
    return out.render()
