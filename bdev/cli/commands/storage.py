"""``bdev resize`` and ``bdev diff``: storage-level operations on one container."""

from __future__ import annotations

import click

from ...i18n import N_
from ..completion import container_names
from ..output import emit_json, format_option, table
from ..session import get_session


@click.command("resize", help=N_(
    "Grow container NAME's rootfs to SIZE (bytes, or with a K, M, G or T suffix).\n\n"
    "For block-backed backends (a loop image, a logical volume); the container must be stopped."
))
@click.argument("name", shell_complete=container_names)
@click.argument("size")
def resize(name: str, size: str) -> None:
    """Grow container NAME's rootfs to SIZE (bytes, or with a K, M, G or T suffix).

    For block-backed backends (a loop image, a logical volume); the container must be stopped.
    """
    from ...units import parse_size

    session = get_session()
    bytes_ = parse_size(size, what="size")
    session.container(name).resize(bytes_)


@click.command("diff", help=N_(
    "Show what changed in container NAME relative to its origin (overlay clones): added, modified, metadata-only, "
    "deleted, renamed and opaque (replaced) entries.\n\n"
    'JSON: {"name", "changes": [{"path", "kind", "source" (renamed from, or null)}]}.'
))
@click.argument("name", shell_complete=container_names)
@format_option
def diff(name: str, output_format: str) -> None:
    """Show what changed in container NAME relative to its origin (overlay clones): added,
    modified, metadata-only, deleted, renamed and opaque (replaced) entries.

    JSON: {"name", "changes": [{"path", "kind", "source" (renamed from, or null)}]}.
    """
    changes = get_session().container(name).diff()
    if output_format == "json":
        emit_json({"name": name, "changes": [{"path": c.path, "kind": c.kind, "source": c.source} for c in changes]})
        return
    rows = [(c.kind, c.path if c.source is None else f"{c.source} -> {c.path}") for c in changes]
    if rows:
        click.echo(table(("CHANGE", "PATH"), rows))
