"""The real-kernel guest runner (``vagrant/``), in the parts that need no virtual machine: the
image cache (its key, its place, atomic builds), the command line, streaming with a hard
timeout that leaves no process behind, how a run is judged, the guest's summary, the argument
hand-over to the guest, and the guest's Python packages against the pyproject files.

The guest run itself is ``scripts/guest-test.sh`` (called by ``scripts/test.sh``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
VAGRANT = ROOT / "vagrant"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


guest = load(VAGRANT / "qemu" / "guest.py")
summary = load(VAGRANT / "guest_summary.py")


# ---------------------------------------------------------------------------- the cache key


@pytest.fixture
def vagrant_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "vagrant"
    shutil.copytree(VAGRANT, copy, ignore=shutil.ignore_patterns(".vagrant", "__pycache__"))
    return copy


@pytest.mark.parametrize("name", guest.IMAGE_INPUTS)
def test_the_cache_key_changes_with_each_file_the_image_is_built_from(vagrant_copy: Path, name: str) -> None:
    before = guest.cache_key(vagrant_copy)
    with (vagrant_copy / name).open("a") as f:
        f.write("\n# changed\n")
    assert guest.cache_key(vagrant_copy) != before


@pytest.mark.parametrize("name", ["README.md", "guest-suite.sh", "qemu/guest-init.sh", "Vagrantfile"])
def test_files_read_at_run_time_do_not_change_the_cache_key(vagrant_copy: Path, name: str) -> None:
    before = guest.cache_key(vagrant_copy)
    with (vagrant_copy / name).open("a") as f:
        f.write("\n# changed\n")
    assert guest.cache_key(vagrant_copy) == before


def test_the_cache_key_is_the_checkouts_own(vagrant_copy: Path) -> None:
    assert guest.cache_key(vagrant_copy) == guest.cache_key(VAGRANT)
    assert re.fullmatch(r"[0-9a-f]{16}", guest.cache_key(VAGRANT))


# ---------------------------------------------------------------------------- the cache's place


def test_the_default_cache_is_outside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BDEV_GUEST_CACHE", raising=False)
    root = guest.cache_root(ROOT)
    assert root == Path("/var/cache/bdev-guest")
    assert not root.is_relative_to(ROOT)


def test_a_cache_inside_the_checkout_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "sub").mkdir(parents=True)
    monkeypatch.setenv("BDEV_GUEST_CACHE", str(checkout / "sub" / ".." / "images"))
    with pytest.raises(guest.GuestError, match="inside the checkout"):
        guest.cache_root(checkout)
    monkeypatch.setenv("BDEV_GUEST_CACHE", str(tmp_path / "images"))
    assert guest.cache_root(checkout) == tmp_path / "images"


# ---------------------------------------------------------------------------- atomic builds


def complete_build(target: Path) -> None:
    for name in guest.IMAGE_FILES:
        (target / name).write_text(f"{name}\n")


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != ".lock")


def test_a_build_is_renamed_into_place_and_then_reused(tmp_path: Path) -> None:
    image = guest.ensure_image(tmp_path, "k1", complete_build, say=lambda _: None)
    assert image == tmp_path / "k1" and guest.is_complete(image)
    assert json.loads((image / guest.MANIFEST).read_text())["key"] == "k1"
    assert leftovers(tmp_path) == ["k1"]

    def must_not_build(target: Path) -> None:
        raise AssertionError("a cached image was built again")

    assert guest.ensure_image(tmp_path, "k1", must_not_build, say=lambda _: None) == image


@pytest.mark.parametrize("failure", [guest.GuestError("build failed"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_build_leaves_no_image_and_no_temp_dir(tmp_path: Path, failure: BaseException) -> None:
    def half_build(target: Path) -> None:
        (target / "base.qcow2").write_text("half")
        raise failure

    with pytest.raises(type(failure)):
        guest.ensure_image(tmp_path, "k1", half_build, say=lambda _: None)
    assert leftovers(tmp_path) == []


def test_a_build_that_misses_a_file_is_not_cached(tmp_path: Path) -> None:
    def no_kernel(target: Path) -> None:
        complete_build(target)
        (target / "vmlinuz").unlink()

    with pytest.raises(guest.GuestError, match="without vmlinuz"):
        guest.ensure_image(tmp_path, "k1", no_kernel, say=lambda _: None)
    assert leftovers(tmp_path) == []


def test_a_build_clears_dead_builds_and_outdated_images(tmp_path: Path) -> None:
    guest.ensure_image(tmp_path, "old", complete_build, say=lambda _: None)
    (tmp_path / ".build-old-crashed").mkdir()
    (tmp_path / ".build-old-crashed" / "base.qcow2").write_text("half")
    said: list[str] = []
    guest.ensure_image(tmp_path, "new", complete_build, say=said.append)
    assert leftovers(tmp_path) == ["new"]
    assert any(".build-old-crashed" in s for s in said) and any("outdated image" in s for s in said)


def test_rebuild_replaces_a_cached_image(tmp_path: Path) -> None:
    guest.ensure_image(tmp_path, "k1", complete_build, say=lambda _: None)

    def marked_build(target: Path) -> None:
        complete_build(target)
        (target / "vmlinuz").write_text("rebuilt\n")

    image = guest.ensure_image(tmp_path, "k1", marked_build, rebuild=True, say=lambda _: None)
    assert (image / "vmlinuz").read_text() == "rebuilt\n"
    assert leftovers(tmp_path) == ["k1"]


# ---------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("45m", 2700), ("1h", 3600), ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert guest.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "45 minutes", "m", "1d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        guest.parse_duration(text)


def test_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BDEV_GUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("BDEV_GUEST_PROFILE", raising=False)
    args = guest.parse_args([])
    assert args.timeout == 45 * 60 and args.suites == ["lvm", "zfs", "btrfs", "rbd"] and args.pytest_args == []
    assert args.profile == "full" and guest.parse_args(["--profile", "ci"]).suites == ["lvm", "zfs", "rbd"]
    assert guest.parse_args(["--profile", "ci", "--suites", "btrfs"]).suites == ["btrfs"]
    args = guest.parse_args(["--suites", "zfs,lvm", "--timeout", "10m", "--", "-x", "-k", "snapshot"])
    assert args.suites == ["zfs", "lvm"] and args.timeout == 600 and args.pytest_args == ["-x", "-k", "snapshot"]
    monkeypatch.setenv("BDEV_GUEST_TIMEOUT", "20m")
    assert guest.parse_args([]).timeout == 1200


@pytest.mark.parametrize("argv", [["--suites", "lvm,bogus"], ["--timeout", "soon"], ["--bogus"], ["--profile", "quick"]])
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        guest.parse_args(argv)
    assert exc.value.code == 2
    assert "usage: guest.py" in capsys.readouterr().err


def test_the_guests_arguments_reach_bash_intact(tmp_path: Path) -> None:
    """guest-init.sh reads the runner's NUL-separated file with ``mapfile -d ''``."""
    args = tmp_path / "arguments"
    args.write_bytes(guest.guest_arguments(["lvm", "zfs"], ["-k", "thin and not crash", "-x"], "ci"))
    out = subprocess.run(
        ["bash", "-c", 'mapfile -d "" -t a < "$1"; printf "<%s>\\n" "${a[@]}"', "-", str(args)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.splitlines() == ["<--suites>", "<lvm,zfs>", "<--profile>", "<ci>", "<-->", "<-k>", "<thin and not crash>", "<-x>"]


# ---------------------------------------------------------------------------- streaming, timeout


def gone(pid: int) -> bool:
    """No such process, or only a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def test_output_is_streamed_with_the_prefix_and_the_exit_status_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        result = guest.stream(["sh", "-c", "echo one; echo two >&2; printf tail; exit 3"], "guest| ", 30, f)
    assert out.read_text() == "guest| one\nguest| two\nguest| tail\n"
    assert result.returncode == 3 and not result.timed_out


def test_the_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    started = time.monotonic()
    with out.open("w") as f:
        result = guest.stream(["sh", "-c", "sleep 300 & echo child $!; echo shell $$; wait"], "", 1.5, f)
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - started < 15
    pids = dict(line.split() for line in out.read_text().splitlines())
    assert set(pids) == {"child", "shell"}
    assert all(wait_gone(int(pid)) for pid in pids.values()), "a process of the group outlived the timeout"


def test_an_interrupt_stops_the_child_and_propagates(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with out.open("w") as f, pytest.raises(KeyboardInterrupt):
            guest.stream(["sh", "-c", "echo shell $$; exec sleep 300"], "", 60, f)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = int(out.read_text().split()[1])
    assert wait_gone(pid)


def test_sigterm_ends_the_runner_like_ctrl_c() -> None:
    with pytest.raises(KeyboardInterrupt), guest.terminated_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# ---------------------------------------------------------------------------- a run's files


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed (apt-get install qemu-utils)")
def test_a_run_directory_holds_an_overlay_and_disks_and_is_removed_even_on_failure(tmp_path: Path) -> None:
    image = tmp_path / "image"
    image.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image / "base.qcow2"), "64M"], check=True)
    with pytest.raises(RuntimeError), guest.run_directory(tmp_path / "cache", image) as run_dir:
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(run_dir / "root.qcow2")],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["backing-filename"] == str(image / "base.qcow2")
        sizes = {name: (run_dir / f"{name}.img").stat() for name in guest.DISKS}
        assert all(s.st_size == guest.parse_size(guest.DISKS[n]) and s.st_blocks == 0 for n, s in sizes.items())
        assert (run_dir / "results").is_dir()
        raise RuntimeError("the guest failed")
    assert list((tmp_path / "cache" / guest.RUNS).iterdir()) == []


def test_run_directories_of_dead_runners_are_removed(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    stale = tmp_path / f"run-{child.pid}-abc"
    live = tmp_path / f"run-{os.getpid()}-def"
    stale.mkdir()
    live.mkdir()
    guest.remove_stale_runs(tmp_path)
    assert not stale.exists() and live.exists()


def make_tree(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_the_guest_gets_the_checkouts_own_files_not_ignored_scratch(tmp_path: Path) -> None:
    make_tree(tmp_path, [".gitignore", "bdev/a.py", "plugins/new/b.py", ".cache/kernel/vmlinuz", "x.egg-info/PKG"])
    (tmp_path / ".gitignore").write_text(".cache/\n*.egg-info/\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", ".gitignore", "bdev/a.py"], check=True)
    (tmp_path / "bdev" / "a.py").rename(tmp_path / "bdev" / "moved.py")  # tracked, deleted here
    assert guest.source_files(tmp_path) == [".gitignore", "bdev/moved.py", "plugins/new/b.py"]
    shutil.rmtree(tmp_path / ".git")
    assert guest.source_files(tmp_path) == [".gitignore", "bdev/moved.py", "plugins/new/b.py"]


def test_a_failed_wheel_build_says_so_and_leaves_only_its_output_dir(tmp_path: Path) -> None:
    """Without a setuptools wheel in the wheelhouse pip cannot build offline; the copy of the
    checkout and the build's setuptools are removed all the same."""
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    with pytest.raises(guest.GuestError, match=r"building the project's wheels failed \(pip exit [1-9]"):
        guest.build_wheels(ROOT, empty, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------------------- judging a run


def write_results(results: Path, *, status: str | None, ok: bool | None) -> None:
    results.mkdir(exist_ok=True)
    if status is not None:
        (results / "status").write_text(f"{status}\n")
    if ok is not None:
        (results / "summary.json").write_text(json.dumps({"ok": ok, "line": "guest suite ok on Linux x: ..."}))


def test_a_run_passes_only_with_status_zero_and_a_passing_summary(tmp_path: Path) -> None:
    ran = guest.Streamed(0, False, 10.0)
    write_results(tmp_path / "a", status="0", ok=True)
    assert guest.outcome(tmp_path / "a", ran, 60) == guest.Outcome(True, "guest suite ok on Linux x: ...")
    write_results(tmp_path / "b", status="1", ok=True)
    assert not guest.outcome(tmp_path / "b", ran, 60).ok
    write_results(tmp_path / "c", status="0", ok=False)
    assert not guest.outcome(tmp_path / "c", ran, 60).ok


def test_a_guest_that_stopped_early_or_timed_out_fails_clearly(tmp_path: Path) -> None:
    write_results(tmp_path / "a", status=None, ok=None)
    result = guest.outcome(tmp_path / "a", guest.Streamed(0, False, 5.0), 60)
    assert not result.ok and "stopped (qemu exit 0) before the suite finished (no suite had finished)" in result.line
    write_results(tmp_path / "b", status="2", ok=None)
    result = guest.outcome(tmp_path / "b", guest.Streamed(0, False, 5.0), 60)
    assert not result.ok and "exited 2 before it ran any test" in result.line
    write_results(tmp_path / "c", status=None, ok=None)
    result = guest.outcome(tmp_path / "c", guest.Streamed(None, True, 60.0), 60)
    assert not result.ok and result.line == "guest suite FAILED: killed at the timeout of 60 s (no suite had finished)"


def test_a_timed_out_run_says_which_suites_had_finished(results: Path) -> None:
    suite(results, "lvm", "0", (89, 0, 15))
    result = guest.outcome(results, guest.Streamed(None, True, 60.0), 60)
    assert not result.ok
    assert result.line == ("guest suite FAILED: killed at the timeout of 60 s (finished on Linux 6.1.0-50-amd64: "
                           "lvm 74 passed, 0 failed, 15 skipped)")


# ---------------------------------------------------------------------------- the guest's summary


def junit(path: Path, tests: int, failures: int, skipped: int) -> None:
    path.write_text(
        f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" '
        f'skipped="{skipped}"/></testsuites>'
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / "suites").mkdir()
    (tmp_path / "guest.env").write_text("KERNEL=6.1.0-50-amd64\nZFS=2.1.11-1\nLVM=2.03.16(2)\n")
    return tmp_path


def suite(results: Path, name: str, status: str, counts: tuple[int, int, int] | None = None) -> None:
    (results / "suites" / f"{name}.exit").write_text(f"{status}\n")
    if counts:
        junit(results / "suites" / f"{name}.xml", *counts)


def test_the_summary_names_the_kernel_and_counts_each_suite(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite(results, "lvm", "0", (12, 0, 2))
    suite(results, "zfs", "0", (30, 0, 0))
    assert summary.main([str(results), "lvm", "zfs"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (
        "guest suite ok on Linux 6.1.0-50-amd64 (zfs 2.1.11-1, LVM 2.03.16(2)): lvm 10 passed, 0 failed, "
        "2 skipped; zfs 30 passed, 0 failed, 0 skipped; total 40 passed, 0 failed, 2 skipped"
    )
    written = json.loads((results / "summary.json").read_text())
    assert written["ok"] is True and written["line"] == line and written["env"]["KERNEL"] == "6.1.0-50-amd64"


def test_a_narrowed_run_says_its_profile(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (results / "guest.env").open("a") as env:
        env.write("PROFILE=ci\n")
    suite(results, "lvm", "0", (12, 0, 2))
    assert summary.main([str(results), "lvm"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("guest suite ok (profile ci: a narrowed selection, the rest deselected) on Linux 6.1.0-50-amd64")


@pytest.mark.parametrize(
    ("status", "counts", "says"),
    [
        ("missing", None, "lvm missing"),
        ("1", (5, 1, 0), "lvm 4 passed, 1 failed, 0 skipped (pytest exit 1)"),
        ("0", (3, 0, 3), "lvm 0 passed, 0 failed, 3 skipped"),  # all skipped on a real kernel
        ("5", (0, 0, 0), "lvm 0 passed, 0 failed, 0 skipped (pytest exit 5)"),  # nothing collected
        ("2", None, "lvm 0 passed, 1 failed, 0 skipped (pytest exit 2)"),  # no JUnit report
    ],
)
def test_a_suite_that_is_missing_failed_or_ran_nothing_fails_the_summary(
    results: Path, status: str, counts: tuple[int, int, int] | None, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    suite(results, "lvm", status, counts)
    suite(results, "zfs", "0", (30, 0, 0))
    assert summary.main([str(results), "lvm", "zfs"]) == 1
    line = capsys.readouterr().out
    assert line.startswith("guest suite FAILED on Linux 6.1.0-50-amd64") and says in line


def test_a_suite_that_never_ran_is_reported(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite(results, "lvm", "0", (1, 0, 0))
    assert summary.main([str(results), "lvm", "btrfs"]) == 1
    assert "btrfs not run" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the guest's packages


def pins() -> dict[str, str]:
    lines = (VAGRANT / "guest-requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in reqs), "pin with =="
    return {r.name.lower(): next(iter(r.specifier)).version for r in reqs}


def debian_packages() -> set[str]:
    text = (VAGRANT / "guest-packages.txt").read_text()
    return {line.split("#")[0].strip() for line in text.splitlines()} - {""}


def project_requirements() -> list[Requirement]:
    plugins = sorted(ROOT.glob("plugins/*/pyproject.toml"))
    files = [ROOT / "pyproject.toml", ROOT / "runtime" / "pyproject.toml", *plugins]
    reqs = []
    for path in files:
        project = tomllib.loads(path.read_text())["project"]
        for text in [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("test", [])]:
            req = Requirement(text)
            if not req.name.startswith("bdev"):
                reqs.append(req)
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    return reqs + [Requirement(text) for text in build]


def debian_name(requirement: Requirement) -> str:
    """Debian's package of a PyPI distribution: ``python3-`` and the name, less a ``python-``."""
    name = requirement.name.lower().replace("_", "-")
    return "python3-" + name.removeprefix("python-")


def debian_candidates(packages: list[str]) -> dict[str, str]:
    """The upstream part of apt's candidate version of each of ``packages`` on this (Debian 12)
    host, the release the guest is built from; packages apt does not know are left out."""
    if shutil.which("apt-cache") is None or not packages:
        return {}
    out = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True).stdout
    found = re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (?:\d+:)?(\d+(?:\.\d+)*)", out, re.M)
    return dict(found)


def test_every_python_requirement_is_a_satisfying_pin_or_a_debian_package() -> None:
    pinned, debs = pins(), debian_packages()
    uncovered, unsatisfied = [], []
    candidates = debian_candidates([debian_name(r) for r in project_requirements() if debian_name(r) in debs])
    for req in project_requirements():
        name = req.name.lower()
        if name in pinned:
            if not req.specifier.contains(pinned[name]):
                unsatisfied.append(f"{req} (pinned {pinned[name]})")
        elif debian_name(req) not in debs:
            uncovered.append(str(req))
        else:
            candidate = candidates.get(debian_name(req))
            if candidate is not None and not req.specifier.contains(candidate):
                unsatisfied.append(f"{req} (Debian's {debian_name(req)} is {candidate}: pin a wheel instead)")
    assert unsatisfied == [], f"guest packages that break pyproject requirements: {unsatisfied}"
    assert uncovered == [], f"requirements neither pinned nor in guest-packages.txt: {uncovered}"


def test_the_guest_has_the_storage_tools_and_modules_under_test() -> None:
    needed = {"lvm2", "thin-provisioning-tools", "zfs-dkms", "zfsutils-linux", "python3-pyzfs", "btrfs-progs",
              "linux-image-amd64", "linux-headers-amd64", "python3-venv"}
    assert needed - debian_packages() == set()
    assert "zfs-fuse" not in debian_packages(), "zfs-fuse conflicts with kernel ZFS's zfsutils-linux"


def test_the_guest_has_what_the_rbd_suite_needs() -> None:
    """The throwaway cluster's packages (as bdev.testing.ceph lists them) and rbd-nbd, so the
    rbd suite maps images through both kernel drivers instead of skipping."""
    from bdev.testing.ceph import PACKAGES

    assert {*PACKAGES, "rbd-nbd", "fuse"} - debian_packages() == set()


# ---------------------------------------------------------------------------- the scripts


def test_guest_test_sh_can_be_skipped_and_says_so_loudly() -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "guest-test.sh")], env=dict(os.environ, BDEV_SKIP_GUEST="1"),
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "GUEST SUITE SKIPPED (BDEV_SKIP_GUEST=1)" in proc.stdout


def test_guest_suite_sh_refuses_an_unknown_suite_before_touching_anything() -> None:
    proc = subprocess.run([str(VAGRANT / "guest-suite.sh"), "--suites", "lvm,bogus"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown suite 'bogus' (known: lvm zfs btrfs rbd contract)" in proc.stderr
