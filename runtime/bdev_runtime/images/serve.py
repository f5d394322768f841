"""``bdev image serve``: an image directory over HTTP (the standard library's server, read
only, bound to loopback unless told otherwise)."""

from __future__ import annotations

import functools
import logging
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bdev.errors import BdevError
from .._i18n import _

log = logging.getLogger("bdev.images.serve")


class _Handler(SimpleHTTPRequestHandler):
    """Files only: no directory listings, no hidden files (the directory's lock, builds in
    progress), requests logged through :mod:`logging`."""

    def send_head(self) -> Any:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if any(part.startswith(".") for part in path.split("/") if part):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path: Any) -> None:  # type: ignore[override]
        self.send_error(404, "No listing")
        return None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for ``directory`` bound to ``host:port`` (port 0: any free port).

    :raises BdevError: the directory does not exist, or the address cannot be bound.
    """
    if not directory.is_dir():
        raise BdevError(_("image directory {directory} does not exist").format(directory=directory))
    handler = functools.partial(_Handler, directory=str(directory))
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise BdevError(_("cannot serve on {host}:{port}: {error}").format(
            host=host, port=port, error=exc.strerror or exc)) from None
    server.daemon_threads = True
    return server
