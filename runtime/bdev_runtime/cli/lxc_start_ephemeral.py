"""``lxc-start-ephemeral -o ORIG [-n NAME] [-d] [-k] [-P lxcpath] [-- COMMAND]`` (LXC 1.0):
start a copy-on-write clone of ORIG that is destroyed when it stops.  With COMMAND, run it in
the clone as an application container and exit with its status; with ``-d``, leave the clone
running in the background and print its name; otherwise run it in the foreground on this
terminal.  ``-k`` keeps the clone (a persistent snapshot clone)."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.i18n import option

from .. import lifecycle
from .._i18n import _, N_
from .common import container_of

PROG = "lxc-start-ephemeral"


@lxc_command(PROG, help_text=N_("lxc-start-ephemeral starts an ephemeral copy of the container ORIG."),
             usage="-o ORIG [-n NAME] [-d] [-k] [OPTIONS] [-- COMMAND]")
@option("-o", "--orig", metavar="ORIG", shell_complete=container_names, help=N_("The container to clone."))
@option("-n", "--name", metavar="NAME", help=N_("The clone's name (default: ORIG_ and six random characters)."))
@option("-d", "--daemon", is_flag=True, help=N_("Run in the background and print the clone's name."))
@option("-k", "--keep-data", is_flag=True, help=N_("Keep the clone after it stops."))
@option("-B", "--backingstorage", metavar="TYPE", help=N_("The clone's backend (default: as the engine picks)."))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@common_options(logging=False)  # -o is ORIG here, as in LXC 1.0
@click.pass_context
def command(ctx: click.Context, orig: str | None, name: str | None, daemon: bool, keep_data: bool,
            backingstorage: str | None, command: tuple[str, ...], **common: object) -> int:
    """lxc-start-ephemeral starts an ephemeral copy of the container ORIG."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    orig = require(orig, "-o ORIG", "original container name")
    if daemon and command:
        raise click.UsageError(_("-d and a COMMAND cannot be used together"))
    engine, origin = container_of(session, orig)
    if name is not None:
        engine.ref(name)  # validated before anything is cloned
    clone, status = lifecycle.start_ephemeral(
        engine, origin, name=name, keep=keep_data, backend=backingstorage, command=list(command) or None,
        foreground=not daemon and not command, console_out=None if daemon else sys.stdout.fileno(),
    )
    if daemon:
        click.echo(clone.name)
    return status


def main() -> NoReturn:
    """Entry point of ``lxc-start-ephemeral``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
