"""The loop backend (``plugins/loop``): a rootfs in an image file on a real loop device.

Everything runs on real kernel objects: ext4, xfs and btrfs images attached through
``/dev/loop-control``, lxcpaths on btrfs and xfs loop filesystems (reflinks) and on the test
disk (ext4: hole-preserving copies), real LXC 5 reading what bdev wrote.  The contract suite
(``tests/test_backend_contract.py -k loop``) covers the common operations on every storage
kind; this file covers what is particular to loop images.  Every test checks that no mount
and no loop device is left behind (``no_leaks``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bdev.api import Container
from bdev.cli.main import cli
from bdev.command import run, which
from bdev.engine.context import default_registry
from bdev.errors import BackendUnavailable, BdevError, Busy, InvalidInput
from bdev.records import CreateOptions, Placement, Rootfs
from bdev.store.layout import JOURNAL
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import loop_devices, loop_filesystem, loop_filesystem_problem
from bdev.testing.trees import tree_differences
from bdev_loop import LoopBackend
from bdev_loop import _filesystems as fsys

pytestmark = [pytest.mark.usefixtures("no_leaks")]

FSTYPES = ["ext4", "xfs", "btrfs"]
MiB = 1 << 20
HOSTNAME_FILES = ("etc/hostname:", "etc/hosts:")
BENCH_PAYLOAD = Path(__file__).resolve().parent.parent / "bench" / "payload.py"
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


# ---------------------------------------------------------------------------- helpers


def loop_backend() -> LoopBackend:
    backend = default_registry().backend("loop")
    assert isinstance(backend, LoopBackend)
    return backend


@pytest.fixture
def loop() -> LoopBackend:
    """The registered loop backend, skipping (with the reason) where it cannot work."""
    backend = loop_backend()
    reasons = backend.unavailable_reasons()
    if reasons:
        pytest.skip(f"the loop backend cannot work here: {'; '.join(reasons)}")
    return backend


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


def fstype_usable(fstype: str) -> None:
    problem = fsys.FILESYSTEMS[fstype].problem()
    if problem:
        pytest.skip(f"no {fstype} images here: {problem}")


@contextlib.contextmanager
def files_of(container: Container, *, readonly: bool = True) -> Iterator[Path]:
    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly) as path:
        yield path


def differences(container: Container, expected: Path) -> list[str]:
    with files_of(container) as path:
        return [d for d in tree_differences(expected, path) if not d.startswith(HOSTNAME_FILES)]


def image_of(container: Container) -> Path:
    rootfs = container.rootfs
    assert rootfs.backend == "loop", rootfs
    return Path(rootfs.source)


def blkid(image: Path, tag: str) -> str:
    return run(["blkid", "-p", "-o", "value", "-s", tag, str(image)]).stdout.strip()


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def bdev(lxcpath: Path, *args: str) -> Result:
    """``bdev -P <lxcpath> ARGS`` in-process."""
    return CliRunner().invoke(cli, ["-P", str(lxcpath), *args])


def one_error_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bdev: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def attached_to(image: Path) -> list[str]:
    return [entry for entry in loop_devices() if entry.split(":", 1)[1].startswith(str(image))]


@pytest.fixture(params=["btrfs", "xfs"])
def reflink_lxcpath(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An lxcpath on a filesystem with reflinks (btrfs, xfs on a loop file)."""
    problem = loop_filesystem_problem(request.param)
    if problem:
        pytest.skip(f"no {request.param} lxcpath: {problem}")
    with loop_filesystem(request.param, tmp_path, size="3G") as mnt:
        path = mnt / "lxc"
        path.mkdir()
        yield path


@pytest.fixture
def ext4_lxcpath(tmp_path: Path) -> Iterator[Path]:
    """An lxcpath on ext4 (no reflinks): copies must preserve holes instead."""
    problem = loop_filesystem_problem("ext4")
    if problem:
        pytest.skip(f"no ext4 lxcpath: {problem}")
    with loop_filesystem("ext4", tmp_path, size="3G") as mnt:
        path = mnt / "lxc"
        path.mkdir()
        yield path


# ---------------------------------------------------------------------------- registration, refusals


@pytest.mark.unprivileged
def test_registered_with_the_declared_capabilities() -> None:
    backend = loop_backend()
    caps = backend.capabilities
    assert caps.block_backed and caps.needs_mount and caps.sized
    assert caps.native_snapshot and caps.copy_by_snapshot and not caps.snapshot_depends_on_origin
    assert backend.detect_priority == 50 and backend.best_priority is None
    assert "loop" not in [b.name for b in default_registry().best_candidates()]
    if os.geteuid() != 0:
        assert "attaching loop devices and mounting them needs root" in backend.unavailable_reasons()


@pytest.mark.unprivileged
def test_locators_parse_detect_and_default_places(tmp_path: Path) -> None:
    backend = loop_backend()
    registry = default_registry()
    image = tmp_path / "c1" / "rootdev"
    image.parent.mkdir()
    image.write_bytes(b"")
    assert registry.parse_rootfs(f"loop:{image}") == Rootfs("loop", str(image))
    assert registry.parse_rootfs(str(image)) == Rootfs("loop", str(image))  # LXC 1.0: a bare image path
    assert backend.detect(str(image)) and not backend.detect(str(tmp_path))
    with pytest.raises(InvalidInput, match="not an absolute path"):
        backend.parse("c1/rootdev")
    placement = Placement(tmp_path, "c1")
    assert backend.default_source(placement, CreateOptions()) == str(image)
    staged = placement.staged("restore", near=str(image))
    assert backend.default_source(staged, CreateOptions()) == str(tmp_path / "c1" / ".rootdev.bdev-restore")


@pytest.mark.unprivileged
def test_refusals_name_the_cause_before_anything_exists(tmp_path: Path) -> None:
    backend = loop_backend()
    placement = Placement(tmp_path, "c1")
    assert backend.refusal_at(placement, CreateOptions()) is None
    assert backend.refusal_at(placement, CreateOptions(fstype="ntfs")) == (
        "a loop image cannot hold a 'ntfs' filesystem (supported: btrfs, ext4, xfs)"
    )
    if fsys.FILESYSTEMS["xfs"].problem() is None:
        assert backend.refusal_at(placement, CreateOptions(fstype="xfs", fssize=200 * MiB)) == (
            "200.0 MiB is too small for xfs (the smallest xfs filesystem is 300.0 MiB)"
        )
        assert backend.refusal_at(placement, CreateOptions(fstype="XFS", fssize=300 * MiB)) is None
    if fsys.FILESYSTEMS["btrfs"].problem() is None:
        assert "too small for btrfs" in backend.refusal_at(placement, CreateOptions(fstype="btrfs", fssize=100 * MiB))
    assert "too small for ext4" in backend.refusal_at(placement, CreateOptions(fssize=1 * MiB))
    assert os.listdir(tmp_path) == []


@pytest.mark.root
@pytest.mark.parametrize(
    "args, cause",
    [
        (
            ["--fstype", "xfs", "--fssize", "200M"],
            "200.0 MiB is too small for xfs (the smallest xfs filesystem is 300.0 MiB).",
        ),
        (["--fstype", "ntfs"], "a loop image cannot hold a 'ntfs' filesystem (supported: btrfs, ext4, xfs)."),
        (["--fssize", "garbage"], "--fssize 'garbage' is not a size"),
    ],
)
def test_the_cli_refuses_bad_fstype_and_size_leaving_nothing(
    loop: LoopBackend, lxcpath: Path, sample: Path, args: list[str], cause: str
) -> None:
    result = bdev(lxcpath, "create", "c1", "-B", "loop", "--source", str(sample), *args)
    line = one_error_line(result)
    assert cause in line, line
    if "garbage" not in args:
        assert line.startswith("bdev: container 'c1' (backend loop): "), line
    assert os.listdir(lxcpath) == []


# ---------------------------------------------------------------------------- create, snapshot, restore


@pytest.mark.root
@pytest.mark.parametrize("fstype", FSTYPES)
def test_each_fstype_creates_snapshots_and_restores_in_place(
    loop: LoopBackend, storage_lxcpath: Path, sample: Path, fstype: str
) -> None:
    fstype_usable(fstype)
    c = Container("c1", storage_lxcpath)
    c.create(backend="loop", source=sample, options=CreateOptions(fstype=fstype, fssize=400 * MiB))
    image = image_of(c)
    assert image == storage_lxcpath / "c1" / "rootdev"
    assert c.get_config_item("lxc.rootfs.path") == [f"loop:{image}"]
    assert (storage_lxcpath / "c1" / "rootfs").is_dir()  # LXC's mount point beside the image
    assert blkid(image, "TYPE") == fstype and image.stat().st_size == 400 * MiB
    assert oct(image.stat().st_mode & 0o777) == "0o600"
    assert differences(c, sample) == []

    assert c.snapshot() == "snap0"
    snap_image = storage_lxcpath / "c1" / "snaps" / "snap0" / "rootdev"
    assert blkid(snap_image, "TYPE") == fstype
    assert blkid(snap_image, "UUID") != blkid(image, "UUID")
    before = loop.identity(c.rootfs)
    with files_of(c, readonly=False) as path:
        (path / "etc/motd").write_text("upgraded\n")
        os.unlink(path / "bin/tool")
    assert differences(c, sample) != []

    c.snapshot_restore("snap0")
    assert differences(c, sample) == []
    assert loop.identity(c.rootfs) != before and image_of(c) == image
    assert sorted(p.name for p in (storage_lxcpath / "c1").iterdir()) == ["config", "rootdev", "rootfs", "snaps"]
    c.destroy(with_snapshots=True)
    assert os.listdir(storage_lxcpath) == []


# ---------------------------------------------------------------------------- copies of the image


def filefrag_shared_extents(image: Path) -> int:
    """Extents of ``image`` that ``filefrag -v`` flags as shared with another file."""
    out = run(["filefrag", "-v", str(image)]).stdout
    return sum(1 for line in out.splitlines() if "shared" in line.split(":")[-1])


def load_payload():
    if not BENCH_PAYLOAD.exists():
        pytest.skip(f"the benchmark payload generator {BENCH_PAYLOAD.name} is not in this checkout")
    spec = importlib.util.spec_from_file_location("bdev_bench_payload", BENCH_PAYLOAD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.root
def test_snapshot_reflinks_the_image_and_is_fast(
    loop: LoopBackend, reflink_lxcpath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container holding the benchmark payload (about 280 MB): its snapshot and clone share
    every block with the origin and take a fraction of a second (LXC rsyncs: about 10 s)."""
    payload = load_payload()
    info = payload.generate(tmp_path / "payload")
    c = Container("c1", reflink_lxcpath)
    c.create(backend="loop", source=tmp_path / "payload")
    image = image_of(c)
    os.sync()
    free_before = shutil.disk_usage(reflink_lxcpath).free

    started = time.monotonic()
    assert c.snapshot() == "snap0"
    took = time.monotonic() - started
    snap_image = reflink_lxcpath / "c1" / "snaps" / "snap0" / "rootdev"
    os.sync()
    grew = free_before - shutil.disk_usage(reflink_lxcpath).free
    with capsys.disabled():
        print(
            f"\nloop snapshot on {filesystem_of(reflink_lxcpath)}: {took:.3f} s for an image holding "
            f"{info.disk_bytes / 1e6:.0f} MB ({allocated(image) / 1e6:.0f} MB allocated); "
            f"the lxcpath lost {grew / 1e6:.1f} MB of free space"
        )
    assert took < 5.0
    assert filefrag_shared_extents(snap_image) > 0 and filefrag_shared_extents(image) > 0
    assert grew < allocated(image) / 10  # blocks are shared, not copied
    assert blkid(snap_image, "UUID") != blkid(image, "UUID")

    clone = c.clone("c2", snapshot=True)
    assert clone.outcome.method == "snapshot" and not clone.outcome.depends_on_origin
    assert clone.outcome.stats.reflinked_files == 1 and clone.outcome.stats.bytes == image.stat().st_size
    with files_of(clone) as path:
        assert (path / "etc/hostname").read_text() == "c2\n"
    clone.destroy()
    c.destroy(with_snapshots=True)


def filesystem_of(lxcpath: Path) -> str:
    return run(["stat", "-f", "-c", "%T", str(lxcpath)]).stdout.strip()


@pytest.mark.root
def test_copy_on_ext4_keeps_holes(loop: LoopBackend, ext4_lxcpath: Path, sample: Path) -> None:
    c = Container("c1", ext4_lxcpath)
    c.create(backend="loop", source=sample)
    with files_of(c, readonly=False) as path:
        (path / "var/data.bin").write_bytes(os.urandom(48 * MiB))
    image = image_of(c)
    clone = c.clone("c2")
    copy = image_of(clone)
    assert clone.outcome.method == "snapshot"
    assert clone.outcome.stats.sparse_files == 1 and clone.outcome.stats.reflinked_files == 0
    assert copy.stat().st_size == image.stat().st_size == 1 << 30
    # Only data regions are copied: about what the origin allocates (less where the origin
    # holds preallocated, never written extents, such as mkfs's journal, which read as zeros).
    assert 48 * MiB < allocated(copy) <= allocated(image) + MiB
    assert blkid(copy, "UUID") != blkid(image, "UUID")
    with files_of(c) as a, files_of(clone) as b:  # both mounted at once
        assert (a / "var/data.bin").read_bytes() == (b / "var/data.bin").read_bytes()
    clone.destroy()
    c.destroy()


@pytest.mark.root
@pytest.mark.parametrize("fstype", FSTYPES)
def test_every_copy_gets_its_own_uuid_and_mounts_beside_its_origin(
    loop: LoopBackend, storage_lxcpath: Path, sample: Path, fstype: str
) -> None:
    fstype_usable(fstype)
    c = Container("c1", storage_lxcpath)
    c.create(backend="loop", source=sample, options=CreateOptions(fstype=fstype, fssize=320 * MiB))
    c.snapshot()
    clone = c.clone("c2")
    images = [image_of(c), storage_lxcpath / "c1/snaps/snap0/rootdev", image_of(clone)]
    uuids = {blkid(i, "UUID") for i in images}
    assert len(uuids) == 3, uuids
    with files_of(c) as a, files_of(clone) as b:  # xfs refuses a second mount of one UUID
        assert (a / "etc/motd").read_text() == (b / "etc/motd").read_text()
    clone.destroy()
    c.destroy(with_snapshots=True)


@pytest.mark.root
def test_clone_to_another_fstype_or_size(loop: LoopBackend, storage_lxcpath: Path, sample: Path) -> None:
    fstype_usable("xfs")
    c = Container("c1", storage_lxcpath)
    c.create(backend="loop", source=sample, options=CreateOptions(fssize=400 * MiB))
    bigger = c.clone("bigger", options=CreateOptions(fssize=600 * MiB))
    assert bigger.outcome.method == "snapshot" and image_of(bigger).stat().st_size == 600 * MiB
    assert bigger.usage().limit_bytes > 500 * MiB
    as_xfs = c.clone("asxfs", options=CreateOptions(fstype="xfs"))
    assert as_xfs.outcome.method == "copy" and blkid(image_of(as_xfs), "TYPE") == "xfs"
    assert image_of(as_xfs).stat().st_size == 400 * MiB  # the origin's size, not the default
    smaller = c.clone("smaller", options=CreateOptions(fssize=64 * MiB))
    assert smaller.outcome.method == "copy" and image_of(smaller).stat().st_size == 64 * MiB
    for clone in (bigger, as_xfs, smaller):
        assert differences(clone, sample) == []
        clone.destroy()
    with pytest.raises(BdevError, match="64.0 MiB is too small for xfs"):
        c.clone("tiny", options=CreateOptions(fstype="xfs", fssize=64 * MiB))
    assert sorted(os.listdir(storage_lxcpath)) == ["c1"]
    c.destroy()


@pytest.mark.root
def test_a_copy_into_loop_gets_an_image_big_enough_for_the_tree(loop: LoopBackend, lxcpath: Path, sample: Path) -> None:
    """Without --fssize, a tree bigger than the default 1 GiB gets a bigger image instead of
    failing halfway with a full disk (LXC would fail)."""
    origin = Container("origin", lxcpath)
    origin.create(backend="dir", source=sample)
    with open(lxcpath / "origin/rootfs/var/big.bin", "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 900 * MiB)  # allocated, so it counts as used
    clone = origin.clone("c1", backend="loop")
    assert clone.outcome.method == "copy"
    assert image_of(clone).stat().st_size > 1 << 30  # more than the default
    sized = origin.clone("c2", backend="loop", options=CreateOptions(fssize=2 << 30))
    assert image_of(sized).stat().st_size == 2 << 30
    for c in (sized, clone, origin):
        c.destroy()


@pytest.mark.root
def test_freeze_makes_a_read_only_lower(loop: LoopBackend, lxcpath: Path, sample: Path) -> None:
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    placement = Placement(lxcpath, "lower")
    (lxcpath / "lower").mkdir()
    frozen = loop.freeze(c.rootfs, placement)
    assert frozen == Rootfs("loop", str(lxcpath / "lower" / "rootdev"))
    image = Path(frozen.source)
    assert oct(image.stat().st_mode & 0o777) == "0o444"
    assert blkid(image, "UUID") != blkid(image_of(c), "UUID")
    with pytest.raises(BdevError, match="frozen"):
        with loop.accessed(frozen, readonly=False):
            pass
    with loop.accessed(frozen, readonly=True) as path, files_of(c) as live:
        assert tree_differences(live, path) == []
        with pytest.raises(OSError):
            (path / "etc/motd").write_text("no\n")
    loop.destroy(frozen)
    assert not loop.exists(frozen)
    shutil.rmtree(lxcpath / "lower")
    c.destroy()


# ---------------------------------------------------------------------------- resize, usage


@pytest.mark.root
@pytest.mark.parametrize("fstype", FSTYPES)
def test_resize_grows_image_and_filesystem_and_refuses_to_shrink(
    loop: LoopBackend, lxcpath: Path, sample: Path, fstype: str
) -> None:
    fstype_usable(fstype)
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample, options=CreateOptions(fstype=fstype, fssize=320 * MiB))
    before = c.usage()
    assert before.limit_bytes <= 320 * MiB
    result = bdev(lxcpath, "resize", "c1", "640M")
    assert result.exit_code == 0, result.output
    after = c.usage()
    assert image_of(c).stat().st_size == 640 * MiB
    assert after.limit_bytes > before.limit_bytes + 250 * MiB and after.limit_bytes <= 640 * MiB
    assert differences(c, sample) == []  # ext4: no lost+found appeared either

    line = one_error_line(bdev(lxcpath, "resize", "c1", "400M"))
    assert line == (
        f"bdev: container 'c1' (backend loop): cannot shrink {image_of(c)} from 640.0 MiB to 400.0 MiB: "
        "loop images only grow."
    )
    assert image_of(c).stat().st_size == 640 * MiB
    c.destroy()


@pytest.mark.root
def test_usage_reports_the_filesystem_and_the_image(loop: LoopBackend, lxcpath: Path, sample: Path) -> None:
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    usage = c.usage()
    assert 0 < usage.used_bytes < 100 * MiB and 900 * MiB < usage.limit_bytes <= 1 << 30
    assert f"the image {image_of(c)} is 1.0 GiB and occupies" in usage.note
    with files_of(c):  # mounted elsewhere: measured there, no second mount
        assert abs(c.usage().used_bytes - usage.used_bytes) < MiB
        assert len(attached_to(image_of(c))) == 1
    c.destroy()


# ---------------------------------------------------------------------------- in use, damaged, no device


@pytest.mark.root
def test_a_destroy_refused_while_mounted_is_abandoned_not_finished_later(
    loop: LoopBackend, lxcpath: Path, sample: Path
) -> None:
    """The backend's Busy comes before anything is removed, so the core drops the destroy:
    the next command must find the container whole, not finish the destroy from a journal."""
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    with loop.accessed(c.rootfs):
        with pytest.raises(Busy, match="unmount it before removing"):
            c.destroy()
    assert not (c.directory / JOURNAL).exists() and sorted(p.name for p in c.directory.iterdir()) == ["config", "rootdev", "rootfs"]
    assert Container("c1", lxcpath).snapshot() == "snap0"  # a later command on it: no destroy resumes
    assert image_of(c).is_file() and (lxcpath / "c1/config").is_file()
    with loop.accessed(c.rootfs, readonly=True) as files:
        assert (files / "etc/motd").read_text() == (sample / "etc/motd").read_text()
    c.destroy(with_snapshots=True)


@pytest.mark.root
def test_an_image_in_use_is_not_mounted_twice_resized_or_destroyed(
    loop: LoopBackend, lxcpath: Path, sample: Path
) -> None:
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    rootfs, image = c.rootfs, image_of(c)
    c.snapshot()
    with loop.accessed(rootfs) as mounted:
        with pytest.raises(Busy, match=f"already in use by /dev/loop[0-9]+ \\(mounted on {mounted}\\)"):
            with loop.accessed(rootfs, readonly=True):
                pass
        with pytest.raises(Busy, match="unmount it before resizing"):
            loop.resize(rootfs, 2 << 30)
        with pytest.raises(Busy, match="unmount it before removing"):
            loop.destroy(rootfs)
        with pytest.raises(Busy, match="is mounted read-write, so a copy would be inconsistent"):
            c.snapshot()
        with pytest.raises(BdevError, match="unmount it before replacing it"):
            c.snapshot_restore("snap0")
        assert sorted(p.name for p in c.directory.iterdir()) == ["config", "rootdev", "rootfs", "snaps"]
    assert attached_to(image) == []
    with loop.accessed(rootfs, readonly=True) as a, loop.accessed(rootfs, readonly=True) as b:
        assert (a / "etc/motd").read_text() == (b / "etc/motd").read_text()
    c.destroy(with_snapshots=True)


@pytest.mark.root
def test_a_damaged_image_gives_one_sentence_and_keeps_no_loop_device(
    loop: LoopBackend, lxcpath: Path, sample: Path
) -> None:
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    image = image_of(c)
    with open(image, "r+b") as fh:  # superblock fields garbled, magic kept: the kernel refuses it
        fh.seek(1024)
        fh.write(b"\xff" * 56)
    line = one_error_line(bdev(lxcpath, "clone", "c1", "c2", "-B", "dir"))  # a copy of the files mounts it
    expected = f"bdev: container 'c2' (backend loop): cannot mount the ext4 filesystem in {image}, it may be damaged ("
    assert line.startswith(expected), line
    assert attached_to(image) == [] and not (lxcpath / "c2").exists()
    line = one_error_line(bdev(lxcpath, "clone", "c1", "c2"))  # a copy of the image cannot get a new UUID
    assert line == (
        f"bdev: container 'c2' (backend loop): cannot give the copied ext4 filesystem {lxcpath}/c2/rootdev "
        "a new UUID (tune2fs: Couldn't find valid filesystem superblock)."
    )
    assert not (lxcpath / "c2").exists()

    with open(image, "r+b") as fh:  # the whole superblock gone
        fh.seek(1024)
        fh.write(b"\0" * 1024)
    with pytest.raises(BdevError) as caught:
        with loop.accessed(c.rootfs):
            pass
    assert str(caught.value) == (
        f"backend loop: the image {image} holds no filesystem bdev recognises "
        "(damaged superblock, or never formatted)."
    )
    assert attached_to(image) == []
    c.destroy()
    assert os.listdir(lxcpath) == []


def formatted_image(directory: Path) -> Path:
    """A 16 MiB ext4 image made with mkfs.ext4 itself (as LXC's or a user's would be)."""
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / "rootdev"
    with open(image, "wb") as fh:
        fh.truncate(16 * MiB)
    run([which("mkfs.ext4") or "mkfs.ext4", "-q", "-F", str(image)])
    return image


@pytest.mark.unprivileged
@pytest.mark.parametrize("control", ["missing", "regular-file"])
def test_no_loop_device_to_be_had_is_one_sentence(tmp_path: Path, control: str) -> None:
    """The allocator's failure paths, through a control device that cannot hand out devices:
    one that does not exist, and a regular file (its ioctl fails)."""
    path = tmp_path / "loop-control"
    if control == "regular-file":
        path.write_bytes(b"")
    backend = LoopBackend(loop_control=path)
    image = formatted_image(tmp_path)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    before = loop_devices()
    with pytest.raises(BackendUnavailable) as caught:
        backend.mount(Rootfs("loop", str(image)), mountpoint)
    if control == "missing":
        assert str(caught.value) == (
            f"backend loop: no loop device can be had: cannot open {path} (No such file or directory)."
        )
        assert f"{path} does not exist (the kernel has no loop driver)" in backend.unavailable_reasons()
    else:
        assert str(caught.value) == (
            f"backend loop: no free loop device can be had from {path} (Inappropriate ioctl for device)."
        )
    assert loop_devices() == before and os.listdir(mountpoint) == []


@pytest.mark.root
def test_concurrent_processes_never_share_a_loop_device(loop: LoopBackend, tmp_path: Path) -> None:
    """Processes asking loop-control at the same moment are offered the same free device;
    the loser of the race asks again instead of failing or binding the other's image."""
    images = []
    for i in range(6):
        image = formatted_image(tmp_path / f"i{i}")
        (image.parent / "mnt").mkdir()
        images.append(image)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bdev.records import Rootfs\n"
        "from bdev_loop import LoopBackend\n"
        "backend, image = LoopBackend(), Path(sys.argv[1])\n"
        "rootfs, mnt = Rootfs('loop', str(image)), image.parent / 'mnt'\n"
        "for n in range(5):\n"
        "    backend.mount(rootfs, mnt)\n"
        "    (mnt / f'written-{n}').write_text(image.name)\n"
        "    backend.umount(rootfs, mnt)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stderr=subprocess.PIPE, text=True) for i in images]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for image in images:
        with loop.accessed(Rootfs("loop", str(image)), readonly=True) as path:
            assert sorted(p.name for p in path.iterdir()) == ["lost+found", *(f"written-{n}" for n in range(5))]
        assert attached_to(image) == []


# ---------------------------------------------------------------------------- crashes


@pytest.mark.root
@pytest.mark.parametrize("fault, expect", [("restore:after-stage", "changed"), ("restore:after-swap", "snapshot")])
def test_a_restore_killed_midway_is_finished_or_rolled_back(
    loop: LoopBackend, lxcpath: Path, sample: Path, fault: str, expect: str
) -> None:
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample)
    c.snapshot()
    with files_of(c, readonly=False) as path:
        (path / "etc/motd").write_text("changed\n")
    bdev_program = Path(sys.executable).parent / "bdev"
    proc = subprocess.run(
        [str(bdev_program), "-P", str(lxcpath), "snapshot", "restore", "c1", "snap0"],
        env={**os.environ, "BDEV_FAULT": fault}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    assert [s.name for s in c.snapshot_list()] == ["snap0"]  # any command repairs first
    with files_of(c) as path:
        motd = (path / "etc/motd").read_text()
    assert motd == ("changed\n" if expect == "changed" else "hello from the sample rootfs\n")
    assert sorted(p.name for p in (lxcpath / "c1").iterdir()) == ["config", "rootdev", "rootfs", "snaps"]
    c.destroy(with_snapshots=True)


@pytest.mark.root
@pytest.mark.parametrize("fstype", ["ext4", "btrfs"])
def test_a_process_killed_with_the_image_mounted_leaves_nothing_behind(
    loop: LoopBackend, lxcpath: Path, sample: Path, fstype: str
) -> None:
    """The next command unmounts what a dead process left mounted; the autoclear loop device
    goes with the mount (btrfs lets go of it a moment later) and the image can be removed."""
    fstype_usable(fstype)
    c = Container("c1", lxcpath)
    c.create(backend="loop", source=sample, options=CreateOptions(fstype=fstype, fssize=320 * MiB))
    image = image_of(c)
    code = (
        "import os, sys\n"
        "from bdev.api import Container\n"
        "from bdev.engine.context import default_registry\n"
        "c = Container('c1', sys.argv[1])\n"
        "held = default_registry().backend('loop').accessed(c.rootfs)\n"
        "held.__enter__()\n"
        "print('mounted', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(lxcpath)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9 and proc.stdout == "mounted\n", proc.stderr
    assert len(attached_to(image)) == 1
    c.destroy()
    assert attached_to(image) == [] and os.listdir(lxcpath) == []


# ---------------------------------------------------------------------------- real LXC


def real_lxc(tool: str, *args: object) -> subprocess.CompletedProcess:
    """Real LXC's ``tool`` (from the system path, never the virtualenv's scripts)."""
    found = shutil.which(tool, path=SYSTEM_PATH)
    if found is None or Path(found).parent == Path(sys.executable).parent:
        pytest.skip(f"real LXC's {tool} is not installed")
    argv = [found, *map(str, args)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{tool} {args}: {proc.stdout} {proc.stderr}"
    return proc


@pytest.fixture
def lxc_locks(tmp_path: Path) -> Iterator[None]:
    from bdev.store.lxcpath import lock_dir

    yield
    shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)


def settle(tree: Path) -> None:
    """Wait past the second of the newest mtime (LXC's rsync gives entries modified in the
    very second it copies them its own time)."""
    newest = max(os.lstat(os.path.join(r, n)).st_mtime for r, ds, fs in os.walk(tree) for n in [".", *ds, *fs])
    while time.time() < int(newest) + 1.02:
        time.sleep(0.05)


@pytest.mark.root
@pytest.mark.lxc
@pytest.mark.usefixtures("lxc_locks")
def test_real_lxc_lists_snapshots_and_mounts_bdev_loop_containers(
    loop: LoopBackend, lxcpath: Path, sample: Path
) -> None:
    c = Container("b1", lxcpath)
    c.create(backend="loop", source=sample)
    assert c.snapshot(comment="by bdev\n") == "snap0"
    assert real_lxc("lxc-ls", "-1", "-P", lxcpath).stdout.split() == ["b1"]
    listing = real_lxc("lxc-snapshot", "-L", "-C", "-n", "b1", "-P", lxcpath).stdout.splitlines()
    assert listing[0].startswith(f"snap0 ({lxcpath}/b1/snaps) ") and listing[1] == "by bdev"

    # Real LXC snapshots a loop container by mounting bdev's image and copying the files (dir).
    with files_of(c) as path:
        settle(path)
    real_lxc("lxc-snapshot", "-n", "b1", "-P", lxcpath)
    snap1 = Container("b1", lxcpath).snapshot_list()[1]
    assert snap1.name == "snap1" and snap1.rootfs.backend == "dir"
    with files_of(c) as path:
        assert tree_differences(path, Path(snap1.rootfs.source), ignore_times_of=(".",)) == []
    # ... and bdev restores that dir snapshot into the loop container, in place.
    c.snapshot_restore("snap1")
    assert c.rootfs.backend == "loop" and image_of(c).stat().st_size == 1 << 30
    assert differences(c, sample) == []
    c.destroy(with_snapshots=True)
    assert real_lxc("lxc-ls", "-1", "-P", lxcpath).stdout.split() == []


@pytest.mark.root
@pytest.mark.lxc
@pytest.mark.usefixtures("lxc_locks")
def test_bdev_snapshots_clones_and_grows_a_loop_container_made_by_real_lxc(loop: LoopBackend, lxcpath: Path) -> None:
    conf = lxcpath.parent / "lxc-create.conf"
    conf.write_text("lxc.net.0.type = empty\n")
    real_lxc("lxc-create", "-t", "busybox", "-B", "loop", "--fssize", "500M", "-n", "r1", "-P", lxcpath, "-f", conf)
    r1 = Container("r1", lxcpath)
    image = image_of(r1)
    assert image.stat().st_size == 500 * MiB + 1  # LXC makes size + 1 bytes
    assert r1.snapshot() == "snap0"
    r2 = r1.clone("r2")
    assert r2.outcome.method == "snapshot" and image_of(r2).stat().st_size == image.stat().st_size
    assert blkid(image_of(r2), "UUID") != blkid(image, "UUID")
    with files_of(r2) as path:
        assert (path / "bin/busybox").is_file()
    r2.resize(1 << 30)
    assert r2.usage().limit_bytes > 900 * MiB
    assert real_lxc("lxc-ls", "-1", "-P", lxcpath).stdout.split() == ["r1", "r2"]
    assert real_lxc("lxc-snapshot", "-L", "-n", "r1", "-P", lxcpath).stdout.startswith(f"snap0 ({lxcpath}/r1/snaps) ")
    r2.destroy()
    r1.destroy(with_snapshots=True)
