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

from .. import options as opts
from ...templates import asks_for_help
from ..errors import run
from .common import common_options, lxc_command, require, start

PROG = "lxc-create"


@lxc_command(PROG, help_text="lxc-create creates a container", usage="-n NAME -t TEMPLATE [OPTIONS]")
@click.option("-n", "--name", metavar="NAME", help="NAME of the container.")
@click.option("-f", "--config", "config_file", metavar="CONFIG", help="Extra configuration file whose entries are appended.")
@click.option("-t", "--template", metavar="TEMPLATE", help="Template to use to setup container ('none': no rootfs content).")
@click.option("-B", "--bdev", metavar="BDEV", help="Backing store type: a name, 'best', or a comma list tried in order.")
@click.option("--dir", "rootfs_dir", metavar="DIR", help="Place rootfs directory under DIR.")
@click.option("--lvname", metavar="LVNAME", help="lvm: LV name (default: container name).")
@click.option("--vgname", metavar="VG", help="lvm: volume group (default: lxc).")
@click.option("--thinpool", metavar="TP", help="lvm: thin pool (default: lxc).")
@click.option("--rbdname", metavar="RBDNAME", help="rbd: image name (default: container name).")
@click.option("--rbdpool", metavar="POOL", help="rbd: pool (default: lxc).")
@click.option("--zfsroot", metavar="PATH", help="zfs: parent dataset (default: lxc).")
@click.option("--fstype", metavar="TYPE", help="lvm/loop: filesystem type (default: ext4).")
@click.option("--fssize", metavar="SIZE[U]", help="lvm/loop: size, unit b/k/m/g/t (default unit: M).")
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
    name = require(name, "-n NAME", "container name")
    if template is None:
        raise click.UsageError("a template must be specified with -t (use -t none for a container without a rootfs)")
    size = opts.parse_fssize(fssize, default_unit="M")
    backend = opts.parse_backend(bdev) or "dir"
    extra = {"zfsroot": zfsroot, "vgname": vgname, "lvname": lvname, "thinpool": thinpool,
             "dir": rootfs_dir, "rbdname": rbdname, "rbdpool": rbdpool}
    options = opts.create_options(fstype, size, extra)
    config = opts.read_config_file(config_file) if config_file else []
    chosen = None if template == "none" else template
    if template_args and chosen is None:
        from ...errors import InvalidInput

        raise InvalidInput("template arguments were given but the template is 'none'")
    container = session.container(name)
    if chosen is not None:
        if asks_for_help(template_args):  # as LXC's templates: their help, and no container
            click.echo(session.registry.template(chosen).help_text())
            return
        session.registry.template(chosen)
    container.create(chosen, backend, args=template_args, options=options, config=config,
                     progress=session.progress(f"creating {container.name}"))


def main() -> NoReturn:
    """Entry point of ``lxc-create``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
