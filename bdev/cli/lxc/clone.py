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

from ...errors import InvalidInput, NotSupported
from .. import logsetup
from .. import options as opts
from ..errors import GuardedCommand, run
from ..session import Session
from .common import HELP_OPTIONS

PROG = "lxc-clone"


@click.command(PROG, cls=GuardedCommand, options_metavar="[-s] [-B TYPE] [-L SIZE] [-K] [-M] [-p LXCPATH] [-P NEWPATH]",
               context_settings={"help_option_names": HELP_OPTIONS})
@click.option("-o", "--orig", metavar="ORIG", help="The container to clone.")
@click.option("-n", "--new", metavar="NEW", help="The new container's name.")
@click.option("-s", "--snapshot", is_flag=True, help="Snapshot rather than copy (refused if impossible).")
@click.option("-B", "--backingstore", metavar="TYPE", help="Backing store of the clone (default: the origin's).")
@click.option("-L", "--size", "--fssize", "size", metavar="SIZE[U]", help="Size of a block-backed clone (default unit: M).")
@click.option("-K", "--keepname", is_flag=True, help="Keep the hostname.")
@click.option("-M", "--keepmac", is_flag=True, help="Keep the MAC addresses.")
@click.option("-p", "--lxcpath", metavar="PATH", help="lxcpath of the original container.")
@click.option("-P", "--newpath", metavar="PATH", help="lxcpath for the new container.")
@click.option("-v", "--vgname", metavar="VG", help="lvm: volume group of the clone.")
@click.option("-t", "--fstype", metavar="TYPE", help="Filesystem of a block-backed clone.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
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
        raise click.UsageError("you must provide orig and new names")
    if rest:
        raise NotSupported(f"clone hook arguments ({' '.join(rest)}) are not supported")
    if not orig or not new:
        raise InvalidInput("container names must not be empty")
    fssize = opts.parse_fssize(size, what="-L", default_unit="M")
    backend = opts.parse_backend(backingstore)
    if isinstance(backend, list):
        raise InvalidInput("-B takes one backing store for a clone, not a list")
    options = opts.create_options(fstype, fssize, {"vgname": vgname})
    origin = session.container(orig)
    session.container(new, newpath)  # validate the new name before anything happens
    made = origin.clone(new, lxcpath=newpath, backend=backend, snapshot=snapshot, keepname=keepname,
                        keepmac=keepmac, options=options, progress=session.progress(f"cloning {orig} to {new}"))
    if not quiet:
        how = "copy" if made.outcome is None or made.outcome.method == "copy" else "snapshot"
        click.echo(f"Created container {new} as {how} of {orig}")


def main() -> NoReturn:
    """Entry point of ``lxc-clone``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
