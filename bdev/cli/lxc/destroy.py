"""``lxc-destroy -n NAME [-f] [-s] [-P lxcpath]``: destroy a container (``-s``: and its
snapshots).  A running container is refused unless ``-f``, which kills it first (through
bdev-runtime, whether bdev's runtime or real LXC runs it), as LXC does."""

from __future__ import annotations

from typing import NoReturn

import click

from ...i18n import N_, option
from ..completion import container_names
from ..errors import run
from .common import common_options, lxc_command, require, start

PROG = "lxc-destroy"


@lxc_command(PROG, help_text=N_(
    "lxc-destroy destroys a container with the identifier NAME"
), usage="-n NAME [-f] [-s] [OPTIONS]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-s", "--snapshots", is_flag=True, help=N_("Destroy including all snapshots."))
@option("-f", "--force", is_flag=True, help=N_("Stop and destroy the container if it's still running."))
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, snapshots: bool, force: bool, **common: object) -> None:
    """lxc-destroy destroys a container with the identifier NAME."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", N_("container name"))
    session.container(name).destroy(with_snapshots=snapshots, force=force)


def main() -> NoReturn:
    """Entry point of ``lxc-destroy``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
