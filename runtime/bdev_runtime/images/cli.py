"""``bdev image build | serve | list``: making, serving and listing image directories."""

from __future__ import annotations

import click

from bdev.cli.output import emit_json, format_option, table
from bdev.cli.session import get_session
from bdev.errors import BdevError
from bdev.naming import validate_path

from . import fetch
from .arch import host_arch
from .build import COMPRESSIONS, ImageSpec, build_image, read_index
from .index import INDEX_PATH, parse_index


@click.group("image")
def image() -> None:
    """Build, serve and list container images for the download template."""


@image.command("build")
@click.argument("directory", metavar="DIR")
@click.option("-t", "--template", required=True, help="Template that makes the rootfs (busybox, debian ...).")
@click.option("--dist", metavar="DIST", help="Distribution name in the index (default: the template's name).")
@click.option("--release", metavar="RELEASE", required=True, help="Release name in the index (bookworm ...).")
@click.option("--arch", metavar="ARCH", default=None, help="Architecture in the index (default: the host's).")
@click.option("--variant", metavar="VARIANT", default="default", show_default=True, help="Variant in the index.")
@click.option("--compression", type=click.Choice(sorted(COMPRESSIONS)), default="xz", show_default=True,
              help="Compression of rootfs.tar.*.")
@click.option("--expiry", "expiry_days", type=float, default=30.0, show_default=True, metavar="DAYS",
              help="Days after which caches fetch a newer build.")
@click.argument("template_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- TEMPLATE_ARGS...]")
def build(directory: str, template: str, dist: str | None, release: str, arch: str | None, variant: str,
          compression: str, expiry_days: float, template_args: tuple[str, ...]) -> None:
    """Run a template and add its rootfs to the image directory DIR (created if needed) as a
    new build, with its config, expiry and SHA256SUMS, listed in DIR/meta/1.0/index-system."""
    session = get_session()
    spec = ImageSpec(template, list(template_args), dist or template, release, arch or host_arch(), variant,
                     compression, expiry_days)
    entry = build_image(session.registry, directory, spec, notify=session.notify)
    click.echo(entry.line())


@image.command("serve")
@click.argument("directory", metavar="DIR")
@click.option("--bind", "host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
def serve(directory: str, host: str, port: int) -> None:
    """Serve the image directory DIR over HTTP until interrupted (the URL is printed)."""
    from .serve import make_server

    top = validate_path(directory, "image directory")
    server = make_server(top, host, port)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving {top} at http://{bound_host}:{bound_port}/", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@image.command("list")
@click.argument("source", metavar="DIR|URL")
@format_option
def list_images(source: str, output_format: str) -> None:
    """List the images of an image directory or server.

    JSON: {"images": [{"dist", "release", "arch", "variant", "build_id", "path"}]}.
    """
    if "://" in source:
        url = fetch.join(fetch.check_server(source), INDEX_PATH)
        entries = parse_index(fetch.fetch_text(url), url)
    else:
        top = validate_path(source, "image directory")
        if not top.is_dir():
            raise BdevError(f"image directory {top} does not exist")
        entries = read_index(top)
    entries = sorted(entries)
    if output_format == "json":
        emit_json({"images": [dict(e.__dict__) for e in entries]})
        return
    rows = [(e.dist, e.release, e.arch, e.variant, e.build_id) for e in entries]
    click.echo(table(("DIST", "RELEASE", "ARCH", "VARIANT", "BUILD"), rows))
