"""Copy, clone, snapshot and restore timings of bdev against the real alternatives.

    .venv/bin/python bench/copy_bench.py [--scale S] [--runs N] [--fs ext4,btrfs,xfs] [--json out.json]

For each filesystem (a fresh sparse loop image in a temporary directory), an lxcpath is put on
it and a dir container ``base`` is created from a generated container-like rootfs
(``payload.py``).  Then each operation is timed ``--runs`` times, interleaved (the order of the
blocks rotates from run to run): bdev's CLI clone, snapshot, restore and destroy, the in-process
API clone, the raw copy engine, and the anchors ``cp -a --reflink=auto``, ``rsync -aHAXS
--numeric-ids``, ``rm -rf`` and real LXC's ``lxc-copy``, ``lxc-snapshot`` and ``lxc-destroy``.
Before every timed operation the previous targets are removed, the filesystems synced and the
page cache dropped, so each operation starts cold; the ``sync`` right after it is timed
apart (the operation's own time does not include writing its dirty data back; none of the
tools fsyncs).  Ratios are bdev's median over the anchor's median in the same run: below 1
means bdev is faster.

Needs root (loop mounts, dropping caches).  Everything it makes lives in one temporary directory
and is unmounted and removed at the end, on Ctrl-C and on errors too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payload as payload_mod  # noqa: E402  (the sibling module, found through sys.path)

from bdev.command import run  # noqa: E402
from bdev.testing.storage import loop_filesystem, loop_filesystem_problem, mount_table  # noqa: E402

FILESYSTEMS = ("ext4", "btrfs", "xfs")
REAL_LXC_PATH = "/usr/bin:/bin"  # where Debian's LXC lives; the venv's lxc-* must never be taken for it
GIB = 1024**3
STARTUP_RUNS = 10
COLD_RUNS = 5


# --------------------------------------------------------------------------- timing helpers


class Cache:
    """``sync`` plus dropping the page cache, dentries and inodes, between timed runs."""

    def __init__(self) -> None:
        self.can_drop = True
        self.note = ""

    def settle(self) -> None:
        os.sync()
        os.sync()  # a loop filesystem's writeback lands in the backing file's page cache first
        if not self.can_drop:
            return
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        except OSError as exc:
            self.can_drop = False
            self.note = f"page cache NOT dropped between runs ({exc.strerror}); timings are warm-cache"
            print(f"note: {self.note}", flush=True)


@dataclass
class Measure:
    """The timings of one operation on one filesystem."""

    name: str
    kind: str  # "bdev", "anchor" or "info"
    times: list[float] = field(default_factory=list)
    syncs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system time of the process and its children
    messages: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "times": self.times,
            "median": self.median,
            "min": min(self.times),
            "max": max(self.times),
            "sync_after": self.syncs,
            "cpu": self.cpu,
            "messages": sorted(set(self.messages)),
        }


class Bench:
    """The measures of one filesystem and how to take them."""

    def __init__(self, cache: Cache):
        self.cache = cache
        self.measures: dict[str, Measure] = {}

    def measure(self, name: str, kind: str) -> Measure:
        return self.measures.setdefault(name, Measure(name, kind))

    def time(self, name: str, kind: str, action: Callable[[], object]) -> object:
        """Settle, run ``action`` timed, then time the ``sync`` that writes its data back."""
        self.cache.settle()
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        result = action()
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds() - cpu_before
        start = time.perf_counter()
        os.sync()
        synced = time.perf_counter() - start
        m = self.measure(name, kind)
        m.times.append(elapsed)
        m.syncs.append(synced)
        m.cpu.append(cpu)
        return result


def cpu_seconds() -> float:
    """User plus system time of this process and of its waited-for descendants (so a tool's
    helpers count too: LXC's rsync, rsync's receiver)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def copy_message(stderr: str) -> str | None:
    """The copy summary bdev prints (``cloned base to c: reflinked copy (… reflinked)``)."""
    for line in reversed(stderr.splitlines()):
        if "copy (" in line or "snapshot" in line or "layer" in line:
            return line.strip()
    return None


def remove(path: Path) -> None:
    """Remove a tree left by an anchor (untimed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# --------------------------------------------------------------------------- one filesystem


def bench_filesystem(fstype: str, mnt: Path, payload_dir: Path, bdev_cli: str, lxc: dict[str, str],
                     runs: int, cache: Cache, log: Callable[[str], None]) -> tuple[Bench, dict[str, object]]:
    from bdev.api import Container
    from bdev.copying import copytree

    bench = Bench(cache)
    extra: dict[str, object] = {}
    P = mnt / "lxc"
    P.mkdir()
    base_rootfs = P / "base" / "rootfs"
    target = mnt / "target"

    def bdev(*args: str, name: str | None = None, kind: str = "bdev") -> str:
        argv = [bdev_cli, "-P", str(P), *args]
        if name is None:
            return run(argv).stdout
        done = bench.time(name, kind, lambda: run(argv))
        message = copy_message(done.stderr)
        if message:
            bench.measure(name, kind).messages.append(message)
        return done.stdout

    log(f"[{fstype}] bdev create base --source <payload>")
    bdev("create", "base", "--source", str(payload_dir), name="bdev create --source (once)", kind="info")

    base = Container("base", P)  # loads the plugin registry now, outside the timed clone
    base.rootfs  # noqa: B018  (reads the config once, as the CLI would)

    def rsync_block(r: int) -> None:
        bench.time("rsync -aHAXS --numeric-ids", "anchor",
                   lambda: run(["rsync", "-aHAXS", "--numeric-ids", f"{base_rootfs}/", f"{target}/"]))
        bench.time("rm -rf (rsync copy)", "anchor", lambda: run(["rm", "-rf", str(target)]))

    def cp_block(r: int) -> None:
        bench.time("cp -a --reflink=auto", "anchor",
                   lambda: run(["cp", "-a", "--reflink=auto", str(base_rootfs), str(target)]))
        bench.time("rm -rf (cp copy)", "anchor", lambda: run(["rm", "-rf", str(target)]))

    def copytree_block(r: int) -> None:
        target.mkdir()
        stats = bench.time("copytree (engine only)", "bdev", lambda: copytree(base_rootfs, target))
        bench.measure("copytree (engine only)", "bdev").messages.append(f"copytree: {stats.describe()}")
        remove(target)

    def bdev_clone_block(r: int) -> None:
        bdev("clone", "base", "c", name="bdev clone")
        bdev("destroy", "c", name="bdev destroy (clone)")

    def api_clone_block(r: int) -> None:
        made = bench.time("API clone (in-process)", "bdev", lambda: base.clone("c"))
        bench.measure("API clone (in-process)", "bdev").messages.append(f"API clone: {made.outcome.describe()}")
        made.destroy()

    def lxc_copy_block(r: int) -> None:
        if "lxc-copy" not in lxc:
            return
        bench.time("lxc-copy", "anchor", lambda: run([lxc["lxc-copy"], "-n", "base", "-N", "c", "-P", str(P)]))
        for line in (P / "c" / "config").read_text().splitlines():
            if line.replace(" ", "").startswith("lxc.rootfs.path="):
                extra["lxc_copy_rootfs"] = line.split("=", 1)[1].strip()
        if "lxc-destroy" in lxc:
            bench.time("lxc-destroy (lxc-copy clone)", "anchor",
                       lambda: run([lxc["lxc-destroy"], "-n", "c", "-P", str(P)]))
        else:
            bdev("destroy", "c")

    def snapshot_block(r: int) -> None:
        name = bdev("snapshot", "create", "base", name="bdev snapshot create").strip()
        modify_files(base_rootfs, r)
        bdev("snapshot", "restore", "base", name, name="bdev snapshot restore (in place)")
        # What an incremental in-place restore with rsync costs (not atomic, touches only changes).
        modify_files(base_rootfs, r + 1000)
        snap_rootfs = P / "base" / "snaps" / name / "rootfs"
        bench.time("rsync --delete snap -> base (incremental)", "anchor",
                   lambda: run(["rsync", "-aHAXS", "--numeric-ids", "--delete", f"{snap_rootfs}/", f"{base_rootfs}/"]))
        bdev("snapshot", "destroy", "base", name)

    def lxc_snapshot_block(r: int) -> None:
        if "lxc-snapshot" not in lxc:
            return
        bench.time("lxc-snapshot", "anchor", lambda: run([lxc["lxc-snapshot"], "-n", "base", "-P", str(P)]))
        bdev("snapshot", "destroy", "base", "--all")

    blocks = [rsync_block, cp_block, copytree_block, bdev_clone_block, api_clone_block, lxc_copy_block,
              snapshot_block, lxc_snapshot_block]
    for r in range(runs):
        log(f"[{fstype}] run {r + 1}/{runs}")
        shift = r % len(blocks)
        for block in blocks[shift:] + blocks[:shift]:
            block(r)
    return bench, extra


def modify_files(rootfs: Path, salt: int) -> None:
    """Rewrite ten small files and append to /etc/hosts: a container that changed a little."""
    import random

    rng = random.Random(salt)
    chosen = sorted((rootfs / "usr" / "share").rglob("f*"))[:: 97][:10]
    for path in chosen:
        path.write_bytes(rng.randbytes(rng.randint(256, 4096)))
    with open(rootfs / "etc" / "hosts", "a") as fh:
        fh.write(f"10.0.0.{salt % 250} changed{salt}\n")


# --------------------------------------------------------------------------- start-up


def bench_startup(bdev_cli: str, venv_bin: Path, lxc: dict[str, str], workdir: Path,
                  cache: Cache) -> dict[str, dict[str, object]]:
    """Start-up times: each command warm (``STARTUP_RUNS`` runs after one uncounted), then the
    two ``lxc-ls`` with the page cache dropped before each run (``COLD_RUNS``), which is how
    every CLI operation of the tables starts."""
    empty = workdir / "empty-lxcpath"
    empty.mkdir()
    commands = {
        "bdev --version": [bdev_cli, "--version"],
        "bdev lxc-ls -P <empty>": [str(venv_bin / "lxc-ls"), "-P", str(empty)],
        "python -c 'import click'": [sys.executable, "-c", "import click"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    if "lxc-ls" in lxc:
        commands["real lxc-ls -P <empty>"] = [lxc["lxc-ls"], "-P", str(empty)]
    results: dict[str, dict[str, object]] = {}
    for label, argv in commands.items():
        run(argv)  # warm-up, not counted
        times = []
        for _ in range(STARTUP_RUNS):
            start = time.perf_counter()
            run(argv)
            times.append(time.perf_counter() - start)
        results[label] = {"times": times, "median": statistics.median(times), "min": min(times), "max": max(times)}
    if cache.can_drop:
        for label in ("bdev lxc-ls -P <empty>", "real lxc-ls -P <empty>"):
            if label not in commands:
                continue
            times = []
            for _ in range(COLD_RUNS):
                cache.settle()
                start = time.perf_counter()
                run(commands[label])
                times.append(time.perf_counter() - start)
            results[f"{label}, cold cache"] = {
                "times": times, "median": statistics.median(times), "min": min(times), "max": max(times),
            }
    return results


# --------------------------------------------------------------------------- report

# bdev row -> the anchors its ratio columns divide by
RATIOS = {
    "bdev clone": {"rsync": "rsync -aHAXS --numeric-ids", "cp": "cp -a --reflink=auto", "lxc": "lxc-copy"},
    "API clone (in-process)": {"rsync": "rsync -aHAXS --numeric-ids", "cp": "cp -a --reflink=auto", "lxc": "lxc-copy"},
    "copytree (engine only)": {"rsync": "rsync -aHAXS --numeric-ids", "cp": "cp -a --reflink=auto", "lxc": "lxc-copy"},
    "bdev snapshot create": {"rsync": "rsync -aHAXS --numeric-ids", "cp": "cp -a --reflink=auto", "lxc": "lxc-snapshot"},
    "bdev snapshot restore (in place)": {"rsync": "rsync -aHAXS --numeric-ids", "cp": "cp -a --reflink=auto"},
    "bdev destroy (clone)": {"rm": "rm -rf (rsync copy)", "lxc": "lxc-destroy (lxc-copy clone)"},
}
ORDER = [
    "bdev create --source (once)",
    "bdev clone", "API clone (in-process)", "copytree (engine only)", "bdev snapshot create",
    "bdev snapshot restore (in place)", "bdev destroy (clone)",
    "rsync -aHAXS --numeric-ids", "cp -a --reflink=auto", "lxc-copy", "lxc-snapshot",
    "rsync --delete snap -> base (incremental)", "rm -rf (rsync copy)", "rm -rf (cp copy)",
    "lxc-destroy (lxc-copy clone)",
]


def ratio_table(bench: Bench) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row, anchors in RATIOS.items():
        if row not in bench.measures:
            continue
        out[row] = {col: bench.measures[row].median / bench.measures[a].median
                    for col, a in anchors.items() if a in bench.measures and bench.measures[a].median > 0}
    return out


def format_table(fstype: str, bench: Bench) -> str:
    ratios = ratio_table(bench)
    head = ("operation", "median s", "min", "max", "cpu s", "sync s", "/rsync", "/cp", "/lxc", "/rm")
    rows = []
    for name in ORDER + [n for n in bench.measures if n not in ORDER]:
        m = bench.measures.get(name)
        if m is None:
            continue
        r = ratios.get(name, {})
        rows.append((
            name, f"{m.median:.3f}", f"{min(m.times):.3f}", f"{max(m.times):.3f}",
            f"{statistics.median(m.cpu):.3f}", f"{statistics.median(m.syncs):.3f}",
            *(f"{r[c]:.2f}" if c in r else "" for c in ("rsync", "cp", "lxc", "rm")),
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [f"== {fstype} =="]
    fmt = lambda cells: "  ".join(  # noqa: E731
        (str(c).ljust(w) if i == 0 else str(c).rjust(w)) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(row) for row in rows)
    messages = []
    for name in ORDER:
        m = bench.measures.get(name)
        if m and m.messages:
            distinct = sorted(set(m.messages))
            messages.append(f"  {name}: {distinct[0]}" + (f" (+{len(distinct) - 1} other)" if len(distinct) > 1 else ""))
    if messages:
        lines.append("copy stats reported by bdev:")
        lines.extend(messages)
    return "\n".join(lines)


def format_startup(results: dict[str, dict[str, object]]) -> str:
    lines = [f"== CLI start-up (median of {STARTUP_RUNS} warm runs; of {COLD_RUNS} for cold cache) =="]
    width = max(len(k) for k in results)
    for label, r in results.items():
        lines.append(f"{label.ljust(width)}  {r['median'] * 1000:7.1f} ms  (min {r['min'] * 1000:.1f}, max {r['max'] * 1000:.1f})")
    for suffix in ("", ", cold cache"):
        real = results.get(f"real lxc-ls -P <empty>{suffix}")
        ours = results.get(f"bdev lxc-ls -P <empty>{suffix}")
        if real and ours:
            lines.append(f"bdev lxc-ls / real lxc-ls{suffix or ', warm'} = {ours['median'] / real['median']:.0f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- set-up and clean-up


def mounts_below(directory: Path) -> list[str]:
    prefix = str(directory.resolve()).rstrip("/") + "/"
    return sorted((m for m in mount_table() if m.startswith(prefix)), reverse=True)


def cleanup(workdir: Path) -> None:
    """Unmount whatever is still mounted below ``workdir``, detach its loop devices, remove it
    and the LXC lock directories made for its lxcpaths.  Ctrl-C is ignored meanwhile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for mountpoint in mounts_below(workdir):
        if run(["umount", mountpoint], check=False).returncode != 0:
            time.sleep(1)
            if run(["umount", mountpoint], check=False).returncode != 0:
                run(["umount", "-l", mountpoint], check=False)
    for entry in Path("/sys/block").glob("loop*"):
        backing = entry / "loop" / "backing_file"
        with contextlib.suppress(OSError):
            if backing.read_text().strip().startswith(str(workdir.resolve()) + "/"):
                run(["losetup", "-d", f"/dev/{entry.name}"], check=False)
    left = mounts_below(workdir)
    if left:
        print(f"warning: still mounted, {workdir} kept: {', '.join(left)}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(Exception):
        from bdev.store.lxcpath import lock_dir

        locks = lock_dir(workdir.resolve())
        if locks.is_dir() and locks != lock_dir("/"):
            shutil.rmtree(locks, ignore_errors=True)


INTERRUPTED: list[int] = []  # the signals received, so a child killed by the same Ctrl-C is not called a failure


def on_interrupt(signum: int, frame: object) -> None:
    INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def on_terminate(signum: int, frame: object) -> None:
    INTERRUPTED.append(signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM SystemExit, both noted in INTERRUPTED, so the
    clean-up runs either way."""
    previous = signal.signal(signal.SIGINT, on_interrupt), signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def image_size(info: payload_mod.PayloadInfo) -> int:
    """~3× the payload plus 1 GiB, and at least enough ext4 inodes (one per 16 KiB) for five
    copies of the tree."""
    entries = info.small_files + info.large_files + info.directories + info.symlinks + 16
    size = 3 * info.disk_bytes + GIB
    return max(size, 5 * entries * 16384)


def bdev_identity(bdev_cli: str) -> dict[str, object]:
    """bdev's version, its installed plugins (each one adds start-up time) and, in a git
    checkout, the commit measured (``+dirty`` with uncommitted changes to tracked files)."""
    lines = run([bdev_cli, "--version"]).stdout.splitlines()
    found: dict[str, object] = {"version": lines[0] if lines else "?", "plugins": [line.strip() for line in lines[1:]]}
    checkout = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git and (checkout / ".git").exists():
        head = run([git, "-C", str(checkout), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
        dirty = run([git, "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
        if head:
            found["commit"] = head + ("+dirty" if dirty else "")
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the payload's file counts (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each operation (default 3)")
    parser.add_argument("--fs", default=",".join(FILESYSTEMS), help="filesystems, comma separated (default ext4,btrfs,xfs)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="payload seed (default 0)")
    parser.add_argument("--tmpdir", type=Path, help="where the temporary directory goes (default: $TMPDIR or /tmp)")
    args = parser.parse_args(argv)
    args.fs = [f.strip() for f in args.fs.split(",") if f.strip()]
    unknown = [f for f in args.fs if f not in FILESYSTEMS]
    if unknown:
        parser.error(f"unknown filesystem(s): {', '.join(unknown)} (known: {', '.join(FILESYSTEMS)})")
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs must be at least 1 and --scale positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    venv_bin = Path(sys.executable).parent
    bdev_cli = shutil.which("bdev", path=str(venv_bin))
    if bdev_cli is None:
        print("bdev's CLI is not next to this Python; run with the venv's python", file=sys.stderr)
        return 2
    lxc = {tool: found for tool in ("lxc-copy", "lxc-snapshot", "lxc-destroy", "lxc-ls")
           if (found := shutil.which(tool, path=REAL_LXC_PATH))}
    for tool in ("rsync", "cp", "rm"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {text}", file=sys.stderr, flush=True)

    cache = Cache()
    report: dict[str, object] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "loadavg_start": os.getloadavg()},
        "scale": args.scale, "runs": args.runs, "seed": args.seed,
        "real_lxc": sorted(lxc), "filesystems": {}, "skipped": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="bdev-bench-", dir=args.tmpdir))
    try:
        with signals_handled():
            log(f"generating the payload (scale {args.scale}, seed {args.seed}) in {workdir}")
            info = payload_mod.generate(workdir / "payload", scale=args.scale, seed=args.seed)
            report["payload"] = info.as_dict()
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"bdev copy benchmark, {report['date']}, kernel {platform.release()}, {os.cpu_count()} CPUs, "
                  f"load average {load}")
            identity = bdev_identity(bdev_cli)
            report["bdev"] = identity
            plugins = ", ".join(p.split(":", 1)[0] for p in identity["plugins"])  # type: ignore[union-attr]
            print(f"{identity['version']}" + (f" (git {identity['commit']})" if "commit" in identity else "")
                  + f", plugins: {plugins}")
            print(f"payload: {info.describe()}; runs: {args.runs}; real LXC: {', '.join(sorted(lxc)) or 'not installed'}")
            print(flush=True)

            log("CLI start-up")
            startup = bench_startup(bdev_cli, venv_bin, lxc, workdir, cache)
            report["startup"] = startup
            print(format_startup(startup), end="\n\n", flush=True)

            size = image_size(info)
            for fstype in args.fs:
                problem = loop_filesystem_problem(fstype)
                if problem:
                    print(f"== {fstype} == skipped: {problem}\n", flush=True)
                    report["skipped"][fstype] = problem
                    continue
                log(f"[{fstype}] making a {size / GIB:.1f} GiB sparse loop filesystem")
                with contextlib.ExitStack() as stack:
                    mnt = stack.enter_context(loop_filesystem(fstype, workdir, str(size)))
                    # registered last, so it runs first on the way out: no Ctrl-C during unmount
                    stack.callback(signal.signal, signal.SIGINT, signal.SIG_IGN)
                    bench, extra = bench_filesystem(fstype, mnt, workdir / "payload", bdev_cli, lxc,
                                                    args.runs, cache, log)
                signal.signal(signal.SIGINT, on_interrupt)
                print(format_table(fstype, bench))
                if extra.get("lxc_copy_rootfs"):
                    print(f"lxc-copy made rootfs {extra['lxc_copy_rootfs'].split(':', 1)[0]}:…")
                print(flush=True)
                report["filesystems"][fstype] = {
                    "image_bytes": size,
                    "operations": {n: m.as_dict() for n, m in bench.measures.items()},
                    "ratios": ratio_table(bench),
                    **extra,
                }
            if cache.note:
                report["note"] = cache.note
            report["elapsed_s"] = round(time.monotonic() - started, 1)
            report["host"]["loadavg_end"] = os.getloadavg()
            print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                  f"{report['elapsed_s']:.0f} s in all")
            log(f"done in {report['elapsed_s']} s")
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")
                print(f"wrote {args.json}")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        if INTERRUPTED:  # a child died of the same Ctrl-C before Python noticed it
            print(f"\ninterrupted ({exc.__class__.__name__} from the interrupted command); cleaning up", file=sys.stderr)
            return 130
        if os.environ.get("BDEV_DEBUG"):
            traceback.print_exc()
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
