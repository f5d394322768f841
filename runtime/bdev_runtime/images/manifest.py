"""``SHA256SUMS``: the SHA-256 of every file of an image, in ``sha256sum``'s format."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from bdev.errors import BdevError
from .._i18n import _

#: The manifest's file name in an image's directory.
SUMS = "SHA256SUMS"

_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([A-Za-z0-9][A-Za-z0-9._-]*)$")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sums(text: str, source: str) -> dict[str, str]:
    """File name -> hex SHA-256 from a manifest's text.  Names are plain file names: no
    directories, nothing hidden, and the manifest does not list itself.

    :raises BdevError: a malformed line, a name listed twice, or an empty manifest.
    """
    sums: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        match = _LINE.match(raw.strip())
        if not match or match.group(2) == SUMS:
            raise BdevError(_("{source} line {number} is not '<sha256>  <file name>'").format(
                source=source, number=number))
        digest, name = match.groups()
        if name in sums:
            raise BdevError(_("{source} lists {name} twice").format(source=source, name=name))
        sums[name] = digest
    if not sums:
        raise BdevError(_("{source} lists no files").format(source=source))
    return sums


def format_sums(sums: Mapping[str, str]) -> str:
    """A manifest's text, sorted by file name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))


def verify_file(path: Path, expected: str, what: str) -> None:
    """Check the SHA-256 of ``path``.

    :param what: how to name the file in the message (``image debian/... file rootfs.tar.xz``).
    :raises BdevError: the checksum differs.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise BdevError(_("{what} fails its SHA-256 check (expected {expected}..., got {actual}...)").format(
            what=what, expected=expected[:12], actual=actual[:12]))
