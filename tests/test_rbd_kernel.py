"""The rbd backend through the kernel: ``rbd device map`` (krbd, ``/dev/rbdN``) and ``rbd-nbd
map`` (``/dev/nbdN``), each forced with ``BDEV_RBD_MAP``, on a real throwaway Ceph cluster
(:mod:`bdev.testing.ceph`).  A kernel without the rbd or the nbd driver skips that half, saying
so; the guest suite (``vagrant/guest-suite.sh --suites rbd``) loads both on Debian's kernel and
runs every case.  Fixtures and helpers come from tests/test_rbd.py (the rbd-fuse path)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.command import run, which
from bdev.errors import Busy
from bdev.mounts import mount_at
from bdev.testing.ceph import CephCluster, ceph_unavailable_reason
import test_rbd as fuse_cases  # two of its cases run again through the kernel (not collected here)
from test_rbd import (  # noqa: F401  (ceph, rbd_lxc_conf, rlxc and sample are fixtures)
    _busybox,
    _lxc,
    _root_mount,
    _stop_and_destroy,
    backend,
    ceph,
    image_info,
    images,
    lock_holders,
    matches,
    rbd_lxc_conf,
    read,
    rlxc,
    sample,
)


DEVICE = {"krbd": re.compile(r"/dev/rbd\d+"), "nbd": re.compile(r"/dev/nbd\d+")}


def kernel_problem(kind: str) -> str | None:
    """Why images cannot be attached through ``kind`` here, or None."""
    if kind == "krbd":
        if not os.path.isdir("/sys/bus/rbd"):
            return "this kernel has no rbd driver (/sys/bus/rbd is missing: modprobe rbd; the guest suite runs this)"
        return None if which("rbd") else "the rbd command is not installed (apt-get install ceph-common)"
    if not os.path.isdir("/sys/module/nbd"):
        return "this kernel has no nbd driver loaded (/sys/module/nbd is missing: modprobe nbd; the guest suite runs this)"
    return None if which("rbd-nbd") else "rbd-nbd is not installed (apt-get install rbd-nbd)"


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="a throwaway Ceph cluster and kernel block devices need root"),
    pytest.mark.skipif(ceph_unavailable_reason() is not None, reason=str(ceph_unavailable_reason())),
    # no cluster is started for nothing: each case skips alone where only one driver is missing
    pytest.mark.skipif(all(kernel_problem(kind) for kind in DEVICE),
                       reason=" and ".join(str(kernel_problem(kind)) for kind in sorted(DEVICE))),
]


@pytest.fixture(params=sorted(DEVICE))
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """krbd or nbd, forced with BDEV_RBD_MAP (inherited by the runtime's processes)."""
    problem = kernel_problem(request.param)
    if problem:
        pytest.skip(problem)
    monkeypatch.setenv("BDEV_RBD_MAP", request.param)
    return request.param


def mapped(cluster: CephCluster) -> list[dict[str, str]]:
    """Kernel block devices mapping an image of ``cluster``'s pool: krbd's from sysfs (the
    cluster told apart by its fsid), rbd-nbd's from ``rbd-nbd list-mapped`` (by the config file
    on the daemon's command line)."""
    fsid = next(line.split("=", 1)[1].strip() for line in cluster.conf.read_text().splitlines()
                if line.startswith("fsid"))
    found = []
    for device in sorted(Path("/sys/bus/rbd/devices").glob("*")) if os.path.isdir("/sys/bus/rbd") else []:
        attr = {name: (device / name).read_text().strip() for name in ("cluster_fsid", "pool", "name", "current_snap")}
        if attr["cluster_fsid"] == fsid and attr["pool"] == cluster.pool:
            found.append({"device": f"/dev/rbd{device.name}", "image": attr["name"], "snap": attr["current_snap"]})
    if which("rbd-nbd") and any(Path("/sys/block").glob("nbd*/pid")):
        for entry in json.loads(run(["rbd-nbd", "list-mapped", "--format", "json"]).stdout or "[]"):
            cmdline = Path(f"/proc/{entry['id']}/cmdline").read_bytes().split(b"\0")
            if str(cluster.conf).encode() in cmdline and entry["pool"] == cluster.pool:
                found.append({"device": entry["device"], "image": entry["image"], "snap": entry["snap"] or "-"})
    return found


@pytest.fixture
def klxc(rlxc: Path, ceph: CephCluster, kind: str) -> Iterator[Path]:
    """rlxc (no image left) and, afterwards, no kernel device left mapping this cluster's images."""
    yield rlxc
    left = mapped(ceph)
    for entry in left:
        run(["rbd", "device", "unmap", "-t", kind, entry["device"]], check=False)
    assert left == [], f"{kind} devices left mapped"


def mounted_device(mountpoint: Path) -> str:
    entry = mount_at(mountpoint)
    assert entry is not None, f"nothing mounted at {mountpoint}"
    return entry.source


def test_mount_write_unmount_through_the_kernel(klxc: Path, sample: Path, ceph: CephCluster, kind: str,
                                                tmp_path: Path) -> None:
    """Created from a tree (formatted and filled through the kernel device), mounted on
    /dev/rbdN or /dev/nbdN under this mount's lock, written without sync, unmounted: the
    device is unmapped and the lock released, and the data is in the image."""
    c = Container("c1", klxc)
    c.create(backend="rbd", source=sample)
    assert mapped(ceph) == [], "create left its attachment mapped"
    assert matches(c, sample) == []
    point = tmp_path / "mnt"
    point.mkdir()
    backend().mount(c.rootfs, point)
    try:
        device = mounted_device(point)
        assert DEVICE[kind].fullmatch(device), device
        assert mapped(ceph) == [{"device": device, "image": "c1", "snap": "-"}]
        assert [json.loads(cookie)["mount"] for cookie in lock_holders(ceph, "c1")] == [str(point)]
        (point / "etc" / "written").write_bytes(b"through the kernel\n" * 4096)
    finally:
        backend().umount(c.rootfs, point)
    assert mount_at(point) is None and mapped(ceph) == [] and lock_holders(ceph, "c1") == []
    assert read(c, "etc/written") == "through the kernel\n" * 4096
    c.destroy()
    assert images(ceph) == [] and mapped(ceph) == []


def test_mounted_image_is_seen_in_use(klxc: Path, sample: Path, ceph: CephCluster, kind: str, tmp_path: Path) -> None:
    """An image mounted read-only (no lock) through the kernel is found mounted here: destroying
    it is refused in one sentence naming the mount point, and nothing is removed."""
    c = Container("c1", klxc)
    c.create(backend="rbd", source=sample)
    point = tmp_path / "ro"
    point.mkdir()
    backend().mount(c.rootfs, point, readonly=True)
    try:
        assert DEVICE[kind].fullmatch(mounted_device(point))
        with pytest.raises(Busy) as refused:
            backend().destroy(c.rootfs)
        assert str(point) in str(refused.value) and "\n" not in str(refused.value)
        assert images(ceph) == ["c1"]
    finally:
        backend().umount(c.rootfs, point)
    assert mapped(ceph) == []
    c.destroy()


def test_snapshot_clone_of_mounted_image_is_frozen_and_consistent(klxc: Path, sample: Path, ceph: CephCluster,
                                                                  kind: str, tmp_path: Path) -> None:
    """A snapshot clone of an image mounted read-write on a kernel device: the filesystem is
    frozen around the RBD snapshot, so what was written just before (not synced) is in the
    clone, and the mount keeps working afterwards."""
    c = Container("c1", klxc)
    c.create(backend="rbd", source=sample)
    point = tmp_path / "mnt"
    point.mkdir()
    backend().mount(c.rootfs, point)
    try:
        assert DEVICE[kind].fullmatch(mounted_device(point))
        expected = os.urandom(1 << 20)
        (point / "written-before").write_bytes(expected)
        clone = c.clone("frozen", snapshot=True, maybe_snapshot=True)
        (point / "written-after").write_text("after\n")
    finally:
        backend().umount(c.rootfs, point)
    assert clone.outcome.method == "snapshot"
    assert image_info(ceph, "frozen")["parent"] == ["lxc", "c1", "frozen"]
    with backend().accessed(clone.rootfs, readonly=True) as path:
        assert DEVICE[kind].fullmatch(mount_at(path).source)
        assert (path / "written-before").read_bytes() == expected
        assert not (path / "written-after").exists()
    assert [p for p in matches(clone, sample) if not p.startswith(("written-before", ".:"))] == []  # . : its mtime
    assert read(c, "written-after") == "after\n"
    clone.destroy()
    c.destroy()
    assert images(ceph) == [] and mapped(ceph) == []


def test_restores_through_the_kernel(klxc: Path, sample: Path, ceph: CephCluster) -> None:
    """test_rbd.py's restore cases with the image attached by the forced kernel driver: the
    latest snapshot rolled back, an older one cloned and swapped in while newer ones stay,
    each snapshot restored to a new name, every one read back through the device."""
    fuse_cases.test_latest_snapshot_restores_by_rollback(klxc, sample, ceph)
    fuse_cases.test_restore_older_snapshot_keeps_newer(klxc, sample, ceph)
    assert mapped(ceph) == []


def test_backends_reports_the_kernel_implementation(ceph: CephCluster, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bdev backends`` names the forced attachment, and unforced the kernel's own driver
    ahead of rbd-fuse (krbd where the rbd driver is loaded, else rbd-nbd)."""
    from click.testing import CliRunner

    from bdev.cli.main import cli

    def implementation() -> str:
        result = CliRunner().invoke(cli, ["backends", "--format", "json"], catch_exceptions=False)
        record = next(b for b in json.loads(result.stdout)["backends"] if b["name"] == "rbd")
        assert record["usable"], record
        return record["implementation"]

    assert f"mounts through BDEV_RBD_MAP={kind};" in implementation()
    monkeypatch.delenv("BDEV_RBD_MAP")
    expected = "rbd device map" if kernel_problem("krbd") is None else "rbd-nbd on the kernel's nbd driver"
    assert expected in implementation()


def test_runtime_starts_an_rbd_container_on_a_kernel_device(klxc: Path, tmp_path: Path, ceph: CephCluster,
                                                           kind: str) -> None:
    """``lxc-start`` of a busybox rbd container: the monitor maps the image and the container's
    ``/`` is the kernel device; written without sync and stopped, the data is in the image, the
    device is unmapped and the lock gone."""
    try:
        _busybox(None, klxc, "c1", tmp_path)
        started = _lxc(None, "lxc-start", "-P", klxc, "-n", "c1")
        assert started.returncode == 0, started.stdout + started.stderr
        root = _root_mount(None, klxc, "c1").split()
        assert DEVICE[kind].fullmatch(root[0]) and root[2] == "ext4", root
        assert [entry["image"] for entry in mapped(ceph)] == ["c1"]
        assert [json.loads(cookie)["mount"] for cookie in lock_holders(ceph, "c1")] == ["container c1"]
        wrote = _lxc(None, "lxc-attach", "-P", klxc, "-n", "c1", "--", "/bin/sh", "-c",
                     "echo unsynced > /etc/kernel-written")
        assert wrote.returncode == 0, wrote.stdout + wrote.stderr
        stopped = _lxc(None, "lxc-stop", "-P", klxc, "-n", "c1", "-k")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert mapped(ceph) == [] and lock_holders(ceph, "c1") == [], "the stopped container's device stayed"
        with backend().accessed(Container("c1", klxc).rootfs) as path:  # read-write: replays a journal
            assert (path / "etc" / "kernel-written").read_text() == "unsynced\n"
    finally:
        _stop_and_destroy(None, klxc, "c1")
    assert images(ceph) == []
