"""Fetching an image server's files over HTTP(S) (``file://`` works too), refusing short reads."""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bdev.errors import BdevError, InvalidInput
from .._i18n import _

log = logging.getLogger("bdev.images.fetch")

#: Seconds to wait for a connection or for the next bytes.
TIMEOUT = 60.0
_CHUNK = 1 << 16


def check_server(url: str) -> str:
    """``url`` without a trailing slash, if it is an http, https or file URL.

    :raises InvalidInput: another scheme, or no host for http(s).
    """
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise InvalidInput(_("image server {url!r} is not an http://, https:// or file:// URL").format(url=url))
    return url.rstrip("/")


def join(server: str, *parts: str) -> str:
    """``server/part/part``, each part quoted as a URL path."""
    return "/".join([server, *(urllib.parse.quote(p.strip("/"), safe="/:+") for p in parts)])


def _open(url: str):  # type: ignore[no-untyped-def]
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)  # noqa: S310 - schemes checked by check_server
    except urllib.error.HTTPError as exc:
        raise BdevError(_("{url} could not be fetched: HTTP {code} {reason}").format(
            url=url, code=exc.code, reason=exc.reason)) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise BdevError(_("{url} could not be fetched: {reason}").format(url=url, reason=reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise BdevError(_("{url} could not be fetched: {error}").format(url=url, error=exc)) from None


def fetch_text(url: str, limit: int = 1 << 20) -> str:
    """The text at ``url`` (an index or a manifest), at most ``limit`` bytes.

    :raises BdevError: it cannot be fetched, is cut short or is larger than ``limit``.
    """
    with _open(url) as response:
        data = _read_all(response, url, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BdevError(_("{url} is not UTF-8 text").format(url=url)) from None


def _read_all(response, url: str, limit: int) -> bytes:  # type: ignore[no-untyped-def]
    chunks, size = [], 0
    expected = _length(response)
    try:
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise BdevError(_("{url} is larger than {limit} bytes").format(url=url, limit=limit))
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise BdevError(_("download of {url} was cut short after {size} bytes: {error}").format(
            url=url, size=size, error=exc)) from None
    _check_length(url, size, expected)
    return b"".join(chunks)


def _length(response) -> int | None:  # type: ignore[no-untyped-def]
    value = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    return int(value) if value and value.isdigit() else None


def _check_length(url: str, got: int, expected: int | None) -> None:
    if expected is not None and got != expected:
        raise BdevError(_("download of {url} was cut short: got {got} of {expected} bytes").format(
            url=url, got=got, expected=expected))


def fetch_file(url: str, target: Path) -> int:
    """Download ``url`` into the new file ``target`` (which must not exist); returns its size.
    A failure removes ``target``.

    :raises BdevError: it cannot be fetched, the connection ends early, or the disk is full.
    """
    size = 0
    try:
        with _open(url) as response, open(target, "xb") as out:
            expected = _length(response)
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                raise BdevError(_("download of {url} was cut short after {size} bytes: {error}").format(
                    url=url, size=size, error=exc)) from None
            _check_length(url, size, expected)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise BdevError(_("cannot store {url} in {parent}: {error}").format(
            url=url, parent=target.parent, error=exc.strerror or exc)) from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    log.debug("fetched %s (%d bytes)", url, size)
    return size
