"""``lxc-copy`` (LXC >= 2.0): ``lxc-copy -n NAME -N NEWNAME [-P lxcpath] [-p newpath] [-s]
[-B type] [-L size] [-K] [-M]``.

Note ``-P`` is the origin's lxcpath and ``-p`` the copy's: the reverse of ``lxc-clone``.
Renaming (``-R``) is refused with a sentence saying so.  ``-e`` starts an ephemeral
copy-on-write clone (``-N`` names it, else ``NAME_`` and six random characters; ``-D`` keeps it
after it stops; ``-F`` runs it on this terminal, ``-d`` in the background, the default) through
the runtime (the ``bdev-runtime`` distribution); ``-m`` and ``-t`` are refused.  Options that
only apply to ephemeral containers are ignored without ``-e``, with a warning.  Success prints
nothing (LXC 5 does the same).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

from ...errors import InvalidInput, NotSupported
from .. import options as opts
from ..errors import run
from .common import common_options, lxc_command, require, start

if TYPE_CHECKING:
    from ..session import Session

PROG = "lxc-copy"


@lxc_command(PROG, help_text="lxc-copy clone a container", usage="-n NAME -N NEWNAME [OPTIONS]")
@click.option("-n", "--name", metavar="NAME", help="NAME of the container.")
@click.option("-N", "--newname", metavar="NEWNAME", help="NEWNAME for the copy.")
@click.option("-p", "--newpath", metavar="NEWPATH", help="NEWPATH for the copy to be stored.")
@click.option("-R", "--rename", is_flag=True, help="Rename container (not supported yet: refused).")
@click.option("-s", "--snapshot", is_flag=True, help="Create a snapshot instead of a copy.")
@click.option("-a", "--allowrunning", is_flag=True, help="Allow copying a running container.")
@click.option("-F", "--foreground", is_flag=True, help="Ephemeral only.")
@click.option("-d", "--daemon", is_flag=True, help="Ephemeral only.")
@click.option("-e", "--ephemeral", is_flag=True, help="Start an ephemeral copy-on-write clone.")
@click.option("-m", "--mount", "mounts", multiple=True, metavar="{bind,overlay}=SRC[:DST]", help="Ephemeral only.")
@click.option("-B", "--backingstorage", metavar="TYPE", help="Backing storage type for the copy.")
@click.option("-t", "--tmpfs", is_flag=True, help="Ephemeral only.")
@click.option("-L", "--fssize", metavar="SIZE[U]", help="Size of a block-backed copy (default unit: M).")
@click.option("-D", "--keepdata", is_flag=True, help="Ephemeral only.")
@click.option("-K", "--keepname", is_flag=True, help="Keep the hostname of the original container.")
@click.option("-M", "--keepmac", is_flag=True, help="Keep the MAC address of the original container.")
@common_options()
@click.argument("hook_args", nargs=-1, metavar="[-- hook options]")
@click.pass_context
def command(
    ctx: click.Context,
    name: str | None,
    newname: str | None,
    newpath: str | None,
    rename: bool,
    snapshot: bool,
    allowrunning: bool,
    foreground: bool,
    daemon: bool,
    ephemeral: bool,
    mounts: tuple[str, ...],
    backingstorage: str | None,
    tmpfs: bool,
    fssize: str | None,
    keepdata: bool,
    keepname: bool,
    keepmac: bool,
    hook_args: tuple[str, ...],
    **common: object,
) -> int | None:
    """lxc-copy clone a container."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", "container name")
    if ephemeral:
        if mounts or tmpfs:
            raise NotSupported("-m and -t (extra mounts, a tmpfs upper layer) are not supported for ephemeral containers")
        return _start_ephemeral(session, name, newname, newpath, keepdata=keepdata, foreground=foreground,
                                backend=backingstorage, keepname=keepname, keepmac=keepmac)
    if rename:
        raise NotSupported("renaming a container (-R) is not supported yet")
    ignored = [flag for flag, given in (("-D", keepdata), ("-m", bool(mounts)), ("-t", tmpfs),
                                         ("-d", daemon), ("-F", foreground)) if given]
    if ignored:
        session.notify(f"{PROG}: {', '.join(ignored)} only apply to ephemeral containers (-e); ignored")
    newname = require(newname, "-N NEWNAME", "new container name")
    if hook_args:
        raise NotSupported(f"clone hook arguments ({' '.join(hook_args)}) are not supported")
    size = opts.parse_fssize(fssize, what="-L", default_unit="M")
    backend = opts.parse_backend(backingstorage)
    if isinstance(backend, list):
        raise InvalidInput("-B takes one backing storage type for a copy, not a list")
    options = opts.create_options(None, size, {})
    origin = session.container(name)
    session.container(newname, newpath)
    origin.clone(newname, lxcpath=newpath, backend=backend, snapshot=snapshot, keepname=keepname,
                 keepmac=keepmac, options=options, progress=session.progress(f"copying {name} to {newname}"))


def _start_ephemeral(session: "Session", name: str, newname: str | None, newpath: str | None, *, keepdata: bool,
                     foreground: bool, backend: str | None, keepname: bool, keepmac: bool) -> int:
    try:
        from bdev_runtime import lifecycle
    except ImportError:
        raise NotSupported("ephemeral containers (-e) need bdev's runtime (the bdev-runtime distribution)") from None
    ctx = lifecycle.context_for(session.lxcpath(), notify=session.notify)
    origin = ctx.ref(name)
    clone, status = lifecycle.start_ephemeral(
        ctx, origin, name=newname, lxcpath=session.lxcpath(newpath) if newpath else None, keep=keepdata,
        keepname=keepname, keepmac=keepmac, backend=backend, foreground=foreground,
        console_out=sys.stdout.fileno() if foreground else None,
    )
    if not foreground:
        session.notify(f"{PROG}: started {clone.name}, an ephemeral clone of {name}")
    return status


def main() -> NoReturn:
    """Entry point of ``lxc-copy``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
