"""The ``download`` template: a prebuilt image from an image server (see ``docs/templates.md``).

As LXC's ``lxc-download``: the image is picked by ``--dist --release --arch --variant`` in the
server's ``meta/1.0/index-system``, kept in a local cache until the image's expiry time
(``--flush-cache`` fetches it again, ``--no-cache`` bypasses the cache), and every file is
checked against the image's ``SHA256SUMS`` before use.  The rootfs tarball is unpacked with
strict member checks (:mod:`bdev_runtime.images.unpack`) into the rootfs the create engine
made and mounted on the chosen backend, with a progress bar on a terminal.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from bdev.copying import terminal_progress
from bdev.templates import Template, TemplateContext

from .._i18n import _, N_
from ..images import unpack
from ..images.arch import host_arch
from ..images.fetch import check_server
from ..images.index import check_field
from ..images.obtain import Request, obtain
from ._args import TemplateArgs
from .local import read_etc_file, write_etc_file, write_hostname

log = logging.getLogger("bdev.templates.download")

#: The server used when ``--server`` is not given.
SERVER_ENV = "BDEV_IMAGE_SERVER"

ARGS = TemplateArgs(
    "download",
    [
        click.Option(["-d", "--dist"], metavar="DIST", required=True, help=_("distribution (debian, busybox ...)")),
        click.Option(["-r", "--release"], metavar="RELEASE", required=True, help=_("release of the distribution "
                                                                                   "(bookworm ...)")),
        click.Option(["-a", "--arch"], metavar="ARCH", default=None, help=_("architecture (default: the host's, "
                                                                            "e.g. amd64)")),
        click.Option(["-v", "--variant"], metavar="VARIANT", default="default", show_default=True, help=_("variant of the image")),
        click.Option(["--server"], metavar="URL", default=None,
                     help=_("image server: http(s):// or file:// URL of the directory holding meta/1.0/index-system "
                             "(default: ${variable})").format(variable=SERVER_ENV)),
        click.Option(["--flush-cache"], is_flag=True, default=False, help=_("drop the cached image and download it "
                                                                            "again")),
        click.Option(["--no-cache"], is_flag=True, default=False, help=_("download into a temporary directory; "
                                                                         "leave the cache alone")),
    ],
)


def request_from(options: dict[str, object]) -> Request:
    """The image asked for by parsed options.

    :raises InvalidInput: a field is not valid, or no server is given.
    """
    server = options["server"] or os.environ.get(SERVER_ENV)
    if not server:
        from bdev.errors import InvalidInput

        raise InvalidInput(_("template 'download' needs --server URL (or ${server_env})").format(server_env=SERVER_ENV))
    return Request(
        server=check_server(str(server)),
        dist=check_field(str(options["dist"]), "distribution"),
        release=check_field(str(options["release"]), "release"),
        arch=check_field(str(options["arch"] or host_arch()), "architecture"),
        variant=check_field(str(options["variant"]), "variant"),
    )


def build(ctx: TemplateContext) -> None:
    """Fill ``ctx.rootfs`` with the image asked for and append the image's config lines.

    :raises BdevError: bad options, an image the server lacks, a failed download or
        checksum, an unsafe or corrupt tarball, or a full disk; the engine removes the rootfs.
    """
    options = ARGS.parse(ctx.args)
    request = request_from(options)
    with obtain(request, use_cache=not options["no_cache"], flush=bool(options["flush_cache"])) as image:
        how = "from the cache" if image.from_cache else "downloaded"
        log.info("image %s build %s %s", request.label(), image.build_id, how)
        config = image.config_lines()
        unpack.extract(image.rootfs, ctx.rootfs, terminal_progress(f"unpacking {request.label()}"))
    ctx.config.extend((k, v) for k, v in config if k not in ("lxc.uts.name", "lxc.utsname", "lxc.rootfs.path", "lxc.rootfs"))
    write_hostname(ctx.rootfs, ctx.name)
    rename_in_hosts(ctx.rootfs, ctx.name)


def rename_in_hosts(rootfs: Path, name: str) -> None:
    """Point ``127.0.1.1`` in the image's ``/etc/hosts`` (Debian's line for the host's own
    name) at the container's name; an image without the file is left alone."""
    text = read_etc_file(rootfs, "hosts")
    if text is None:
        return
    lines = [ln for ln in text.splitlines() if not ln.split()[:1] == ["127.0.1.1"]]
    at = next((i + 1 for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.0.1"]), len(lines))
    lines.insert(at, f"127.0.1.1\t{name}")
    write_etc_file(rootfs, "hosts", "\n".join(lines) + "\n")


DOWNLOAD = Template(
    "download",
    N_("a prebuilt image from an image server (index, SHA-256 checked, cached)"),
    build=build,
    usage=ARGS.usage(),
)
