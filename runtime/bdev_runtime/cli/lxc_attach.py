"""``lxc-attach -n NAME [-e] [-u UID] [-g GID] [--clear-env|--keep-env] [-v VAR=VAL]...
[--keep-var VAR]... [-P lxcpath] [-- COMMAND]``: run COMMAND (default: a shell) inside a
running container, on a terminal of its own when standard input is one; the exit status is
the command's."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.i18n import option

from .. import lifecycle
from .._i18n import N_
from .common import attach_options, container_of, options_of_attach

PROG = "lxc-attach"


@lxc_command(PROG, help_text=N_("lxc-attach starts a process inside a running container."),
             usage="-n NAME [OPTIONS] [-- COMMAND]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@attach_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, command: tuple[str, ...], **values: Any) -> int:
    """lxc-attach starts a process inside a running container."""
    options = options_of_attach(values)
    session = start(ctx, **values)
    name = require(name, "-n NAME", "container name")
    engine, ref = container_of(session, name)
    return lifecycle.attach(engine, ref, list(command), options)


def main() -> NoReturn:
    """Entry point of ``lxc-attach``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
