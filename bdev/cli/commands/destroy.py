"""``bdev destroy``: remove a container and its storage."""

from __future__ import annotations

import click

from ..session import get_session


@click.command("destroy")
@click.argument("name")
@click.option("-s", "--snapshots", is_flag=True, help="Also destroy its snapshots (refused otherwise).")
@click.option("-f", "--force", is_flag=True, help="Kill it first if it runs (needs bdev-runtime; refused otherwise).")
def destroy(name: str, snapshots: bool, force: bool) -> None:
    """Destroy container NAME.

    Refused, changing nothing, while it runs (unless -f), has snapshots (unless -s) or
    clones depending on it.
    """
    session = get_session()
    session.container(name).destroy(with_snapshots=snapshots, force=force)
