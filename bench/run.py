"""bdev against real LXC 5, rsync and cp, in one run: every backend, every operation, CLI and
in-process, CLI start-up, scale and memory; a table, JSON, Markdown and a PNG chart.

    .venv/bin/python bench/run.py            # the full run (default payload, 3 runs, 1,000 containers)
    .venv/bin/python bench/run.py --quick    # a small payload, one run: the CI smoke test

Needs root (loop mounts, dropping caches).  Installs Debian's ``lxc`` and ``python3-lxc`` when
they are missing.  Everything it makes lives in one temporary directory, removed at the end
(on errors and Ctrl-C too); the report goes to ``bench/results/<date>/`` (kept out of git) or
``--out DIR``.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the sibling modules, found through sys.path
import payload as payload_mod  # noqa: E402
import places  # noqa: E402
import report  # noqa: E402
import scale  # noqa: E402
import startup  # noqa: E402
import tools as tools_mod  # noqa: E402
import workspace  # noqa: E402
from operations import OPERATIONS, run_backend  # noqa: E402
from timing import Cache, Row, Timer, one_line  # noqa: E402

from bdev.command import run  # noqa: E402

HERE = Path(__file__).resolve().parent
GIB = 1024**3
SCALING_BACKENDS = ("btrfs", "overlay", "zfs")
SCALING_OPERATIONS = ("snapshot clone", "container snapshot", "restore to new name", "restore in place")
START_LATENCY = HERE / "start_latency.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small numbers everywhere (payload scale 0.02, 1 run, 50 containers): a smoke test")
    parser.add_argument("--scale", type=float, help="payload scale (default 1: 20,000 small + 20 large files)")
    parser.add_argument("--runs", type=int, help="timed runs of each operation (default 3)")
    parser.add_argument("--backends", help="comma separated, of: " + ", ".join(places.SETUPS))
    parser.add_argument("--factor", type=float, help="payload multiplier of the scaling test (default 10)")
    parser.add_argument("--scaling-backends",
                        help="backends of the payload scaling test (default btrfs,overlay,zfs; with --quick, btrfs; "
                             "'' for none)")
    parser.add_argument("--containers", type=int, help="containers listed by the scale test (default 1000)")
    parser.add_argument("--snapshots", type=int, help="snapshots listed by the scale test (default 1000)")
    parser.add_argument("--warm", action="store_true",
                        help="do not drop the page cache before each timed operation (the default with --quick)")
    parser.add_argument("--out", type=Path, help="report directory (default bench/results/<UTC date and time>)")
    parser.add_argument("--seed", type=int, default=0, help="payload seed (default 0)")
    parser.add_argument("--tmpdir", type=Path, help="where the temporary directory goes (default $TMPDIR or /tmp)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"scale": 0.02 if quick else 1.0, "runs": 1 if quick else 3, "factor": 3.0 if quick else 10.0,
                "containers": 50 if quick else 1000, "snapshots": 50 if quick else 1000}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warm = args.warm or quick
    args.startup_runs, args.cold_runs = (3, 1) if quick else (10, 5)
    args.listing_runs = 2 if quick else 5
    chosen = args.backends.split(",") if args.backends else list(places.SETUPS)
    args.backends = [b.strip() for b in chosen if b.strip()]
    unknown = [b for b in args.backends if b not in places.SETUPS]
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(unknown)} (known: {', '.join(places.SETUPS)})")
    if args.scaling_backends is None:
        args.scaling_backends = "btrfs" if quick else ",".join(SCALING_BACKENDS)
    args.scaling_backends = [b for b in (s.strip() for s in args.scaling_backends.split(",")) if b]
    if args.runs < 1 or args.scale <= 0 or args.factor <= 1:
        parser.error("--runs must be at least 1, --scale positive and --factor above 1")
    return args


class Bench:
    """The state of one run: where, with what, and what was measured so far."""

    def __init__(self, args: argparse.Namespace, workdir: Path, bdev_cli: str, out: Path) -> None:
        self.args = args
        self.out = out
        self.workdir = workdir
        self.bdev_cli = bdev_cli
        self.started = time.monotonic()
        self.cache = Cache(drop=not args.warm)
        self.timer = Timer(self.cache)
        self.lxc = tools_mod.real_lxc_tools()
        self.lxc_problem: str | None = None
        self.rows: list[Row] = []
        self.create_rss_kib = 0  # peak RSS of the last bdev create
        self.results: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
                     "loadavg_start": os.getloadavg()},
            "quick": args.quick, "scale": args.scale, "runs": args.runs, "seed": args.seed,
            "backends": [], "skipped_backends": {},
        }

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=sys.stderr, flush=True)

    def bdev(self, lxcpath: Path, *args: str) -> str:
        """Run the bdev CLI (untimed); a create records its peak RSS."""
        argv = [self.bdev_cli, "-P", str(lxcpath), *args]
        if args[0] != "create":
            return run(argv).stdout
        self.create_rss_kib, _ = tools_mod.peak_rss_kib(argv)
        return ""

    # ------------------------------------------------------------------ backends

    def tools_for(self, place: places.Place) -> tuple[list[tools_mod.Tool], dict[str, str]]:
        """The four tools on ``place``, and the reason for each one that cannot run."""
        chosen: list[tools_mod.Tool] = [tools_mod.BdevCli(place.lxcpath, self.bdev_cli),
                                        tools_mod.BdevApi(place.lxcpath)]
        skipped: dict[str, str] = {}
        if self.lxc_problem or "lxc-copy" not in self.lxc:
            skipped["LXC CLI"] = f"real LXC is not available: {self.lxc_problem or 'lxc-copy missing'}"
        else:
            chosen.append(tools_mod.LxcCli(place.lxcpath, self.lxc, self.workdir / "lxc.log"))
        if place.setup.label in SCALING_BACKENDS:  # native snapshots: fsync is most of bdev's extra time
            chosen.append(tools_mod.BdevApiNoFsync(place.lxcpath))
        problem = tools_mod.python3_lxc_problem()
        if problem:
            skipped["LXC API"] = problem
        else:
            chosen.append(tools_mod.LxcApi(place.lxcpath))
        return chosen, skipped

    def cleaner(self, place: places.Place) -> Any:
        """Remove a leftover container (or ``base/snapshots``: base's snapshots), untimed, with
        bdev's API, else with real ``lxc-destroy -s``."""
        from bdev.api import Container

        def clean(name: str) -> None:
            if name == f"{places.BASE}/snapshots":
                Container(places.BASE, place.lxcpath).snapshot_destroy_all()
                return
            if not (place.lxcpath / name).exists():
                place.remove_leftover_storage(name)
                return
            try:
                Container(name, place.lxcpath).destroy(with_snapshots=True, force=True)
            except Exception as exc:
                self.log(f"bdev could not remove {name} ({one_line(exc)}); trying lxc-destroy")
                if "lxc-destroy" in self.lxc:
                    run([self.lxc["lxc-destroy"], "-P", str(place.lxcpath), "-n", name, "-s"], check=False)
            if (place.lxcpath / name).exists():
                raise RuntimeError(f"cannot remove the leftover container {name} in {place.setup.label}")
            place.remove_leftover_storage(name)
        return clean

    def image_size(self, info: payload_mod.PayloadInfo) -> int:
        """The loop filesystem's size: room for ~5 copies of the payload (and ext4 inodes)."""
        entries = info.small_files + info.large_files + info.directories + info.symlinks + 16
        return max(5 * info.disk_bytes + GIB, 8 * entries * 16384)

    def measure_backend(self, label: str, payload: Path, info: payload_mod.PayloadInfo,
                        api_only: bool = False) -> tuple[Any, str | None]:
        """Make ``label``'s place with ``payload`` in it and time the operations of every tool
        (``api_only``: bdev's API alone); return the rows, or None and why not."""
        setup = places.SETUPS[label]
        problem = places.place_problem(setup)
        if problem:
            return None, problem
        fssize = f"{max(256, 2 * info.disk_bytes // 2**20 + 64)}M"
        self.log(f"[{label}] making the place and bdev create base ({info.bytes / 1e6:.0f} MB)")
        try:
            with contextlib.ExitStack() as stack:
                place = stack.enter_context(places.make_place(
                    setup, self.workdir, self.image_size(info), self.bdev, payload, fssize))
                stack.callback(workspace.ignore_interrupts)  # runs first on the way out: unmounting
                chosen, skipped = ([tools_mod.BdevApi(place.lxcpath)], {}) if api_only else self.tools_for(place)
                rows = run_backend(place, chosen, skipped, self.args.runs, self.timer, self.cleaner(place), self.log)
                messages = self.results.setdefault("tool_messages", {})
                messages[label + (" (scaling)" if api_only else "")] = {
                    t.label: sorted(set(t.messages))[:40] for t in chosen}
                return rows, None
        except Exception as exc:
            if isinstance(exc, KeyboardInterrupt) or workspace.INTERRUPTED:
                raise
            self.log(f"[{label}] failed: {one_line(exc)}")
            return None, f"set-up failed: {one_line(exc)}"
        finally:
            workspace.handle_interrupts()

    def bench_backends(self, payload: Path, info: payload_mod.PayloadInfo) -> None:
        for label in self.args.backends:
            self.results["backends"].append(label)
            rows, problem = self.measure_backend(label, payload, info)
            if rows is None:
                self.skip_backend(label, str(problem))
            else:
                self.rows += rows.all()
                print("\n".join(report.table_lines(label, rows.all())), file=sys.stderr, flush=True)
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write what is measured so far to ``report.json``, so a run cut short keeps it."""
        self.out.mkdir(parents=True, exist_ok=True)
        report.write_json(self.out / "report.json", self.results, self.rows)

    def skip_backend(self, label: str, reason: str) -> None:
        self.results["skipped_backends"][label] = reason
        for operation in OPERATIONS:
            for tool in ("bdev CLI", "bdev API", "LXC CLI", "LXC API"):
                row = Row(label, operation, tool)
                row.skipped = reason
                self.rows.append(row)

    # ------------------------------------------------------------------ scale

    def bench_scaling(self, info: payload_mod.PayloadInfo) -> None:
        """The in-process operations at ``factor`` × the payload, against the 1× figures."""
        factor = self.args.factor
        wanted = [b for b in self.args.scaling_backends if b in places.SETUPS]
        out: dict[str, Any] = {"factor": factor, "ratios": {}, "skipped": {}}
        self.results["payload_scaling"] = out
        if not wanted:
            return
        self.log(f"generating the {factor:g}x payload")
        big = self.workdir / "payload-big"
        big_info = payload_mod.generate(big, scale=self.args.scale * factor, seed=self.args.seed)
        out["payload"] = big_info.describe()
        small = {(r.backend, r.operation): r for r in self.rows if r.tool == "bdev API" and r.stats}
        for label in wanted:
            rows, problem = self.measure_backend(label, big, big_info, api_only=True)
            if rows is None:
                out["skipped"][label] = problem
                continue
            if "peak_rss" not in self.results and self.create_rss_kib:
                self.results["peak_rss"] = {
                    "kib": self.create_rss_kib,
                    "what": f"bdev create --source of the {big_info.bytes / 1e9:.1f} GB payload ({label})"}
            for row in rows.all():
                base = small.get((label, row.operation))
                if row.operation in SCALING_OPERATIONS and row.stats and base and base.stats:
                    out["ratios"][f"{label} {row.operation}"] = row.stats.median / base.stats.median
                row.backend = f"{label} @{factor:g}x"
                self.rows.append(row)
            self.results["backends"].append(f"{label} @{factor:g}x")

    def bench_listings(self) -> None:
        count, snaps = self.args.containers, self.args.snapshots
        self.log(f"listing {count} containers and {snaps} snapshots")
        venv_bin = Path(sys.executable).parent
        lxcpath = self.workdir / "many"
        scale.write_containers(lxcpath, count)
        commands = {"bdev lxc-ls -f": [str(venv_bin / "lxc-ls"), "-f", "-P", str(lxcpath)],
                    "bdev ls": [self.bdev_cli, "-P", str(lxcpath), "ls"]}
        if "lxc-ls" in self.lxc:
            commands["real lxc-ls -f"] = [self.lxc["lxc-ls"], "-f", "-P", str(lxcpath)]
        self.results["listing"] = {"count": count,
                                   "commands": scale.bench_listing(lxcpath, count, commands, self.args.listing_runs)}
        snaps_path = self.workdir / "snaps"
        scale.write_snapshots(snaps_path, "many", snaps)
        commands = {"bdev lxc-snapshot -L": [str(venv_bin / "lxc-snapshot"), "-L", "-n", "many", "-P", str(snaps_path)]}
        if "lxc-snapshot" in self.lxc:
            commands["real lxc-snapshot -L"] = [self.lxc["lxc-snapshot"], "-L", "-n", "many", "-P", str(snaps_path)]
        self.results["snapshot_listing"] = {
            "count": snaps, "commands": scale.bench_snapshot_listing(commands, snaps, self.args.listing_runs)}

    def bench_start_latency(self) -> None:
        """The runtime's start-to-shell latency (``start_latency.py``, written apart), when present."""
        if not START_LATENCY.exists():
            self.results["start_latency"] = {"skipped": "bench/start_latency.py is not in this checkout"}
            return
        if self.args.quick:
            self.results["start_latency"] = {
                "skipped": "not part of --quick (about 30 s more); run bench/start_latency.py --quick alone"}
            return
        self.log("start_latency.py")
        out = self.workdir / "start-latency.json"
        argv = [sys.executable, str(START_LATENCY), "--json", str(out), "--tmpdir", str(self.workdir),
                *(["--quick"] if self.args.quick else [])]
        done = run(argv, check=False)
        if done.returncode != 0 or not out.exists():
            self.results["start_latency"] = {"failed": f"exit {done.returncode}: {one_line(Exception(done.stderr[-400:]))}"}
            return
        import json

        self.results["start_latency"] = {"report": json.loads(out.read_text()), "text": done.stdout}


# --------------------------------------------------------------------------- the run


def header(bench: Bench, info: payload_mod.PayloadInfo) -> list[str]:
    r = bench.results
    load = " ".join(f"{x:.2f}" for x in r["host"]["loadavg_start"])
    identity = r.get("bdev", {})
    return [
        f"bdev benchmark, {r['date']}, kernel {platform.release()}, {os.cpu_count()} CPUs, load average {load}",
        f"{identity.get('version', '?')}" + (f" (git {identity['commit']})" if "commit" in identity else ""),
        f"payload: {info.describe()}; runs: {r['runs']}; real LXC: {', '.join(sorted(bench.lxc)) or 'not installed'}"
        + ("; QUICK run (small numbers)" if r["quick"] else ""),
        *([f"note: {bench.cache.note}"] if bench.cache.note else []),
    ]


def extra_lines(bench: Bench) -> list[str]:
    """Start-up, listings, scaling, memory and start latency as text."""
    r = bench.results
    lines = ["== CLI start-up (warm median; cold: page cache dropped) =="]
    for label, f in r.get("startup", {}).items():
        lines.append(f"{label:34} {f['median'] * 1000:8.1f} ms  (min {f['min'] * 1000:.1f}, max {f['max'] * 1000:.1f})")
    for key in ("listing", "snapshot_listing"):
        part = r.get(key)
        if part:
            lines.append(f"== {key.replace('_', ' ')} of {part['count']} ==")
            for label, f in part["commands"].items():
                shown = f"{f['median'] * 1000:8.1f} ms" if "median" in f else f"FAILED: {f['failed']}"
                lines.append(f"{label:34} {shown}")
    scaling = r.get("payload_scaling", {})
    if scaling.get("ratios") or scaling.get("skipped"):
        lines.append(f"== payload scaling, bdev API, {scaling['factor']:g}x / 1x ==")
        lines += [f"{k:34} {v:8.2f}" for k, v in scaling["ratios"].items()]
        lines += [f"{k:34} skipped: {v}" for k, v in scaling["skipped"].items()]
    if "peak_rss" in r:
        lines.append(f"== peak RSS == {r['peak_rss']['kib'] / 1024:.1f} MiB: {r['peak_rss']['what']}")
    latency = r.get("start_latency", {})
    lines.append("== start latency (bench/start_latency.py) ==")
    lines.append(latency.get("text", "").rstrip() or f"not run: {latency.get('skipped') or latency.get('failed')}")
    return lines


def write_outputs(bench: Bench, out: Path, head: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows, results = bench.rows, bench.results
    text = "\n".join([*head, "", report.text_report(results, rows), *extra_lines(bench), "", "== targets ==",
                      *(c.line() for c in report.checks(results, rows))])
    print(text, flush=True)
    (out / "report.txt").write_text(text + "\n")
    report.write_json(out / "report.json", results, rows)
    (out / "report.md").write_text(report.markdown_report(results, rows, head, extra_lines(bench)))
    problem = report.chart_problem(rows)
    if problem:
        print(f"no chart: {problem}")
    else:
        report.write_chart(out / "ratios.png", rows)
    print(f"wrote {out}/report.txt, report.json, report.md" + ("" if problem else ", ratios.png"))


def bdev_identity(bdev_cli: str) -> dict[str, Any]:
    """bdev's version and plugins, and in a git checkout the commit (``+dirty`` with changes)."""
    lines = run([bdev_cli, "--version"]).stdout.splitlines()
    found: dict[str, Any] = {"version": lines[0] if lines else "?", "plugins": [line.strip() for line in lines[1:]]}
    git = shutil.which("git")
    if git and (HERE.parent / ".git").exists():
        head = run([git, "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
        dirty = run([git, "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no"], check=False).stdout
        if head:
            found["commit"] = head + ("+dirty" if dirty.strip() else "")
    return found


def prepare_bytecode(log: Any) -> None:
    """Let every Python this run starts use and write bytecode caches, as on an installed
    system (pip compiles at install time): ``PYTHONDONTWRITEBYTECODE`` in the environment would
    otherwise make each CLI start recompile bdev's and the plugins' sources."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        log("PYTHONDONTWRITEBYTECODE was set: unset for this run, as on an installed system")
    sources = [str(HERE.parent / d) for d in ("bdev", "plugins", "runtime") if (HERE.parent / d).is_dir()]
    run([sys.executable, "-m", "compileall", "-q", "-x", r"/(tests|\.venv)/", *sources], check=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (loop mounts, dropping the page cache)", file=sys.stderr)
        return 2
    venv_bin = Path(sys.executable).parent
    bdev_cli = shutil.which("bdev", path=str(venv_bin))
    if bdev_cli is None:
        print("bdev's CLI is not next to this Python; run with the venv's python", file=sys.stderr)
        return 2
    for tool in ("rsync", "cp", "rm"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    prepare_bytecode(lambda text: print(text, file=sys.stderr, flush=True))
    out = args.out or HERE / "results" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="bdev-bench-", dir=args.tmpdir))
    bench = Bench(args, workdir, bdev_cli, out)
    try:
        with workspace.signals_handled():
            bench.lxc_problem = tools_mod.install_real_lxc(bench.log)
            bench.lxc = tools_mod.real_lxc_tools()
            bench.results["real_lxc"] = sorted(bench.lxc)
            bench.results["bdev"] = bdev_identity(bdev_cli)
            bench.log(f"generating the payload (scale {args.scale}) in {workdir}")
            info = payload_mod.generate(workdir / "payload", scale=args.scale, seed=args.seed)
            bench.results["payload"] = info.as_dict()
            bench.log("CLI start-up")
            bench.results["startup"] = startup.bench_startup(bdev_cli, venv_bin, bench.lxc, workdir, bench.cache,
                                                             args.startup_runs, args.cold_runs)
            bench.bench_backends(workdir / "payload", info)
            bench.bench_listings()
            bench.bench_scaling(info)
            bench.bench_start_latency()
            if bench.cache.note:
                bench.results["note"] = bench.cache.note
            bench.results["elapsed_s"] = round(time.monotonic() - bench.started, 1)
            bench.results["host"]["loadavg_end"] = os.getloadavg()
            write_outputs(bench, out, header(bench, info))
            bench.log(f"done in {bench.results['elapsed_s']} s")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        if workspace.INTERRUPTED:  # a child died of the same Ctrl-C before Python noticed it
            print(f"\ninterrupted ({type(exc).__name__} from the interrupted command); cleaning up", file=sys.stderr)
            return 130
        if os.environ.get("BDEV_DEBUG"):
            traceback.print_exc()
        print(f"benchmark failed: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        workspace.cleanup(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
