"""``lxc-ls [-1] [-f] [-F COLUMNS] [-P lxcpath] [--active] [--running] [--frozen] [--stopped]
[--defined] [-g groups] [--filter REGEX | REGEX]``: list containers as LXC 5 does, byte for
byte (see :mod:`bdev.cli.lxc.lsformat`).

STATE, PID, IPV4 and IPV6 are the live ones (STOPPED, STARTING, RUNNING, STOPPING) of a
container bdev's runtime or real LXC runs, asked through bdev-runtime; without it STATE is
RUNNING or STOPPED as the command socket says and the others stay empty.  bdev cannot see
FROZEN yet, so ``--frozen`` lists nothing.  Unlike LXC, ``-F`` implies ``-f``, and an unknown
``-F`` column or an invalid regular expression is an error instead of an empty listing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NoReturn

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput
from ...runtime import runtime_module
from ..errors import run
from . import lsformat
from .common import common_options, lxc_command, start

if TYPE_CHECKING:
    from ...api import Container

PROG = "lxc-ls"


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(_(
            "invalid regular expression {pattern!r}: {exc}"
        ).format(pattern=pattern, exc=exc)) from None


@lxc_command(PROG, help_text=N_("lxc-ls list containers"), usage="[-1] [-f] [-F COLUMNS] [OPTIONS]")
@option("-1", "--line", is_flag=True, help=N_("Show one entry per line."))
@option("-f", "--fancy", is_flag=True, help=N_("Use a fancy, column-based output."))
@option("-F", "--fancy-format", metavar="COLUMNS",
              help=N_("Comma separated list of columns for the fancy output: {columns}.", columns=", ".join(lsformat.COLUMNS)))
@option("--active", is_flag=True, help=N_("List only active containers."))
@option("--running", is_flag=True, help=N_("List only running containers."))
@option("--frozen", is_flag=True, help=N_("List only frozen containers."))
@option("--stopped", is_flag=True, help=N_("List only stopped containers."))
@option("--defined", is_flag=True, help=N_("List only defined containers."))
@option("--nesting", is_flag=False, flag_value="5", default=None, metavar="[=NUM]",
              help=N_("Accepted for compatibility; nested containers are not listed yet."))
@option("-g", "--groups", metavar="GROUPS", help=N_("Comma separated list of groups a container must have."))
@option("--filter", "filter_", metavar="REGEX", help=N_("Filter container names by regular expression."))
@common_options()
@click.argument("patterns", nargs=-1, metavar="[FILTER]")
@click.pass_context
def command(
    ctx: click.Context,
    line: bool,
    fancy: bool,
    fancy_format: str | None,
    active: bool,
    running: bool,
    frozen: bool,
    stopped: bool,
    defined: bool,
    nesting: str | None,
    groups: str | None,
    filter_: str | None,
    patterns: tuple[str, ...],
    **common: object,
) -> None:
    """lxc-ls list containers."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    if len(patterns) > 1:
        raise click.UsageError(_("give at most one FILTER regular expression"))
    columns = lsformat.parse_columns(fancy_format) if fancy_format is not None else None
    pattern = filter_ if filter_ is not None else (patterns[0] if patterns else None)
    regex = _compile(pattern) if pattern is not None else None
    must = [g.strip() for g in groups.split(",") if g.strip()] if groups is not None else None

    from ..listing import Listed, containers, describe_or_error

    rows = []
    for container in containers(session):
        if regex is not None and not regex.search(container.name):
            continue
        facts = describe_or_error(container)
        if not isinstance(facts, Listed):
            click.echo(f"{PROG}: skipped {facts}", err=True)
            continue
        if frozen or ((active or running) and facts.state == "STOPPED") or (stopped and facts.state != "STOPPED"):
            continue
        if must is not None and (not facts.groups or not set(must) <= set(facts.groups)):
            continue
        live = _live(facts.container) if facts.state != "STOPPED" and (fancy or columns is not None) else {}
        rows.append(lsformat.Row(
            name=facts.name,
            state=facts.state,
            autostart=facts.autostart,
            groups=", ".join(facts.groups) if facts.groups else None,
            unprivileged=facts.unprivileged,
            **live,
        ))
    if fancy or columns is not None:
        data = lsformat.fancy(rows, columns or lsformat.DEFAULT_FANCY)
    else:
        data = lsformat.names(rows, termwidth=0 if line else lsformat.term_width(), one_per_line=line)
    if data:
        click.echo(data, nl=False)


def _live(container: "Container") -> dict[str, object]:
    """The PID, RAM, SWAP, IPV4 and IPV6 cells of a running container (LXC joins addresses
    with ", "; memory in MiB, as LXC divides by 1048576)."""
    addresses = container.get_ips()
    ipv4 = [a for a in addresses if ":" not in a]
    ipv6 = [a for a in addresses if ":" in a]
    pid = container.init_pid
    status = runtime_module("status")
    memory, swap = status.memory_usage(container.lxcpath, container.name) if status is not None else (None, None)
    return {"pid": pid if pid > 0 else None, "ipv4": ", ".join(ipv4) or None, "ipv6": ", ".join(ipv6) or None,
            "ram_mb": _mebibytes(memory), "swap_mb": _mebibytes(swap)}


def _mebibytes(size: int | None) -> float | None:
    return size / 1048576 if size is not None else None


def main() -> NoReturn:
    """Entry point of ``lxc-ls``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
