"""Scale: listing many containers, listing many snapshots, and the peak memory of a big copy.

The containers and snapshots are written directly in LXC's layout (a ``config`` naming a dir
rootfs, ``snaps/snapN/{config,ts,rootfs}``): what is measured is the listing, not how they were
made.  Listings run warm (one uncounted run first) and their output is checked to hold every
entry, so a listing that silently dropped entries cannot look fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bdev.command import run

from startup import summary
from timing import warm_times

SNAP_TS = "2026:01:01 00:00:00"


def write_containers(lxcpath: Path, count: int) -> list[str]:
    """``count`` stopped dir containers ``c0000``... in ``lxcpath``; their names."""
    names = [f"c{i:04d}" for i in range(count)]
    for name in names:
        directory = lxcpath / name
        (directory / "rootfs").mkdir(parents=True)
        (directory / "config").write_text(container_config(directory, name))
    return names


def container_config(directory: Path, name: str) -> str:
    """A minimal LXC 5 config of a dir container."""
    return (f"lxc.rootfs.path = dir:{directory}/rootfs\nlxc.uts.name = {name}\n"
            "lxc.net.0.type = empty\n")


def write_snapshots(lxcpath: Path, name: str, count: int) -> None:
    """A container ``name`` with ``count`` snapshots ``snap0``..., as lxc-snapshot lays them out."""
    directory = lxcpath / name
    (directory / "rootfs").mkdir(parents=True)
    (directory / "config").write_text(container_config(directory, name))
    for i in range(count):
        snap = directory / "snaps" / f"snap{i}"
        (snap / "rootfs").mkdir(parents=True)
        (snap / "config").write_text(container_config(snap, name))
        (snap / "ts").write_text(SNAP_TS)


def bench_listing(lxcpath: Path, count: int, commands: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """Warm times of each listing command over ``count`` containers; each output must name
    every container (``bdev ls`` and ``lxc-ls -f`` print one line each, plus a header)."""
    results: dict[str, Any] = {}
    for label, argv in commands.items():
        lines = [line for line in run(argv).stdout.splitlines() if line.strip()]
        found = sum(1 for line in lines if line.split() and line.split()[0].startswith("c"))
        if found < count:
            results[label] = {"failed": f"listed {found} of {count} containers"}
            continue
        results[label] = summary(warm_times(lambda a=argv: run(a), runs))
    return results


def bench_snapshot_listing(commands: dict[str, list[str]], count: int, runs: int) -> dict[str, Any]:
    """Warm times of each ``lxc-snapshot -L`` over a container with ``count`` snapshots; the
    output must have ``count`` lines."""
    results: dict[str, Any] = {}
    for label, argv in commands.items():
        lines = [line for line in run(argv).stdout.splitlines() if line.startswith("snap")]
        if len(lines) != count:
            results[label] = {"failed": f"listed {len(lines)} of {count} snapshots"}
            continue
        results[label] = summary(warm_times(lambda a=argv: run(a), runs))
    return results
