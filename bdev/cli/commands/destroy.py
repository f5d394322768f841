"""``bdev destroy``: remove a container and its storage."""

from __future__ import annotations

import click

from ...i18n import N_, option
from ..completion import container_names
from ..session import get_session


@click.command("destroy", help=N_(
    "Destroy container NAME.\n\n"
    "Refused, changing nothing, while it runs (unless -f), has snapshots (unless -s) or clones depending on it."
))
@click.argument("name", shell_complete=container_names)
@option("-s", "--snapshots", is_flag=True, help=N_("Also destroy its snapshots (refused otherwise)."))
@option("-f", "--force", is_flag=True, help=N_("Kill it first if it runs (needs bdev-runtime; refused otherwise)."))
def destroy(name: str, snapshots: bool, force: bool) -> None:
    """Destroy container NAME.

    Refused, changing nothing, while it runs (unless -f), has snapshots (unless -s) or
    clones depending on it.
    """
    session = get_session()
    session.container(name).destroy(with_snapshots=snapshots, force=force)
