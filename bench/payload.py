"""A deterministic, container-like rootfs for the copy benchmarks.

``generate(target, scale=1.0, seed=0)`` writes, below ``target``:

- ``20_000 * scale`` small files of random size (256 B to 4 KiB) and random content, spread
  over nested directories (``usr/lib/p0012/s3/...``), about 100 per directory;
- ``20 * scale`` large files of 10 MiB of random content (``var/lib/images/``);
- a few symlinks (relative, absolute, dangling, to a directory) and hard links (a busybox-like
  multi-call binary and some library files), plus ``etc/hostname`` and ``etc/hosts``.

The same seed and scale always give the same tree (names, sizes, contents, modes, times).

Standalone: ``python bench/payload.py DIR [--scale S] [--seed N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SMALL_FILES = 20_000
LARGE_FILES = 20
LARGE_SIZE = 10 * 1024 * 1024
SMALL_MIN, SMALL_MAX = 256, 4096
PER_DIR = 100
SUBDIRS = 8  # leaf directories per package directory
AREAS = ("usr/lib", "usr/share", "usr/bin", "usr/include", "etc", "var/lib", "opt/app", "lib/modules")
EXTENSIONS = ("so", "py", "conf", "txt", "h", "json", "mo", "pem")
MTIME = 1_700_000_000  # fixed times make the tree reproducible to the byte


@dataclass
class PayloadInfo:
    """What :func:`generate` wrote."""

    small_files: int
    large_files: int
    directories: int
    symlinks: int
    hardlinks: int
    bytes: int  # apparent size of the regular files (each inode once)
    disk_bytes: int  # allocated blocks (du), directories included

    def describe(self) -> str:
        return (
            f"{self.small_files} small + {self.large_files} large files, {self.directories} directories, "
            f"{self.symlinks} symlinks, {self.hardlinks} hard links; {self.bytes / 1e6:.0f} MB of data, "
            f"{self.disk_bytes / 1e6:.0f} MB on disk"
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def counts(scale: float) -> tuple[int, int]:
    """Numbers of small and large files at ``scale`` (at least one of each)."""
    return max(1, round(SMALL_FILES * scale)), max(1, round(LARGE_FILES * scale))


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def generate(target: Path, *, scale: float = 1.0, seed: int = 0) -> PayloadInfo:
    """Write the payload into ``target`` (created; must not hold anything yet)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise ValueError(f"{target} is not empty")
    rng = random.Random(seed)
    n_small, n_large = counts(scale)
    dirs: set[Path] = set()

    def mkdir(relative: str) -> Path:
        path = target / relative
        path.mkdir(parents=True, exist_ok=True)
        while path != target and path not in dirs:
            dirs.add(path)
            path = path.parent
        return target / relative

    small: list[Path] = []
    written = 0
    n_leaf = -(-n_small // PER_DIR)
    for leaf in range(n_leaf):
        area = AREAS[leaf % len(AREAS)]
        package = leaf // len(AREAS)
        directory = mkdir(f"{area}/p{package // SUBDIRS:04d}/s{package % SUBDIRS}")
        for _ in range(min(PER_DIR, n_small - leaf * PER_DIR)):
            size = rng.randint(SMALL_MIN, SMALL_MAX)
            name = f"f{len(small):05d}.{rng.choice(EXTENSIONS)}"
            mode = 0o755 if area == "usr/bin" else 0o644
            _write(directory / name, rng.randbytes(size), mode)
            small.append(directory / name)
            written += size

    images = mkdir("var/lib/images")
    for i in range(n_large):
        _write(images / f"large{i:03d}.img", rng.randbytes(LARGE_SIZE))
        written += LARGE_SIZE

    etc = mkdir("etc")
    _write(etc / "hostname", b"base\n")
    _write(etc / "hosts", b"127.0.0.1\tlocalhost\n127.0.1.1\tbase\n")
    written += 5 + len(b"127.0.0.1\tlocalhost\n127.0.1.1\tbase\n")
    for name in ("tmp", "root", "home", "dev", "proc", "sys", "run", "usr/sbin"):
        mkdir(name)
    os.chmod(target / "tmp", 0o1777)
    os.chmod(target / "root", 0o700)

    # Hard links: a multi-call binary with applet names, and a few shared library files.
    bindir = mkdir("usr/bin")
    busybox = rng.randbytes(4096)
    _write(bindir / "busybox", busybox, 0o755)
    written += len(busybox)
    hardlinks = 0
    for applet in ("ls", "cat", "cp", "mv", "sh"):
        os.link(bindir / "busybox", bindir / f"{applet}.bb")
        hardlinks += 1
    for i, source in enumerate(rng.sample(small, min(5, len(small)))):
        os.link(source, source.parent / f"link{i}-{source.name}")
        hardlinks += 1

    # Symlinks: relative to a file, to a directory, absolute, dangling, in a chain.
    links = [
        ("lib64", "usr/lib"),
        ("sbin", "usr/sbin"),
        ("usr/bin/sh", "busybox"),
        ("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),  # dangling, never followed
        ("etc/mtab", "/proc/self/mounts"),
        ("usr/bin/python3", "python3.11"),  # dangling relative
    ]
    for i, source in enumerate(rng.sample(small, min(6, len(small)))):
        links.append((str(source.parent.relative_to(target) / f"sym{i}"), os.path.relpath(source, source.parent)))
    for name, points_to in links:
        os.symlink(points_to, target / name)

    for directory, subdirs, files in os.walk(target, topdown=False):
        for name in (*files, *subdirs):
            os.utime(os.path.join(directory, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(target, (MTIME, MTIME))
    return PayloadInfo(
        small_files=n_small,
        large_files=n_large,
        directories=len(dirs),
        symlinks=len(links),
        hardlinks=hardlinks,
        bytes=written,
        disk_bytes=disk_usage(target),
    )


def disk_usage(root: Path) -> int:
    """Allocated bytes below ``root`` (each inode once), like ``du -s --block-size=1``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirs, files in os.walk(root):
        for name in (*subdirs, *files, "."):
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the deterministic benchmark rootfs into DIR.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the numbers of files (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = generate(args.directory, scale=args.scale, seed=args.seed)
    print(info.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
