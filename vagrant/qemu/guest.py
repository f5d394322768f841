"""Run bdev's guest suite in a qemu virtual machine: a real Debian 12 kernel with
device-mapper/LVM, kernel OpenZFS, btrfs and the rbd and nbd drivers, for machines (and CI)
without Vagrant.

The image (root filesystem, kernel, initramfs; see build-image.sh) is built once per machine
and cached outside the checkout, under ``/var/cache/bdev-guest/<key>/`` (``BDEV_GUEST_CACHE``
names another place), where ``<key>`` hashes the build script and the package lists: a change
to any of them builds a new image, nothing else does.  A build runs in a temporary directory
beside the cache and is renamed into place only when it succeeded, under a lock, so a crashed
or concurrent build never leaves a "valid" image.

A run boots the image under software emulation (``/dev/kvm`` here cannot boot Debian's
kernel) with a throwaway qcow2 overlay over it, two sparse raw disks for the LVM volume group
and the ZFS pool, the checkout shared read-only over 9p and a results share written by the
guest.  The guest's console is streamed with a ``guest|`` prefix; the run ends with one line
saying which suites ran on which kernel and their counts.  A hard timeout kills qemu.  Nothing
is left behind (qemu, temp files), even on Ctrl-C or SIGTERM; qemu also dies with this process.

usage: guest.py [--timeout 45m] [--build-timeout 60m] [--suites lvm,zfs,btrfs,rbd]
                [--rebuild] [--build-only] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

QEMU_DIR = Path(__file__).resolve().parent
VAGRANT_DIR = QEMU_DIR.parent
CHECKOUT = VAGRANT_DIR.parent
BUILD_SCRIPT = QEMU_DIR / "build-image.sh"
DEFAULT_CACHE = Path("/var/cache/bdev-guest")
SUITES = ("lvm", "zfs", "btrfs", "rbd", "contract")  # what guest-suite.sh knows
PROFILES = ("full", "ci")  # guest-suite.sh --profile
DEFAULT_SUITES = {  # the lvm and zfs contracts run inside their own modules
    "full": ("lvm", "zfs", "btrfs", "rbd"),
    "ci": ("lvm", "zfs", "rbd"),  # btrfs runs in the host suite, on this machine's kernel
}

# What the image is made from: a change to any of these files makes a new image.
IMAGE_INPUTS = ("qemu/build-image.sh", "guest-packages.txt", "guest-requirements.txt", "guest-venv.sh")
IMAGE_FILES = ("base.qcow2", "vmlinuz", "initrd.img", "image.env", "wheels")
MANIFEST = "manifest.json"
BUILD_PREFIX = ".build-"
RUNS = "runs"
SOURCE_IGNORED = (".git", ".venv", ".vagrant", ".cache", ".pytest_cache", "__pycache__", "*.egg-info", "build", "dist")

# The measured way to boot Debian's kernel here: software emulation, two vCPUs, 4 GiB.
QEMU_MACHINE = ("-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "4096")
KERNEL_ARGS = "root=LABEL=bdev-guest rw console=ttyS0 loglevel=4 panic=-1 init=/usr/local/sbin/bdev-guest-init"
DISKS = {"lvm": "8G", "zfs": "4G"}  # sparse raw disks, serials bdev-<name>
PR_SET_PDEATHSIG = 1


class GuestError(Exception):
    """An expected failure of the runner, said in one sentence."""


# ---------------------------------------------------------------------------- arguments


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``45m`` or ``1h``; a positive number.

    :raises argparse.ArgumentTypeError: anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90, 90s, 45m or 1h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_suites(text: str) -> list[str]:
    """A comma-separated subset of :data:`SUITES`, in the order given.

    :raises argparse.ArgumentTypeError: an unknown or empty name.
    """
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in SUITES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown suite(s) {unknown} (known: {', '.join(SUITES)})")
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line; defaults for the timeouts come from ``BDEV_GUEST_TIMEOUT`` and
    ``BDEV_GUEST_BUILD_TIMEOUT``.  Arguments after ``--`` go to every pytest run."""
    argv = list(argv)
    pytest_args: list[str] = []
    if "--" in argv:
        pytest_args = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(prog="guest.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=parse_duration, default=os.environ.get("BDEV_GUEST_TIMEOUT", "45m"),
                        help="hard limit for booting and running the guest suite (default 45m)")
    parser.add_argument("--build-timeout", type=parse_duration,
                        default=os.environ.get("BDEV_GUEST_BUILD_TIMEOUT", "60m"),
                        help="hard limit for building the image (default 60m)")
    parser.add_argument("--suites", type=parse_suites, default=None,
                        help=f"comma-separated subset of {','.join(SUITES)} (default "
                        + "; ".join(f"{','.join(suites)} for {profile}" for profile, suites in DEFAULT_SUITES.items()) + ")")
    parser.add_argument("--profile", choices=PROFILES, default=os.environ.get("BDEV_GUEST_PROFILE", "full"),
                        help="full: every case; ci: the narrowed selection that fits CI's budget under "
                        "emulation (vagrant/guest-suite.sh says what it keeps); default full, or BDEV_GUEST_PROFILE")
    parser.add_argument("--rebuild", action="store_true", help="build the image even if it is cached")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the image and stop")
    args = parser.parse_args(argv)
    if args.suites is None:
        args.suites = list(DEFAULT_SUITES[args.profile])
    args.pytest_args = pytest_args
    return args


# ---------------------------------------------------------------------------- the image cache


def cache_key(vagrant_dir: Path = VAGRANT_DIR) -> str:
    """A hash of the files the image is built from (their names and contents)."""
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        digest.update(name.encode() + b"\0" + (vagrant_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_root(checkout: Path = CHECKOUT) -> Path:
    """Where images are cached: ``BDEV_GUEST_CACHE`` or ``/var/cache/bdev-guest``.

    :raises GuestError: the place is inside the checkout (an image is gigabytes and must
        outlive the work tree).
    """
    root = Path(os.environ.get("BDEV_GUEST_CACHE") or DEFAULT_CACHE).resolve()
    if root.is_relative_to(checkout.resolve()):
        raise GuestError(f"the image cache {root} is inside the checkout {checkout}; choose a place outside it")
    return root


def is_complete(image: Path) -> bool:
    """The image directory holds everything a finished build makes, and its manifest."""
    return all((image / name).exists() for name in (*IMAGE_FILES, MANIFEST))


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the cache's lock (one build at a time per machine) for the body."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image(
    root: Path,
    key: str,
    build: Callable[[Path], None],
    *,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """The cached image ``root/key``, built by ``build(tmpdir)`` first if it is not there.

    The build writes into a fresh ``root/.build-*`` directory, which is renamed to
    ``root/key`` only after it succeeded and its manifest is written; a failed or interrupted
    build's directory is removed, and so are leftovers of builds that died earlier and
    images of other keys.
    """
    image = root / key
    with locked(root):
        if is_complete(image) and not rebuild:
            return image
        for stale in root.glob(BUILD_PREFIX + "*"):
            say(f"removing {stale}, left by a build that did not finish")
            shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{key}-", dir=root))
        started = time.monotonic()
        try:
            build(tmp)
            missing = [name for name in IMAGE_FILES if not (tmp / name).exists()]
            if missing:
                raise GuestError(f"the image build finished without {', '.join(missing)}")
            manifest = {"key": key, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "build_seconds": round(time.monotonic() - started)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if image.exists():
                shutil.rmtree(image)
            os.rename(tmp, image)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        for other in root.iterdir():
            if other.is_dir() and other != image and (other / MANIFEST).is_file():
                say(f"removing the outdated image {other}")
                shutil.rmtree(other)
    return image


def read_manifest(image: Path) -> dict[str, object]:
    """The manifest of a complete image, with the versions of ``image.env`` added."""
    manifest = json.loads((image / MANIFEST).read_text())
    for line in (image / "image.env").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            manifest[key.lower()] = value
    return manifest


# ---------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class Streamed:
    """How a streamed process ended: its exit status (None if it was killed at the timeout)."""

    returncode: int | None
    timed_out: bool
    seconds: float


def stream(argv: Sequence[str], prefix: str, timeout: float, out: TextIO = sys.stdout) -> Streamed:
    """Run ``argv``, copying its output (stdout and stderr) line by line to ``out`` with
    ``prefix``; kill its whole process group at ``timeout`` seconds, or when this process is
    interrupted (the exception is re-raised after the group is gone).  The child runs in a
    session of its own, so a terminal's Ctrl-C reaches this process, which stops it in order.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    timed_out = False
    pending = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = started + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not selector.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    out.write(f"{prefix}{line.decode(errors='replace').rstrip()}\n")
                out.flush()
    finally:
        if pending:  # a last line without its newline, also when interrupted
            out.write(f"{prefix}{pending.decode(errors='replace').rstrip()}\n")
            out.flush()
        _stop(proc)
    return Streamed(None if timed_out else proc.returncode, timed_out, time.monotonic() - started)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End ``proc``'s process group (TERM, then KILL after 10 s) and reap ``proc``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is still there
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the body like Ctrl-C does (so ``finally`` blocks clean up)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def build_with_script(timeout: float) -> Callable[[Path], None]:
    """A ``build`` for :func:`ensure_image` that runs build-image.sh, streamed as ``image|``."""

    def build(target: Path) -> None:
        result = stream([str(BUILD_SCRIPT), str(target)], "image| ", timeout)
        if result.timed_out:
            raise GuestError(f"the image build took longer than {timeout:.0f} s and was killed")
        if result.returncode != 0:
            raise GuestError(f"the image build failed (build-image.sh exit {result.returncode}); its output is above")

    return build


# ---------------------------------------------------------------------------- a run


def qemu_argv(image: Path, run_dir: Path, source: Path, qemu: str = "qemu-system-x86_64") -> list[str]:
    """The qemu command line for one run: the image under an overlay, the disks, the shares."""
    argv = [
        qemu, "-name", "bdev-guest", *QEMU_MACHINE,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", KERNEL_ARGS,
        "-drive", f"file={run_dir / 'root.qcow2'},format=qcow2,if=virtio,cache=unsafe,discard=unmap",
    ]
    for name in DISKS:
        argv += [
            "-drive", f"file={run_dir / (name + '.img')},format=raw,if=none,id={name},cache=unsafe",
            "-device", f"virtio-blk-pci,drive={name},serial=bdev-{name}",
        ]
    argv += [
        "-virtfs", f"local,path={source},mount_tag=bdev-src,security_model=none,readonly=on",
        "-virtfs", f"local,path={run_dir / 'results'},mount_tag=bdev-out,security_model=none",
        "-device", "virtio-rng-pci",
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
    ]
    return argv


def remove_stale_runs(runs: Path) -> None:
    """Remove run directories whose runner (the pid in their name) is gone."""
    for run_dir in runs.glob("run-*-*"):
        pid = run_dir.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def run_directory(root: Path, image: Path) -> Iterator[Path]:
    """A fresh directory with the overlay, the empty disks and the results share; removed
    afterwards whatever happens."""
    runs = root / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    remove_stale_runs(runs)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=runs))
    try:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image / "base.qcow2"),
             str(run_dir / "root.qcow2")],
            check=True, env=dict(os.environ, LC_ALL="C"),
        )
        for name, size in DISKS.items():
            with open(run_dir / f"{name}.img", "wb") as disk:
                disk.truncate(parse_size(size))
        (run_dir / "results").mkdir()
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def source_files(source: Path) -> list[str]:
    """The checkout's own files, relative to it: what git tracks plus what it would add (so
    ignored scratch trees, however large, stay out); without git, every file outside
    :data:`SOURCE_IGNORED`."""
    proc = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, env=dict(os.environ, LC_ALL="C"), stdin=subprocess.DEVNULL,
    )
    if proc.returncode == 0:
        names = [n for n in proc.stdout.decode().split("\0") if n]
        return sorted(n for n in names if (source / n).is_file() or (source / n).is_symlink())
    found = []
    for directory, subdirs, files in os.walk(source):
        subdirs[:] = [d for d in subdirs if not any(fnmatch.fnmatch(d, p) for p in SOURCE_IGNORED)]
        found += [str(Path(directory, f).relative_to(source)) for f in files]
    return sorted(found)


def copy_files(source: Path, names: Sequence[str], target: Path) -> None:
    """Copy ``names`` (relative paths) from ``source`` to ``target``, keeping modes."""
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name, follow_symlinks=False)


def build_wheels(source: Path, wheelhouse: Path, out: Path) -> None:
    """Wheels of bdev, its runtime and every plugin of ``source`` into ``out``, built here
    (natively: under emulation it takes minutes) from a copy of it, offline, with the image's
    pinned setuptools (Debian's is older than the projects' build requirement).

    :raises GuestError: pip failed (its output is above).
    """
    copy, setuptools = out / "source", out / "setuptools"
    out.mkdir(parents=True, exist_ok=True)
    copy_files(source, source_files(source), copy)
    packages = [copy, copy / "runtime", *sorted(p.parent for p in copy.glob("plugins/*/pyproject.toml"))]
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # setuptools' own vendored packages ahead of the host's: an older Debian jaraco.functools
    # (pulled in by Ceph's packages, for one) breaks its distutils otherwise
    path = os.pathsep.join((str(setuptools), str(setuptools / "setuptools" / "_vendor")))
    env = dict(os.environ, LC_ALL="C", PYTHONWARNINGS="ignore", PYTHONPATH=path)
    try:
        for step in (
            [*pip, "install", "--root-user-action=ignore", "--no-index", "--find-links", str(wheelhouse),
             "--target", str(setuptools), "setuptools"],
            [*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(out),
             *map(str, packages)],
        ):
            code = subprocess.run(step, env=env, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                raise GuestError(f"building the project's wheels failed (pip exit {code}); its output is above")
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(setuptools, ignore_errors=True)


def parse_size(text: str) -> int:
    """Bytes in ``8G`` / ``512M``."""
    return int(text[:-1]) << {"M": 20, "G": 30}[text[-1]]


def guest_arguments(suites: Sequence[str], pytest_args: Sequence[str], profile: str = "full") -> bytes:
    """guest-suite.sh's arguments, NUL-separated, as guest-init.sh reads them."""
    argv = ["--suites", ",".join(suites), "--profile", profile]
    if pytest_args:
        argv += ["--", *pytest_args]
    return b"".join(a.encode() + b"\0" for a in argv)


@dataclass(frozen=True)
class Outcome:
    """What a run came to: ``ok`` and the closing line."""

    ok: bool
    line: str


def finished_suites(results: Path) -> str:
    """What a guest that was stopped early had finished: each completed suite's counts (read
    by guest_summary.py from the results share) and the kernel they ran on."""
    exits = sorted((results / "suites").glob("*.exit")) if (results / "suites").is_dir() else []
    if not exits:
        return "no suite had finished"
    spec = importlib.util.spec_from_file_location("guest_summary", VAGRANT_DIR / "guest_summary.py")
    assert spec and spec.loader
    summary = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("guest_summary", summary)
    spec.loader.exec_module(summary)
    kernel = summary.read_env(results / "guest.env").get("KERNEL", "?")
    done = "; ".join(summary.suite_result(results, e.stem).describe() for e in exits)
    return f"finished on Linux {kernel}: {done}"


def outcome(results: Path, streamed: Streamed, timeout: float) -> Outcome:
    """Judge a run from qemu's end and the results share: ok only when the guest wrote its
    status 0 and a summary that says every suite passed."""
    summary_file, status_file = results / "summary.json", results / "status"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    status = status_file.read_text().strip() if status_file.is_file() else None
    if streamed.timed_out:
        done = summary["line"] if summary else finished_suites(results)
        return Outcome(False, f"guest suite FAILED: killed at the timeout of {timeout:.0f} s ({done})")
    if status is None:
        return Outcome(False, f"guest suite FAILED: the guest stopped (qemu exit {streamed.returncode}) "
                              f"before the suite finished ({finished_suites(results)}); its console is above")
    if summary is None:
        return Outcome(False, f"guest suite FAILED: the suite exited {status} before it ran any test; "
                              "its console is above")
    return Outcome(status == "0" and bool(summary.get("ok")), str(summary["line"]))


def run_guest(image: Path, root: Path, args: argparse.Namespace, source: Path = CHECKOUT) -> Outcome:
    """Boot the guest on ``image``, stream its console and judge the results."""
    with run_directory(root, image) as run_dir:
        results = run_dir / "results"
        (results / "arguments").write_bytes(guest_arguments(args.suites, args.pytest_args, args.profile))
        (results / "source-files").write_text("".join(f"{name}\n" for name in source_files(source)))
        build_wheels(source, image / "wheels", results / "wheels")
        print(f"guest.py: booting {image.name} under TCG (timeout {args.timeout:.0f} s)", flush=True)
        streamed = stream(qemu_argv(image, run_dir, source), "guest| ", args.timeout)
        print(f"guest.py: the guest ran {streamed.seconds:.0f} s", flush=True)
        return outcome(results, streamed, args.timeout)


def main(argv: Sequence[str]) -> int:
    """Build or reuse the image, run the guest suite, print the closing line; 0 if it passed."""
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("guest.py: run as root (the image build uses debootstrap and chroot)", file=sys.stderr)
        return 2
    try:
        with terminated_as_interrupt():
            root = cache_root()
            key = cache_key()
            cached = is_complete(root / key) and not args.rebuild
            image = ensure_image(root, key, build_with_script(args.build_timeout), rebuild=args.rebuild,
                                 say=lambda text: print(f"guest.py: {text}", flush=True))
            manifest = read_manifest(image)
            how = "cached" if cached else "built now"
            print(f"guest.py: image {image} ({how}; built {manifest['built']} in {manifest['build_seconds']} s: "
                  f"kernel {manifest['kernel']}, zfs {manifest['zfs']}, lvm2 {manifest['lvm']})", flush=True)
            if args.build_only:
                return 0
            result = run_guest(image, root, args)
    except GuestError as exc:
        print(f"guest suite FAILED: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("guest suite FAILED: interrupted; qemu and the run's files are gone", flush=True)
        return 130
    print(result.line, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
