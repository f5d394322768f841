"""The zfs backend on real ZFS: a zfs-fuse daemon (started here only if no ZFS answers, and
stopped again) with a pool on a sparse file, or, with ``BDEV_TEST_ZFS_POOL=<pool>`` on a
kernel-ZFS machine, a scratch dataset in that pool.  The backend contract and zfs-specific
cases run once per implementation that works here: the zfs command, and libzfs_core (pyzfs)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.command import run, which
from bdev.errors import BdevError, Busy
from bdev.mounts import mount_at
from bdev.records import CreateOptions, Placement, Rootfs
from bdev.store.layout import JOURNAL
from bdev.testing.kit import BackendContract
from bdev.testing.kit.crash import killed, run_killed
from bdev.testing.kit.storage import environment, write_hermetic_lxc_conf
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences
from roundtrip import copy_through_btrfs_and_dir
from snapshot_scenarios import every_snapshot_still_restores, read, three_versions, write

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="zfs-fuse and zpool need root"),
    pytest.mark.skipif(not which("zfs-fuse") and not which("zfs"), reason="zfs-fuse is not installed (apt-get install zfs-fuse)"),
]

REWRITTEN = ("etc/hostname:", "etc/hosts:")
_ROOTS = itertools.count()
IMPL_ENV = "BDEV_ZFS_IMPL"


def _pyzfs_problem() -> str | None:
    """Why libzfs_core (pyzfs) cannot drive ZFS here, or None when it answers."""
    from bdev_zfs import _ops

    ops, why_not = _ops.library("bdev-probe")
    return None if ops is not None else why_not


IMPLEMENTATIONS = ["cli"] if _pyzfs_problem() else ["pyzfs", "cli"]


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, autouse=True)
def zfs_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test once per implementation that works here (``BDEV_ZFS_IMPL``): pyzfs where
    it answers, and the zfs command always."""
    with environment(IMPL_ENV, request.param):
        yield request.param


@pytest.fixture(scope="module")
def zfs_pool(tmp_path_factory: pytest.TempPathFactory, zfs_impl: str) -> Iterator[str]:
    """A running ZFS and a fresh dataset tree (a pool on a sparse file under zfs-fuse, or a
    dataset in ``BDEV_TEST_ZFS_POOL``) with a root dataset ``<tree>/lxc``; all torn down
    afterwards, even when tests fail."""
    from bdev_zfs.testing import zfs_test_space

    work = tmp_path_factory.mktemp("zfs")
    with zfs_test_space(work, f"bdevtest{os.getpid()}{zfs_impl}") as pool:
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


def zfs_backend():
    from bdev.engine.context import default_registry

    return default_registry().backend("zfs")


def prop(dataset: str, name: str) -> str:
    return run(["zfs", "get", "-H", "-p", "-o", "value", name, dataset]).stdout.strip()


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


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


@pytest.fixture
def zlxc(lxcpath: Path, no_leaks: None, zfs_pool: str) -> Iterator[Path]:
    yield lxcpath
    left = datasets(zfs_pool)
    for name in left:
        if "@" not in name and name.count("/") == zfs_pool.count("/") + 2:
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
    three_versions(c)
    c.snapshot_restore("snap0")
    every_snapshot_still_restores(c)


def test_copy_zfs_btrfs_dir_and_back(zlxc: Path, sample: Path, tmp_path: Path) -> None:
    copy_through_btrfs_and_dir("zfs", zlxc, sample, tmp_path, matches)


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
def test_no_zfs_answering_is_one_sentence(zlxc: Path, tmp_path: Path) -> None:
    """Hide what serves ZFS in a private mount namespace: zfs-fuse's socket (an empty tmpfs
    over /run/zfs), or kernel ZFS's /dev/zfs (a tmpfs /dev holding only the usual devices).
    Every entry point says no ZFS answers, in one sentence, and nothing is created."""
    if os.path.exists("/run/zfs/zfs_socket"):
        shell, expected = 'mount -t tmpfs none /run/zfs && exec "$0" "$@"', "zfs-fuse daemon is not running"
    elif os.path.exists("/dev/zfs"):
        old = tmp_path / "olddev"
        old.mkdir()
        binds = " && ".join(f"touch /dev/{n} && mount --bind {old}/{n} /dev/{n}" for n in ("null", "zero", "urandom", "random"))
        shell = f'mount --rbind /dev {old} && mount -t tmpfs none /dev && {binds} && exec "$0" "$@"'
        expected = "ZFS kernel module"
    else:
        pytest.skip("neither a zfs-fuse socket nor /dev/zfs serves ZFS here")
    script = tmp_path / "child.py"
    script.write_text(DAEMON_DOWN_CHILD)
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, sys.executable, str(script), str(zlxc)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    print(lines)
    assert expected in lines["REASONS"]
    assert expected in lines["REFUSAL"]
    assert expected in lines["ERROR"] and "Traceback" not in out.stdout
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
    assert run(["zfs", "list", "-H", "-r", "-t", "snapshot", "-o", "name", origin.rootfs.source]).stdout.strip() == ""
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


# ---------------------------------------------------------------------------- restore by rollback


def snapshot_dataset(container: Container, snap: str) -> str:
    """The dataset of the container snapshot ``snap``, from its config."""
    config = container.directory / "snaps" / snap / "config"
    line = next(l for l in config.read_text().splitlines() if l.startswith("lxc.rootfs.path"))
    return line.split("=", 1)[1].strip().removeprefix("zfs:")


def test_latest_snapshot_restores_by_rollback(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """Restoring the latest, unchanged snapshot rolls the dataset back: same guid (a swap would
    bring another dataset), no clone made, the files and the config are the snapshot's, and
    doing it twice is the same."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    write(c, "etc/motd", "at the snapshot\n")
    assert c.snapshot() == "snap0"
    snap_ds = snapshot_dataset(c, "snap0")
    assert prop(snap_ds, "readonly") == "on" and prop(snap_ds, "origin") == f"{c.rootfs.source}@c1.snap0"
    write(c, "etc/motd", "changed later\n")
    write(c, "added-later", "x\n")
    with c.config_file_name.open("a") as f:
        f.write("lxc.environment = AFTER=1\n")
    guid, before = prop(c.rootfs.source, "guid"), datasets(zfs_pool)
    c.snapshot_restore("snap0")
    assert prop(c.rootfs.source, "guid") == guid
    assert datasets(zfs_pool) == before
    assert prop(c.rootfs.source, "origin") == "-"
    assert read(c, "etc/motd") == "at the snapshot\n"
    with pytest.raises(FileNotFoundError):
        read(c, "added-later")
    assert "AFTER=1" not in c.config_file_name.read_text()
    c.snapshot_restore("snap0")
    assert prop(c.rootfs.source, "guid") == guid and read(c, "etc/motd") == "at the snapshot\n"
    assert prop(c.rootfs.source, "mountpoint") == str(zlxc / "c1" / "rootfs")
    c.destroy(with_snapshots=True)


def test_older_snapshot_restores_by_swap_keeping_newer(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """An older snapshot is not rolled back to (that would need rollback -r, destroying the
    newer ones): the core stages a clone and swaps, and every snapshot stays restorable."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    for i in range(2):
        write(c, "etc/motd", f"version {i}\n")
        c.snapshot()
    guid = prop(c.rootfs.source, "guid")
    c.snapshot_restore("snap0")
    assert prop(c.rootfs.source, "guid") != guid
    assert read(c, "etc/motd") == "version 0\n"
    assert [s.name for s in c.snapshot_list()] == ["snap0", "snap1"]
    visible = [d for d in datasets(zfs_pool) if "@" not in d and ".bdev-deleted" not in d]
    assert visible == [c.rootfs.source, f"{zfs_pool}/lxc/c1.snap0", f"{zfs_pool}/lxc/c1.snap1"]
    c.snapshot_restore("snap1")
    assert read(c, "etc/motd") == "version 1\n"
    c.destroy(with_snapshots=True)
    assert datasets(zfs_pool) == []


def test_changed_snapshot_restores_what_it_holds(zlxc: Path, sample: Path) -> None:
    """A container snapshot whose dataset was changed after all (made writable by hand) no
    longer equals its ZFS snapshot: rollback would restore the wrong tree, so the core stages a
    clone of what the snapshot holds now and swaps."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    c.snapshot()
    snap_ds = snapshot_dataset(c, "snap0")
    run(["zfs", "set", "readonly=off", snap_ds])
    backend = zfs_backend()
    with backend.accessed(Rootfs("zfs", snap_ds)) as path:
        (path / "etc/motd").write_text("edited inside the snapshot\n")
    assert prop(snap_ds, "used") != prop(snap_ds, "bdev:pristine-used")
    guid = prop(c.rootfs.source, "guid")
    c.snapshot_restore("snap0")
    assert prop(c.rootfs.source, "guid") != guid
    assert read(c, "etc/motd") == "edited inside the snapshot\n"
    c.destroy(with_snapshots=True)


def test_newer_clone_snapshot_keeps_rollback_away(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """A snapshot clone made after the container snapshot adds a newer ZFS snapshot (its
    origin): rollback without -r refuses, the restore swaps, and the clone is untouched."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    c.snapshot()
    write(c, "etc/motd", "for the clone\n")
    web = c.clone("web1", snapshot=True)
    guid = prop(c.rootfs.source, "guid")
    c.snapshot_restore("snap0")
    assert prop(c.rootfs.source, "guid") != guid
    assert matches(c, sample) == []
    assert read(web, "etc/motd") == "for the clone\n"
    web.destroy()
    c.destroy(with_snapshots=True)
    assert datasets(zfs_pool) == []


@pytest.mark.parametrize("step", ["restore:after-stage", "restore:after-swap", "restore:after-config"])
def test_crash_during_rollback_restore(zlxc: Path, sample: Path, zfs_pool: str, step: str) -> None:
    """A restore by rollback killed at each marked step: the journal says ``native``; the next
    command leaves the container as it was (before the rollback was about to start) or rolls
    back again and installs the snapshot's config (after), and the guid never changes."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    c.snapshot()
    write(c, "etc/motd", "changed after the snapshot\n")
    with c.config_file_name.open("a") as f:
        f.write("lxc.environment = AFTER=1\n")
    config_before, guid = c.config_file_name.read_text(), prop(c.rootfs.source, "guid")
    result = run_killed(zlxc, "Container('c1', P, registry=R).snapshot_restore('snap0')", step, [])
    assert killed(result), result.stderr[-2000:]
    journal = json.loads((c.directory / JOURNAL).read_text())
    assert journal["method"] == "native" and bool(journal.get("native_started")) is (step != "restore:after-stage")
    assert [x.name for x in c.snapshot_list()] == ["snap0"]  # takes the lock: recovers first
    assert not (c.directory / JOURNAL).exists()
    assert prop(c.rootfs.source, "guid") == guid
    if step == "restore:after-stage":
        assert read(c, "etc/motd") == "changed after the snapshot\n"
        assert c.config_file_name.read_text() == config_before
    else:
        assert matches(c, sample) == []
        assert "AFTER=1" not in c.config_file_name.read_text()
    assert not [d for d in datasets(zfs_pool) if "bdev-" in d]
    c.destroy(with_snapshots=True)


# ---------------------------------------------------------------------------- overlay over a frozen dataset


def test_overlay_clone_layers_over_a_frozen_readonly_clone(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """``clone -s -B overlay`` of a zfs container layers over a read-only zfs clone made for
    it, not over the live dataset: later writes to the origin do not show in the clone, the
    clone does not depend on its origin, and destroying both leaves no dataset behind."""
    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    web = origin.clone("web1", snapshot=True, backend="overlay")
    assert web.outcome.method == "layer" and not web.outcome.depends_on_origin
    frozen = f"{zfs_pool}/lxc/web1.overlay.lower0"
    assert frozen in datasets(zfs_pool)
    assert prop(frozen, "origin") == f"{origin.rootfs.source}@web1.overlay.lower0"
    assert prop(frozen, "readonly") == ("on" if os.path.exists("/dev/zfs") else "off")  # see ZfsBackend.freeze
    write(origin, "etc/motd", "written to the origin later\n")
    assert matches(web, sample) == []
    write(web, "etc/motd", "the clone's own\n")
    assert read(origin, "etc/motd") == "written to the origin later\n"
    assert origin.dependents() == []
    web.destroy()
    assert datasets(zfs_pool) == [origin.rootfs.source]
    origin.destroy()
    assert datasets(zfs_pool) == []


def test_overlay_clone_outlives_its_destroyed_origin(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """The origin of an overlay clone over a frozen dataset can be destroyed: its dataset is
    hidden (the frozen clone needs its snapshot) and goes with the overlay clone; clones of the
    overlay clone freeze the frozen dataset again."""
    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    web = origin.clone("web1", snapshot=True, backend="overlay")
    web2 = web.clone("web2", snapshot=True)
    origin.destroy()
    visible = sorted(d for d in datasets(zfs_pool) if ".bdev-deleted" not in d and "@" not in d)
    assert visible == [f"{zfs_pool}/lxc/web1.overlay.lower0", f"{zfs_pool}/lxc/web2.overlay.lower1"]
    assert matches(web, sample) == [] and matches(web2, sample) == []
    web.destroy()
    assert matches(web2, sample) == []
    web2.destroy()
    assert datasets(zfs_pool) == []


def test_freeze_refuses_another_pool(zlxc: Path, sample: Path, zfs_pool: str, tmp_path: Path) -> None:
    """A frozen copy is a clone, which cannot leave its pool: freeze answers None (the overlay
    then layers over the live rootfs) and makes nothing."""
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    backend = zfs_backend()
    elsewhere = type(backend)({"lxc.bdev.zfs.root": "otherpool/lxc"})
    assert elsewhere.freeze(c.rootfs, Placement(tmp_path, "lower0", owner="x.overlay")) is None
    assert datasets(zfs_pool) == [c.rootfs.source]
    c.destroy()


# ---------------------------------------------------------------------------- implementation and mounts


def test_implementation_is_reported(zfs_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bdev backends`` says which implementation works (and why not pyzfs), and a forced one
    that cannot work makes the backend unusable with the reason."""
    kernel = os.path.exists("/dev/zfs")
    from click.testing import CliRunner

    from bdev.cli.main import cli

    result = CliRunner().invoke(cli, ["backends", "--format", "json"], catch_exceptions=False)
    record = next(b for b in json.loads(result.stdout)["backends"] if b["name"] == "zfs")
    assert record["usable"], record
    text = record["implementation"]
    assert text.startswith("kernel ZFS" if kernel else "zfs-fuse")
    if zfs_impl == "pyzfs":
        assert "libzfs_core (pyzfs" in text
    else:
        assert "zfs CLI" in text
    problem = _pyzfs_problem()
    monkeypatch.setenv(IMPL_ENV, "pyzfs")
    if problem:
        assert zfs_backend().unavailable_reasons() == [f"{IMPL_ENV}=pyzfs, but {problem}"]
    else:
        assert zfs_backend().unavailable_reasons() == []
    monkeypatch.setenv(IMPL_ENV, "bogus")
    assert zfs_backend().unavailable_reasons() == [f"{IMPL_ENV}='bogus' is neither 'cli' nor 'pyzfs'"]


def test_pyzfs_drives_kernel_zfs(zlxc: Path, zfs_pool: str) -> None:
    """Where pyzfs answers, its operations do the work: snapshot, clone with properties,
    rollback (refused when not the latest), destroy."""
    problem = _pyzfs_problem()
    if problem:
        pytest.skip(f"libzfs_core cannot drive ZFS here: {problem}")
    from bdev_zfs import _ops

    ops, _ = _ops.library(zfs_pool.split("/", 1)[0])
    assert ops is not None and ops.kind == "pyzfs"
    base = f"{zfs_pool}/lxc/lzc"
    run(["zfs", "create", "-o", "mountpoint=none", base])
    ops.snapshot(f"{base}@one")
    ops.clone(f"{base}@one", f"{base}-clone", {"canmount": "noauto", "readonly": "on", "mountpoint": "/nonexistent", "bdev:x": "y"})
    assert [prop(f"{base}-clone", p) for p in ("canmount", "readonly", "mountpoint", "bdev:x")] == ["noauto", "on", "/nonexistent", "y"]
    ops.snapshot(f"{base}@two")
    assert ops.rollback(f"{base}@two") and not ops.rollback(f"{base}@one")
    ops.destroy(f"{base}-clone")
    ops.destroy(base)
    assert not ops.exists(base) and not ops.exists(f"{base}@one")


@pytest.mark.parametrize("readonly", [False, True])
def test_mount_path(zlxc: Path, sample: Path, readonly: bool) -> None:
    """bdev's own mounts: ``mount -t zfs -o zfsutil`` on kernel ZFS (a ``zfs`` mount), ``zfs
    mount`` through the mountpoint property on zfs-fuse (``fuse.zfs``), read-only when asked;
    afterwards nothing is mounted and the mountpoint property is the container's again."""
    c = Container("m", zlxc)
    c.create(backend="zfs", source=sample)
    backend, dataset = zfs_backend(), c.rootfs.source
    kernel = os.path.exists("/dev/zfs")
    with backend.accessed(c.rootfs, readonly=readonly) as path:
        entry = mount_at(path)
        assert entry is not None and entry.source == dataset
        assert entry.fstype == ("zfs" if kernel else "fuse.zfs")
        assert (path / "etc/motd").exists()
        if readonly:
            with pytest.raises(OSError):
                (path / "new").write_text("x")
        else:
            (path / "new").write_text("x")
    assert mount_at(path) is None
    assert prop(dataset, "mounted") == "no" and prop(dataset, "mountpoint") == str(zlxc / "m" / "rootfs")
    c.destroy()


def test_plain_clone_is_sent_and_received(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """A plain clone of a zfs container is a full copy the core hands to ``copy_from`` with the
    source rootfs, which sends and receives it: an independent dataset (no origin), no
    temporary snapshot left on either side."""
    origin = Container("origin", zlxc)
    origin.create(backend="zfs", source=sample)
    copy = origin.clone("copy")
    assert copy.outcome.method == "copy" and "zfs send" in copy.outcome.note
    assert prop(copy.rootfs.source, "origin") == "-"
    assert matches(copy, sample) == []
    assert [d for d in datasets(zfs_pool) if "@" in d] == []
    origin.destroy()
    assert matches(copy, sample) == []
    copy.destroy()


def test_destroy_with_snapshots_refused_while_a_process_uses_the_dataset(zlxc: Path, sample: Path, zfs_pool: str) -> None:
    """A process working in the mounted dataset keeps ZFS from unmounting and destroying it:
    ``destroy -s`` says so before destroying any snapshot, and everything stays whole (it used
    to destroy the snapshots, force the unmount, fail, and leave a journal that finished the
    destroy at the next command)."""
    if not which("fuser"):
        pytest.skip("fuser (psmisc) is not installed: the zfs backend cannot tell a busy dataset without it")
    c = Container("c1", zlxc)
    c.create(backend="zfs", source=sample)
    assert c.snapshot() == "snap0" and c.snapshot() == "snap1"
    dataset = c.rootfs.source
    with zfs_backend().accessed(c.rootfs) as path:
        user = subprocess.Popen(["sleep", "600"], cwd=path)
        try:
            with pytest.raises(Busy) as refused:
                c.destroy(with_snapshots=True)
        finally:
            user.kill()
            user.wait()
    assert str(refused.value) == (f"container 'c1' (backend zfs): dataset {dataset} is mounted on {path} and in use "
                                  f"by {user.pid} (sleep); stop them or unmount it before destroying.")
    snaps = c.snapshot_list()
    assert [s.name for s in snaps] == ["snap0", "snap1"] and not (c.directory / JOURNAL).exists()
    assert matches(c, sample) == []
    for snap in snaps:
        assert read(Container(snap.name, snap.lxcpath), "etc/motd") == (sample / "etc/motd").read_text()
    c.destroy(with_snapshots=True)
    assert datasets(zfs_pool) == []


@pytest.mark.parametrize("layered", [False, True], ids=["zfs", "overlay-over-zfs"])
def test_runtime_starts_a_zfs_container(zlxc: Path, tmp_path: Path, zfs_pool: str, layered: bool) -> None:
    """``lxc-start`` of a zfs container.  zfs-fuse mounts in the host's mount namespace
    whoever asks, so the monitor mounts the dataset there for the container's life
    (``Backend.running``) and the init binds it; kernel ZFS mounts in the init.  The container
    writes, stops, and the dataset is left unmounted with its ``mountpoint`` back home."""
    bin_dir = Path(sys.executable).parent
    net = tmp_path / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")

    def lxc(tool: str, *args: str, name: str = "c1") -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / tool), "-P", str(zlxc), "-n", name, *args], capture_output=True,
                              text=True, timeout=120)

    name = "layer" if layered else "c1"
    try:
        created = lxc("lxc-create", "-t", "busybox", "-B", "zfs", "-f", str(net))
        assert created.returncode == 0, created.stderr
        if layered:  # over a frozen read-only clone, a dataset the init mounts as a lower
            copied = lxc("lxc-copy", "-N", name, "-s", "-B", "overlayfs")
            assert copied.returncode == 0, copied.stderr
        container = Container(name, zlxc)
        mounted = ([lower for lower in json.loads((container.directory / "overlay/lowers.json").read_text())["lowers"]]
                   [0]["source"] if layered else container.rootfs.source)
        home = prop(mounted, "mountpoint")
        started = lxc("lxc-start", name=name)
        assert started.returncode == 0, started.stderr
        shown = lxc("lxc-attach", "--", "/bin/sh", "-c", "grep ' / ' /proc/mounts; echo inside > /etc/mark", name=name)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert shown.stdout.split()[:2] == (["overlay", "/"] if layered else [mounted, "/"]), shown.stdout
        stopped = lxc("lxc-stop", "-t", "20", name=name)
        assert stopped.returncode == 0, stopped.stderr
        assert prop(mounted, "mounted") == "no" and prop(mounted, "mountpoint") == home
        assert read(container, "etc/mark") == "inside\n"
    finally:
        for each in ([name] if layered else []) + ["c1"]:
            lxc("lxc-stop", "-k", name=each)
            lxc("lxc-destroy", "-f", name=each)
