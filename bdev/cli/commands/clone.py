"""``bdev clone``: copy a container, or make a copy-on-write snapshot clone of it."""

from __future__ import annotations

import click

from .. import options as opts
from ..session import get_session


@click.command("clone")
@click.argument("orig")
@click.argument("new")
@click.option("-s", "--snapshot", is_flag=True, help="Make a copy-on-write clone; refused if the backend cannot.")
@click.option("--allow-copy", is_flag=True,
              help="With -s (implied): fall back to a full copy when a snapshot is impossible.")
@click.option("-B", "--backend", "backend_text", metavar="BACKEND", help="Backend of the clone (default: the origin's).")
@click.option("-K", "--keepname", is_flag=True, help="Keep the hostname (lxc.uts.name and /etc/hostname).")
@click.option("-M", "--keepmac", is_flag=True, help="Keep MAC addresses instead of making new random ones.")
@click.option("--fssize", metavar="SIZE", help="Size for a block-backed clone: bytes, or with a K/M/G/T suffix.")
@click.option("--to-lxcpath", metavar="PATH", help="Create the clone in this lxcpath (default: the origin's).")
@click.option("-O", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              callback=opts.backend_option, help=opts.BACKEND_OPTION_HELP)
def clone(
    orig: str,
    new: str,
    snapshot: bool,
    allow_copy: bool,
    backend_text: str | None,
    keepname: bool,
    keepmac: bool,
    fssize: str | None,
    to_lxcpath: str | None,
    backend_options: dict[str, str],
) -> None:
    """Clone container ORIG into NEW."""
    session = get_session()
    size = opts.parse_fssize(fssize)
    backend = opts.parse_backend(backend_text)
    if isinstance(backend, list):
        from ...errors import InvalidInput

        raise InvalidInput("a clone takes one backend, not a list")
    options = opts.create_options(None, size, backend_options)
    origin = session.container(orig)
    session.container(new, to_lxcpath)  # validates NEW before anything happens
    origin.clone(
        new,
        lxcpath=to_lxcpath,
        backend=backend,
        snapshot=snapshot or allow_copy,
        maybe_snapshot=allow_copy,
        keepname=keepname,
        keepmac=keepmac,
        options=options,
        progress=session.progress(f"cloning {orig} to {new}"),
    )
