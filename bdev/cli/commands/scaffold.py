"""``bdev plugin new NAME``: start a backend plugin from a working skeleton."""

from __future__ import annotations

from pathlib import Path

import click

from ...i18n import N_, _, option
from ..errors import GuardedGroup
from ..session import get_session


@click.group("plugin", cls=GuardedGroup, help=N_("Tools for plugin authors."))
def plugin() -> None:
    """Tools for plugin authors."""


@plugin.command("new", help=N_(
    "Write a plugin skeleton for backend NAME to DIRECTORY/bdev-NAME: pyproject.toml with the bdev.plugins entry "
    'point, the bdev_NAME package with a Backend subclass whose operations all raise "not supported", a test module '
    "running bdev's conformance kit, and a README.\n\n"
    "NAME is a lower-case letter followed by lower-case letters, digits or underscores, and must not be an installed "
    "backend.  An existing target folder is refused."
))
@click.argument("name")
@option(
    "--directory", "-d", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help=N_("Where to write the bdev-NAME folder."),
)
def new(name: str, directory: Path) -> None:
    """Write a plugin skeleton for backend NAME to DIRECTORY/bdev-NAME: pyproject.toml with the
    bdev.plugins entry point, the bdev_NAME package with a Backend subclass whose operations
    all raise "not supported", a test module running bdev's conformance kit, and a README.

    NAME is a lower-case letter followed by lower-case letters, digits or underscores, and
    must not be an installed backend.  An existing target folder is refused.
    """
    from ...scaffold import write_skeleton

    session = get_session()
    registry = session.registry
    taken = [alias for entry in registry.backend_entries() for alias in (entry.name, *entry.backend.aliases)]
    target = write_skeleton(name, directory, taken)
    session.notify(_(
        "wrote the {name} plugin skeleton to {target}; next: pip install -e {target}"
    ).format(name=name, target=target))
