"""``bdev clone``: copy a container, or make a copy-on-write snapshot clone of it."""

from __future__ import annotations

import click

from ...i18n import N_, _, option
from .. import options as opts
from ..completion import backend_names, container_names
from ..session import get_session


@click.command("clone", help=N_("Clone container ORIG into NEW."))
@click.argument("orig", shell_complete=container_names)
@click.argument("new")
@option("-s", "--snapshot", is_flag=True, help=N_("Make a copy-on-write clone; refused if the backend cannot."))
@option("--allow-copy", is_flag=True,
              help=N_("With -s (implied): fall back to a full copy when a snapshot is impossible."))
@option("-B", "--backend", "backend_text", metavar="BACKEND", shell_complete=backend_names, help=N_(
    "Backend of the clone (default: the origin's)."
))
@option("-K", "--keepname", is_flag=True, help=N_("Keep the hostname (lxc.uts.name and /etc/hostname)."))
@option("-M", "--keepmac", is_flag=True, help=N_("Keep MAC addresses instead of making new random ones."))
@option("--fssize", metavar="SIZE", help=N_("Size for a block-backed clone: bytes, or with a K/M/G/T suffix."))
@option("--to-lxcpath", metavar="PATH", help=N_("Create the clone in this lxcpath (default: the origin's)."))
@option("-O", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
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

        raise InvalidInput(_("a clone takes one backend, not a list"))
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
        progress=session.progress(_("cloning {orig} to {new}").format(orig=orig, new=new)),
    )
