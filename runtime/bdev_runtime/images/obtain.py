"""Getting an image: from the local cache while it has not expired, else from the server's
index, every file downloaded and checked against the image's ``SHA256SUMS`` before it is
cached (a partial or tampered image never enters the cache)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import BdevError
from bdev.fsops import remove_tree

from .._i18n import _
from . import cache, fetch
from .index import INDEX_PATH, ImageEntry, parse_index, select
from .manifest import SUMS, parse_sums, sha256_file, verify_file

log = logging.getLogger("bdev.images.obtain")

#: How long a cached image is used when the image does not say (its ``expiry`` file).
DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600
ROOTFS_NAMES = ("rootfs.tar.xz", "rootfs.tar.zst", "rootfs.tar.gz", "rootfs.tar")


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    server: str
    dist: str
    release: str
    arch: str
    variant: str = "default"

    def label(self) -> str:
        """``debian/bookworm/amd64/default``."""
        return f"{self.dist}/{self.release}/{self.arch}/{self.variant}"


@dataclass(frozen=True)
class LocalImage:
    """An image's verified files in a local directory."""

    directory: Path
    build_id: str
    from_cache: bool

    @property
    def rootfs(self) -> Path:
        """The rootfs tarball."""
        for name in ROOTFS_NAMES:
            if (self.directory / name).is_file():
                return self.directory / name
        raise BdevError(_("image in {directory} has no rootfs tarball").format(directory=self.directory))

    def config_lines(self) -> list[tuple[str, str]]:
        """The image's ``config`` file as ``(key, value)`` lines (none if it has no config)."""
        path = self.directory / "config"
        if not path.is_file():
            return []
        lines = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip().startswith("lxc."):
                raise BdevError(_("image config {path} has a line that is not 'lxc.KEY = VALUE': {line!r}").format(
                    path=path, line=line))
            lines.append((key.strip(), value.strip()))
        return lines


def cache_entry(request: Request) -> Path:
    """Where ``request``'s image is cached."""
    return cache.cache_root() / "download" / request.dist / request.release / request.arch / request.variant


def find_image(request: Request) -> ImageEntry:
    """The newest build the server's index offers for ``request``.

    :raises BdevError: no index, or no such image (the message lists what the index has).
    """
    url = fetch.join(request.server, INDEX_PATH)
    entries = parse_index(fetch.fetch_text(url), url)
    entry = select(entries, request.dist, request.release, request.arch, request.variant)
    if entry is None:
        offered = ", ".join(sorted({e.label() for e in entries})) or "nothing"
        raise BdevError(_("image server {server} has no image {label} (it offers: {offered})").format(
            server=request.server, label=request.label(), offered=offered))
    return entry


def _expiry(directory: Path, fetched_at: float) -> float:
    try:
        return float((directory / "expiry").read_text().strip())
    except (OSError, ValueError):
        return fetched_at + DEFAULT_EXPIRY_SECONDS


def download(request: Request, entry: ImageEntry, target: Path) -> dict[str, str]:
    """Download every file of ``entry`` into the empty directory ``target`` and check each
    against the image's manifest; returns the manifest.

    :raises BdevError: a file is missing on the server, cut short, or fails its checksum.
    """
    what = _("image {label} build {build_id}").format(label=entry.label(), build_id=entry.build_id)
    sums_url = fetch.join(request.server, entry.path, SUMS)
    sums_text = fetch.fetch_text(sums_url)
    sums = parse_sums(sums_text, sums_url)
    if cache.META in sums:
        raise BdevError(_("{what} lists {meta}, a name the image cache keeps for itself").format(
            what=what, meta=cache.META))
    if not any(name in sums for name in ROOTFS_NAMES):
        raise BdevError(_("{what} lists no rootfs tarball in its {sums} (one of {rootfs_names})").format(
            what=what, sums=SUMS, rootfs_names=', '.join(ROOTFS_NAMES)))
    (target / SUMS).write_text(sums_text)
    for name, digest in sums.items():
        fetch.fetch_file(fetch.join(request.server, entry.path, name), target / name)
        verify_file(target / name, digest, _("{what} file {name}").format(what=what, name=name))
    return sums


def verify_cached(directory: Path, label: str) -> bool:
    """Whether every file of a cached image still matches its manifest (a damaged entry is
    fetched again rather than used)."""
    try:
        sums = parse_sums((directory / SUMS).read_text(), str(directory / SUMS))
        return all(sha256_file(directory / name) == digest for name, digest in sums.items())
    except (OSError, BdevError) as exc:
        log.info("cached image %s is damaged (%s); fetching it again", label, exc)
        return False


@contextlib.contextmanager
def obtain(request: Request, *, use_cache: bool = True, flush: bool = False,
           notify: Callable[[str], None] = log.info) -> Iterator[LocalImage]:
    """Yield the verified image asked for, holding the cache entry's lock meanwhile.

    :param use_cache: False (``--no-cache``): download into a temporary directory, removed
        afterwards, and leave the cache alone.
    :param flush: True (``--flush-cache``): drop the cached image and download it again.
    :raises BdevError: see :func:`find_image` and :func:`download`; nothing is left behind.
    """
    if not use_cache:
        entry = find_image(request)
        scratch = Path(tempfile.mkdtemp(prefix="bdev-image-"))
        try:
            download(request, entry, scratch)
            yield LocalImage(scratch, entry.build_id, from_cache=False)
        finally:
            remove_tree(scratch)
        return
    directory = cache_entry(request)
    with cache.entry_lock(directory, _("the image cache entry {label}").format(label=request.label())):
        record = cache.CacheRecord.load(directory)
        if flush and directory.exists():
            notify(_("flushing the cached image {label}").format(label=request.label()))
            remove_tree(directory)
            record = None
        if (record is not None and record.server == request.server and not record.expired()
                and verify_cached(directory, request.label())):
            yield LocalImage(directory, record.build_id, from_cache=True)
            return
        entry = find_image(request)
        notify(_("downloading image {label} build {build_id} from {server}").format(
            label=request.label(), build_id=entry.build_id, server=request.server))
        with cache.staging_dir(directory) as staging:
            download(request, entry, staging)
            now = time.time()
            cache.CacheRecord(entry.build_id, request.server, now, _expiry(staging, now)).save(staging)
            cache.install_dir(staging, directory)
        yield LocalImage(directory, entry.build_id, from_cache=False)
