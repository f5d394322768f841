"""Squashfs image files: building one from a tree with ``mksquashfs``, choosing a compressor
this kernel can read, and sharing an image with a new name in O(1).

An image is never written in place: it is built under a temporary name beside its final one,
made read-only (mode 0444) and renamed into place.  That is what makes sharing safe: a
reflink (``FICLONE``: a new inode sharing the data blocks) or, where the filesystem has no
reflinks, a hard link (a second name for the same inode) can never see a later change,
because there never is one; "changing" a container's image means renaming a new image over
its name, which leaves every other name pointing at the old, intact inode.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import os
import shutil
from pathlib import Path

from bdev.command import run

IMAGE_MODE = 0o444
_FICLONE = 0x40049409
# (mksquashfs arguments, kernel config option that lets squashfs read it), fastest first.
COMPRESSORS: dict[str, tuple[tuple[str, ...], str]] = {
    "zstd": (("-comp", "zstd", "-Xcompression-level", "3"), "CONFIG_SQUASHFS_ZSTD"),
    "lz4": (("-comp", "lz4"), "CONFIG_SQUASHFS_LZ4"),
    "gzip": (("-comp", "gzip"), "CONFIG_SQUASHFS_ZLIB"),
}
DEFAULT_COMPRESSOR = "gzip"  # every squashfs kernel reads zlib images


@functools.cache
def _kernel_config() -> str | None:
    """The running kernel's build configuration, or None where it cannot be read."""
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")):
        try:
            if path.suffix == ".gz":
                return gzip.decompress(path.read_bytes()).decode(errors="replace")
            return path.read_text(errors="replace")
        except OSError:
            continue
    return None


def kernel_reads(compressor: str) -> bool:
    """Whether this kernel's squashfs can read images made with ``compressor`` (gzip is
    assumed when the configuration cannot be read)."""
    config = _kernel_config()
    if config is None:
        return compressor == DEFAULT_COMPRESSOR
    option = COMPRESSORS[compressor][1]
    return f"{option}=y" in config.splitlines()


def best_compressor() -> str:
    """The first of zstd, lz4, gzip that this kernel reads."""
    return next((name for name in COMPRESSORS if kernel_reads(name)), DEFAULT_COMPRESSOR)


def build(tree: Path, target: Path, *, compressor: str, backend: str) -> None:
    """Write a squashfs image of ``tree`` at ``target`` (which must not exist), keeping owners,
    modes, times, hard links, device nodes and xattrs; mode 0444 afterwards.

    mksquashfs writes a temporary name beside ``target`` and it is renamed into place only when
    complete, so ``target`` never holds a half-written image.  On failure nothing is left.
    """
    partial = target.with_name(f".{target.name}.bdev-build")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    argv = [
        "mksquashfs", str(tree), str(partial), "-noappend", "-no-progress", "-quiet", "-xattrs",
        "-one-file-system", *COMPRESSORS[compressor][0],
    ]
    try:
        run(argv, backend=backend)
        os.chmod(partial, IMAGE_MODE)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.link(partial, target)  # fails with EEXIST rather than replacing anything
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def replace_with(new_tree: Path, image: Path, *, compressor: str, backend: str) -> None:
    """Build an image of ``new_tree`` and rename it over ``image`` atomically: other names of
    the old image (snapshots, frozen lowers) keep the old inode untouched."""
    fresh = image.with_name(f".{image.name}.bdev-new")
    with contextlib.suppress(FileNotFoundError):
        fresh.unlink()
    try:
        build(new_tree, fresh, compressor=compressor, backend=backend)
        os.rename(fresh, image)
    finally:
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()


def share(source: Path, target: Path) -> str:
    """Give ``target`` (which must not exist) the contents of the image ``source`` in O(1)
    where the filesystem allows it; returns how: ``reflink`` (FICLONE, own inode), ``hardlink``
    (same inode: safe because images are never written in place) or ``copy`` (another
    filesystem)."""
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IMAGE_MODE)
        try:
            try:
                fcntl.ioctl(fd, _FICLONE, src.fileno())
                os.fchmod(fd, IMAGE_MODE)
                return "reflink"
            except OSError:
                pass
        finally:
            os.close(fd)
    os.unlink(target)
    try:
        os.link(source, target)
        return "hardlink"
    except OSError:
        pass
    try:
        shutil.copyfile(source, target)
        os.chmod(target, IMAGE_MODE)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise
    return "copy"
