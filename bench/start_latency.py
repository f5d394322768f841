"""Start-to-shell latency of bdev's runtime against real LXC 5, in one run.

    .venv/bin/python bench/start_latency.py [--runs N] [--quick] [--json FILE] [--tmpdir DIR]

Start-to-shell is the time from asking for a new container to a command answered inside it:

* **btrfs, snapshot clone**: ``bdev clone -s base c`` (a btrfs snapshot), ``bdev start c``,
  ``bdev attach c -- /bin/sh -c 'echo ready'``; against real LXC's ``lxc-copy -s``,
  ``lxc-start`` and ``lxc-attach`` on the same filesystem.
* **overlay, ephemeral**: ``lxc-copy -e`` (bdev's, an overlay clone started as a daemon) then
  ``lxc-attach``; against real LXC's ``lxc-copy -e`` and ``lxc-attach``.

Each phase is timed too (clone, start, attach).  The origin is a busybox container
(``lxc.net.0.type = empty``) made by bdev's template on a loop-mounted btrfs, and another on a
loop-mounted ext4 for the overlay clones (a dir origin, as LXC's ``lxc-copy -e`` expects).
Every scenario runs once untimed first (warm caches: what a user starting containers one after
another sees), then ``--runs`` times, interleaved (the order rotates from run to run).  After
each run the container is stopped and destroyed, untimed.  Ratios are bdev's median over real
LXC's in the same run: below 1 means bdev is faster.  Nothing here asserts a time.

Needs root (loop mounts, containers).  Everything lives in one temporary directory: on the way
out (normal end, error, Ctrl-C, SIGTERM) every container in it is stopped, whoever runs it,
its filesystems are unmounted and it is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workspace  # noqa: E402  (the sibling module, found through sys.path)
from timing import one_line  # noqa: E402
from tools import REAL_LXC_PATH  # noqa: E402

from bdev.command import run  # noqa: E402
from bdev.testing.storage import loop_filesystem, loop_filesystem_problem  # noqa: E402

VENV_BIN = Path(sys.executable).parent
READY = "ready"
CONFIG = "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"
REAL_LXC_NEEDED = ("lxc-copy", "lxc-start", "lxc-attach", "lxc-stop", "lxc-destroy")


@dataclass
class Scenario:
    """One way of getting from nothing to a shell answer: its phases (label, argv builder)
    and how to throw the container away afterwards (untimed)."""

    backend: str
    tool: str
    phases: list[tuple[str, Callable[[str], list[str]]]]
    discard: Callable[[str], None]
    times: dict[str, list[float]] = field(default_factory=dict)
    problem: str | None = None

    @property
    def key(self) -> str:
        return f"{self.backend} / {self.tool}"

    def once(self, name: str) -> dict[str, float]:
        """Run every phase for container ``name``; the seconds each took and their total.

        :raises RuntimeError: a phase failed or the shell did not answer.
        """
        spent: dict[str, float] = {}
        try:
            for label, argv_of in self.phases:
                argv = argv_of(name)
                start = time.perf_counter()
                done = run(argv, check=False, timeout=180)
                spent[label] = time.perf_counter() - start
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv[:2])} ... exited {done.returncode}: "
                                       f"{(done.stderr or done.stdout).strip()[-300:]}")
                if label == "attach" and done.stdout.strip() != READY:
                    raise RuntimeError(f"the shell answered {done.stdout.strip()!r}, not {READY!r}")
        finally:
            self.discard(name)
        spent["start-to-shell"] = sum(spent.values())
        return spent

    def record(self, spent: dict[str, float]) -> None:
        for label, seconds in spent.items():
            self.times.setdefault(label, []).append(seconds)


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min and max of ``values`` (seconds), with the values."""
    return {"times": values, "median": statistics.median(values), "min": min(values), "max": max(values)}


# --------------------------------------------------------------------------- the scenarios


def scenarios(btrfs_lp: Path, ext4_lp: Path, lxc: dict[str, str]) -> list[Scenario]:
    """bdev's and real LXC's way on each backend (real LXC's refused with a reason when a tool
    is missing)."""
    bdev = str(VENV_BIN / "bdev")
    ours = {prog: str(VENV_BIN / prog) for prog in ("lxc-copy", "lxc-attach", "lxc-stop")}
    shell = ["--", "/bin/sh", "-c", f"echo {READY}"]

    def bdev_discard(lp: Path) -> Callable[[str], None]:
        return lambda name: stop_and_destroy(lp, name)

    made = [
        Scenario("btrfs", "bdev", [
            ("clone", lambda n: [bdev, "-P", str(btrfs_lp), "clone", "-s", "base", n]),
            ("start", lambda n: [bdev, "-P", str(btrfs_lp), "start", n]),
            ("attach", lambda n: [bdev, "-P", str(btrfs_lp), "attach", n, *shell]),
        ], bdev_discard(btrfs_lp)),
        Scenario("overlay", "bdev", [
            ("clone+start", lambda n: [ours["lxc-copy"], "-P", str(ext4_lp), "-n", "base", "-N", n, "-e"]),
            ("attach", lambda n: [ours["lxc-attach"], "-P", str(ext4_lp), "-n", n, *shell]),
        ], bdev_discard(ext4_lp)),
    ]
    missing = [tool for tool in REAL_LXC_NEEDED if tool not in lxc]
    real = [
        Scenario("btrfs", "LXC", [
            ("clone", lambda n: [lxc["lxc-copy"], "-P", str(btrfs_lp), "-n", "base", "-N", n, "-s"]),
            ("start", lambda n: [lxc["lxc-start"], "-P", str(btrfs_lp), "-n", n]),
            ("attach", lambda n: [lxc["lxc-attach"], "-P", str(btrfs_lp), "-n", n, *shell]),
        ], bdev_discard(btrfs_lp)),
        Scenario("overlay", "LXC", [
            ("clone+start", lambda n: [lxc["lxc-copy"], "-P", str(ext4_lp), "-n", "base", "-N", n, "-e"]),
            ("attach", lambda n: [lxc["lxc-attach"], "-P", str(ext4_lp), "-n", n, *shell]),
        ], bdev_discard(ext4_lp)),
    ]
    for scenario in real:
        if missing:
            scenario.problem = f"real LXC's {', '.join(missing)} not found in /usr/bin (Debian package lxc)"
    return made + real


def stop_and_destroy(lxcpath: Path, name: str) -> None:
    """Stop ``name`` at once, whoever runs it (bdev's monitor or real LXC), then destroy it
    unless it went with its stop (ephemeral); problems are left to the final clean-up."""
    from bdev.api import Container
    from bdev.errors import BdevError

    container = Container(name, lxcpath)
    with contextlib.suppress(BdevError, OSError):
        container.stop()
    deadline = time.monotonic() + 30
    while (lxcpath / name).exists() and container.state != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.05)
    if (lxcpath / name / "config").exists():
        with contextlib.suppress(BdevError, OSError):
            container.destroy(force=True)


def stop_everything(lxcpaths: list[Path]) -> None:
    """Every container of ``lxcpaths``, stopped and destroyed (the final clean-up)."""
    for lxcpath in lxcpaths:
        if not lxcpath.is_dir():
            continue
        for entry in sorted(lxcpath.iterdir()):
            if (entry / "config").exists():
                stop_and_destroy(lxcpath, entry.name)


# --------------------------------------------------------------------------- the run


def make_origin(lxcpath: Path, backend: str, config: Path) -> None:
    """``base``: a busybox container on ``backend`` that starts on a host without a bridge."""
    lxcpath.mkdir()
    run([str(VENV_BIN / "bdev"), "-P", str(lxcpath), "create", "-t", "busybox", "-B", backend, "-f", str(config), "base"])


def measure(all_scenarios: list[Scenario], runs: int, log: Callable[[str], None]) -> None:
    """One untimed warm-up, then ``runs`` timed runs of every usable scenario, interleaved."""
    usable = [s for s in all_scenarios if s.problem is None]
    for number in range(runs + 1):
        log("warm-up run" if number == 0 else f"run {number}/{runs}")
        shift = number % max(len(usable), 1)
        for scenario in usable[shift:] + usable[:shift]:
            if scenario.problem is not None:
                continue
            try:
                spent = scenario.once(f"c{number}{scenario.backend[0]}{scenario.tool[0].lower()}")
            except (RuntimeError, OSError) as exc:
                scenario.problem = f"failed: {one_line(exc)}"
                log(f"{scenario.key}: {scenario.problem}")
                continue
            if number > 0:
                scenario.record(spent)


def report(all_scenarios: list[Scenario]) -> dict[str, Any]:
    """Every scenario's figures, and bdev / LXC ratios of the medians per backend and phase."""
    out: dict[str, Any] = {"scenarios": {}, "ratios": {}}
    for scenario in all_scenarios:
        entry: dict[str, Any] = {"backend": scenario.backend, "tool": scenario.tool}
        if scenario.problem is not None or not scenario.times:
            entry["status"] = "not measured"
            entry["reason"] = scenario.problem or "no run completed"
        else:
            entry["status"] = "measured"
            entry["phases"] = {label: summary(values) for label, values in scenario.times.items()}
        out["scenarios"][scenario.key] = entry
    for backend in sorted({s.backend for s in all_scenarios}):
        ours, theirs = (out["scenarios"].get(f"{backend} / {tool}", {}) for tool in ("bdev", "LXC"))
        if ours.get("status") == theirs.get("status") == "measured":
            out["ratios"][backend] = {
                label: ours["phases"][label]["median"] / theirs["phases"][label]["median"]
                for label in ours["phases"] if label in theirs["phases"] and theirs["phases"][label]["median"] > 0}
    return out


def format_text(data: dict[str, Any]) -> str:
    """The table printed on standard output."""
    lines = [f"== start-to-shell latency (median of {data['runs']} runs after a warm-up; seconds) =="]
    head = ("backend / tool", "phase", "median", "min", "max", "bdev/LXC")
    rows = []
    for key, entry in data["scenarios"].items():
        if entry["status"] != "measured":
            rows.append((key, "-", "not measured:", entry["reason"], "", ""))
            continue
        ratios = data["ratios"].get(entry["backend"], {}) if entry["tool"] == "bdev" else {}
        for label, figures in entry["phases"].items():
            ratio = f"{ratios[label]:.2f}" if label in ratios else ""
            rows.append((key, label, f"{figures['median']:.3f}", f"{figures['min']:.3f}", f"{figures['max']:.3f}", ratio))
    widths = [max(len(str(row[i])) for row in (head, *rows)) for i in range(len(head))]
    for row in (head, tuple("-" * w for w in widths), *rows):
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="timed runs of each scenario (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="few runs and small filesystems: a smoke test")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--tmpdir", type=Path, help="where the temporary directory goes (default $TMPDIR or /tmp)")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whatever the figures), 1 when it could not run."""
    args = parse_args(argv)

    def log(text: str) -> None:
        print(f"[start-latency] {text}", file=sys.stderr, flush=True)

    if os.geteuid() != 0:
        log("needs root (loop mounts and containers)")
        return 1
    for fstype in ("btrfs", "ext4"):
        problem = loop_filesystem_problem(fstype)
        if problem:
            log(f"cannot make a {fstype} scratch filesystem: {problem}")
            return 1
    # Debian's LXC in /usr/bin, never the virtualenv's scripts of the same names
    lxc = {tool: found for tool in REAL_LXC_NEEDED if (found := shutil.which(tool, path=REAL_LXC_PATH))}
    size = "1G" if args.quick else "3G"
    try:
        with workspace.signals_handled(), contextlib.ExitStack() as mounts:
            workdir = Path(tempfile.mkdtemp(prefix="bdev-start-latency-", dir=args.tmpdir))
            os.chmod(workdir, 0o755)
            mounts.callback(workspace.cleanup, workdir)  # last: unmounted, removed, on errors and signals too
            btrfs = mounts.enter_context(loop_filesystem("btrfs", workdir, size))
            ext4 = mounts.enter_context(loop_filesystem("ext4", workdir, size))
            config = workdir / "net.conf"
            config.write_text(CONFIG)
            log("creating the busybox origins")
            make_origin(btrfs / "lxc", "btrfs", config)
            make_origin(ext4 / "lxc", "dir", config)
            chosen = scenarios(btrfs / "lxc", ext4 / "lxc", lxc)
            try:
                measure(chosen, args.runs, log)
            finally:
                workspace.ignore_interrupts()
                stop_everything([btrfs / "lxc", ext4 / "lxc"])
            data = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "kernel": platform.release(),
                    "cpus": os.cpu_count(), "runs": args.runs, "quick": args.quick, **report(chosen)}
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    text = format_text(data)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**data, "text": text}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
