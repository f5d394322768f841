"""The rbd backend on a real throwaway Ceph cluster (one monitor, one memstore OSD on loopback:
:mod:`bdev.testing.ceph`), mounted the way this host allows (rbd-fuse and a loop device where
the kernel has neither rbd nor nbd).  The backend contract runs with an RBD namespace per test;
the rest covers what only rbd does: layered clone chains, hidden origins, rollback or swap
restores, copies to and from other backends, two hosts sharing one cluster, and the faults
the issue lists (unreachable cluster, missing pool, wrong keyring, full cluster, rejected
names, the OSD killed mid-copy)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bdev.api import Container, list_containers
from bdev.errors import BdevError, Busy
from bdev.mounts import mount_at
from bdev.records import CreateOptions, Placement
from bdev.testing.ceph import CephCluster, ceph_unavailable_reason, throwaway_cluster
from bdev.testing.kit import BackendContract
from bdev.testing.kit.storage import environment, write_hermetic_lxc_conf
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences
from roundtrip import copy_through_btrfs_and_dir
from snapshot_scenarios import every_snapshot_still_restores, read, three_versions, write

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="a throwaway Ceph cluster, rbd-fuse and loop mounts need root"),
    pytest.mark.skipif(ceph_unavailable_reason() is not None, reason=str(ceph_unavailable_reason())),
]

REWRITTEN = ("etc/hostname:", "etc/hosts:")
_NAMESPACES = itertools.count()


def _conf_lines(cluster: CephCluster, **extra: str) -> str:
    lines = {"lxc.bdev.rbd.conf": str(cluster.conf), "lxc.bdev.rbd.timeout": "5", **extra}
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """One cluster for the module, torn down even when tests fail."""
    with throwaway_cluster(tmp_path_factory.mktemp("ceph")) as cluster:
        yield cluster


@pytest.fixture(scope="module", autouse=True)
def rbd_lxc_conf(ceph: CephCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The hermetic lxc.conf plus the cluster's config file, for this module."""
    conf = write_hermetic_lxc_conf(tmp_path_factory.mktemp("rbdconf"))
    with conf.open("a") as f:
        f.write(_conf_lines(ceph))
    with environment("BDEV_LXC_CONF", str(conf)):
        yield conf


def ioctx(cluster: CephCluster, namespace: str = ""):
    import rados

    handle = rados.Rados(conffile=str(cluster.conf))
    handle.connect(timeout=10)
    io = handle.open_ioctx(cluster.pool)
    if namespace:
        io.set_namespace(namespace)
    return handle, io


def images(cluster: CephCluster, namespace: str = "") -> list[str]:
    import rbd

    handle, io = ioctx(cluster, namespace)
    try:
        return sorted(rbd.RBD().list(io))
    finally:
        io.close()
        handle.shutdown()


def image_info(cluster: CephCluster, name: str) -> dict:
    import rbd

    handle, io = ioctx(cluster)
    try:
        with rbd.Image(io, name, read_only=True) as image:
            try:
                parent = list(image.parent_info())
            except rbd.ImageNotFound:
                parent = None
            return {"id": image.id(), "snaps": [s["name"] for s in image.list_snaps()], "parent": parent,
                    "lockers": image.list_lockers()}
    finally:
        io.close()
        handle.shutdown()


def fuse_daemons() -> list[str]:
    """rbd-fuse attachments of this test session's processes (other sessions may run too)."""
    from bdev_rbd._attach import fuse_root

    mine = {str(os.getpid())} | {p.name for p in Path("/proc").glob("[0-9]*") if _child_of_this_session(p)}
    return sorted(p.name for p in fuse_root().glob("*.json") if p.name.split("-", 1)[0] in mine)


def _child_of_this_session(proc: Path) -> bool:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def backend():
    from bdev.engine.context import default_registry

    return default_registry().backend("rbd")


def matches(container: Container, expected: Path) -> list[str]:
    from bdev.engine.context import default_registry

    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs, readonly=True) as path:
        return [p for p in tree_differences(expected, path) if not p.startswith(REWRITTEN)]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


def purge(cluster: CephCluster, namespace: str = "") -> None:
    """Remove every image (clones before their origins) and snapshot, after a failed test."""
    import rbd

    handle, io = ioctx(cluster, namespace)
    try:
        for _ in range(5):
            for name in rbd.RBD().list(io):
                try:
                    with rbd.Image(io, name) as image:
                        for snap in image.list_snaps():
                            if image.is_protected_snap(snap["name"]):
                                image.unprotect_snap(snap["name"])
                            image.remove_snap(snap["name"])
                    rbd.RBD().remove(io, name)
                except rbd.Error:
                    continue  # a clone of it is still there: the next round
    finally:
        io.close()
        handle.shutdown()


def watchdogs() -> list[int]:
    """Watchdog processes of attachments this test process made (each exits within about a
    second of its rbd-fuse daemon)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            if "bdev_rbd._watchdog" in argv and json.loads(argv[argv.index("bdev_rbd._watchdog") + 1])["owner"] == os.getpid():
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return found


@pytest.fixture
def rlxc(lxcpath: Path, no_leaks: None, ceph: CephCluster) -> Iterator[Path]:
    """A scratch lxcpath; afterwards no image, no rbd-fuse daemon and no watchdog may be left."""
    yield lxcpath
    left, daemons = images(ceph), fuse_daemons()
    purge(ceph)
    deadline = time.monotonic() + 10
    while watchdogs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], "RBD images left behind"
    assert daemons == [], "rbd-fuse daemons left behind"
    assert watchdogs() == [], "watchdogs left running after their rbd-fuse daemon"


# ---------------------------------------------------------------------------- the contract


class TestRbdContract(BackendContract):
    """The backend contract, each test in an RBD namespace of its own (the contract's lxcpaths
    would otherwise share image names in the pool).  Only the tmpdir lxcpath: an rbd rootfs
    lives in the cluster, the lxcpath holds only configs and mount points."""

    backend_name = "rbd"
    storage_kinds = ("tmpdir",)

    @pytest.fixture(autouse=True)
    def own_namespace(self, ceph: CephCluster, tmp_path: Path) -> Iterator[str]:
        import rbd

        namespace = f"k{os.getpid()}-{next(_NAMESPACES)}"
        handle, io = ioctx(ceph)
        rbd.RBD().namespace_create(io, namespace)
        confdir = tmp_path / "rbdconf"
        confdir.mkdir()
        conf = write_hermetic_lxc_conf(confdir)
        with conf.open("a") as f:
            f.write(_conf_lines(ceph, **{"lxc.bdev.rbd.namespace": namespace}))
        try:
            with environment("BDEV_LXC_CONF", str(conf)):
                yield namespace
        finally:
            left = images(ceph, namespace)
            purge(ceph, namespace)
            try:
                rbd.RBD().namespace_remove(io, namespace)
            except rbd.Error:
                pass
            io.close()
            handle.shutdown()
        assert left == [], "RBD images left behind"
        assert fuse_daemons() == [], "rbd-fuse daemons left behind"


# ---------------------------------------------------------------------------- layout and clones


def test_layout_as_lxc_writes_it(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    c = Container("web1", rlxc)
    c.create(backend="rbd", source=sample)
    assert c.get_config_item("lxc.rootfs.path") == ["rbd:/dev/rbd/lxc/web1"]
    assert (rlxc / "web1" / "rootfs").is_dir()
    assert images(ceph) == ["web1"]
    assert matches(c, sample) == []
    assert backend().detect("/dev/rbd/lxc/web1") and not backend().detect("/var/lib/lxc/web1/rootfs")
    c.destroy()
    assert images(ceph) == []


def test_rbdname_and_rbdpool_options(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    c = Container("named", rlxc)
    c.create(backend="rbd", source=sample, options=CreateOptions(extra={"rbdname": "custom", "rbdpool": "lxc"}))
    assert c.rootfs.source == "/dev/rbd/lxc/custom"
    assert images(ceph) == ["custom"]
    c.destroy()


def test_clone_chain_and_destroying_origins_with_live_clones(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    """A clone of a clone: each a layered RBD clone of a protected snapshot named after the new
    container.  Destroying the origins first hides them (nothing visible lost, the clones still
    read their data); the last clone takes the hidden chain with it."""
    origin = Container("origin", rlxc)
    origin.create(backend="rbd", source=sample)
    one = origin.clone("one", snapshot=True)
    assert one.outcome.method == "snapshot" and not one.outcome.depends_on_origin
    write(one, "etc/motd", "one\n")
    two = one.clone("two", snapshot=True)
    assert image_info(ceph, "one")["parent"] == ["lxc", "origin", "one"]
    assert image_info(ceph, "two")["parent"] == ["lxc", "one", "two"]
    origin.destroy()
    one.destroy()
    assert not origin.defined and not one.defined
    visible = [n for n in images(ceph) if not n.startswith(".bdev-deleted.")]
    assert visible == ["two"] and len(images(ceph)) == 3
    assert read(two, "etc/motd") == "one\n"
    assert [p for p in matches(two, sample) if not p.startswith("etc/motd")] == []
    two.destroy()
    assert images(ceph) == []


def test_destroy_clone_first_collects_origin_snapshot(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    origin = Container("origin", rlxc)
    origin.create(backend="rbd", source=sample)
    web = origin.clone("web1", snapshot=True)
    assert image_info(ceph, "origin")["snaps"] == ["web1"]
    web.destroy()
    assert image_info(ceph, "origin")["snaps"] == []
    origin.destroy()


def test_flatten_detaches_a_clone(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    from click.testing import CliRunner

    from bdev.cli.main import cli

    origin = Container("origin", rlxc)
    origin.create(backend="rbd", source=sample)
    web = origin.clone("web1", snapshot=True)
    origin.destroy()
    assert len(images(ceph)) == 2  # web1 and the hidden origin
    result = CliRunner().invoke(cli, ["-P", str(rlxc), "rbd", "flatten", "web1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "flattened" in result.output
    assert images(ceph) == ["web1"] and image_info(ceph, "web1")["parent"] is None
    assert matches(web, sample) == []
    again = CliRunner().invoke(cli, ["-P", str(rlxc), "rbd", "flatten", "web1"], catch_exceptions=False)
    assert "not a clone" in again.output
    web.destroy()


# ---------------------------------------------------------------------------- restores


def test_latest_snapshot_restores_by_rollback(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    """The latest, unchanged snapshot: a rollback of the same image (same id), no new image."""
    c = Container("c1", rlxc)
    c.create(backend="rbd", source=sample)
    write(c, "etc/motd", "at the snapshot\n")
    assert c.snapshot() == "snap0"
    write(c, "etc/motd", "changed later\n")
    before_id, before = image_info(ceph, "c1")["id"], images(ceph)
    c.snapshot_restore("snap0")
    assert image_info(ceph, "c1")["id"] == before_id and images(ceph) == before
    assert read(c, "etc/motd") == "at the snapshot\n"
    c.destroy(with_snapshots=True)
    assert images(ceph) == []


def test_restore_older_snapshot_keeps_newer(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    """An older snapshot while newer ones exist: a clone staged and swapped in; every snapshot
    stays restorable and the replaced image is kept hidden while snapshots need it."""
    c = Container("c1", rlxc)
    c.create(backend="rbd", source=sample)
    three_versions(c)
    old_id = image_info(ceph, "c1")["id"]
    c.snapshot_restore("snap0")
    assert image_info(ceph, "c1")["id"] != old_id
    every_snapshot_still_restores(c)
    assert images(ceph) == []


def test_snapshot_of_mounted_image_is_frozen_and_consistent(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    """A snapshot clone of an image mounted read-write here freezes its filesystem around the
    RBD snapshot: data written just before is in the clone, and the mount keeps working."""
    c = Container("c1", rlxc)
    c.create(backend="rbd", source=sample)
    with backend().accessed(c.rootfs) as path:
        (path / "written-before").write_bytes(os.urandom(1 << 20))
        expected = (path / "written-before").read_bytes()
        clone = c.clone("frozen", snapshot=True, maybe_snapshot=True)
        (path / "written-after").write_text("after\n")
    assert clone.outcome.method == "snapshot"
    with backend().accessed(clone.rootfs, readonly=True) as path:
        assert (path / "written-before").read_bytes() == expected
        assert not (path / "written-after").exists()
    clone.destroy()
    c.destroy()


def test_second_read_write_mount_is_refused(rlxc: Path, sample: Path, ceph: CephCluster, tmp_path: Path) -> None:
    c = Container("c1", rlxc)
    c.create(backend="rbd", source=sample)
    rbd_backend = backend()
    with rbd_backend.accessed(c.rootfs) as path:
        lockers = image_info(ceph, "c1")["lockers"]["lockers"]
        assert json.loads(lockers[0][1])["mount"] == str(path)
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(Busy) as refused:
            rbd_backend.mount(c.rootfs, other)
        assert "mounted read-write by host" in str(refused.value) and str(path) in str(refused.value)
        with pytest.raises(Busy):
            rbd_backend.destroy(c.rootfs)
        with pytest.raises(Busy):
            rbd_backend.swap(c.rootfs, c.rootfs)
    assert not (image_info(ceph, "c1")["lockers"] or {}).get("lockers")
    c.destroy()


# ---------------------------------------------------------------------------- copies


def test_copy_rbd_btrfs_dir_and_back(rlxc: Path, sample: Path, tmp_path: Path, ceph: CephCluster) -> None:
    copy_through_btrfs_and_dir("rbd", rlxc, sample, tmp_path, matches)


def test_usage_and_resize(rlxc: Path, sample: Path, ceph: CephCluster) -> None:
    c = Container("u", rlxc)
    c.create(backend="rbd", source=sample)
    usage = c.usage()
    assert usage.used_bytes and usage.limit_bytes == 1 << 30 and "its own" in usage.note
    clone = c.clone("uc", snapshot=True)
    assert "shared with its origin" in clone.usage().note
    clone.destroy()
    c.resize(1536 << 20)
    assert c.usage().limit_bytes == 1536 << 20
    with backend().accessed(c.rootfs, readonly=True) as path:
        st = os.statvfs(path)
        assert st.f_blocks * st.f_frsize > 1200 << 20
    c.destroy()


# ---------------------------------------------------------------------------- the runtime


def _lxc(env: dict[str, str] | None, tool: str, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the venv's ``lxc-*`` commands; a hang (the monitor's fork blocked) fails the test."""
    argv = [str(Path(sys.executable).parent / tool), *map(str, args)]
    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{tool} {' '.join(map(str, args))} hung for {timeout} s")


def _kill(env: dict[str, str] | None, lxcpath: Path, name: str) -> None:
    """Finalizer: ``lxc-stop -k`` whatever its outcome (the container may not be running)."""
    subprocess.run([str(Path(sys.executable).parent / "lxc-stop"), "-P", str(lxcpath), "-n", name, "-k"],
                   env=env, capture_output=True, timeout=120)


def _stop_and_destroy(env: dict[str, str] | None, lxcpath: Path, name: str) -> None:
    """Finalizer: stop (kill) and destroy ``name`` wherever the test left it."""
    if (lxcpath / name / "config").exists():
        _kill(env, lxcpath, name)
        subprocess.run([str(Path(sys.executable).parent / "lxc-destroy"), "-P", str(lxcpath), "-n", name, "-f"],
                       env=env, capture_output=True, timeout=120)


def _busybox(env: dict[str, str] | None, lxcpath: Path, name: str, tmp_path: Path) -> None:
    """``lxc-create -t busybox -B rbd`` with no network (startable on any host)."""
    net = tmp_path / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    created = _lxc(env, "lxc-create", "-P", lxcpath, "-n", name, "-t", "busybox", "-B", "rbd", "-f", net)
    assert created.returncode == 0, created.stdout + created.stderr


def _root_mount(env: dict[str, str] | None, lxcpath: Path, name: str) -> str:
    """The container's own ``/`` line of ``/proc/mounts``, read by ``lxc-attach``."""
    shown = _lxc(env, "lxc-attach", "-P", lxcpath, "-n", name, "--", "cat", "/proc/mounts")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return next(line for line in shown.stdout.splitlines() if line.split()[1] == "/")


def test_watchdog_is_a_detached_process_that_ends_with_its_mount(rlxc: Path, sample: Path) -> None:
    """An rbd-fuse mount here has its watchdog in a process of its own session (no thread of
    this process pings the cluster), which exits once the mount is gone (the fixture checks)."""
    import threading

    from bdev_rbd._attach import choose

    if choose()[0] != "fuse":
        pytest.skip("images are attached by a kernel driver here: rbd-fuse has no watchdog to check")
    c = Container("c1", rlxc)
    c.create(backend="rbd", source=sample)
    deadline = time.monotonic() + 10
    while watchdogs() and time.monotonic() < deadline:  # those of create's attachments end
        time.sleep(0.2)
    assert watchdogs() == [], "the watchdogs of create's attachments outlived them"
    with backend().accessed(c.rootfs, readonly=True):
        (watchdog,) = watchdogs()
        assert os.getsid(watchdog) == watchdog and watchdog != os.getpid()
        assert not [t.name for t in threading.enumerate() if "watchdog" in t.name]
    c.destroy()


def lock_holders(cluster: CephCluster, name: str) -> list[str]:
    """The cookies of the locks on image ``name``."""
    return [cookie for _client, cookie, _address in (image_info(cluster, name)["lockers"] or {}).get("lockers", [])]


@pytest.mark.parametrize("stop", ["halt", "kill"])
def test_runtime_starts_an_rbd_container(rlxc: Path, tmp_path: Path, ceph: CephCluster, stop: str) -> None:
    """``lxc-start`` of an rbd container: the monitor locks and attaches the image (librados
    and, here, rbd-fuse) in the host's namespaces and then forks the container's init, which
    must not block on a lock a librados or watchdog thread held at the fork, and mounts it; the
    container runs on the image's filesystem and writes to it *without syncing*.  Stopped
    (halted, or killed), the kernel's final unmount of the container's filesystem still
    reaches Ceph (rbd-fuse is not a process of the container, so it outlives it), and the
    monitor then detaches the image and releases its lock: nothing written is lost, no daemon
    or lock stays behind."""
    try:
        _busybox(None, rlxc, "c1", tmp_path)
        started = _lxc(None, "lxc-start", "-P", rlxc, "-n", "c1")
        assert started.returncode == 0, started.stdout + started.stderr
        root = _root_mount(None, rlxc, "c1")
        assert root.split()[2] == "ext4", root
        assert [json.loads(cookie)["mount"] for cookie in lock_holders(ceph, "c1")] == ["container c1"]
        payload = "dd if=/dev/urandom of=/etc/blob bs=64k count=64 2>/dev/null; md5sum /etc/blob > /etc/mark"
        wrote = _lxc(None, "lxc-attach", "-P", rlxc, "-n", "c1", "--", "/bin/sh", "-c", payload)
        assert wrote.returncode == 0, wrote.stderr
        expected = _lxc(None, "lxc-attach", "-P", rlxc, "-n", "c1", "--", "cat", "/etc/mark").stdout
        stopped = _lxc(None, "lxc-stop", "-P", rlxc, "-n", "c1", *(["-t", "20"] if stop == "halt" else ["-k"]))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert fuse_daemons() == [] and lock_holders(ceph, "c1") == [], "the stopped container's attachment stayed"
        with backend().accessed(Container("c1", rlxc).rootfs) as path:  # read-write: replays the journal
            digest = hashlib.md5((path / "etc/blob").read_bytes()).hexdigest()
            assert (path / "etc/mark").read_text() == expected and expected.startswith(digest), expected
        destroyed = _lxc(None, "lxc-destroy", "-P", rlxc, "-n", "c1")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert "real LXC" not in destroyed.stdout + destroyed.stderr
    finally:
        _stop_and_destroy(None, rlxc, "c1")


def test_runtime_starts_an_overlay_clone_of_an_rbd_container(rlxc: Path, tmp_path: Path) -> None:
    """An overlay layer over an rbd container: the container's init asks Ceph about the lower
    (exists, lock holders) from its own, empty network namespace, so every connection is made
    from the host's; it starts, writes into its upper layer only, and stops."""
    try:
        _busybox(None, rlxc, "base", tmp_path)
        copied = _lxc(None, "lxc-copy", "-P", rlxc, "-n", "base", "-N", "layer", "-s", "-B", "overlayfs")
        assert copied.returncode == 0, copied.stdout + copied.stderr
        started = _lxc(None, "lxc-start", "-P", rlxc, "-n", "layer")
        assert started.returncode == 0, started.stdout + started.stderr
        assert _root_mount(None, rlxc, "layer").split()[2] == "overlay"
        wrote = _lxc(None, "lxc-attach", "-P", rlxc, "-n", "layer", "--", "/bin/sh", "-c", "echo layer > /etc/layer")
        assert wrote.returncode == 0, wrote.stderr
        stopped = _lxc(None, "lxc-stop", "-P", rlxc, "-n", "layer", "-t", "20")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert (rlxc / "layer" / "overlay" / "delta" / "etc" / "layer").read_text() == "layer\n"
        with backend().accessed(Container("base", rlxc).rootfs, readonly=True) as path:
            assert not (path / "etc/layer").exists()
    finally:
        _stop_and_destroy(None, rlxc, "layer")
        _stop_and_destroy(None, rlxc, "base")


# ---------------------------------------------------------------------------- two hosts


HOST = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from bdev.api import Container, list_containers
    from bdev.engine.context import default_registry
    from bdev.errors import BdevError
    action, lxcpath = sys.argv[1], Path(sys.argv[2])
    backend = default_registry().backend("rbd")
    c = Container("shared", lxcpath)
    try:
        if action == "mount-and-hold":
            mnt = lxcpath / "shared" / "rootfs"
            backend.mount(c.rootfs, mnt)
            print("MOUNTED", (mnt / "etc/hostname").exists(), flush=True)
            sys.stdin.readline()
            (mnt / "etc/motd").write_text("written on host b\\n")
            backend.umount(c.rootfs, mnt)
            print("UNMOUNTED", flush=True)
        elif action == "mount-once":
            with backend.accessed(c.rootfs) as path:
                print("READ", (path / "etc/motd").read_text().strip())
    except BdevError as exc:
        print("ERROR", exc)
""")


def _host(name: str, tmp_path: Path, ceph: CephCluster) -> tuple[Path, dict[str, str]]:
    """A "host": its own lxcpath and lxc.conf (own host name), the same cluster."""
    root = tmp_path / name
    (root / "lxc").mkdir(parents=True)
    conf = write_hermetic_lxc_conf(root)
    with conf.open("a") as f:
        f.write(_conf_lines(ceph, **{"lxc.bdev.rbd.hostname": name}))
    env = dict(os.environ, BDEV_LXC_CONF=str(conf), BDEV_RUN_DIR=str(root / "run"))
    return root / "lxc", env


def _bdev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bdev.cli.main", *args], env=env, capture_output=True, text=True, timeout=180)


def test_two_hosts_share_a_container(no_leaks: None, tmp_path: Path, ceph: CephCluster) -> None:
    """Issue 8.  Host a creates a busybox container and publishes it; host b (other processes
    with their own lxcpath, lxc.conf, host name and run directory) adopts it, mounts it
    read-write, and host a's read-write mount is refused naming host b; then host b *starts*
    it, and host a's ``lxc-start`` and mount are refused in one sentence while it runs; what
    the container wrote on b is seen on a after b stopped it."""
    lxc_a, env_a = _host("host-a", tmp_path, ceph)
    lxc_b, env_b = _host("host-b", tmp_path, ceph)
    script = tmp_path / "host.py"
    script.write_text(HOST)
    try:
        _busybox(env_a, lxc_a, "shared", tmp_path)
        (lxc_a / "shared" / "config").open("a").write("lxc.environment = FROM_A=1\n")
        published = _bdev(env_a, "-P", str(lxc_a), "rbd", "publish", "shared")
        assert published.returncode == 0, published.stderr
        adopted = _bdev(env_b, "-P", str(lxc_b), "rbd", "adopt", "shared")
        assert adopted.returncode == 0, adopted.stderr
        config_b = (lxc_b / "shared" / "config").read_text()
        assert "lxc.rootfs.path = rbd:/dev/rbd/lxc/shared" in config_b and "FROM_A=1" in config_b
        _hold_on_b_while_a_is_refused(script, lxc_a, lxc_b, env_a, env_b)
        after = subprocess.run([sys.executable, str(script), "mount-once", str(lxc_a)], env=env_a, capture_output=True,
                               text=True, timeout=120)
        assert after.stdout.strip() == "READ written on host b", after.stdout + after.stderr

        started = _lxc(env_b, "lxc-start", "-P", lxc_b, "-n", "shared")
        assert started.returncode == 0, started.stdout + started.stderr
        wrote = _lxc(env_b, "lxc-attach", "-P", lxc_b, "-n", "shared", "--", "/bin/sh", "-c",
                     "echo started on host b > /etc/motd")
        assert wrote.returncode == 0, wrote.stdout + wrote.stderr
        refused = _lxc(env_a, "lxc-start", "-P", lxc_a, "-n", "shared")
        print(refused.stderr)
        assert refused.returncode != 0 and "mounted read-write by host host-b" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stdout + refused.stderr
        mounted = subprocess.run([sys.executable, str(script), "mount-once", str(lxc_a)], env=env_a,
                                 capture_output=True, text=True, timeout=120)
        assert mounted.stdout.startswith("ERROR") and "mounted read-write by host host-b" in mounted.stdout, mounted.stdout
        stopped = _lxc(env_b, "lxc-stop", "-P", lxc_b, "-n", "shared", "-t", "20")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert lock_holders(ceph, "shared") == [], "host b's lock outlived its container"
        seen = subprocess.run([sys.executable, str(script), "mount-once", str(lxc_a)], env=env_a,
                              capture_output=True, text=True, timeout=120)
        assert seen.stdout.strip() == "READ started on host b", seen.stdout + seen.stderr
        removed = _bdev(env_a, "-P", str(lxc_a), "destroy", "shared")
        assert removed.returncode == 0, removed.stderr
        assert images(ceph) == []
    finally:
        _kill(env_b, lxc_b, "shared")
        _stop_and_destroy(env_a, lxc_a, "shared")
        purge(ceph)


def _hold_on_b_while_a_is_refused(script: Path, lxc_a: Path, lxc_b: Path, env_a: dict[str, str],
                                  env_b: dict[str, str]) -> None:
    """Host b mounts the image read-write and holds it; host a's read-write mount is refused
    naming host b; host b writes and unmounts."""
    holder = subprocess.Popen([sys.executable, str(script), "mount-and-hold", str(lxc_b)], env=env_b,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.startswith("MOUNTED"), line + holder.stderr.read()
        refused = subprocess.run([sys.executable, str(script), "mount-once", str(lxc_a)], env=env_a,
                                 capture_output=True, text=True, timeout=120)
        print(refused.stdout)
        assert refused.stdout.startswith("ERROR") and "mounted read-write by host host-b" in refused.stdout
        assert "Traceback" not in refused.stdout + refused.stderr
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().startswith("UNMOUNTED")
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=60)


# ---------------------------------------------------------------------------- faults


def _one_sentence(exc: BdevError) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_unreachable_cluster_fails_fast(rlxc: Path, sample: Path, ceph: CephCluster, tmp_path: Path, rbd_lxc_conf: Path) -> None:
    conf = tmp_path / "wrongport.conf"
    conf.write_text(ceph.conf.read_text().replace(f":{ceph.port}", f":{ceph.port + 1}"))
    with environment("CEPH_CONF", str(conf)):
        start = time.monotonic()
        c = Container("c1", rlxc)
        with pytest.raises(BdevError) as err:
            c.create(backend="rbd", source=sample)
        elapsed = time.monotonic() - start
    message = _one_sentence(err.value)
    print(f"unreachable cluster: {elapsed:.2f} s: {message}")
    assert elapsed < 15 and "no Ceph monitor answered" in message
    assert not c.defined and os.listdir(rlxc) == []


def test_missing_pool_refused(rlxc: Path, sample: Path) -> None:
    refusal = backend().refusal_at(Placement(rlxc, "x"), CreateOptions(extra={"rbdpool": "nosuchpool"}))
    assert refusal and "pool 'nosuchpool' does not exist" in refusal
    c = Container("x", rlxc)
    with pytest.raises(BdevError) as err:
        c.create(backend="rbd", source=sample, options=CreateOptions(extra={"rbdpool": "nosuchpool"}))
    assert "nosuchpool" in _one_sentence(err.value)
    assert not c.defined and os.listdir(rlxc) == []


def test_wrong_keyring_refused(rlxc: Path, sample: Path, ceph: CephCluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.keyring"
    bad.write_text("[client.admin]\n\tkey = AQBmXmZnAAAAABAAh8V0fl2c7vNs7Q0JXZQeUQ==\n")
    conf = write_hermetic_lxc_conf(tmp_path)
    conf.write_text(conf.read_text() + _conf_lines(ceph, **{"lxc.bdev.rbd.keyring": str(bad)}))
    with environment("BDEV_LXC_CONF", str(conf)):
        c = Container("c1", rlxc)
        with pytest.raises(BdevError) as err:
            c.create(backend="rbd", source=sample)
    message = _one_sentence(err.value)
    assert "refused client.admin" in message and "wrong key" in message
    assert not c.defined and os.listdir(rlxc) == []


@pytest.mark.parametrize("name, expected", [
    ("a@b", "contains '@'"),
    ("-x", "starts with '-'"),
    ("x" * 300, "more than the limit"),
])
def test_image_names_refused(rlxc: Path, sample: Path, name: str, expected: str) -> None:
    c = Container("c1", rlxc)
    with pytest.raises(BdevError) as err:
        c.create(backend="rbd", source=sample, options=CreateOptions(extra={"rbdname": name}))
    assert expected in _one_sentence(err.value)
    assert not c.defined and os.listdir(rlxc) == []


def test_name_ceph_rejects_is_one_sentence(ceph: CephCluster) -> None:
    """Ceph's own refusal (an object name too long for the OSD) through the same translation."""
    from bdev_rbd import _images
    from bdev_rbd._cluster import Cluster, pool

    cluster = Cluster.from_settings({"lxc.bdev.rbd.conf": str(ceph.conf), "lxc.bdev.rbd.timeout": "5"})
    with pool(cluster, ceph.pool) as io, pytest.raises(BdevError) as err:
        _images.create(io, "n" * 3000, 1 << 20)
    assert "Ceph rejects the name" in _one_sentence(err.value)


FULL = {
    "pool quota": "pool lxc is full (quota 16.0 MiB)",
    "full OSD": "the Ceph cluster is full (pool lxc takes no more data)",
}


@pytest.fixture(scope="module")
def quota_ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """A cluster with a manager, for the full-pool tests: the monitor enforces a pool quota
    only from the statistics a manager gathers."""
    problem = ceph_unavailable_reason(manager=True)
    if problem:
        pytest.skip(f"a Ceph manager is needed to enforce pool quotas: {problem}")
    with throwaway_cluster(tmp_path_factory.mktemp("quota"), manager=True) as cluster:
        yield cluster


def pool_is_full(cluster: CephCluster) -> bool:
    """Whether the monitor has marked the cluster's pool full (over its quota, or on a full
    OSD)."""
    pools = json.loads(cluster.ceph("osd", "pool", "ls", "detail", "--format", "json"))
    return "full" in next(p for p in pools if p["pool_name"] == cluster.pool)["flags_names"].split(",")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def set_quota(cluster: CephCluster, max_bytes: int) -> None:
    """Set the pool's ``max_bytes`` quota (0: none)."""
    cluster.ceph("osd", "pool", "set-quota", cluster.pool, "max_bytes", str(max_bytes))


def lift_quota(cluster: CephCluster) -> None:
    """No quota on the pool any more, and the monitor sees it has room."""
    set_quota(cluster, 0)
    wait_for(lambda: not pool_is_full(cluster), "lifting the quota")


def test_full_pool_stops_a_copy_and_leaves_nothing(no_leaks: None, lxcpath: Path, tmp_path: Path,
                                                    quota_ceph: CephCluster) -> None:
    """The pool goes over its quota while a copy writes into a new image through rbd-fuse and
    a loop device: the copy is paused once it writes, the quota set and enforced, then it goes
    on.  rbd-fuse would wait for room for ever; the watchdog sees the full pool and aborts it,
    and the create fails in one sentence saying the pool is full, with no container, no image
    (its data is freed so the removal gets through) and no rbd-fuse daemon left.  The copy
    runs in a child, so a hang fails the test."""
    big = tmp_path / "big"
    (big / "etc").mkdir(parents=True)
    blob = os.urandom(16 << 20)
    for i in range(24):
        (big / f"blob{i:02}").write_bytes(blob)
    script = tmp_path / "child.py"
    script.write_text(COPY_CHILD)
    conf = write_hermetic_lxc_conf(tmp_path)
    conf.write_text(conf.read_text() + _conf_lines(quota_ceph))

    def fill_up_while_paused() -> None:
        child = _copying_child()
        os.kill(child, signal.SIGSTOP)
        try:
            set_quota(quota_ceph, 16 << 20)
            wait_for(lambda: pool_is_full(quota_ceph), "enforcing the quota")
        finally:
            os.kill(child, signal.SIGCONT)

    try:
        out, err = _run_copy_child(script, lxcpath, big, dict(os.environ, BDEV_LXC_CONF=str(conf)),
                                   before=fill_up_while_paused)
        print("full pool:", out.strip())
        assert out.startswith("ERROR") and "Traceback" not in out + err, out + err[-2000:]
        assert FULL["pool quota"] in out and len(out.strip().splitlines()) == 1, out
        assert float(out.split()[1]) < 90
        assert [x.name for x in list_containers(lxcpath)] == []
        assert images(quota_ceph) == []
    finally:
        lift_quota(quota_ceph)
        purge(quota_ceph)
    assert fuse_daemons() == []


def _copying_child() -> int:
    """The pid of this test's copy child, from its rbd-fuse attachment's record."""
    from bdev_rbd._attach import fuse_root

    for record in fuse_root().glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads(record.read_text())["pid"])
            if _child_of_this_session(Path(f"/proc/{pid}")):
                return pid
    raise AssertionError("the copy child has no rbd-fuse attachment")


@pytest.mark.parametrize("full", FULL)
def test_full_pool_refuses_new_images_and_clones(no_leaks: None, lxcpath: Path, sample: Path, tmp_path: Path,
                                                  request: pytest.FixtureRequest, full: str) -> None:
    """In a pool with no room (over a 16 MiB quota, or on a cluster whose only OSD, of
    128 MiB, is full), creating a container and a snapshot clone of one fail at once (no wait
    for room) in one sentence saying why; nothing is left: no container, no image, no
    snapshot of the origin."""
    fillers = [f"filler{i}" for i in range(40)]
    with contextlib.ExitStack() as stack:
        if full == "pool quota":
            cluster: CephCluster = request.getfixturevalue("quota_ceph")
        else:
            cluster = stack.enter_context(throwaway_cluster(tmp_path / "small", device_bytes=128 << 20))
        conf = write_hermetic_lxc_conf(tmp_path)
        conf.write_text(conf.read_text() + _conf_lines(cluster))
        stack.enter_context(environment("BDEV_LXC_CONF", str(conf)))
        handle, io = ioctx(cluster)
        io.set_osdmap_full_try()  # this test's own writes and deletes must not wait for room
        stack.callback(handle.shutdown)
        stack.callback(io.close)
        stack.callback(purge, cluster)
        origin = Container("origin", lxcpath)
        origin.create(backend="rbd", source=sample)
        if full == "pool quota":
            stack.callback(lift_quota, cluster)
            set_quota(cluster, 16 << 20)
        stack.callback(_remove_objects, io, fillers)
        _fill(io, fillers)
        wait_for(lambda: pool_is_full(cluster), f"the pool filling up ({full})")
        for attempt in (lambda: Container("c1", lxcpath).create(backend="rbd", source=sample),
                        lambda: origin.clone("snapclone", snapshot=True)):
            start = time.monotonic()
            with pytest.raises(BdevError) as err:
                attempt()
            message = _one_sentence(err.value)
            print(f"{full}, {time.monotonic() - start:.1f} s: {message}")
            assert FULL[full] in message, message
            assert time.monotonic() - start < 20
            assert [x.name for x in list_containers(lxcpath)] == ["origin"]
            assert images(cluster) == ["origin"] and image_info(cluster, "origin")["snaps"] == []
        _remove_objects(io, fillers)
        origin.destroy()
        assert images(cluster) == []


def _fill(io: Any, names: list[str]) -> None:
    """Write 4 MiB objects ``names`` until they are all written or Ceph says there is no room."""
    import rados

    for name in names:
        try:
            io.write_full(name, os.urandom(4 << 20))
        except rados.Error as exc:
            if getattr(exc, "errno", None) in (errno.EDQUOT, errno.ENOSPC):
                return
            raise


def _remove_objects(io: Any, names: list[str]) -> None:
    """Remove the RADOS objects ``names`` that exist."""
    import rados

    for name in names:
        with contextlib.suppress(rados.ObjectNotFound):
            io.remove_object(name)


def _copying_into(source: Path) -> bool:
    """Whether a loop-mounted rbd-fuse image already holds the first file of ``source``."""
    from bdev.mounts import mountpoints_of
    from bdev_rbd._attach import loops_backing

    first = sorted(p.name for p in source.iterdir() if p.is_file())[0]
    for directory in _attachment_dirs():
        for device in loops_backing(str(directory / "c1")):
            if any(os.path.exists(os.path.join(m, first)) for m in mountpoints_of(device)):
                return True
    return False


def _run_copy_child(script: Path, lxcpath: Path, source: Path, env: dict[str, str], *, before=None) -> tuple[str, str]:
    """Run the copy child to its end (calling ``before()`` once the files are being copied, if
    given); a child that hangs is unblocked and the test fails."""
    child = subprocess.Popen([sys.executable, str(script), str(lxcpath), str(source)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if before is not None:
            deadline = time.monotonic() + 60
            while not _copying_into(source) and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            before()
        return child.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        _abort_child_attachments(child.pid)
        child.kill()
        out, err = child.communicate(timeout=60)
        pytest.fail(f"the copy hung: {out} {err[-2000:]}")


COPY_CHILD = textwrap.dedent("""
    import sys, time
    from bdev.api import Container
    from bdev.errors import BdevError
    start = time.monotonic()
    try:
        Container("c1", sys.argv[1]).create(backend="rbd", source=sys.argv[2])
        print("CREATED")
    except BdevError as exc:
        print("ERROR", round(time.monotonic() - start, 1), exc)
""")


def _attachment_dirs() -> list[Path]:
    """rbd-fuse directories, from their records (a stat of a dead FUSE mount would hang)."""
    from bdev_rbd._attach import fuse_root

    return [p.with_suffix("") for p in fuse_root().glob("*.json")]


def _abort_child_attachments(pid: int) -> None:
    """Unblock a child stuck on a dead rbd-fuse (a failed test must not hang the session)."""
    from bdev_rbd._attach import _stop_fuse
    from bdev_rbd._watchdog import abort_fuse, kill_daemon

    for directory in _attachment_dirs():
        if directory.name.startswith(f"{pid}-"):
            entry = mount_at(directory)
            if entry is not None:
                abort_fuse(int(next(line.split()[2].split(":")[1] for line in open("/proc/self/mountinfo")
                                     if line.split()[4] == str(directory))))
            kill_daemon(directory)
            _stop_fuse(directory)


def test_osd_killed_mid_copy(no_leaks: None, lxcpath: Path, tmp_path: Path) -> None:
    """The OSD dies while a copy writes into a new image (the second rbd-fuse attachment: the
    first formats the image): rbd-fuse would retry for ever, the watchdog aborts it once the
    cluster misses its timeout, and the copy fails in one sentence; no container is defined
    and no rbd-fuse daemon is left.  The copy runs in a child, so a hang fails the test
    instead of stopping the session."""
    big = tmp_path / "big"
    (big / "etc").mkdir(parents=True)
    for i in range(16):
        (big / f"blob{i}").write_bytes(os.urandom(16 << 20))
    script = tmp_path / "child.py"
    script.write_text(COPY_CHILD)
    with throwaway_cluster(tmp_path / "doomed") as doomed:
        conf = write_hermetic_lxc_conf(tmp_path)
        conf.write_text(conf.read_text() + _conf_lines(doomed))
        env = dict(os.environ, BDEV_LXC_CONF=str(conf))
        out, err = _run_copy_child(script, lxcpath, big, env, before=doomed.kill_osd)
        print("OSD killed:", out.strip())
        assert out.startswith("ERROR") and "Traceback" not in out + err, out + err[-2000:]
        assert "the Ceph cluster did not answer" in out or "Ceph did not answer" in out, out
        assert float(out.split()[1]) < 90
        assert [x.name for x in list_containers(lxcpath)] == []
    assert fuse_daemons() == []


# ---------------------------------------------------------------------------- implementation


def test_implementation_reported_and_forced_kernel_map_fails_clearly(rlxc: Path, sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bdev backends`` says how images are attached here; forcing the kernel driver on a host
    without it fails in one sentence from ``rbd device map`` itself, and nothing is left."""
    from click.testing import CliRunner

    from bdev.cli.main import cli

    result = CliRunner().invoke(cli, ["backends", "--format", "json"], catch_exceptions=False)
    record = next(b for b in json.loads(result.stdout)["backends"] if b["name"] == "rbd")
    assert record["usable"], record
    assert record["implementation"].startswith("librbd; mounts through ")
    if os.path.isdir("/sys/bus/rbd"):
        pytest.skip("this kernel has the rbd driver: the forced-map failure cannot be shown")
    monkeypatch.setenv("BDEV_RBD_MAP", "krbd")
    c = Container("c1", rlxc)
    with pytest.raises(BdevError) as err:
        c.create(backend="rbd", source=sample)
    assert "cannot map RBD image lxc/c1 (rbd:" in _one_sentence(err.value)
    assert not c.defined and os.listdir(rlxc) == []
    monkeypatch.setenv("BDEV_RBD_MAP", "bogus")
    assert backend().unavailable_reasons() == ["BDEV_RBD_MAP='bogus' is not one of krbd, nbd, fuse"]
