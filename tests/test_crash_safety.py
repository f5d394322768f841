"""Crash safety: a process killed with SIGKILL at a marked step (``BDEV_FAULT``) or at a
random moment of a long copy leaves every container whole, and the next command cleans up.

Each scenario runs the operation in a child process through the Python API, checks the
child died by SIGKILL, checks the state on disk, then runs an ordinary command and checks
nothing is left: no ``partial`` marker, no journal, no staged rootfs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.store.layout import JOURNAL, PARTIAL
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import describe_tree, tree_differences

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.unprivileged]


def run_api(lxcpath: Path, code: str, fault: str | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``Container`` imported and ``P`` the lxcpath) in a child process."""
    env = dict(os.environ)
    if fault:
        env["BDEV_FAULT"] = fault
    script = f"from bdev.api import Container, list_containers\nP = {str(lxcpath)!r}\n{code}\n"
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def assert_killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == -signal.SIGKILL, f"expected SIGKILL, got {result.returncode}: {result.stderr}"


def hidden_leftovers(directory: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if name.startswith(".rootfs.bdev-") or name in (JOURNAL, PARTIAL):
                found.append(os.path.relpath(os.path.join(root, name), directory))
        dirs[:] = [d for d in dirs if d != "rootfs" and not d.startswith(".rootfs")]
    return found


def same_tree(a: Path, b: Path) -> list[str]:
    return [p for p in tree_differences(a, b) if not p.startswith(("etc/hostname:", "etc/hosts:"))]


@pytest.fixture
def base(lxcpath: Path, tmp_path: Path) -> Container:
    """A container ``base`` with snapshot ``snap0`` of the sample tree, then changed."""
    sample = make_sample_rootfs(tmp_path / "sample")
    c = Container("base", lxcpath)
    c.create(backend="dir", source=sample)
    c.snapshot(comment="pristine")
    (c.directory / "rootfs/etc/motd").write_text("changed after the snapshot\n")
    (c.directory / "rootfs/var/log/added.log").write_text("added\n")
    return c


@pytest.mark.parametrize(
    "step, restored",
    [("restore:after-stage", False), ("restore:after-swap", True), ("restore:after-config", True)],
)
def test_restore_in_place_killed(base: Container, lxcpath: Path, tmp_path: Path, step: str, restored: bool) -> None:
    snap_tree = base.directory / "snaps/snap0/rootfs"
    live_before = tmp_path / "live-before"
    from bdev.copying import copytree

    live_before.mkdir()
    copytree(base.directory / "rootfs", live_before)
    config_before = base.config_file_name.read_text()

    assert_killed(run_api(lxcpath, "Container('base', P).snapshot_restore('snap0')", fault=step))
    journal = json.loads((base.directory / JOURNAL).read_text())
    assert journal["op"] == "restore"
    # Whatever the step, the live rootfs is one complete tree: the old one or the snapshot's.
    expected = snap_tree if restored else live_before
    assert same_tree(expected, base.directory / "rootfs") == []

    listed = [c.name for c in list_containers(lxcpath)]  # the next command repairs
    assert listed == ["base"]
    assert hidden_leftovers(base.directory) == []
    assert same_tree(expected, base.directory / "rootfs") == []
    if restored:
        assert not (base.directory / "rootfs/var/log/added.log").exists()
    else:
        assert base.config_file_name.read_text() == config_before
    # and the container still works normally afterwards
    base.snapshot_restore("snap0")
    assert same_tree(snap_tree, base.directory / "rootfs") == []


@pytest.mark.parametrize("step", ["clone:after-rootfs", "clone:before-commit"])
def test_clone_killed(base: Container, lxcpath: Path, step: str) -> None:
    origin_config = base.config_file_name.read_text()
    assert_killed(run_api(lxcpath, "Container('base', P).clone('web1')", fault=step))
    assert (lxcpath / "web1" / PARTIAL).exists()
    assert [c.name for c in list_containers(lxcpath)] == ["base"]  # hidden, then removed
    assert not (lxcpath / "web1").exists()
    assert base.config_file_name.read_text() == origin_config
    web1 = base.clone("web1")  # the name is free again
    assert web1.defined


def test_snapshot_killed(base: Container, lxcpath: Path) -> None:
    assert_killed(run_api(lxcpath, "Container('base', P).snapshot()", fault="snapshot:after-rootfs"))
    assert (base.directory / "snaps/snap1" / PARTIAL).exists()
    assert [s.name for s in base.snapshot_list()] == ["snap0"]
    assert not (base.directory / "snaps/snap1").exists()
    assert base.snapshot() == "snap1"


def test_destroy_killed_is_finished_by_next_command(base: Container, lxcpath: Path) -> None:
    clone = base.clone("doomed")
    assert_killed(run_api(lxcpath, "Container('doomed', P).destroy()", fault="destroy:after-rootfs"))
    assert (clone.directory / JOURNAL).exists()
    assert [c.name for c in list_containers(lxcpath)] == ["base"]
    assert not clone.directory.exists()


def test_create_killed(lxcpath: Path) -> None:
    assert_killed(run_api(lxcpath, "Container('c1', P).create('busybox', 'dir')", fault="create:after-template"))
    assert (lxcpath / "c1" / PARTIAL).exists()
    assert list_containers(lxcpath) == []
    assert not (lxcpath / "c1").exists()


def test_clone_killed_at_a_random_moment_of_a_long_copy(lxcpath: Path, tmp_path: Path) -> None:
    source = tmp_path / "many"
    (source / "etc").mkdir(parents=True)
    for d in range(40):
        sub = source / f"d{d}"
        sub.mkdir()
        for f in range(100):
            (sub / f"f{f}").write_bytes(os.urandom(2048))
    c = Container("big", lxcpath)
    c.create(backend="dir", source=source)
    before = describe_tree(c.directory / "rootfs")
    child = subprocess.Popen(
        [sys.executable, "-c", f"from bdev.api import Container\nContainer('big', {str(lxcpath)!r}).clone('copy')"],
    )
    deadline = time.monotonic() + 60
    while not (lxcpath / "copy/rootfs").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if child.returncode == 0:
        pytest.fail("the copy finished before it could be killed; make the tree bigger")
    assert [x.name for x in list_containers(lxcpath)] == ["big"]
    assert not (lxcpath / "copy").exists()
    assert describe_tree(c.directory / "rootfs") == before


@pytest.mark.root
def test_temporary_mounts_of_a_killed_process_are_reaped(base: Container, lxcpath: Path, tmp_path: Path) -> None:
    """A process killed while it has a temporary mount leaves it behind; the next command that
    takes a lock unmounts it and removes the mount point."""
    from bdev.mounts import mounts_root
    from bdev.testing.storage import mount_table

    code = (
        "import os, signal, subprocess\n"
        "from bdev.mounts import temporary_mountpoint\n"
        "with temporary_mountpoint('test') as mnt:\n"
        "    subprocess.run(['mount', '-t', 'tmpfs', 'bdevtest', str(mnt)], check=True)\n"
        "    print(mnt, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL
    leaked = Path(child.stdout.strip())
    assert leaked.parent == mounts_root() and str(leaked) in mount_table()
    base.snapshot()  # any command that takes a lock reaps
    assert str(leaked) not in mount_table() and not leaked.exists()
