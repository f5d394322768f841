"""``bdev convert``: move a container's rootfs to another backend, in place."""

from __future__ import annotations

import click

from ...i18n import N_, _, option
from .. import options as opts
from ..completion import backend_names, container_names
from ..session import get_session


@click.command("convert", help=N_(
    "Convert container NAME's rootfs to BACKEND, keeping its files and its name.\n\n"
    "The new rootfs is built beside the old one and takes its place atomically; the old one is removed only then, and "
    "a crash at any point leaves the container whole (the next command finishes or rolls back).  An aufs container "
    "converts to overlay without mounting aufs: its upper branch becomes the overlay upper layer over the same lower. "
    "Refused, changing nothing, while the container runs or clones depend on it."
))
@click.argument("name", shell_complete=container_names)
@option("-B", "--backend", "backend_text", metavar="BACKEND", shell_complete=backend_names, required=True,
              help=N_("The new backend: a name, best, or a comma list tried in order."))
@option("--fssize", metavar="SIZE", help=N_("Size for a block-backed rootfs: bytes, or with a K/M/G/T suffix."))
@option("--fstype", metavar="FSTYPE", help=N_("Filesystem for a block-backed rootfs."))
@option("-O", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              callback=opts.backend_option, help=opts.BACKEND_OPTION_HELP)
def convert(name: str, backend_text: str, fssize: str | None, fstype: str | None, backend_options: dict[str, str]) -> None:
    """Convert container NAME's rootfs to BACKEND, keeping its files and its name.

    The new rootfs is built beside the old one and takes its place atomically; the old one is
    removed only then, and a crash at any point leaves the container whole (the next command
    finishes or rolls back).  An aufs container converts to overlay without mounting aufs:
    its upper branch becomes the overlay upper layer over the same lower.  Refused, changing
    nothing, while the container runs or clones depend on it.
    """
    from ...engine.context import Context
    from ...engine.convert import convert as convert_rootfs
    from ...errors import from_os_error

    session = get_session()
    backend = opts.parse_backend(backend_text)
    spec = ",".join(backend) if isinstance(backend, list) else backend
    options = opts.create_options(fstype, opts.parse_fssize(fssize), backend_options)
    try:
        ctx = Context.create(session.lxcpath(), registry=session.registry, notify=session.notify)
        convert_rootfs(ctx, ctx.ref(name), spec or backend_text, options=options, progress=session.progress(_(
            "converting {name}"
        ).format(name=name)))
    except OSError as exc:  # an lxcpath that cannot be read or locked, say
        raise from_os_error(exc, container=name) from exc
