"""The btrfs backend (plugin ``bdev-btrfs``) on real btrfs filesystems in loop files.

Beyond the contract suite (which runs it on the btrfs storage kind and skips ext4 and xfs
with its refusal): both implementations (the btrfsutil binding and the ``btrfs`` command,
forced with ``BDEV_BTRFS_IMPL=cli``), nested subvolumes through snapshot, clone, restore and
destroy (where LXC and LXD fail), the instant clone LXC makes on one filesystem, full
filesystems, read-only frozen copies, quotas, unprivileged users with and without
``user_subvol_rm_allowed``, real LXC 5 reading and copying what bdev made, and the loop-file
pool that gives any lxcpath btrfs snapshots.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.copying import copytree
from bdev.engine.context import default_registry
from bdev.errors import BackendUnavailable, BdevError, NotSupported
from bdev.records import CreateOptions, Placement, Rootfs
from bdev.store.layout import JOURNAL, PARTIAL
from bdev.store.lxcpath import lock_dir
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import loop_devices, loop_filesystem, loop_filesystem_problem, mount_table
from bdev.testing.trees import describe_tree, tree_differences

btrfsutil = pytest.importorskip("btrfsutil", reason="the tests inspect subvolumes with python3-btrfsutil")

SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
IMPL_ENV = "BDEV_BTRFS_IMPL"
HOSTNAME_FILES = ("etc/hostname:", "etc/hosts:")

pytestmark = [pytest.mark.usefixtures("no_leaks")]


# --------------------------------------------------------------------------- fixtures


def backend():
    return default_registry().backend("btrfs")


@pytest.fixture
def btrfs_mnt(tmp_path: Path) -> Iterator[Path]:
    """A fresh 1 GiB btrfs filesystem in a loop file."""
    problem = loop_filesystem_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs filesystem: {problem}")
    with loop_filesystem("btrfs", tmp_path, size="1G") as mnt:
        yield mnt


@pytest.fixture
def lxcpath_btrfs(btrfs_mnt: Path) -> Path:
    path = btrfs_mnt / "lxc"
    path.mkdir()
    return path


@pytest.fixture(params=["btrfsutil", "cli"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each implementation in turn: the binding, and the ``btrfs`` command."""
    monkeypatch.setenv(IMPL_ENV, request.param)
    return request.param


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


@pytest.fixture
def commands(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every external command bdev runs, as logged by ``bdev.command``."""
    caplog.set_level(logging.DEBUG, logger="bdev.command")
    return caplog


def ran_btrfs(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    pattern = re.compile(rf"run: (\S*/)?btrfs {what}\b")
    return any(pattern.match(r.getMessage()) for r in caplog.records)


# --------------------------------------------------------------------------- helpers


NESTED = {
    # relative path: read-only
    "var/lib/docker/btrfs/subvolumes/layer1": False,
    "var/lib/docker/btrfs/subvolumes/layer1/inner": False,
    ".snapshots/1/snapshot": True,
    "srv/frozen": True,
    "srv/frozen/child": False,
}


def make_nested(rootfs: Path) -> dict[str, bool]:
    """Nested subvolumes as docker and snapper make them, each with a file, some read-only
    (one read-only subvolume holding a writable one)."""
    for rel in sorted(NESTED, key=lambda r: r.count("/")):
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        btrfsutil.create_subvolume(str(path))
        (path / "data.txt").write_text(f"inside {rel}\n")
    for rel, ro in NESTED.items():
        if ro:
            btrfsutil.set_subvolume_read_only(str(rootfs / rel), True)
    return dict(NESTED)


def nested_state(rootfs: Path) -> dict[str, bool]:
    """{relative path: read-only} of the subvolumes nested in ``rootfs``."""
    return {rel: bool(info.flags & 1) for rel, info in btrfsutil.SubvolumeIterator(str(rootfs), info=True)}


def all_subvolumes(mnt: Path) -> list[str]:
    """Every subvolume of the filesystem mounted at ``mnt``, relative to it."""
    return sorted(rel for rel, _ in btrfsutil.SubvolumeIterator(str(mnt), top=5))


def same_files(a: Path, b: Path) -> list[str]:
    return [p for p in tree_differences(a, b) if not p.startswith(HOSTNAME_FILES)]


def leftovers(directory: Path) -> list[str]:
    """Staged rootfs, journals and partial markers under a container directory."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if name.startswith(".rootfs") or name in (JOURNAL, PARTIAL):
                found.append(os.path.relpath(os.path.join(root, name), directory))
        dirs[:] = [d for d in dirs if d != "rootfs"]
    return found


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text and text.endswith("."), text
    return text


def fstype_of(path: Path) -> str:
    """The filesystem type of ``path`` as ``findmnt`` names it (independent of bdev)."""
    return subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "--target", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- registration


@pytest.mark.unprivileged
def test_registered_with_its_capabilities_and_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend()
    caps = b.capabilities
    assert caps.native_snapshot and caps.copy_by_snapshot and caps.unprivileged and caps.can_backup
    assert not caps.snapshot_depends_on_origin and not caps.needs_mount
    assert (b.detect_priority, b.best_priority) == (10, 10)
    assert default_registry().best_candidates()[0].name == "btrfs"

    monkeypatch.setenv(IMPL_ENV, "btrfsutil")
    assert b.unavailable_reasons() == []
    assert re.fullmatch(r"btrfsutil \d+\.\d+(\.\d+)?", b.implementation()), b.implementation()
    monkeypatch.setenv(IMPL_ENV, "bogus")
    assert b.unavailable_reasons() == ["BDEV_BTRFS_IMPL='bogus' is neither 'cli' nor 'btrfsutil'"]
    monkeypatch.setenv(IMPL_ENV, "cli")
    if shutil.which("btrfs", path=SYSTEM_PATH) is None:
        assert b.unavailable_reasons() == ["btrfs is not installed (install btrfs-progs), and BDEV_BTRFS_IMPL=cli asks for it"]
        return
    assert b.unavailable_reasons() == []
    assert re.fullmatch(r"btrfs-progs CLI \d+\.\d+(\.\d+)?", b.implementation()), b.implementation()

    from click.testing import CliRunner

    from bdev.cli.main import cli

    result = CliRunner().invoke(cli, ["backends", "--format", "json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.stdout)["backends"] if r["name"] == "btrfs")
    assert row["usable"] is True and row["implementation"] == b.implementation()
    needs = {(r["kind"], r["name"]): r["optional"] for r in row["requires"]}
    assert needs == {("kernel-filesystem", "btrfs"): False, ("python-module", "btrfsutil"): True, ("tool", "btrfs"): True}


@pytest.mark.unprivileged
def test_falls_back_to_the_btrfs_command_without_the_binding() -> None:
    if shutil.which("btrfs", path=SYSTEM_PATH) is None:
        pytest.skip("btrfs-progs is not installed")
    code = (
        "import sys\nsys.modules['btrfsutil'] = None  # as if python3-btrfsutil were not installed\n"
        "from bdev.engine.context import default_registry\n"
        "b = default_registry().backend('btrfs')\n"
        "print(b.unavailable_reasons(), b.implementation(), type(b.ops).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != IMPL_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"\[\] btrfs-progs CLI \d[\d.]* CliOps\n", out), out


# --------------------------------------------------------------------------- refusals


@pytest.mark.unprivileged
def test_refuses_a_directory_that_is_not_on_btrfs_naming_its_filesystem(lxcpath: Path, sample: Path) -> None:
    fstype = fstype_of(lxcpath)
    if fstype == "btrfs":
        pytest.skip("the test disk itself is btrfs")
    refusal = backend().refusal_at(Placement(lxcpath, "c1"), CreateOptions())
    assert refusal.startswith(f"{lxcpath} is on {fstype}, not btrfs (") and "lxc.bdev.btrfs.pool" in refusal
    elsewhere = lxcpath / "deep" / "er"
    assert backend().refusal_at(Placement(lxcpath, "c1"), CreateOptions(extra={"dir": str(elsewhere / "x")})).startswith(
        f"{lxcpath} is on {fstype}, not btrfs ("
    )
    with pytest.raises(BackendUnavailable) as caught:
        Container("c1", lxcpath).create(backend="btrfs", source=sample)
    assert one_sentence(caught.value).startswith(f"container 'c1' (backend btrfs): {lxcpath} is on {fstype}, not btrfs (")
    assert os.listdir(lxcpath) == [], "a refused create left something behind"
    # In a list, the next backend is taken (LXC's -B btrfs,dir).
    c = Container("c1", lxcpath)
    c.create(backend=["btrfs", "dir"], source=sample)
    assert c.rootfs.backend == "dir"
    c.destroy()


@pytest.mark.root
def test_refuses_xfs_and_a_snapshot_across_filesystems(tmp_path: Path, sample: Path) -> None:
    for kind in ("xfs", "btrfs"):
        if loop_filesystem_problem(kind):
            pytest.skip(f"no {kind}: {loop_filesystem_problem(kind)}")
    (tmp_path / "x").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with contextlib.ExitStack() as stack:
        xfs = stack.enter_context(loop_filesystem("xfs", tmp_path / "x", size="512M"))
        one = stack.enter_context(loop_filesystem("btrfs", tmp_path / "a", size="512M"))
        two = stack.enter_context(loop_filesystem("btrfs", tmp_path / "b", size="512M"))
        assert backend().refusal_at(Placement(xfs, "c1"), CreateOptions()).startswith(f"{xfs} is on xfs, not btrfs (")

        origin = Container("origin", one)
        origin.create(backend="btrfs", source=sample)
        # Another btrfs filesystem: no btrfs snapshot; a plain clone copies, a btrfs snapshot
        # is refused (without -B, the core may layer another backend over it instead).
        with pytest.raises(NotSupported) as caught:
            origin.clone("snap", lxcpath=two, snapshot=True, backend="btrfs")
        assert "different btrfs filesystems" in one_sentence(caught.value)
        assert not (two / "snap").exists()
        far = origin.clone("far", lxcpath=two)
        assert far.outcome.method == "copy" and far.rootfs.backend == "btrfs"
        assert btrfsutil.is_subvolume(far.rootfs.source)
        assert same_files(sample, Path(far.rootfs.source)) == []
        # A snapshot allowed to become a copy does (lxc-snapshot's MAYBE_SNAPSHOT).
        maybe = origin.clone("maybe", lxcpath=two, snapshot=True, maybe_snapshot=True, backend="btrfs")
        assert maybe.outcome.method == "copy" and "different btrfs filesystems" in maybe.outcome.note
        for c in (maybe, far, origin):
            c.destroy()
        assert all_subvolumes(one) == [] and all_subvolumes(two) == []


@pytest.mark.root
def test_detects_a_bare_subvolume_path_of_an_lxc_1_0_config(lxcpath_btrfs: Path) -> None:
    registry = default_registry()
    sub, plain = lxcpath_btrfs / "sub", lxcpath_btrfs / "plain"
    btrfsutil.create_subvolume(str(sub))
    plain.mkdir()
    try:
        assert registry.parse_rootfs(str(sub)) == Rootfs("btrfs", str(sub))
        assert registry.parse_rootfs(str(plain)) == Rootfs("dir", str(plain))
        assert registry.parse_rootfs(f"btrfs:{sub}") == Rootfs("btrfs", str(sub))
        # Both subvolume roots are inode 256; identity still tells them apart.
        other = lxcpath_btrfs / "other"
        btrfsutil.create_subvolume(str(other))
        assert os.stat(sub).st_ino == os.stat(other).st_ino == 256
        ids = {backend().identity(Rootfs("btrfs", str(p))) for p in (sub, other)}
        assert len(ids) == 2
        backend().destroy(Rootfs("btrfs", str(other)))
    finally:
        backend().destroy(Rootfs("btrfs", str(sub)))


# --------------------------------------------------------------------------- lifecycle, both ways


@pytest.mark.root
def test_lifecycle_on_each_implementation(
    impl: str, lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path, commands: pytest.LogCaptureFixture
) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    assert c.rootfs == Rootfs("btrfs", str(lxcpath_btrfs / "c1" / "rootfs"))
    assert btrfsutil.is_subvolume(str(rootfs)) and stat.S_IMODE(os.stat(rootfs).st_mode) == 0o755
    assert same_files(sample, rootfs) == []

    assert c.snapshot(comment="first\n") == "snap0"
    snap_rootfs = lxcpath_btrfs / "c1/snaps/snap0/rootfs"
    assert btrfsutil.is_subvolume(str(snap_rootfs)) and not btrfsutil.get_subvolume_read_only(str(snap_rootfs))

    # A plain clone on the same filesystem is a snapshot (LXC does the same for btrfs).
    plain = c.clone("plain")
    assert plain.outcome.method == "snapshot" and "independent copy" in plain.outcome.note
    assert (Path(plain.rootfs.source) / "etc/hostname").read_text() == "plain\n"
    assert (rootfs / "etc/hostname").read_text() == "c1\n"

    (rootfs / "etc/motd").write_text("changed\n")
    (rootfs / "bin/tool").unlink()
    before = backend().identity(c.rootfs)
    c.snapshot_restore("snap0")
    assert backend().identity(c.rootfs) != before
    assert same_files(sample, rootfs) == []
    assert leftovers(c.directory) == []

    assert ran_btrfs(commands, "subvolume snapshot") == (impl == "cli")
    assert ran_btrfs(commands, "subvolume delete") == (impl == "cli")
    plain.destroy()
    c.destroy(with_snapshots=True)
    assert os.listdir(lxcpath_btrfs) == []
    assert all_subvolumes(btrfs_mnt) == []


@pytest.mark.root
def test_dir_option_places_the_subvolume(lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path) -> None:
    where = btrfs_mnt / "elsewhere" / "c1-root"
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample, options=CreateOptions(extra={"dir": str(where)}))
    assert c.rootfs == Rootfs("btrfs", str(where)) and btrfsutil.is_subvolume(str(where))
    assert c.snapshot() == "snap0"
    (where / "etc/motd").write_text("changed\n")
    c.snapshot_restore("snap0")
    assert (where / "etc/motd").read_text() == "hello from the sample rootfs\n"
    assert os.listdir(btrfs_mnt / "elsewhere") == ["c1-root"], "the staged rootfs was left beside it"
    c.destroy(with_snapshots=True)
    assert all_subvolumes(btrfs_mnt) == []


# --------------------------------------------------------------------------- nested subvolumes


@pytest.mark.root
def test_nested_subvolumes_are_snapshotted_with_their_read_only_flags_and_destroyed(
    impl: str, lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path
) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    expected = make_nested(rootfs)
    assert nested_state(rootfs) == expected

    assert c.snapshot() == "snap0"
    snap = lxcpath_btrfs / "c1/snaps/snap0/rootfs"
    assert nested_state(snap) == expected
    assert tree_differences(rootfs, snap) == [], "the snapshot differs from its origin"

    clone = c.clone("clone", snapshot=True)
    clone_rootfs = Path(clone.rootfs.source)
    assert nested_state(clone_rootfs) == expected
    assert same_files(rootfs, clone_rootfs) == []
    # Independent: the clone's writable nested subvolume changes alone.
    (clone_rootfs / "var/lib/docker/btrfs/subvolumes/layer1/inner/data.txt").write_text("clone\n")
    assert (rootfs / "var/lib/docker/btrfs/subvolumes/layer1/inner/data.txt").read_text().startswith("inside")
    with pytest.raises(OSError) as caught:
        (clone_rootfs / ".snapshots/1/snapshot/new").write_text("x")
    assert caught.value.errno == errno.EROFS

    clone.destroy()
    c.destroy(with_snapshots=True)
    assert all_subvolumes(btrfs_mnt) == [], "nested subvolumes were left behind"
    assert os.listdir(lxcpath_btrfs) == []


@pytest.mark.root
def test_restore_in_place_with_nested_subvolumes(impl: str, lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path, tmp_path: Path) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    make_nested(rootfs)
    reference = tmp_path / "reference"
    reference.mkdir()
    copytree(rootfs, reference)
    assert c.snapshot() == "snap0"

    # Change everything: files, a writable nested subvolume, a new one, a deleted one.
    (rootfs / "etc/motd").write_text("upgraded\n")
    (rootfs / "var/lib/docker/btrfs/subvolumes/layer1/data.txt").write_text("changed\n")
    btrfsutil.create_subvolume(str(rootfs / "var/lib/docker/btrfs/subvolumes/layer2"))
    btrfsutil.set_subvolume_read_only(str(rootfs / ".snapshots/1/snapshot"), False)
    btrfsutil.delete_subvolume(str(rootfs / ".snapshots/1/snapshot"))

    c.snapshot_restore("snap0")
    assert nested_state(rootfs) == NESTED
    assert tree_differences(reference, rootfs, content=True) == []
    assert leftovers(c.directory) == []
    c.destroy(with_snapshots=True)
    assert all_subvolumes(btrfs_mnt) == []


@pytest.mark.root
def test_full_copies_out_of_and_into_btrfs_turn_nested_subvolumes_into_directories(
    lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path
) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    make_nested(rootfs)
    out = c.clone("out", backend="dir")
    assert out.outcome.method == "copy"
    out_path = Path(out.rootfs.source)
    assert (out_path / "srv/frozen/child/data.txt").read_text() == "inside srv/frozen/child\n"
    assert same_files(rootfs, out_path) == []
    back = out.clone("back", backend="btrfs")
    back_path = Path(back.rootfs.source)
    assert back.outcome.method == "copy" and btrfsutil.is_subvolume(str(back_path))
    assert nested_state(back_path) == {}, "a copy into btrfs made nested subvolumes"
    assert same_files(rootfs, back_path) == []
    for x in (back, out, c):
        x.destroy()
    assert all_subvolumes(btrfs_mnt) == []


# --------------------------------------------------------------------------- lxc-clone: instant


def fill_279mb(rootfs: Path) -> None:
    """20,000 small files (3.5 kB) in 200 directories and 20 files of 10 MiB: 279 MB."""
    small = b"s" * 3500
    for d in range(200):
        directory = rootfs / "usr/share/many" / f"d{d:03}"
        directory.mkdir(parents=True)
        for f in range(100):
            (directory / f"f{f:03}").write_bytes(small)
    block = os.urandom(1 << 20)
    big = rootfs / "var/big"
    big.mkdir(parents=True)
    for i in range(20):
        with open(big / f"blob{i:02}", "wb") as fh:
            for _ in range(10):
                fh.write(block)


@pytest.mark.root
def test_plain_clone_of_279mb_on_one_filesystem_is_an_instant_snapshot(tmp_path: Path, sample: Path, capsys) -> None:
    problem = loop_filesystem_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs filesystem: {problem}")
    with loop_filesystem("btrfs", tmp_path, size="2G") as mnt:
        lxcpath = mnt / "lxc"
        base = Container("base", lxcpath)
        base.create(backend="btrfs", source=sample)
        rootfs = Path(base.rootfs.source)
        fill_279mb(rootfs)
        os.sync()
        size = sum(e.stat().st_size for e in os.scandir(rootfs / "var/big")) + 20_000 * 3500
        timings = {}
        start = time.perf_counter()
        web1 = base.clone("web1")  # lxc-clone base web1: no -s
        timings["lxc-clone (no -s) = snapshot"] = time.perf_counter() - start
        assert web1.outcome.method == "snapshot"
        start = time.perf_counter()
        base.snapshot()
        timings["lxc-snapshot"] = time.perf_counter() - start
        start = time.perf_counter()
        base.snapshot_restore("snap0")
        timings["restore in place"] = time.perf_counter() - start
        start = time.perf_counter()
        copy = base.clone("copy", backend="dir")
        timings["-B dir (reflinked copy, for comparison)"] = time.perf_counter() - start
        assert (Path(web1.rootfs.source) / "var/big/blob19").stat().st_size == 10 << 20
        start = time.perf_counter()
        web1.destroy()
        timings["destroy a clone"] = time.perf_counter() - start
        copy.destroy()
        base.destroy(with_snapshots=True)
    with capsys.disabled():
        print(f"\nbtrfs timings for a {size / 1e6:.0f} MB container (20,000 files + 20 x 10 MiB):")
        for what, seconds in timings.items():
            print(f"  {what}: {seconds:.3f} s")


# --------------------------------------------------------------------------- full filesystem


def fill_data(mnt: Path, leave: int = 0) -> None:
    """Write files until btrfs has no data space left (metadata space remains), then free
    ``leave`` bytes again."""
    block = b"\1" * (1 << 20)
    with open(mnt / "reserve", "wb") as fh:
        for _ in range(leave >> 20):
            fh.write(block)
    for name, chunk in (("filler", block), ("filler2", block[:4096])):
        with contextlib.suppress(OSError), open(mnt / name, "wb") as fh:
            while True:
                fh.write(chunk)
                fh.flush()
    (mnt / "reserve").unlink()
    os.sync()


def fill_metadata(mnt: Path) -> None:
    """Make small files until no inode or directory entry fits any more."""
    (mnt / "meta").mkdir(exist_ok=True)
    number = 0
    with contextlib.suppress(OSError):
        while True:
            (mnt / "meta" / str(number)).write_text("m" * 100)
            number += 1


@pytest.mark.root
def test_a_full_filesystem_fails_in_one_sentence_and_leaves_nothing(tmp_path: Path, sample: Path, capsys) -> None:
    problem = loop_filesystem_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs filesystem: {problem}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = Container("outside", elsewhere)  # on the test disk: a copy must write its data
    outside.create(backend="dir", source=sample)
    (Path(outside.rootfs.source) / "var/big").write_bytes(os.urandom(48 << 20))
    outside_before = describe_tree(Path(outside.rootfs.source))
    outcomes: dict[str, str] = {}
    (tmp_path / "small").mkdir()
    with loop_filesystem("btrfs", tmp_path / "small", size="256M") as mnt:
        lxcpath = mnt / "lxc"
        c = Container("c1", lxcpath)
        c.create(backend="btrfs", source=sample)
        rootfs = Path(c.rootfs.source)
        before = describe_tree(rootfs)
        subvolumes = all_subvolumes(mnt)
        fill_data(mnt, leave=16 << 20)

        # Snapshots need no room for the data: with 16 MiB free they work, a copy does not.
        outcomes["snapshot with 16 MiB free"] = c.snapshot()
        clone = c.clone("d")
        outcomes["lxc-clone with 16 MiB free"] = clone.outcome.describe()
        clone.destroy()
        c.snapshot_destroy("snap0")

        # A full copy runs out of space in the middle: one sentence, nothing left.
        with pytest.raises(BdevError) as caught:
            outside.clone("copied", lxcpath=lxcpath, backend="btrfs")
        outcomes["copy of 48 MiB with 16 MiB free"] = one_sentence(caught.value)
        assert "full" in str(caught.value)
        assert os.listdir(lxcpath) == ["c1"] and all_subvolumes(mnt) == subvolumes
        assert describe_tree(Path(outside.rootfs.source)) == outside_before

        # With data and metadata full, they fail in one sentence and leave nothing.
        fill_data(mnt)
        fill_metadata(mnt)
        for what, action in (("snapshot", lambda: c.snapshot()), ("clone", lambda: c.clone("d"))):
            with pytest.raises(BdevError) as caught:
                action()
            outcomes[f"{what} with everything full"] = one_sentence(caught.value)
            assert "full" in str(caught.value)
        assert all_subvolumes(mnt) == subvolumes
        assert describe_tree(rootfs) == before, "the source changed"
        shutil.rmtree(mnt / "meta")
        for name in ("filler", "filler2"):
            (mnt / name).unlink()
        # The core could not even write its journal; what it made (a partial marker) is
        # removed by the next command, as after a crash.
        from bdev.api import list_containers

        assert [x.name for x in list_containers(lxcpath)] == ["c1"]
        assert c.snapshot_list() == []
        assert sorted(os.listdir(lxcpath)) == ["c1"], list(os.walk(lxcpath / "d"))
        # (The core leaves an empty snaps/ when it cannot write its journal; LXC ignores it.)
        assert sorted(set(os.listdir(lxcpath / "c1")) - {"snaps"}) == ["config", "rootfs"]
        assert not (lxcpath / "c1/snaps").exists() or os.listdir(lxcpath / "c1/snaps") == []
        c.destroy()
        assert all_subvolumes(mnt) == []
    outside.destroy()
    with capsys.disabled():
        print("\nbtrfs on a full 256 MiB filesystem:\n" + "\n".join(f"  {k}: {v}" for k, v in outcomes.items()))


# --------------------------------------------------------------------------- freeze, usage, swap


@pytest.mark.root
def test_freeze_makes_a_read_only_point_in_time_copy(impl: str, lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path, tmp_path: Path) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    make_nested(rootfs)
    placement = Placement(lxcpath_btrfs / "c1", "frozen")
    frozen = backend().freeze(c.rootfs, placement)
    assert frozen == Rootfs("btrfs", str(placement.rootfs_dir))
    frozen_path = Path(frozen.source)
    assert btrfsutil.get_subvolume_read_only(str(frozen_path))
    assert nested_state(frozen_path) == {rel: True for rel in NESTED}
    (rootfs / "etc/motd").write_text("later\n")
    assert (frozen_path / "etc/motd").read_text() == "hello from the sample rootfs\n"
    with pytest.raises(OSError) as caught:
        (frozen_path / "etc/new").write_text("x")
    assert caught.value.errno == errno.EROFS
    # Not on the same btrfs filesystem: cannot freeze there.
    assert backend().freeze(c.rootfs, Placement(tmp_path, "frozen")) is None
    backend().destroy(frozen)
    assert not frozen_path.exists()
    c.destroy()
    assert all_subvolumes(btrfs_mnt) == []


@pytest.mark.root
def test_usage_comes_from_quotas_or_says_how_to_enable_them(impl: str, lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    usage = c.usage()
    assert usage.used_bytes is None
    assert usage.note == (
        f"btrfs quotas are off on {btrfs_mnt}; enable them with 'btrfs quota enable {btrfs_mnt}' (as root) "
        "to measure each container"
    )
    subprocess.run(["btrfs", "quota", "enable", str(btrfs_mnt)], check=True)
    subprocess.run(["btrfs", "quota", "rescan", "-w", str(btrfs_mnt)], check=True, capture_output=True)
    rootfs = Path(c.rootfs.source)
    make_nested(rootfs)
    (rootfs / "srv/frozen/child/big").write_bytes(os.urandom(3 << 20))
    usage = c.usage()
    assert usage.used_bytes is not None and 3 << 20 < usage.used_bytes < 8 << 20, usage
    assert usage.limit_bytes is None
    assert "exclusive to it" in usage.note and f"over {len(NESTED) + 1} subvolumes" in usage.note
    snap = c.clone("s", snapshot=True)
    assert snap.usage().used_bytes is not None
    snap.destroy()
    c.destroy()


@pytest.mark.root
def test_swap_exchanges_two_subvolumes_atomically(lxcpath_btrfs: Path) -> None:
    b = backend()
    live = Rootfs("btrfs", str(lxcpath_btrfs / "rootfs"))
    staged = Rootfs("btrfs", str(lxcpath_btrfs / ".rootfs.bdev-restore"))
    for rootfs, text in ((live, "live"), (staged, "staged")):
        btrfsutil.create_subvolume(rootfs.source)
        Path(rootfs.source, "which").write_text(text)
    btrfsutil.create_subvolume(str(Path(staged.source, "nested")))
    ids = b.identity(live), b.identity(staged)
    b.swap(live, staged)
    assert Path(live.source, "which").read_text() == "staged"
    assert Path(live.source, "nested").stat().st_ino == 256
    assert (b.identity(live), b.identity(staged)) == (ids[1], ids[0])
    b.destroy(staged)
    b.destroy(live)
    b.destroy(live)  # idempotent
    assert not b.exists(live) and os.listdir(lxcpath_btrfs) == []


@pytest.mark.root
def test_staged_restore_rootfs_goes_beside_the_live_one(lxcpath_btrfs: Path) -> None:
    live = lxcpath_btrfs / "custom" / "place"
    staged = Placement(lxcpath_btrfs, "c1").staged("restore", near=str(live))
    assert backend().default_source(staged, CreateOptions()) == str(lxcpath_btrfs / "custom" / ".place.bdev-restore")
    plain = Placement(lxcpath_btrfs, "c1").staged("restore")
    assert backend().default_source(plain, CreateOptions()) == str(lxcpath_btrfs / "c1" / ".rootfs.bdev-restore")


@pytest.mark.root
def test_destroy_refuses_while_something_is_mounted_inside(lxcpath_btrfs: Path, sample: Path, tmp_path: Path) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    target = Path(c.rootfs.source) / "tmp"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("keep me\n")
    subprocess.run(["mount", "--bind", str(outside), str(target)], check=True)
    try:
        with pytest.raises(BdevError) as caught:
            backend().destroy(c.rootfs)
        assert one_sentence(caught.value) == (
            f"backend btrfs: {target} is mounted inside {c.rootfs.source}; unmount it before destroying."
        )
        assert (outside / "keep").read_text() == "keep me\n"
        assert btrfsutil.is_subvolume(c.rootfs.source)
    finally:
        subprocess.run(["umount", str(target)], check=True)
    c.destroy()


@pytest.mark.root
def test_a_restore_killed_after_the_swap_is_completed_by_the_next_command(lxcpath_btrfs: Path, sample: Path) -> None:
    c = Container("c1", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample)
    rootfs = Path(c.rootfs.source)
    make_nested(rootfs)
    c.snapshot()
    (rootfs / "etc/motd").write_text("after the snapshot\n")
    script = (
        "from bdev.api import Container\n"
        f"Container('c1', {str(lxcpath_btrfs)!r}).snapshot_restore('snap0')\n"
    )
    env = dict(os.environ, BDEV_FAULT="restore:after-swap")
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert (c.directory / ".rootfs.bdev-restore").exists()
    assert [s.name for s in c.snapshot_list()] == ["snap0"]  # any command repairs first
    assert leftovers(c.directory) == []
    assert (rootfs / "etc/motd").read_text() == "hello from the sample rootfs\n"
    assert nested_state(rootfs) == NESTED
    c.destroy(with_snapshots=True)
    assert all_subvolumes(lxcpath_btrfs.parent) == []


# --------------------------------------------------------------------------- unprivileged users


@contextlib.contextmanager
def world_reachable_dir() -> Iterator[Path]:
    """A scratch directory uid 65534 can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="bdev-btrfs-uid-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(home: Path, code: str, **extra: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` as uid/gid 65534 with its own HOME, runtime dir and lxc.conf."""
    env = {
        **extra,
        "PATH": os.environ.get("PATH", SYSTEM_PATH),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "BDEV_LXC_CONF": str(home / "lxc.conf"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C",
    }
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=str(home))


UNPRIVILEGED_LIFECYCLE = """
import json, os, sys
from pathlib import Path
import btrfsutil
from bdev.api import Container
P, SRC = os.environ["P"], os.environ["SRC"]
c = Container("c1", P)
c.create(backend="btrfs", source=SRC)
rootfs = Path(c.rootfs.source)
(rootfs / "var/lib").mkdir()
btrfsutil.create_subvolume(str(rootfs / "var/lib/inner"))
(rootfs / "var/lib/inner/data").write_text("inner\\n")
btrfsutil.create_subvolume(str(rootfs / "var/lib/ro"))
btrfsutil.set_subvolume_read_only(str(rootfs / "var/lib/ro"), True)
snap = c.snapshot()
clone = c.clone("d")
(rootfs / "etc/motd").write_text("changed\\n")
c.snapshot_restore(snap)
state = {
    "snapshot": snap,
    "clone_method": clone.outcome.method,
    "clone_nested": sorted(r for r, _ in btrfsutil.SubvolumeIterator(clone.rootfs.source)),
    "ro_kept": btrfsutil.get_subvolume_read_only(str(Path(clone.rootfs.source) / "var/lib/ro")),
    "motd": (rootfs / "etc/motd").read_text(),
}
clone.destroy()
print(json.dumps(state))
"""


@pytest.mark.root
@pytest.mark.parametrize("rm_allowed", [False, True], ids=["plain-mount", "user_subvol_rm_allowed"])
def test_unprivileged_user_with_and_without_user_subvol_rm_allowed(rm_allowed: bool) -> None:
    problem = loop_filesystem_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs filesystem: {problem}")
    if shutil.which("setpriv", path=SYSTEM_PATH) is None:
        pytest.skip("setpriv (util-linux) is not installed")
    with world_reachable_dir() as scratch:
        home = scratch / "home"
        (home / "run").mkdir(parents=True)
        (home / "default.conf").write_text("lxc.net.0.type = empty\n")
        src = make_sample_rootfs(scratch / "src", privileged=False)
        for path in [home, *home.rglob("*"), src, *src.rglob("*")]:
            os.lchown(path, 65534, 65534)
        options = "user_subvol_rm_allowed" if rm_allowed else ""
        with loop_filesystem("btrfs", scratch, size="512M", mount_options=options) as mnt:
            lxcpath = mnt / "lxc"
            lxcpath.mkdir()
            os.chown(lxcpath, 65534, 65534)
            (home / "lxc.conf").write_text(f"lxc.lxcpath = {lxcpath}\nlxc.default_config = {home / 'default.conf'}\n")
            try:
                run = as_nobody(home, UNPRIVILEGED_LIFECYCLE, P=str(lxcpath), SRC=str(src))
                assert run.returncode == 0, run.stderr
                state = json.loads(run.stdout.strip().splitlines()[-1])
                assert state == {
                    "snapshot": "snap0",
                    "clone_method": "snapshot",
                    "clone_nested": ["var/lib/inner", "var/lib/ro"],
                    "ro_kept": True,
                    "motd": "hello from the sample rootfs\n",
                }
                # The user's own files: destroy works either way (without the option by
                # emptying each subvolume and removing it with rmdir).
                assert not (lxcpath / "d").exists()

                # Root's subvolume inside the user's container: btrfs lets users snapshot only
                # their own subvolumes, and the refusal says so.
                foreign = lxcpath / "c1/rootfs/var/lib/roots"
                btrfsutil.create_subvolume(str(foreign))
                refused = as_nobody(
                    home,
                    "from bdev.api import Container\nfrom bdev.errors import BdevError\n"
                    f"try:\n    Container('c1', {str(lxcpath)!r}).snapshot()\n"
                    "except BdevError as exc:\n    print(exc)\n    raise SystemExit(3)\n",
                )
                assert refused.returncode == 3, refused.stderr + refused.stdout
                assert refused.stdout.strip().endswith(
                    f"snapshotting {foreign} was refused: btrfs lets other users snapshot only subvolumes they own; "
                    "root can snapshot it."
                ), refused.stdout
                assert sorted(os.listdir(lxcpath / "c1/snaps")) == ["snap0"]
                btrfsutil.delete_subvolume(str(foreign))

                # A file the user may not delete (root's, in a root-owned directory).
                locked = lxcpath / "c1/rootfs/root-only"
                locked.mkdir()
                (locked / "secret").write_text("root's\n")
                os.chmod(locked, 0o755)
                destroy = as_nobody(
                    home,
                    "from bdev.api import Container\nfrom bdev.errors import BdevError\n"
                    f"try:\n    Container('c1', {str(lxcpath)!r}).destroy(with_snapshots=True)\n"
                    "except BdevError as exc:\n    print(exc)\n    raise SystemExit(3)\n",
                )
                if rm_allowed:
                    assert destroy.returncode == 0, destroy.stderr + destroy.stdout
                    assert os.listdir(lxcpath) == []
                else:
                    assert destroy.returncode == 3, destroy.stderr + destroy.stdout
                    message = destroy.stdout.strip()
                    print(message)
                    assert "\n" not in message
                    # (The core's destroy does not add the container's name to the error yet.)
                    assert message.startswith(("container 'c1' (backend btrfs): ", "backend btrfs: ")), message
                    assert f"cannot delete the subvolume {lxcpath}/c1/rootfs as uid 65534: " in message
                    assert (
                        "deleting a btrfs subvolume needs root or the user_subvol_rm_allowed mount option, "
                        f"which {mnt} lacks" in message
                    ), message
                    assert f"mount -o remount,user_subvol_rm_allowed {mnt}" in message
            finally:
                with contextlib.suppress(BdevError):
                    if (lxcpath / "c1").exists():
                        Container("c1", lxcpath).destroy(with_snapshots=True)
            assert all_subvolumes(mnt) == []
        shutil.rmtree(lock_dir(scratch), ignore_errors=True)
        # Outside pytest's temp tree, so no_leaks does not look here: check it ourselves.
        assert [m for m in mount_table() if m.startswith(str(scratch))] == []
        assert [d for d in loop_devices() if str(scratch) in d] == []


# --------------------------------------------------------------------------- real LXC


def real_lxc(tool: str, *args: object) -> subprocess.CompletedProcess:
    found = shutil.which(tool, path=SYSTEM_PATH)
    if found is None:
        pytest.skip(f"real LXC's {tool} is not installed on the system path")
    assert Path(found).parent != Path(sys.executable).parent, f"{found} is bdev's own script"
    return subprocess.run([found, *map(str, args)], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.fixture
def drop_lxc_locks(tmp_path: Path) -> Iterator[None]:
    yield
    shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)


@pytest.mark.root
@pytest.mark.lxc
@pytest.mark.usefixtures("drop_lxc_locks")
def test_real_lxc_lists_snapshots_and_copies_our_btrfs_containers(lxcpath_btrfs: Path, btrfs_mnt: Path, sample: Path) -> None:
    c = Container("c", lxcpath_btrfs)
    c.create(backend="btrfs", source=sample, config=[("lxc.net.0.type", "empty")])
    make_nested(Path(c.rootfs.source))
    c.snapshot(comment="by bdev\n")

    listed = real_lxc("lxc-ls", "-1", "-P", lxcpath_btrfs)
    assert listed.returncode == 0 and listed.stdout.split() == ["c"], listed
    snaps = real_lxc("lxc-snapshot", "-L", "-C", "-n", "c", "-P", lxcpath_btrfs)
    assert snaps.returncode == 0, snaps
    lines = snaps.stdout.splitlines()
    assert lines[0].startswith(f"snap0 ({lxcpath_btrfs}/c/snaps) ") and lines[1] == "by bdev", lines

    copied = real_lxc("lxc-copy", "-s", "-n", "c", "-N", "d", "-P", lxcpath_btrfs)
    assert copied.returncode == 0, copied
    d = Container("d", lxcpath_btrfs)
    assert d.rootfs == Rootfs("btrfs", str(lxcpath_btrfs / "d/rootfs"))
    assert btrfsutil.is_subvolume(d.rootfs.source)
    assert (lxcpath_btrfs / "d/rootfs/etc/motd").read_text() == "hello from the sample rootfs\n"
    # LXC's snapshot is not recursive: its copy holds empty placeholders where ours has
    # subvolumes; bdev destroys that copy all the same.
    assert nested_state(Path(d.rootfs.source)) == {}

    taken = real_lxc("lxc-snapshot", "-n", "c", "-P", lxcpath_btrfs)
    assert taken.returncode == 0, taken
    assert [s.name for s in c.snapshot_list()] == ["snap0", "snap1"]
    assert c.snapshot_list()[1].rootfs == Rootfs("btrfs", str(lxcpath_btrfs / "c/snaps/snap1/rootfs"))
    assert sorted(real_lxc("lxc-ls", "-1", "-P", lxcpath_btrfs).stdout.split()) == ["c", "d"]

    d.destroy()
    c.destroy(with_snapshots=True)
    assert os.listdir(lxcpath_btrfs) == [] and all_subvolumes(btrfs_mnt) == []


# --------------------------------------------------------------------------- the loop-file pool


@pytest.fixture
def pool_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An lxc.conf naming a loop-file btrfs pool under ``tmp_path`` (1 GiB image)."""
    pool = tmp_path / "state" / "btrfs-pool"
    conf = tmp_path / "lxc.conf"
    default = tmp_path / "default.conf"
    default.write_text("lxc.net.0.type = empty\n")
    conf.write_text(
        f"lxc.lxcpath = {tmp_path / 'lxc'}\nlxc.default_config = {default}\n"
        f"lxc.bdev.btrfs.pool = {pool}\nlxc.bdev.btrfs.pool.size = 1G\n"
    )
    monkeypatch.setenv("BDEV_LXC_CONF", str(conf))
    return pool


@pytest.mark.root
@pytest.mark.usefixtures("drop_lxc_locks")
def test_best_uses_a_loop_file_pool_where_the_lxcpath_cannot_snapshot(
    pool_conf: Path, lxcpath: Path, sample: Path, impl: str
) -> None:
    problem = loop_filesystem_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs filesystem: {problem}")
    if fstype_of(lxcpath) == "btrfs":
        pytest.skip("the test disk itself is btrfs")
    from bdev_btrfs._pool import LoopPool

    pool = LoopPool(pool_conf)
    try:
        c = Container("c1", lxcpath)
        c.create(backend="best", source=sample)
        in_pool = pool_conf / str(lxcpath / "c1/rootfs").lstrip("/")
        assert c.rootfs == Rootfs("btrfs", str(in_pool))
        assert c.get_config_item("lxc.rootfs.path") == [f"btrfs:{in_pool}"]
        assert pool.is_mounted() and btrfsutil.is_subvolume(str(in_pool))
        assert pool.image.stat().st_size == 1 << 30 and pool.image.stat().st_blocks * 512 < 64 << 20

        assert c.snapshot() == "snap0"
        web = c.clone("web")
        assert web.outcome.method == "snapshot"
        listed = real_lxc("lxc-ls", "-1", "-P", lxcpath)
        assert sorted(listed.stdout.split()) == ["c1", "web"], listed
        snaps = real_lxc("lxc-snapshot", "-L", "-n", "c1", "-P", lxcpath)
        assert snaps.stdout.startswith(f"snap0 ({lxcpath}/c1/snaps) "), snaps

        # Unmounted (a reboot): the next command mounts it again.
        pool.unmount()
        assert not pool.is_mounted()
        assert backend().exists(c.rootfs) and pool.is_mounted()
        (in_pool / "etc/motd").write_text("changed\n")
        pool.unmount()
        c.snapshot_restore("snap0")
        assert (in_pool / "etc/motd").read_text() == "hello from the sample rootfs\n"
        assert leftovers(c.directory) == []
        assert "to mount it at boot add" in backend().implementation()
        assert pool.fstab_line() in backend().implementation()

        web.destroy()
        c.destroy(with_snapshots=True)
        assert all_subvolumes(pool_conf) == []
        assert os.listdir(pool_conf) == [], "empty directories were left in the pool"
    finally:
        pool.unmount()


@pytest.mark.unprivileged
def test_the_pool_is_checked_without_being_mounted(pool_conf: Path, lxcpath: Path) -> None:
    from bdev_btrfs._pool import LoopPool

    if fstype_of(lxcpath) == "btrfs":
        pytest.skip("the test disk itself is btrfs")
    registry = default_registry()
    b = registry.backend("btrfs")
    assert b.settings.get("lxc.bdev.btrfs.pool") == str(pool_conf)
    placement = Placement(lxcpath, "c1")
    assert b.default_source(placement, CreateOptions()) == str(pool_conf / str(lxcpath / "c1/rootfs").lstrip("/"))
    refusal = b.refusal_at(placement, CreateOptions())
    if os.geteuid() == 0:
        assert refusal is None
    else:
        assert refusal == f"the btrfs pool {pool_conf} is not mounted, and mounting it needs root"
    assert not LoopPool(pool_conf).is_mounted() and not pool_conf.exists(), "a refusal check mounted the pool"
    # Where the lxcpath is btrfs already, the pool is not used: see the lifecycle tests.
