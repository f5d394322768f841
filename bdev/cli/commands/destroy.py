"""``bdev destroy``: remove a container and its storage."""

from __future__ import annotations

import click

from ..session import get_session


@click.command("destroy")
@click.argument("name")
@click.option("-s", "--snapshots", is_flag=True, help="Also destroy its snapshots (refused otherwise).")
def destroy(name: str, snapshots: bool) -> None:
    """Destroy container NAME.

    Refused, changing nothing, while it has snapshots (unless -s) or clones depending on it.
    """
    session = get_session()
    session.container(name).destroy(with_snapshots=snapshots)
