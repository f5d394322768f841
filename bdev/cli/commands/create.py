"""``bdev create``: a new container filled by a template or copied from a directory/tarball."""

from __future__ import annotations

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput
from .. import options as opts
from ..completion import backend_names
from ..session import get_session


@click.command("create", help=N_(
    "Create container NAME.\n\n"
    "Everything given is checked before anything is made; a failure at any later point removes what was created."
))
@click.argument("name")
@option("-t", "--template", help=N_("Template filling the rootfs (see `bdev templates`)."))
@option("-B", "--backend", "backend_text", metavar="BACKEND", shell_complete=backend_names,
              help=N_("Backend: a name, 'best', or a comma list tried in order (default: dir)."))
@option("--fstype", help=N_("Filesystem for block-backed backends (default: ext4)."))
@option("--fssize", metavar="SIZE", help=N_("Size for block-backed backends: bytes, or with a K/M/G/T suffix."))
@option("--zfsroot", help=N_("zfs: parent dataset."))
@option("--vgname", help=N_("lvm: volume group."))
@option("--lvname", help=N_("lvm: logical volume name (default: the container's)."))
@option("--thinpool", help=N_("lvm: thin pool."))
@option("--dir", "rootfs_dir", metavar="DIR", help=N_("dir: put the rootfs directory at DIR."))
@option("--rbdname", help=N_("rbd: image name (default: the container's)."))
@option("--rbdpool", help=N_("rbd: pool."))
@option("--source", metavar="PATH", help=N_("Copy the rootfs from a directory or tarball instead of a template."))
@option("-f", "--config", "config_file", metavar="FILE", help=N_("Extra config file whose entries are appended."))
@option("-O", "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE",
              callback=opts.backend_option, help=opts.BACKEND_OPTION_HELP)
@click.argument("template_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- TEMPLATE_ARGS...]")
def create(
    name: str,
    template: str | None,
    backend_text: str | None,
    fstype: str | None,
    fssize: str | None,
    zfsroot: str | None,
    vgname: str | None,
    lvname: str | None,
    thinpool: str | None,
    rootfs_dir: str | None,
    rbdname: str | None,
    rbdpool: str | None,
    source: str | None,
    config_file: str | None,
    backend_options: dict[str, str],
    template_args: tuple[str, ...],
) -> None:
    """Create container NAME.

    Everything given is checked before anything is made; a failure at any later point
    removes what was created.
    """
    session = get_session()
    size = opts.parse_fssize(fssize)
    backend = opts.parse_backend(backend_text) or "dir"
    extra = {"zfsroot": zfsroot, "vgname": vgname, "lvname": lvname, "thinpool": thinpool,
             "dir": rootfs_dir, "rbdname": rbdname, "rbdpool": rbdpool, **backend_options}
    options = opts.create_options(fstype, size, extra)
    if template and source:
        raise InvalidInput(_("give either --template or --source, not both"))
    if template_args and not template:
        raise InvalidInput(_("template arguments were given but no template (-t)"))
    config = opts.read_config_file(config_file) if config_file else []
    container = session.container(name)
    if template:
        from ...templates import asks_for_help  # not at start-up: every bdev command would load it

        if asks_for_help(template_args):  # the template's help, and no container
            click.echo(session.registry.template(template).help_text())
            return
        session.registry.template(template)
    container.create(template, backend, args=template_args, options=options, source=source, config=config,
                     progress=session.progress(_("creating {name}").format(name=name)))
