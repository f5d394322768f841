"""``lxc-execute -n NAME [-P lxcpath] -- COMMAND``: run COMMAND as an application container
(a minimal init as pid 1 that reaps and forwards signals), on this terminal; the exit status
is the command's."""

from __future__ import annotations

from typing import NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.i18n import option

from .. import lifecycle
from .._i18n import _, N_
from .common import container_of

PROG = "lxc-execute"


@lxc_command(PROG, help_text=N_("lxc-execute runs COMMAND inside the container NAME."), usage="-n NAME [OPTIONS] -- COMMAND")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-d", "--daemon", is_flag=True, help=N_("Not supported: refused (lxc-execute runs in the foreground)."))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, daemon: bool, command: tuple[str, ...], **common: object) -> int:
    """lxc-execute runs COMMAND inside the container NAME."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", "container name")
    if daemon:
        raise click.UsageError(_("-d is not supported: lxc-execute runs in the foreground"))
    if not command:
        raise click.UsageError(_("missing command: give -- COMMAND"))
    engine, ref = container_of(session, name)
    return lifecycle.execute(engine, ref, list(command))


def main() -> NoReturn:
    """Entry point of ``lxc-execute``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
