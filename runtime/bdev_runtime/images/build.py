"""``bdev image build``: an image made by running a template, written into an image
directory with its manifest and added to the directory's index."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bdev.command import run
from bdev.errors import AlreadyExists, BdevError, CommandError, InvalidInput
from bdev.fsops import fsync_dir, remove_tree, write_atomic
from bdev.naming import validate_path
from bdev.registry import Registry
from bdev.store.lock import locked_file
from bdev.templates import TemplateContext

from .._i18n import _
from .index import INDEX_PATH, ImageEntry, check_field, format_index, parse_index
from .manifest import SUMS, format_sums, sha256_file

log = logging.getLogger("bdev.images.build")

#: Compression name -> (GNU tar flag, rootfs file name).
COMPRESSIONS = {"xz": ("--xz", "rootfs.tar.xz"), "zstd": ("--zstd", "rootfs.tar.zst")}
_SKIPPED_KEYS = ("lxc.uts.name", "lxc.utsname", "lxc.rootfs.path", "lxc.rootfs")


@dataclass(frozen=True)
class ImageSpec:
    """What to build: the template and its arguments, and the image's names."""

    template: str
    args: Sequence[str]
    dist: str
    release: str
    arch: str
    variant: str = "default"
    compression: str = "xz"
    expiry_days: float = 30.0

    def check(self) -> None:
        """:raises InvalidInput: a name or the compression is not acceptable."""
        for value, what in ((self.dist, "distribution"), (self.release, "release"), (self.arch, "architecture"), (self.variant, "variant")):
            check_field(value, what)
        if self.compression not in COMPRESSIONS:
            raise InvalidInput(_("compression {compression!r} is not one of {compressions}").format(
                compression=self.compression, compressions=', '.join(COMPRESSIONS)))
        if not self.expiry_days > 0:
            raise InvalidInput(_("expiry of {expiry_days:g} days must be greater than zero").format(
                expiry_days=self.expiry_days))


def pack_rootfs(rootfs: Path, archive: Path, compression: str) -> None:
    """Write ``rootfs`` into ``archive`` with GNU tar: numeric owners, xattrs, ACLs, sparse
    files, one filesystem, members named ``./...``.

    :raises BdevError: tar failed (a full disk, say).
    """
    flag = COMPRESSIONS[compression][0]
    argv = ["tar", "--create", "--file", str(archive), "--directory", str(rootfs), "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--one-file-system", flag, "."]
    try:
        run(argv, env={"XZ_OPT": "-6 -T0", "ZSTD_NBTHREADS": "0"})
    except CommandError as exc:
        detail = exc.stderr.strip().splitlines()[0] if exc.stderr.strip() else "tar failed"
        raise BdevError(_("cannot pack the image's rootfs into {archive}: {detail}").format(
            archive=archive, detail=detail)) from None


def _new_build_id(images: Path, spec: ImageSpec) -> str:
    base = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
    build_id, n = base, 1
    while (images / spec.dist / spec.release / spec.arch / spec.variant / build_id).exists():
        n += 1
        build_id = f"{base}_{n}"
    return build_id


def write_image_files(staging: Path, rootfs: Path, config: Sequence[tuple[str, str]], spec: ImageSpec) -> dict[str, str]:
    """The rootfs tarball, ``config``, ``expiry`` and ``SHA256SUMS`` in ``staging``; returns the sums."""
    _, rootfs_name = COMPRESSIONS[spec.compression]
    pack_rootfs(rootfs, staging / rootfs_name, spec.compression)
    lines = [f"{key} = {value}" for key, value in config if key not in _SKIPPED_KEYS]
    (staging / "config").write_text("".join(line + "\n" for line in lines))
    (staging / "expiry").write_text(f"{int(time.time() + spec.expiry_days * 86400)}\n")
    sums = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
    (staging / SUMS).write_text(format_sums(sums))
    return sums


def build_image(registry: Registry, output: str | os.PathLike[str], spec: ImageSpec,
                notify: Callable[[str], None] = log.info) -> ImageEntry:
    """Build ``spec`` into the image directory ``output`` (created if needed) and add it to
    ``output``'s index.  A failure leaves the directory and its index as they were.

    :raises BdevError: bad names, an unknown template, the template or tar failed.
    """
    spec.check()
    template = registry.template(spec.template)
    top = validate_path(output, "image directory")
    top.mkdir(parents=True, exist_ok=True)
    with locked_file(top / ".bdev-image.lock", what=f"image directory {top}"):
        index_file = top / INDEX_PATH
        entries = parse_index(index_file.read_text(), str(index_file)) if index_file.exists() else []
        build_id = _new_build_id(top / "images", spec)
        entry = ImageEntry(spec.dist, spec.release, spec.arch, spec.variant, build_id,
                           f"images/{spec.dist}/{spec.release}/{spec.arch}/{spec.variant}/{build_id}")
        final = top / entry.path
        if final.exists():
            raise AlreadyExists(_("image {label} build {build_id} already exists in {top}").format(
                label=entry.label(), build_id=build_id, top=top))
        scratch = Path(tempfile.mkdtemp(dir=top, prefix=".build-"))
        try:
            rootfs, files = scratch / "rootfs", scratch / "image"
            rootfs.mkdir(mode=0o755)
            files.mkdir()
            notify(_("building image {label} with template {template}").format(
                label=entry.label(), template=spec.template))
            context = TemplateContext(name=spec.dist, rootfs=rootfs, lxcpath=scratch, args=list(spec.args))
            try:
                template.build(context)
            except BdevError as exc:
                raise BdevError(_("template {template!r} failed for image {label}: {error}").format(
                    template=spec.template, label=entry.label(), error=exc)) from None
            write_image_files(files, rootfs, context.config, spec)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(files, final)
            fsync_dir(final.parent)
            try:
                index_file.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(index_file, format_index([*entries, entry]))
            except BaseException:
                remove_tree(final)
                raise
        finally:
            remove_tree(scratch)
    notify(_("built image {label} build {build_id} in {final}").format(
        label=entry.label(), build_id=build_id, final=final))
    return entry


def read_index(top: Path) -> list[ImageEntry]:
    """The entries of the index of the image directory ``top`` (none if it has no index)."""
    index_file = top / INDEX_PATH
    return parse_index(index_file.read_text(), str(index_file)) if index_file.exists() else []
