"""CLI start-up: how long a command takes to do nothing useful.

Each command runs warm (``runs`` timed runs after one uncounted), then bdev's and real LXC's
``lxc-ls`` again with the page cache dropped before each run, which is how every CLI row of
the operation tables starts."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bdev.command import run

from timing import Cache, Stats, warm_times

BDEV_LXC_LS = "bdev lxc-ls -P <empty>"
REAL_LXC_LS = "real lxc-ls -P <empty>"
IMPORT_CLICK = "python3 -c 'import click'"


def bench_startup(bdev_cli: str, venv_bin: Path, lxc: dict[str, str], workdir: Path, cache: Cache,
                  runs: int, cold_runs: int) -> dict[str, dict[str, Any]]:
    """Start-up times (seconds) of bdev's commands, real ``lxc-ls`` and Python itself."""
    empty = workdir / "empty-lxcpath"
    empty.mkdir(exist_ok=True)
    commands = {
        "bdev --version": [bdev_cli, "--version"],
        BDEV_LXC_LS: [str(venv_bin / "lxc-ls"), "-P", str(empty)],
        "bdev ls -P <empty>": [bdev_cli, "-P", str(empty), "ls"],
        IMPORT_CLICK: [sys.executable, "-c", "import click"],
        "python3 -c pass": [sys.executable, "-c", "pass"],
    }
    if "lxc-ls" in lxc:
        commands[REAL_LXC_LS] = [lxc["lxc-ls"], "-P", str(empty)]
    results: dict[str, dict[str, Any]] = {}
    for label, argv in commands.items():
        results[label] = summary(warm_times(lambda a=argv: run(a), runs))
    if cache.can_drop:
        for label in (BDEV_LXC_LS, REAL_LXC_LS):
            if label not in commands:
                continue
            times = []
            for _ in range(cold_runs):
                cache.settle()
                start = time.perf_counter()
                run(commands[label])
                times.append(time.perf_counter() - start)
            results[f"{label}, cold cache"] = summary(times)
    return results


def summary(times: list[float]) -> dict[str, Any]:
    """Times with their median, min and max."""
    stats = Stats.of(times)
    return {"times": times, "median": stats.median, "min": stats.low, "max": stats.high}
