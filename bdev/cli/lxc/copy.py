"""``lxc-copy`` (LXC >= 2.0): ``lxc-copy -n NAME -N NEWNAME [-P lxcpath] [-p newpath] [-s]
[-B type] [-L size] [-K] [-M]``.

Note ``-P`` is the origin's lxcpath and ``-p`` the copy's: the reverse of ``lxc-clone``.
Renaming (``-R``) is refused with a sentence saying so.  ``-e`` starts an ephemeral
copy-on-write clone (``-N`` names it, else ``NAME_`` and six random characters; ``-D`` keeps it
after it stops; ``-F`` runs it on this terminal, ``-d`` in the background, the default) through
the runtime (the ``bdev-runtime`` distribution), with ``-m`` mounts added as LXC adds them and
``-t`` keeping its changes on a tmpfs.  Options that
only apply to ephemeral containers are ignored without ``-e``, with a warning.  Success prints
nothing (LXC 5 does the same).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput, NotSupported
from .. import options as opts
from ..completion import backend_names, container_names
from ..errors import run
from .common import common_options, lxc_command, require, start

if TYPE_CHECKING:
    from ..session import Session

PROG = "lxc-copy"


@lxc_command(PROG, help_text=N_("lxc-copy clone a container"), usage="-n NAME -N NEWNAME [OPTIONS]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-N", "--newname", metavar="NEWNAME", help=N_("NEWNAME for the copy."))
@option("-p", "--newpath", metavar="NEWPATH", help=N_("NEWPATH for the copy to be stored."))
@option("-R", "--rename", is_flag=True, help=N_("Rename container (not supported yet: refused)."))
@option("-s", "--snapshot", is_flag=True, help=N_("Create a snapshot instead of a copy."))
@option("-a", "--allowrunning", is_flag=True, help=N_("Allow copying a running container."))
@option("-F", "--foreground", is_flag=True, help=N_("Ephemeral only."))
@option("-d", "--daemon", is_flag=True, help=N_("Ephemeral only."))
@option("-e", "--ephemeral", is_flag=True, help=N_("Start an ephemeral copy-on-write clone."))
@option("-m", "--mount", "mounts", multiple=True, metavar="{bind,overlay}=SRC[:DST]",
        help=N_(
            "Ephemeral only: mount SRC at DST in the copy (bind=SRC[:DST][:ro|rw] or overlay=SRC[:DST]; repeatable, "
            "comma-separated)."
        ))
@option("-B", "--backingstorage", metavar="TYPE", shell_complete=backend_names, help=N_(
    "Backing storage type for the copy."
))
@option("-t", "--tmpfs", is_flag=True, help=N_("Ephemeral only: keep the copy's changes on a tmpfs (an overlay copy)."))
@option("-L", "--fssize", metavar="SIZE[U]", help=N_("Size of a block-backed copy (default unit: M)."))
@option("-D", "--keepdata", is_flag=True, help=N_("Ephemeral only."))
@option("-K", "--keepname", is_flag=True, help=N_("Keep the hostname of the original container."))
@option("-M", "--keepmac", is_flag=True, help=N_("Keep the MAC address of the original container."))
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
    name = require(name, "-n NAME", N_("container name"))
    if ephemeral:
        return _start_ephemeral(session, name, newname, newpath, keepdata=keepdata, foreground=foreground,
                                backend=backingstorage, keepname=keepname, keepmac=keepmac, mounts=mounts,
                                tmpfs=tmpfs)
    if rename:
        raise NotSupported(_("renaming a container (-R) is not supported yet"))
    ignored = [flag for flag, given in (("-D", keepdata), ("-m", bool(mounts)), ("-t", tmpfs),
                                         ("-d", daemon), ("-F", foreground)) if given]
    if ignored:
        session.notify(_(
            "{prog}: {options} only apply to ephemeral containers (-e); ignored"
        ).format(prog=PROG, options=', '.join(ignored)))
    newname = require(newname, "-N NEWNAME", N_("new container name"))
    if hook_args:
        raise NotSupported(_(
            "clone hook arguments ({arguments}) are not supported"
        ).format(arguments=' '.join(hook_args)))
    size = opts.parse_fssize(fssize, what="-L", default_unit="M")
    backend = opts.parse_backend(backingstorage)
    if isinstance(backend, list):
        raise InvalidInput(_("-B takes one backing storage type for a copy, not a list"))
    options = opts.create_options(None, size, {})
    origin = session.container(name)
    session.container(newname, newpath)
    origin.clone(newname, lxcpath=newpath, backend=backend, snapshot=snapshot, keepname=keepname,
                 keepmac=keepmac, options=options, progress=session.progress(_(
                     "copying {name} to {newname}"
                 ).format(name=name, newname=newname)))


def _start_ephemeral(session: "Session", name: str, newname: str | None, newpath: str | None, *, keepdata: bool,
                     foreground: bool, backend: str | None, keepname: bool, keepmac: bool,
                     mounts: tuple[str, ...], tmpfs: bool) -> int:
    try:
        from bdev_runtime import lifecycle
        from bdev_runtime.ephemeral import parse_copy_mounts
    except ImportError:
        raise NotSupported(_("ephemeral containers (-e) need bdev's runtime (the bdev-runtime distribution)")) from None
    extra_mounts = parse_copy_mounts(mounts)  # refused before anything is cloned
    ctx = lifecycle.context_for(session.lxcpath(), notify=session.notify)
    origin = ctx.ref(name)
    clone, status = lifecycle.start_ephemeral(
        ctx, origin, name=newname, lxcpath=session.lxcpath(newpath) if newpath else None, keep=keepdata,
        keepname=keepname, keepmac=keepmac, backend=backend, mounts=extra_mounts, tmpfs=tmpfs, foreground=foreground,
        console_out=sys.stdout.fileno() if foreground else None,
    )
    if not foreground:
        session.notify(_(
            "{prog}: started {name}, an ephemeral clone of {origin}"
        ).format(prog=PROG, name=clone.name, origin=name))
    return status


def main() -> NoReturn:
    """Entry point of ``lxc-copy``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
