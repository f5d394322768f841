"""``bdev image build | serve | list``: making, serving and listing image directories."""

from __future__ import annotations

import click

from bdev.cli.output import emit_json, format_option, table
from bdev.cli.session import get_session
from bdev.errors import BdevError
from bdev.i18n import option
from bdev.naming import validate_path

from .._i18n import _, N_
from . import fetch
from .arch import host_arch
from .build import COMPRESSIONS, ImageSpec, build_image, read_index
from .index import INDEX_PATH, parse_index


@click.group("image", help=N_("Build, serve and list container images for the download template."))
def image() -> None:
    """``bdev image``: the image commands."""


@image.command("build", help=N_("Run a template and add its rootfs to the image directory DIR (created if needed) "
                                "as a "
                                 "new build, with its config, expiry and SHA256SUMS, listed in DIR/meta/1.0/index-system."))
@click.argument("directory", metavar="DIR")
@option("-t", "--template", required=True, help=N_("Template that makes the rootfs (busybox, debian ...)."))
@option("--dist", metavar="DIST", help=N_("Distribution name in the index (default: the template's name)."))
@option("--release", metavar="RELEASE", required=True, help=N_("Release name in the index (bookworm ...)."))
@option("--arch", metavar="ARCH", default=None, help=N_("Architecture in the index (default: the host's)."))
@option("--variant", metavar="VARIANT", default="default", show_default=True, help=N_("Variant in the index."))
@option("--compression", type=click.Choice(sorted(COMPRESSIONS)), default="xz", show_default=True,
        help=N_("Compression of rootfs.tar.*."))
@option("--expiry", "expiry_days", type=float, default=30.0, show_default=True, metavar="DAYS",
        help=N_("Days after which caches fetch a newer build."))
@click.argument("template_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- TEMPLATE_ARGS...]")
def build(directory: str, template: str, dist: str | None, release: str, arch: str | None, variant: str,
          compression: str, expiry_days: float, template_args: tuple[str, ...]) -> None:
    """``bdev image build``: build an image with a template into DIR (the help above says how)."""
    session = get_session()
    spec = ImageSpec(template, list(template_args), dist or template, release, arch or host_arch(), variant,
                     compression, expiry_days)
    entry = build_image(session.registry, directory, spec, notify=session.notify)
    click.echo(entry.line())


@image.command("serve", help=N_("Serve the image directory DIR over HTTP until interrupted (the URL is printed)."))
@click.argument("directory", metavar="DIR")
@option("--bind", "host", default="127.0.0.1", show_default=True, help=N_("Address to listen on."))
@option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help=N_("Port (0: any free one)."))
def serve(directory: str, host: str, port: int) -> None:
    """``bdev image serve``: serve DIR over HTTP until interrupted."""
    from .serve import make_server

    top = validate_path(directory, "image directory")
    server = make_server(top, host, port)
    bound_host, bound_port = server.server_address[:2]
    click.echo(_("serving {top} at http://{host}:{port}/").format(top=top, host=bound_host, port=bound_port), err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@image.command("list", help=N_("""List the images of an image directory or server.

JSON: {"images": [{"dist", "release", "arch", "variant", "build_id", "path"}]}."""))
@click.argument("source", metavar="DIR|URL")
@format_option
def list_images(source: str, output_format: str) -> None:
    """``bdev image list``: list the images of an image directory or server."""
    if "://" in source:
        url = fetch.join(fetch.check_server(source), INDEX_PATH)
        entries = parse_index(fetch.fetch_text(url), url)
    else:
        top = validate_path(source, "image directory")
        if not top.is_dir():
            raise BdevError(_("image directory {top} does not exist").format(top=top))
        entries = read_index(top)
    entries = sorted(entries)
    if output_format == "json":
        emit_json({"images": [dict(e.__dict__) for e in entries]})
        return
    rows = [(e.dist, e.release, e.arch, e.variant, e.build_id) for e in entries]
    click.echo(table(("DIST", "RELEASE", "ARCH", "VARIANT", "BUILD"), rows))
