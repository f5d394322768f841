"""The zfs backend on real ZFS: a zfs-fuse daemon (started here only if no ZFS answers, and
stopped again), a pool on a sparse file, the backend contract, and zfs-specific cases."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.command import run, which
from bdev.errors import BdevError
from bdev.records import CreateOptions, Placement
from bdev.testing.kit import BackendContract
from bdev.testing.kit.storage import environment, write_hermetic_lxc_conf
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import loop_filesystem
from bdev.testing.trees import tree_differences

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="zfs-fuse and zpool need root"),
    pytest.mark.skipif(not which("zfs-fuse") and not which("zfs"), reason="zfs-fuse is not installed (apt-get install zfs-fuse)"),
]

REWRITTEN = ("etc/hostname:", "etc/hosts:")
_ROOTS = itertools.count()


@pytest.fixture(scope="module")
def zfs_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running ZFS (zfs-fuse started here if none answers) and a fresh pool with a root
    dataset ``<pool>/lxc``; all torn down afterwards, even when tests fail."""
    from bdev_zfs.testing import zfs_daemon, zfs_pool as make_pool

    work = tmp_path_factory.mktemp("zfs")
    with zfs_daemon(work), make_pool(f"bdevtest{os.getpid()}", work / "pool.img", "2G") as pool:
        run(["zfs", "create", "-o", "mountpoint=none", f"{pool}/lxc"])
        yield pool


@pytest.fixture(scope="module", autouse=True)
def zfs_lxc_conf(zfs_pool: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The hermetic lxc.conf plus ``lxc.bdev.zfs.root = <pool>/lxc``, for this module."""
    conf = write_hermetic_lxc_conf(tmp_path_factory.mktemp("zfsconf"))
    with conf.open("a") as f:
        f.write(f"lxc.bdev.zfs.root = {zfs_pool}/lxc\n")
    with environment("BDEV_LXC_CONF", str(conf)):
        yield conf


def datasets(pool: str) -> list[str]:
    out = run(["zfs", "list", "-H", "-r", "-t", "all", "-o", "name", f"{pool}/lxc"]).stdout
    return [line for line in out.splitlines() if line != f"{pool}/lxc"]


def matches(container: Container, expected: Path) -> list[str]:
    rootfs = container.rootfs
    from bdev.engine.context import default_registry

    backend = default_registry().backend_for(rootfs)
    with backend.accessed(rootfs) as path:
        step = max(backend.time_granularity_ns, default_registry().backend("zfs").time_granularity_ns)
        return [p for p in tree_differences(expected, path, time_granularity_ns=step) if not p.startswith(REWRITTEN)]


def write(container: Container, rel: str, text: str) -> None:
    from bdev.engine.context import default_registry

    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs) as path:
        (path / rel).write_text(text)


def read(container: Container, rel: str) -> str:
    from bdev.engine.context import default_registry

    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs, readonly=True) as path:
        return (path / rel).read_text()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


@pytest.fixture
def zlxc(lxcpath: Path, no_leaks: None, zfs_pool: str) -> Iterator[Path]:
    yield lxcpath
    left = datasets(zfs_pool)
    for name in left:
        if "@" not in name and name.count("/") == 2:
            run(["zfs", "destroy", "-R", "-f", name], check=False)
    assert left == [], "datasets left behind"


class TestZfsContract(BackendContract):
    """The backend contract against a real pool, each test with a root dataset of its own (the
    contract's lxcpaths would otherwise share dataset names)."""

    backend_name = "zfs"

    @pytest.fixture(autouse=True)
    def own_root(self, zfs_pool: str, tmp_path: Path) -> Iterator[str]:
        root = f"{zfs_pool}/k{next(_ROOTS)}"
        run(["zfs", "create", "-o", "mountpoint=none", root])
        confdir = tmp_path / "zfsconf"
        confdir.mkdir()
        conf = write_hermetic_lxc_conf(confdir)
        with conf.open("a") as f:
            f.write(f"lxc.bdev.zfs.root = {root}\n")
        try:
            with environment("BDEV_LXC_CONF", str(conf)):
                yield root
        finally:
            left = run(["zfs", "list", "-H", "-r", "-t", "all", "-o", "name", root]).stdout.split("\n")[1:]
            run(["zfs", "destroy", "-R", "-f", root], check=False)
        assert [n for n in left if n] == [], "datasets left behind"


def test_layout_as_lxc_writes_it(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    c = Container("web1", zlxc)
    c.create(backend="zfs", source=sample)
    assert c.get_config_item("lxc.rootfs.path") == [f"zfs:{zfs_pool}/lxc/web1"]
    props = run(["zfs", "get", "-H", "-p", "-o", "value", "mountpoint,canmount", f"{zfs_pool}/lxc/web1"]).stdout.split()
    assert props == [str(zlxc / "web1" / "rootfs"), "noauto"]
    c.destroy()


def test_two_containers_snapshots_same_name(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    a, b = Container("a", zlxc), Container("b", zlxc)
    a.create(backend="zfs", source=sample)
    b.create(backend="zfs", source=sample)
    write(b, "etc/motd", "b\n")
    assert a.snapshot() == "snap0" and b.snapshot() == "snap0"
    names = datasets(zfs_pool)
    assert f"{zfs_pool}/lxc/a.snap0" in names and f"{zfs_pool}/lxc/b.snap0" in names
    ra, rb = a.snapshot_restore("snap0", "ra"), b.snapshot_restore("snap0", "rb")
    assert matches(ra, sample) == []
    assert read(rb, "etc/motd") == "b\n"
    for c in (ra, rb):
        c.destroy()
    a.destroy(with_snapshots=True)
    b.destroy(with_snapshots=True)


def test_destroy_origin_with_live_clones_then_clones(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    one = origin.clone("one", snapshot=True)
    two = origin.clone("two", snapshot=True)
    assert one.outcome.method == "snapshot"
    origin.destroy()
    assert not origin.defined
    visible = [d for d in datasets(zfs_pool) if ".bdev-deleted" not in d]
    assert sorted(visible) == [f"{zfs_pool}/lxc/one", f"{zfs_pool}/lxc/two"]
    assert matches(one, sample) == [] and matches(two, sample) == []
    one.destroy()
    assert matches(two, sample) == []
    two.destroy()
    assert datasets(zfs_pool) == []


def test_restore_older_snapshot_keeps_newer(zlxc: Path, sample: Path) -> None:
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    for i in range(3):
        write(c, "etc/motd", f"version {i}\n")
        assert c.snapshot() == f"snap{i}"
    write(c, "etc/motd", "live\n")
    c.snapshot_restore("snap0")
    assert read(c, "etc/motd") == "version 0\n"
    assert [s.name for s in c.snapshot_list()] == ["snap0", "snap1", "snap2"]
    for i in range(3):
        r = c.snapshot_restore(f"snap{i}", f"r{i}")
        assert read(r, "etc/motd") == f"version {i}\n"
        r.destroy()
    c.snapshot_restore("snap2")
    assert read(c, "etc/motd") == "version 2\n"
    c.destroy(with_snapshots=True)


def test_copy_zfs_btrfs_dir_and_back(zlxc: Path, sample: Path, tmp_path: Path) -> None:
    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    with loop_filesystem("btrfs", tmp_path / "btrfs") as mnt:
        bpath = mnt / "lxc"
        bpath.mkdir()
        on_btrfs = origin.clone("onbtrfs", lxcpath=bpath, backend="btrfs")
        assert matches(on_btrfs, sample) == []
        back = on_btrfs.clone("back", lxcpath=zlxc, backend="zfs")
        assert matches(back, sample) == []
        on_btrfs.destroy()
    on_dir = back.clone("ondir", backend="dir")
    assert matches(on_dir, sample) == []
    again = on_dir.clone("again", backend="zfs")
    assert matches(again, sample) == []
    for c in (again, on_dir, back, origin):
        c.destroy()


@pytest.mark.skipif(not os.path.exists("/usr/bin/lxc-ls"), reason="real LXC is not installed")
def test_real_lxc_sees_containers_and_snapshots(zlxc: Path, sample: Path) -> None:
    c = Container("seen", zlxc)
    c.create(backend="zfs", source=sample)
    c.snapshot(comment="first\n")
    listed = subprocess.run(["/usr/bin/lxc-ls", "-1", "-P", str(zlxc)], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["seen"]
    snaps = subprocess.run(["/usr/bin/lxc-snapshot", "-L", "-P", str(zlxc), "-n", "seen"], capture_output=True, text=True, check=True)
    assert "snap0" in snaps.stdout
    c.destroy(with_snapshots=True)


def test_refusals_missing_pool_root_and_bad_name(zlxc: Path, zfs_pool: str) -> None:
    from bdev.engine.context import default_registry

    backend = default_registry().backend("zfs")
    place = Placement(zlxc, "x")
    no_pool = backend.refusal_at(place, CreateOptions(extra={"zfsroot": "nosuchpool/lxc"}))
    assert no_pool and "zfs pool 'nosuchpool' does not exist" in no_pool
    no_root = backend.refusal_at(place, CreateOptions(extra={"zfsroot": f"{zfs_pool}/missing"}))
    assert no_root and f"root dataset '{zfs_pool}/missing' does not exist" in no_root
    bad = backend.refusal_at(Placement(zlxc, "x"), CreateOptions(extra={"zfsroot": f"{zfs_pool}/lxc@bad"}))
    assert bad and "not valid for ZFS" in bad
    c = Container("x", zlxc)
    with pytest.raises(BdevError) as err:
        c.create(backend="zfs", options=CreateOptions(extra={"zfsroot": "nosuchpool/lxc"}))
    assert "nosuchpool" in str(err.value)
    assert not c.defined and datasets(zfs_pool) == []


def test_out_of_space_leaves_nothing(zlxc: Path, zfs_pool: str, tmp_path: Path) -> None:
    big = tmp_path / "big"
    (big / "etc").mkdir(parents=True)
    with open(big / "blob", "wb") as f:
        f.write(os.urandom(4 << 20))
    c = Container("full", zlxc)
    with pytest.raises(BdevError) as err:
        c.create(backend="zfs", source=big, options=CreateOptions(fssize=1 << 20))
    assert "space" in str(err.value).lower() or "quota" in str(err.value).lower()
    assert not c.defined and datasets(zfs_pool) == []


def test_usage_and_resize(zlxc: Path, sample: Path) -> None:
    c = Container("u", zlxc)
    c.create(backend="zfs", source=sample)
    assert c.usage().used_bytes and c.usage().limit_bytes is None
    c.resize(256 << 20)
    assert c.usage().limit_bytes == 256 << 20
    c.destroy()


def test_snapshot_timing(zlxc: Path, sample: Path) -> None:
    c = Container("t", zlxc)
    c.create(backend="zfs", source=sample)
    start = time.monotonic()
    clone = c.clone("tclone", snapshot=True)
    elapsed = time.monotonic() - start
    print(f"zfs snapshot clone: {elapsed:.2f} s")
    clone.destroy()
    c.destroy()


DAEMON_DOWN_CHILD = """
import sys
from pathlib import Path
from bdev.api import Container
from bdev.engine.context import default_registry
from bdev.errors import BdevError
from bdev.records import CreateOptions, Placement
lxcpath = Path(sys.argv[1])
backend = default_registry().backend("zfs")
print("REASONS", backend.unavailable_reasons())
print("REFUSAL", backend.refusal_at(Placement(lxcpath, "x"), CreateOptions()))
try:
    Container("x", lxcpath).create(backend="zfs")
except BdevError as exc:
    print("ERROR", exc)
print("DEFINED", Container("x", lxcpath).defined)
"""


@pytest.mark.skipif(not which("unshare"), reason="unshare (util-linux) is missing")
def test_daemon_not_running_is_one_sentence(zlxc: Path, tmp_path: Path) -> None:
    """Hide the daemon's socket (an empty tmpfs over /run/zfs in a private mount namespace):
    every entry point says the daemon is not running, and nothing is created."""
    if not os.path.exists("/run/zfs/zfs_socket"):
        pytest.skip("ZFS here is not zfs-fuse (no /run/zfs/zfs_socket)")
    script = tmp_path / "child.py"
    script.write_text(DAEMON_DOWN_CHILD)
    import sys

    shell = f'mount -t tmpfs none /run/zfs && exec "$0" "$@"'
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, sys.executable, str(script), str(zlxc)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert "zfs-fuse daemon is not running" in lines["REASONS"]
    assert "zfs-fuse daemon is not running" in lines["REFUSAL"]
    assert "zfs-fuse daemon is not running" in lines["ERROR"] and "Traceback" not in out.stdout
    assert lines["DEFINED"] == "False"


def test_pool_out_of_space_leaves_nothing(zlxc: Path, zfs_pool: str, tmp_path: Path) -> None:
    """A real full pool (64 MiB) while copying 96 MiB in: one sentence, no dataset left."""
    from bdev_zfs.testing import zfs_pool as make_pool

    big = tmp_path / "big"
    (big / "etc").mkdir(parents=True)
    for i in range(3):
        (big / f"blob{i}").write_bytes(os.urandom(32 << 20))
    with make_pool(f"bdevsmall{os.getpid()}", tmp_path / "small.img", "64M") as small:
        run(["zfs", "create", "-o", "mountpoint=none", f"{small}/lxc"])
        c = Container("full", zlxc)
        with pytest.raises(BdevError) as err:
            c.create(backend="zfs", source=big, options=CreateOptions(extra={"zfsroot": f"{small}/lxc"}))
        message = str(err.value)
        print("pool full:", message)
        assert "space" in message.lower() and "\n" not in message
        assert not c.defined
        left = run(["zfs", "list", "-H", "-r", "-o", "name", f"{small}/lxc"]).stdout.split()
        assert left == [f"{small}/lxc"]


def test_copy_to_another_pool_by_send_receive(zlxc: Path, sample: Path, tmp_path: Path) -> None:
    from bdev_zfs.testing import zfs_pool as make_pool

    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    with make_pool(f"bdevother{os.getpid()}", tmp_path / "other.img", "256M") as other:
        run(["zfs", "create", "-o", "mountpoint=none", f"{other}/lxc"])
        copy = origin.clone("copy", options=CreateOptions(extra={"zfsroot": f"{other}/lxc"}))
        assert copy.rootfs.source == f"{other}/lxc/copy"
        assert "zfs send" in copy.outcome.note
        assert matches(copy, sample) == []
        copy.destroy()
        left = run(["zfs", "list", "-H", "-r", "-t", "all", "-o", "name", f"{other}/lxc"]).stdout.split()
        assert left == [f"{other}/lxc"]
    assert run(["zfs", "list", "-H", "-t", "snapshot", "-o", "name"], check=False).stdout.strip() == ""
    origin.destroy()


@pytest.mark.parametrize("renames_done", [1, 2])
def test_swap_interrupted_is_finished_by_next_use(zlxc: Path, sample: Path, zfs_pool: str, renames_done: int) -> None:
    """The state a crash leaves after one or two of swap's three renames (made here with the
    same zfs commands): identity() of the live name repairs it to one whole tree per name."""
    from bdev.engine.context import default_registry

    backend = default_registry().backend("zfs")
    live_c, staged_c = Container("live", zlxc), Container("staged", zlxc)
    live_c.create(backend="zfs", source=sample)
    staged_c.create(backend="zfs", source=sample)
    write(staged_c, "etc/motd", "staged\n")
    live, staged = live_c.rootfs, staged_c.rootfs
    guid_live, guid_staged = backend.identity(live), backend.identity(staged)
    run(["zfs", "set", f"bdev:swap-with={staged.source}", live.source])
    run(["zfs", "rename", live.source, live.source + ".bdev-swap"])
    if renames_done == 2:
        run(["zfs", "rename", staged.source, live.source])
    after = backend.identity(live)
    if renames_done == 1:
        assert (after, backend.identity(staged)) == (guid_live, guid_staged)
    else:
        assert (after, backend.identity(staged)) == (guid_staged, guid_live)
        assert read(live_c, "etc/motd") == "staged\n"
    assert not backend.exists(type(live)("zfs", live.source + ".bdev-swap"))
    live_c.destroy()
    staged_c.destroy()
