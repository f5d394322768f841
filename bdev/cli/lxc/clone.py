"""``lxc-clone`` (LXC 1.0): ``lxc-clone [-s] [-B type] [-L size] [-K] [-M] [-p lxcpath]
[-P newpath] orig new``, or ``-o orig -n new``.

``-s`` asks for a copy-on-write snapshot clone and is refused when the backend cannot make
one; without ``-s`` the clone is a full copy.  Note ``-p`` is the origin's lxcpath and ``-P``
the clone's: the reverse of ``lxc-copy``.  Prints ``Created container NEW as snapshot|copy of
ORIG`` as LXC 1.0 did.
"""

from __future__ import annotations

from typing import NoReturn

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput, NotSupported
from .. import logsetup
from .. import options as opts
from ..completion import backend_names, container_names
from ..errors import GuardedCommand, run
from ..session import Session
from .common import HELP_OPTIONS

PROG = "lxc-clone"


@click.command(PROG, cls=GuardedCommand, options_metavar="[-s] [-B TYPE] [-L SIZE] [-K] [-M] [-p LXCPATH] [-P NEWPATH]",
               context_settings={"help_option_names": HELP_OPTIONS}, help=N_(
                   "Clone an existing container (LXC 1.0's lxc-clone)."
               ))
@option("-o", "--orig", metavar="ORIG", shell_complete=container_names, help=N_("The container to clone."))
@option("-n", "--new", metavar="NEW", help=N_("The new container's name."))
@option("-s", "--snapshot", is_flag=True, help=N_("Snapshot rather than copy (refused if impossible)."))
@option("-B", "--backingstore", metavar="TYPE", shell_complete=backend_names, help=N_(
    "Backing store of the clone (default: the origin's)."
))
@option("-L", "--size", "--fssize", "size", metavar="SIZE[U]", help=N_(
    "Size of a block-backed clone (default unit: M)."
))
@option("-K", "--keepname", is_flag=True, help=N_("Keep the hostname."))
@option("-M", "--keepmac", is_flag=True, help=N_("Keep the MAC addresses."))
@option("-p", "--lxcpath", metavar="PATH", help=N_("lxcpath of the original container."))
@option("-P", "--newpath", metavar="PATH", help=N_("lxcpath for the new container."))
@option("-v", "--vgname", metavar="VG", help=N_("lvm: volume group of the clone."))
@option("-t", "--fstype", metavar="TYPE", help=N_("Filesystem of a block-backed clone."))
@option("-q", "--quiet", is_flag=True, help=N_("Print nothing on success."))
@click.argument("names", nargs=-1, metavar="orig new | -o orig -n new")
@click.pass_context
def command(
    ctx: click.Context,
    orig: str | None,
    new: str | None,
    snapshot: bool,
    backingstore: str | None,
    size: str | None,
    keepname: bool,
    keepmac: bool,
    lxcpath: str | None,
    newpath: str | None,
    vgname: str | None,
    fstype: str | None,
    quiet: bool,
    names: tuple[str, ...],
) -> None:
    """Clone an existing container (LXC 1.0's lxc-clone)."""
    logsetup.configure(PROG, None)
    session = Session(PROG, lxcpath=lxcpath, quiet=quiet)
    ctx.obj = session
    rest = list(names)
    if orig is None and rest:
        orig = rest.pop(0)
    if new is None and rest:
        new = rest.pop(0)
    if orig is None or new is None:
        raise click.UsageError(_("you must provide orig and new names"))
    if rest:
        raise NotSupported(_("clone hook arguments ({arguments}) are not supported").format(arguments=' '.join(rest)))
    if not orig or not new:
        raise InvalidInput(_("container names must not be empty"))
    fssize = opts.parse_fssize(size, what="-L", default_unit="M")
    backend = opts.parse_backend(backingstore)
    if isinstance(backend, list):
        raise InvalidInput(_("-B takes one backing store for a clone, not a list"))
    options = opts.create_options(fstype, fssize, {"vgname": vgname})
    origin = session.container(orig)
    session.container(new, newpath)  # validate the new name before anything happens
    made = origin.clone(new, lxcpath=newpath, backend=backend, snapshot=snapshot, keepname=keepname,
                        keepmac=keepmac, options=options, progress=session.progress(_(
                            "cloning {orig} to {new}"
                        ).format(orig=orig, new=new)))
    if not quiet:
        how = "copy" if made.outcome is None or made.outcome.method == "copy" else "snapshot"
        click.echo(f"Created container {new} as {how} of {orig}")


def main() -> NoReturn:
    """Entry point of ``lxc-clone``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
