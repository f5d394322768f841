"""``bdev convert`` between ordinary backends, on real filesystems (btrfs on a loop file,
overlayfs, loop images): the files kept entry by entry, the swap for backends that share the
rootfs path, the dependency records, every refusal changing nothing, and a process killed at
each step of a conversion leaving the container whole for the next command to repair.

aufs → overlay/dir/btrfs, the special case, is in ``tests/test_aufs.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bdev.api import Container, list_containers
from bdev.cli.main import cli
from bdev.copying import copytree
from bdev.engine.context import Context, default_registry
from bdev.engine.convert import convert
from bdev.errors import BdevError, Busy, HasDependents, InvalidInput, NotSupported
from bdev.records import Rootfs
from bdev.store.layout import DEPENDENTS, JOURNAL, ORIGIN
from bdev.store.lock import container_lock_path, locked_file
from bdev.store.lxcpath import lock_dir
from bdev.store.running import command_socket_name
from bdev.testing.kit.storage import scratch_lxcpath, storage_problem
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences

pytestmark = [pytest.mark.usefixtures("no_leaks", "no_lock_files_left")]


@pytest.fixture
def no_lock_files_left(tmp_path: Path) -> Iterator[None]:
    """bdev (and LXC) leave empty lock files under ``<rundir>/lxc/lock/<lxcpath>``; remove the
    ones made for this test's scratch directories (nobody holds them once it ends)."""
    yield
    shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)


def one_sentence(error: BaseException | str) -> str:
    text = str(error).strip()
    assert "\n" not in text and text.endswith("."), f"not one sentence: {text!r}"
    return text


def converted(lxcpath: Path, name: str, backend: str) -> None:
    result = CliRunner().invoke(cli, ["-P", str(lxcpath), "convert", name, "-B", backend])
    assert result.exit_code == 0, result.output
    assert f"converted {name} from " in result.stderr and f" to {backend}: " in result.stderr


def files_of(container: Container, *, readonly: bool = True):
    rootfs = container.rootfs
    return default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly)


def copy_of(tree: Path, where: Path) -> Path:
    """A copy of ``tree`` at ``where`` (bdev's copy engine keeps everything compared)."""
    where.mkdir()
    copytree(tree, where)
    return where


def hidden(directory: Path) -> list[str]:
    """bdev's staged and journal names left in a container directory."""
    return sorted(n for n in os.listdir(directory) if ".bdev-" in n or n == JOURNAL)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


@pytest.fixture
def overlay_clone(lxcpath: Path, sample: Path) -> Container:
    """A dir container ``base`` and its overlay clone ``ov`` (LXC's ``lxc-copy -s``)."""
    base = Container("base", lxcpath)
    base.create(backend="dir", source=sample)
    ov = base.clone("ov", snapshot=True)
    assert ov.rootfs.backend == "overlay"
    return ov


@pytest.fixture
def btrfs_lxcpath(tmp_path: Path) -> Iterator[Path]:
    problem = storage_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs lxcpath here: {problem}")
    with scratch_lxcpath("btrfs", tmp_path) as path:
        yield path


# --------------------------------------------------------------------------- ordinary pairs


@pytest.mark.root
def test_dir_to_btrfs_and_back_swaps_at_the_same_path(btrfs_lxcpath: Path, sample: Path) -> None:
    c1 = Container("c1", btrfs_lxcpath)
    c1.create(backend="dir", source=sample)
    c1.snapshot()  # a dir snapshot: its own copy, untouched by the conversion
    rootfs = btrfs_lxcpath / "c1/rootfs"
    assert os.lstat(rootfs).st_ino != 256
    converted(btrfs_lxcpath, "c1", "btrfs")
    assert c1.rootfs == Rootfs("btrfs", str(rootfs))
    assert os.lstat(rootfs).st_ino == 256, "the rootfs is a subvolume now"
    assert tree_differences(btrfs_lxcpath / "c1/snaps/snap0/rootfs", rootfs) == []
    assert hidden(btrfs_lxcpath / "c1") == []
    c1.snapshot_restore("snap0")  # works on the new backend
    assert c1.snapshot() == "snap1"

    converted(btrfs_lxcpath, "c1", "dir")
    assert c1.rootfs == Rootfs("dir", str(rootfs)) and os.lstat(rootfs).st_ino != 256
    assert tree_differences(btrfs_lxcpath / "c1/snaps/snap0/rootfs", rootfs) == []
    c1.destroy(with_snapshots=True)
    assert os.listdir(btrfs_lxcpath) == []


@pytest.mark.unprivileged
def test_overlay_clone_to_dir_is_a_standalone_merged_copy(lxcpath: Path, overlay_clone: Container) -> None:
    ov = overlay_clone
    with files_of(ov, readonly=False) as merged:
        (merged / "etc/motd").write_text("changed in the overlay clone\n")
        os.unlink(merged / "etc/hosts")
    with files_of(ov) as merged:
        expected = copy_of(merged, lxcpath.parent / "expected")
    converted(lxcpath, "ov", "dir")
    assert ov.rootfs == Rootfs("dir", f"{lxcpath}/ov/rootfs")
    assert tree_differences(expected, lxcpath / "ov/rootfs") == []
    assert sorted(os.listdir(lxcpath / "ov")) == ["config", "rootfs"], "upper, work and lxc_rdepends are gone"
    assert not (lxcpath / "base" / DEPENDENTS).exists()
    Container("base", lxcpath).destroy()  # no longer refused: nothing depends on it
    assert tree_differences(expected, lxcpath / "ov/rootfs") == []


@pytest.mark.root
def test_dir_to_loop_keeps_a_mount_point(lxcpath: Path, sample: Path) -> None:
    c1 = Container("c1", lxcpath)
    c1.create(backend="dir", source=sample)
    before = copy_of(lxcpath / "c1/rootfs", lxcpath.parent / "before")
    converted(lxcpath, "c1", "loop")
    assert c1.rootfs == Rootfs("loop", f"{lxcpath}/c1/rootdev")
    assert os.listdir(lxcpath / "c1/rootfs") == [], "LXC's empty mount point"
    with files_of(c1) as files:
        assert [p for p in tree_differences(before, files) if not p.startswith(("lost+found", ".:"))] == []
    c1.destroy()


# --------------------------------------------------------------------------- refusals


def snapshot_of_tree(lxcpath: Path) -> list[str]:
    return sorted(str(p.relative_to(lxcpath)) for p in lxcpath.rglob("*"))


@pytest.mark.root
def test_refusals_say_what_to_do_and_change_nothing(lxcpath: Path, sample: Path) -> None:
    base = Container("base", lxcpath)
    base.create(backend="dir", source=sample)
    base.clone("ov", snapshot=True)
    made = Container("made", lxcpath)
    made.create(backend="overlay", source=sample)
    made.snapshot()
    before = snapshot_of_tree(lxcpath)
    ctx = Context.create(lxcpath)
    cases = [
        ("base", "btrfs", HasDependents, "clones depend on its rootfs (ov)"),
        ("made", "dir", HasDependents, "its snapshot snap0 uses"),
        ("ov", "overlay", InvalidInput, "already uses the overlay backend"),
    ]
    for name, target, error, words in cases:
        with pytest.raises(error) as caught:
            convert(ctx, ctx.ref(name), target)
        assert words in one_sentence(caught.value) and f"'{name}'" in str(caught.value)
    made.snapshot_destroy("snap0")
    plain = Container("plain", lxcpath)
    plain.create(backend="dir", source=sample)
    before = snapshot_of_tree(lxcpath)
    for name, target, words in (
        ("plain", "overlay", "uses"),  # the dir rootfs would become a layer of itself
        ("made", "dir", "uses"),  # the overlay's own lower is where the dir rootfs would go
    ):
        with pytest.raises(NotSupported) as caught:
            convert(ctx, ctx.ref(name), target)
        assert words in one_sentence(caught.value) and "clone the container with -B" in str(caught.value)
    assert snapshot_of_tree(lxcpath) == before


@pytest.mark.root
def test_a_running_container_is_not_converted(lxcpath: Path, sample: Path) -> None:
    c1 = Container("c1", lxcpath)
    c1.create(backend="dir", source=sample)
    ctx = Context.create(lxcpath)
    name = command_socket_name(ctx.ref("c1"))
    with socket.socket(socket.AF_UNIX) as monitor:  # what LXC's monitor binds while it runs
        monitor.bind("\0" + name[1:])
        with pytest.raises(Busy) as caught:
            convert(ctx, ctx.ref("c1"), "loop")
    assert "is running; stop it before converting" in one_sentence(caught.value)
    assert c1.rootfs.backend == "dir" and sorted(os.listdir(lxcpath / "c1")) == ["config", "rootfs"]


# --------------------------------------------------------------------------- crash safety


def run_convert(lxcpath: Path, name: str, target: str, fault: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BDEV_FAULT=fault)
    code = (
        "from bdev.engine.context import Context\nfrom bdev.engine.convert import convert\n"
        f"ctx = Context.create({str(lxcpath)!r})\nconvert(ctx, ctx.ref({name!r}), {target!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.root
@pytest.mark.parametrize(
    "step, finished",
    [
        ("convert:after-build", False),
        ("convert:after-swap", True),
        ("convert:after-config", True),
        ("convert:after-old-removed", True),
    ],
)
def test_dir_to_btrfs_killed_at_each_step(btrfs_lxcpath: Path, sample: Path, step: str, finished: bool) -> None:
    c1 = Container("c1", btrfs_lxcpath)
    c1.create(backend="dir", source=sample)
    before = copy_of(btrfs_lxcpath / "c1/rootfs", btrfs_lxcpath.parent / "before")
    child = run_convert(btrfs_lxcpath, "c1", "btrfs", step)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert json.loads((btrfs_lxcpath / "c1" / JOURNAL).read_text())["op"] == "convert"
    # whatever the step, <c1>/rootfs holds one complete tree
    assert tree_differences(before, btrfs_lxcpath / "c1/rootfs") == []

    assert [c.name for c in list_containers(btrfs_lxcpath)] == ["c1"]  # the next command repairs
    assert hidden(btrfs_lxcpath / "c1") == []
    assert c1.rootfs.backend == ("btrfs" if finished else "dir")
    assert (os.lstat(btrfs_lxcpath / "c1/rootfs").st_ino == 256) is finished
    assert tree_differences(before, btrfs_lxcpath / "c1/rootfs") == []
    if not finished:
        converted(btrfs_lxcpath, "c1", "btrfs")
    c1.destroy()
    assert os.listdir(btrfs_lxcpath) == []


@pytest.mark.unprivileged
def test_overlay_to_dir_killed_before_the_commit_keeps_the_clone(lxcpath: Path, sample: Path, overlay_clone: Container) -> None:
    ov = overlay_clone
    config = (lxcpath / "ov/config").read_text()
    child = run_convert(lxcpath, "ov", "dir", "convert:after-build")
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert (lxcpath / "ov/config").read_text() == config
    ov.snapshot()  # any command repairs first
    assert hidden(lxcpath / "ov") == [] and os.listdir(lxcpath / "ov/rootfs") == []
    assert ov.rootfs.backend == "overlay" and (lxcpath / "ov" / ORIGIN).exists()
    with files_of(ov) as merged:
        assert [p for p in tree_differences(sample, merged) if not p.startswith(("etc/hostname", "etc/hosts"))] == []


@pytest.mark.root
def test_an_old_rootfs_that_cannot_be_removed_yet_is_removed_by_the_next_command(
    lxcpath: Path, overlay_clone: Container
) -> None:
    ov = overlay_clone
    busy = lxcpath / "ov/overlay/delta/busy"
    busy.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "bdevtest", str(busy)], check=True)
    try:
        ctx = Context.create(lxcpath)
        with pytest.raises(BdevError) as caught:
            convert(ctx, ctx.ref("ov"), "dir")
        text = one_sentence(caught.value)
        assert "still mounted" in text or "mount" in text
        assert "it is converted; the next command removes the old rootfs" in text
        assert ov.get_config_item("lxc.rootfs.path") == [f"dir:{lxcpath}/ov/rootfs"]
        assert (lxcpath / "ov" / JOURNAL).exists()
    finally:
        subprocess.run(["umount", str(busy)], check=True)
    assert [c.name for c in list_containers(lxcpath)] == ["base", "ov"]  # repairs
    assert sorted(os.listdir(lxcpath / "ov")) == ["config", "rootfs"]
    assert (lxcpath / "ov/rootfs/busy").is_dir(), "the merged tree was copied, the mount point with it"


@pytest.mark.unprivileged
def test_a_conversion_waits_for_lxcs_container_lock(lxcpath: Path, sample: Path) -> None:
    c1 = Container("c1", lxcpath)
    c1.create(backend="dir", source=sample)
    before = copy_of(lxcpath / "c1/rootfs", lxcpath.parent / "before")
    lock = container_lock_path(lock_dir(lxcpath), "c1")
    command = [sys.executable, "-m", "bdev.cli.main", "-P", str(lxcpath), "-q", "convert", "c1", "-B", "loop"]
    with locked_file(lock, what="the test's hold on c1"):  # as lxc-start, lxc-copy ... hold it
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=1.5)
            assert c1.rootfs.backend == "dir" and not (lxcpath / "c1" / JOURNAL).exists()
        except BaseException:
            child.kill()
            child.wait()
            raise
    _, err = child.communicate(timeout=300)
    if os.geteuid() != 0:
        assert child.returncode == 1 and "loop" in one_sentence(err), err  # loop devices need root
        assert c1.rootfs.backend == "dir"
        return
    assert child.returncode == 0, err
    assert c1.rootfs.backend == "loop"
    with files_of(c1) as files:
        assert [p for p in tree_differences(before, files) if not p.startswith(("lost+found", ".:"))] == []
    c1.destroy()
