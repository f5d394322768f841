"""``lxc-create``: LXC 1.0 and 5 options, bdev's storage backends underneath.

``lxc-create -n NAME -t TEMPLATE [-B type|best|a,b] [-P lxcpath] [-f config] [--fstype T]
[--fssize SIZE] [--zfsroot P] [--lvname L] [--vgname V] [--thinpool T] [--dir D]
[--rbdname R] [--rbdpool P] [-q] [-l LEVEL] [-o LOGFILE] [-- template args]``

As in LXC, ``-t none`` makes a container without a filled rootfs and a bare ``--fssize``
number is MiB.  Success prints nothing but operation messages (on stderr, unless ``-q``).
"""

from __future__ import annotations

from typing import NoReturn

import click

from ...i18n import N_, _, option
from .. import options as opts
from ...templates import asks_for_help
from ..completion import backend_names
from ..errors import run
from .common import common_options, lxc_command, require, start

PROG = "lxc-create"


@lxc_command(PROG, help_text=N_("lxc-create creates a container"), usage="-n NAME -t TEMPLATE [OPTIONS]")
@option("-n", "--name", metavar="NAME", help=N_("NAME of the container."))
@option("-f", "--config", "config_file", metavar="CONFIG", help=N_(
    "Extra configuration file whose entries are appended."
))
@option("-t", "--template", metavar="TEMPLATE", help=N_(
    "Template to use to setup container ('none': no rootfs content)."
))
@option("-B", "--bdev", metavar="BDEV", shell_complete=backend_names, help=N_(
    "Backing store type: a name, 'best', or a comma list tried in order."
))
@option("--dir", "rootfs_dir", metavar="DIR", help=N_("Place rootfs directory under DIR."))
@option("--lvname", metavar="LVNAME", help=N_("lvm: LV name (default: container name)."))
@option("--vgname", metavar="VG", help=N_("lvm: volume group (default: lxc)."))
@option("--thinpool", metavar="TP", help=N_("lvm: thin pool (default: lxc)."))
@option("--rbdname", metavar="RBDNAME", help=N_("rbd: image name (default: container name)."))
@option("--rbdpool", metavar="POOL", help=N_("rbd: pool (default: lxc)."))
@option("--zfsroot", metavar="PATH", help=N_("zfs: parent dataset (default: lxc)."))
@option("--fstype", metavar="TYPE", help=N_("lvm/loop: filesystem type (default: ext4)."))
@option("--fssize", metavar="SIZE[U]", help=N_("lvm/loop: size, unit b/k/m/g/t (default unit: M)."))
@common_options(rcfile=False)
@click.argument("template_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- template-options]")
@click.pass_context
def command(
    ctx: click.Context,
    name: str | None,
    config_file: str | None,
    template: str | None,
    bdev: str | None,
    rootfs_dir: str | None,
    lvname: str | None,
    vgname: str | None,
    thinpool: str | None,
    rbdname: str | None,
    rbdpool: str | None,
    zfsroot: str | None,
    fstype: str | None,
    fssize: str | None,
    template_args: tuple[str, ...],
    **common: object,
) -> None:
    """lxc-create creates a container."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", N_("container name"))
    if template is None:
        raise click.UsageError(_("a template must be specified with -t (use -t none for a container without a rootfs)"))
    size = opts.parse_fssize(fssize, default_unit="M")
    backend = opts.parse_backend(bdev) or "dir"
    extra = {"zfsroot": zfsroot, "vgname": vgname, "lvname": lvname, "thinpool": thinpool,
             "dir": rootfs_dir, "rbdname": rbdname, "rbdpool": rbdpool}
    options = opts.create_options(fstype, size, extra)
    config = opts.read_config_file(config_file) if config_file else []
    chosen = None if template == "none" else template
    if template_args and chosen is None:
        from ...errors import InvalidInput

        raise InvalidInput(_("template arguments were given but the template is 'none'"))
    container = session.container(name)
    if chosen is not None:
        if asks_for_help(template_args):  # as LXC's templates: their help, and no container
            click.echo(session.registry.template(chosen).help_text())
            return
        session.registry.template(chosen)
    container.create(chosen, backend, args=template_args, options=options, config=config,
                     progress=session.progress(_("creating {name}").format(name=container.name)))


def main() -> NoReturn:
    """Entry point of ``lxc-create``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
