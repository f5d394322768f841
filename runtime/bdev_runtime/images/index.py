"""The image index: one line per image, ``dist;release;arch;variant;build_id;path``, as
LXC's ``meta/1.0/index-system``."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bdev.errors import BdevError, InvalidInput
from .._i18n import _

#: Where the index lives below a server's root (LXC's name).
INDEX_PATH = "meta/1.0/index-system"

#: What a dist, release, arch, variant or build id may look like (no separators, no "..").
_FIELD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
FIELDS = ("distribution", "release", "architecture", "variant")


@dataclass(frozen=True, order=True)
class ImageEntry:
    """One image of an index.

    :param path: the image's directory relative to the server's root, ``/``-separated,
        without a leading or trailing slash.
    """

    dist: str
    release: str
    arch: str
    variant: str
    build_id: str
    path: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What a user asks for: (dist, release, arch, variant)."""
        return (self.dist, self.release, self.arch, self.variant)

    def label(self) -> str:
        """``debian/bookworm/amd64/default``."""
        return "/".join(self.key)

    def line(self) -> str:
        """The index line of this image (LXC writes the path with slashes around it)."""
        return ";".join([*self.key, self.build_id, f"/{self.path}/"])


def check_field(value: str, what: str) -> str:
    """``value`` if it is a usable dist, release, arch, variant or build id.

    :raises InvalidInput: it is empty or holds a character other than letters, digits,
        ``.``, ``_``, ``:``, ``+`` and ``-`` (or does not start with a letter or digit).
    """
    if not _FIELD.match(value or ""):
        raise InvalidInput(
            _("image {what} {value!r} is not valid (letters, digits and . _ : + - only, starting with a letter or "
              "digit)").format(
                what=what, value=value)
        )
    return value


def clean_image_path(path: str) -> str | None:
    """``path`` as a relative ``/``-separated directory, or None if it is not one (a URL,
    ``..``, a backslash, control characters)."""
    if not path or "://" in path or "\\" in path or any(ord(c) < 32 for c in path):
        return None
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)


def parse_index(text: str, source: str) -> list[ImageEntry]:
    """The entries of an index; blank lines and ``#`` comments are skipped.

    :param source: where the text came from, for messages.
    :raises BdevError: a line does not have six fields, or a field is not valid.
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(";")
        if len(fields) != 6:
            raise BdevError(_("image index {source} line {number} has {count} fields, not 6 "
                              "(dist;release;arch;variant;build_id;path)").format(
                source=source, number=number, count=len(fields)))
        *names, build_id, path = fields
        try:
            for value, what in zip([*names, build_id], [*FIELDS, "build id"]):
                check_field(value, what)
        except InvalidInput as exc:
            raise BdevError(_("image index {source} line {number}: {cause}").format(
                source=source, number=number, cause=exc.cause)) from None
        clean = clean_image_path(path)
        if clean is None:
            raise BdevError(_("image index {source} line {number} has an unusable path {path!r}").format(
                source=source, number=number, path=path))
        entries.append(ImageEntry(*names, build_id, clean))
    return entries


def format_index(entries: Iterable[ImageEntry]) -> str:
    """The text of an index holding ``entries``, sorted."""
    return "".join(entry.line() + "\n" for entry in sorted(entries))


def select(entries: Iterable[ImageEntry], dist: str, release: str, arch: str, variant: str) -> ImageEntry | None:
    """The newest build (the greatest build id, as LXC picks) of the image asked for."""
    matching = [e for e in entries if e.key == (dist, release, arch, variant)]
    return max(matching, key=lambda e: e.build_id, default=None)
