"""The lvm backend.

Two halves:

* **Here** (any kernel, as root): LVM's name rules checked against the real ``lvcreate``, the
  real ``vgs``/``lvs`` JSON reports parsed, and every refusal path against a real volume group
  on a loop device (``pvcreate``/``vgcreate`` and metadata-only volumes work without
  device-mapper); on a kernel without device-mapper, the real ``lvcreate`` failing gives one
  sentence and leaves nothing behind.
* **In a guest with device-mapper** (``BDEV_TEST_LVM_VG`` names a volume group with a thin
  pool ``lxc``: ``scripts/guest-test.sh``): the whole backend contract on thin and on thick
  volumes, and what only LVM does: thin and thick snapshot clones, restore in place with
  newer snapshots, destroying an origin with thick dependents, the near-full thin pool
  warning and refusal, new xfs UUIDs for clones, detection of real logical volumes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from bdev.api import Container
from bdev.command import run, which
from bdev.errors import AlreadyExists, BackendUnavailable, BdevError, HasDependents, InvalidInput, NotFound
from bdev.records import CreateOptions, Placement, Rootfs
from bdev.testing.kit import BackendContract
from bdev.testing.kit.storage import environment, write_hermetic_lxc_conf
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import loop_devices
from bdev.testing.trees import tree_differences

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="LVM commands need root"),
    pytest.mark.skipif(not which("lvcreate"), reason="lvm2 is not installed (apt-get install lvm2)"),
]

from bdev_lvm import _devices, _lvm, _names  # noqa: E402
from bdev_lvm.backend import LvmBackend  # noqa: E402

ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}
METADATA_ONLY = ["--config", "global{activation=0}"]  # LVM writes metadata, never touches the kernel
GUEST_VG = os.environ.get("BDEV_TEST_LVM_VG", "")
DM_PROBLEM = _lvm.device_mapper_problem()
GUEST_HINT = "the lvm kit runs in the qemu guest: scripts/guest-test.sh"
if DM_PROBLEM:
    GUEST_SKIP = f"device-mapper is not in this kernel; {GUEST_HINT}"
elif not GUEST_VG:
    GUEST_SKIP = f"BDEV_TEST_LVM_VG names no volume group with a thin pool 'lxc' to test in; {GUEST_HINT}"
else:
    GUEST_SKIP = ""
needs_guest = pytest.mark.skipif(bool(GUEST_SKIP), reason=GUEST_SKIP or "unused")
needs_no_dm = pytest.mark.skipif(DM_PROBLEM is None, reason="this kernel has device-mapper, so lvcreate does not fail for want of it")
_SERIAL = itertools.count()


def lvm_run(*argv: str, check: bool = True):
    return run(list(argv), env=ENV, check=check)


def lv_names(vg: str) -> list[str]:
    return sorted(_lvm.volumes(vg))


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    assert text.endswith("."), text
    return text


# ---------------------------------------------------------------------------- a real VG here


@contextlib.contextmanager
def scratch_volume_group(directory: Path, size: str) -> Iterator[str]:
    """A volume group of its own on a loop device over a sparse file of ``size`` in
    ``directory``; the VG, the PV, the loop device and LVM's metadata backups of it are removed
    afterwards, even when the body fails."""
    name = f"bdevtest{os.getpid()}x{next(_SERIAL)}"
    image = directory / f"{name}.img"
    run(["truncate", "-s", size, str(image)])
    device = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    try:
        lvm_run("pvcreate", "-q", device)
        lvm_run("vgcreate", "-q", name, device)
        yield name
    finally:
        lvm_run("vgremove", "-q", "-f", *([] if DM_PROBLEM is None else METADATA_ONLY), name, check=False)
        lvm_run("pvremove", "-q", "-ff", "-y", device, check=False)
        if which("udevadm"):
            run(["udevadm", "settle"], check=False)  # udev's LVM rules may still hold the device
        run(["losetup", "-d", device], check=False)  # a busy device goes when its last user lets go
        image.unlink(missing_ok=True)
        for leftover in [Path("/etc/lvm/backup") / name, *Path("/etc/lvm/archive").glob(f"{name}_*.vg")]:
            leftover.unlink(missing_ok=True)
    deadline = time.monotonic() + 10
    while any(str(image) in entry for entry in loop_devices()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(str(image) in entry for entry in loop_devices()), "the PV's loop device was left attached"


@pytest.fixture
def host_vg(tmp_path: Path) -> Iterator[str]:
    """A 256 MiB volume group of the test's own (see :func:`scratch_volume_group`)."""
    with scratch_volume_group(tmp_path, "256M") as name:
        yield name


def metadata_volume(vg: str, name: str, size: str = "8M") -> None:
    """A logical volume that exists in the VG's metadata only (no device-mapper needed)."""
    lvm_run("lvcreate", "-q", *METADATA_ONLY, "-an", "-Zn", "-L", size, "-n", name, vg)


@pytest.fixture
def backend() -> LvmBackend:
    return LvmBackend({})


# ---------------------------------------------------------------------------- names


NAMES = {
    "web1": True, "web1.snap0": True, "a+b_c-d.e": True, "x" * 100: True,
    "snapshot": False, "snapshot1": False, "pvmove0": False, "a_mlog": False, "db_tdata": False,
    "x_rimage_1": False, ".": False, "..": False, "-x": False, "a b": False, "wéb": False, "a/b": False,
    "x" * 128: False,
}


@pytest.mark.parametrize("name", list(NAMES), ids=[n[:20] for n in NAMES])
def test_lv_name_rules(name: str) -> None:
    problem = _names.lv_problem(name)
    assert (problem is None) == NAMES[name], problem
    if problem:
        assert repr(name[:20]) in problem or repr(name) in problem


def test_lv_name_rules_agree_with_the_real_lvcreate(host_vg: str) -> None:
    """Every name: our verdict is lvcreate's (metadata-only volumes, so this runs anywhere)."""
    for name, ok in NAMES.items():
        if "/" in name:
            continue  # lvcreate reads vg/lv: not a name at all
        result = lvm_run("lvcreate", "-q", *METADATA_ONLY, "-an", "-Zn", "-L", "4M", "-n", name, host_vg, check=False)
        assert (result.returncode == 0) == ok, f"{name!r}: lvcreate said {result.returncode}: {result.stderr[-300:]}"
        if ok:
            lvm_run("lvremove", "-q", "-y", f"{host_vg}/{name}")


def test_vg_names_and_locators() -> None:
    assert _names.vg_problem("lxc") is None
    assert "not valid" in _names.vg_problem("my vg")
    assert _names.vg_problem("-vg") is not None
    assert _names.split_locator("/dev/lxc/web1") == ("lxc", "web1")
    for bad in ("/dev/lxc", "dev/lxc/web1", "/dev/lxc/web1/x", "/dev//web1", "/mnt/lxc/web1"):
        assert _names.split_locator(bad) is None
    assert _names.dm_name("my-vg", "web-1") == "my--vg-web--1"
    assert _names.lv_problem("x" * 70, "v" * 60) is not None  # the device-mapper name would not fit


def test_parse_accepts_locators_and_refuses_others(backend: LvmBackend) -> None:
    assert backend.parse("/dev/lxc/web1") == Rootfs("lvm", "/dev/lxc/web1")
    for bad in ("/dev/lxc", "lxc/web1", "/dev/lxc/snapshot3", "/dev/a b/c"):
        with pytest.raises(InvalidInput) as refused:
            backend.parse(bad)
        one_sentence(refused.value)


def test_default_source_names_volumes_after_their_container(backend: LvmBackend, tmp_path: Path) -> None:
    lxcpath = tmp_path / "lxc"
    web1 = Placement(lxcpath, "web1")
    snap = Placement(lxcpath / "web1" / "snaps", "snap0", owner="web1")
    other_snap = Placement(lxcpath / "db" / "snaps", "snap0", owner="db")
    assert backend.default_source(web1, CreateOptions()) == "/dev/lxc/web1"
    assert backend.default_source(snap, CreateOptions()) == "/dev/lxc/web1.snap0"
    assert backend.default_source(other_snap, CreateOptions()) == "/dev/lxc/db.snap0"
    opts = CreateOptions(extra={"vgname": "vg0", "lvname": "root1"})
    assert backend.default_source(web1, opts) == "/dev/vg0/root1"
    staged = web1.staged("restore", near="/dev/vg0/root1")
    assert backend.default_source(staged, CreateOptions()) == "/dev/vg0/root1.bdev-restore"
    configured = LvmBackend({"lxc.bdev.lvm.vg": "ssd", "lxc.bdev.lvm.thin_pool": "tp"})
    assert configured.default_source(web1, CreateOptions()) == "/dev/ssd/web1"
    assert configured.thin_pool_name() == "tp"
    assert configured.thin_pool_name(CreateOptions(extra={"thinpool": "other"})) == "other"


# ---------------------------------------------------------------------------- reports


def test_parse_real_vgs_report(host_vg: str) -> None:
    text = lvm_run("vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", ",".join(_lvm.VG_FIELDS), host_vg).stdout
    (group,) = _lvm.parse_vgs(text)
    plain = lvm_run("vgs", "--noheadings", "--separator", ":", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,vg_extent_size", host_vg).stdout
    name, size, free, extent = plain.strip().split(":")
    assert (group.name, group.size, group.free, group.extent_size) == (name, int(size), int(free), int(extent))
    assert group.extent_size == 4 << 20 and 0 < group.free <= group.size < 256 << 20
    assert _lvm.volume_group(host_vg) == group
    assert _lvm.volume_group(host_vg + "-missing") is None


def test_parse_real_lvs_report(host_vg: str) -> None:
    metadata_volume(host_vg, "web1", "12M")
    lvm_run("lvchange", "-q", "--addtag", "bdev-container-snapshot", f"{host_vg}/web1")
    found = _lvm.volumes(host_vg)
    lv = found["web1"]
    assert (lv.name, lv.vg, lv.size, lv.segtype) == ("web1", host_vg, 12 << 20, "linear")
    assert len(lv.attr) == 10 and not lv.thin and not lv.thick_snapshot and not lv.thin_pool
    assert lv.tags == ("bdev-container-snapshot",) and lv.uuid.count("-") == 6
    assert lv.data_percent is None and lv.path == f"/dev/{host_vg}/web1"
    assert _lvm.volumes(host_vg + "-missing") == {}


# Captured from lvm2 2.03.16 (Debian 12, Linux 6.1) in the qemu guest by
# test_guest_reports_parse_live: `lvs -a` of the VG lxc with its thin pool lxc, a thin volume r1
# and its container snapshot r1.snap0 (a thin snapshot), a thick volume r2 and its thick
# snapshot r3 (100%ORIGIN: 64 MiB plus the exception store's room).
THIN_SAMPLE = """\
  {
      "report": [
          {
              "lv": [
                  {"lv_name":"[lvol0_pmspare]", "vg_name":"lxc", "lv_attr":"ewi-------", "lv_size":"4194304", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "lv_uuid":"oc7sZ3-wDPh-11CP-Er4i-FhAn-501S-m4b8zA", "segtype":"linear", "lv_tags":""},
                  {"lv_name":"lxc", "vg_name":"lxc", "lv_attr":"twi-aotz--", "lv_size":"4290772992", "pool_lv":"", "origin":"", "data_percent":"0.82", "metadata_percent":"11.62", "lv_uuid":"F6odUi-SQk4-RJ53-SqYq-yMVy-q81l-J2NTBv", "segtype":"thin-pool", "lv_tags":""},
                  {"lv_name":"[lxc_tdata]", "vg_name":"lxc", "lv_attr":"Twi-ao----", "lv_size":"4290772992", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "lv_uuid":"wZHNTf-Xxk4-3jUc-cQwA-QDCr-1FY6-0sWgxW", "segtype":"linear", "lv_tags":""},
                  {"lv_name":"[lxc_tmeta]", "vg_name":"lxc", "lv_attr":"ewi-ao----", "lv_size":"4194304", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "lv_uuid":"TV9SVA-cBve-RRVv-YSZF-PTm9-f2vS-GoqDF2", "segtype":"linear", "lv_tags":""},
                  {"lv_name":"r1", "vg_name":"lxc", "lv_attr":"Vwi-a-tz--", "lv_size":"1073741824", "pool_lv":"lxc", "origin":"", "data_percent":"3.26", "metadata_percent":"", "lv_uuid":"Qv1pcF-AZeC-kVQh-7XOf-nKgB-Dyin-UqM1RK", "segtype":"thin", "lv_tags":""},
                  {"lv_name":"r1.snap0", "vg_name":"lxc", "lv_attr":"Vwi-a-tz--", "lv_size":"1073741824", "pool_lv":"lxc", "origin":"r1", "data_percent":"3.26", "metadata_percent":"", "lv_uuid":"7FHbbH-iZ2n-4t3E-02uj-AA19-zucd-Lktfhb", "segtype":"thin", "lv_tags":"bdev-container-snapshot"},
                  {"lv_name":"r2", "vg_name":"lxc", "lv_attr":"owi-a-s---", "lv_size":"67108864", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "lv_uuid":"6UbscO-KAuH-rJJM-TVkx-LJql-5aWE-pCAI02", "segtype":"linear", "lv_tags":""},
                  {"lv_name":"r3", "vg_name":"lxc", "lv_attr":"swi-a-s---", "lv_size":"71303168", "pool_lv":"", "origin":"r2", "data_percent":"0.05", "metadata_percent":"", "lv_uuid":"RcyMYe-5Blq-peCj-Rcdj-024O-0VoT-1Czlbh", "segtype":"linear", "lv_tags":""}
              ]
          }
      ]
  }
"""


def test_parse_thin_and_thick_report_sample() -> None:
    found = {lv.name: lv for lv in _lvm.parse_lvs(THIN_SAMPLE)}
    pool, r1, snap, r2, r3 = (found[n] for n in ("lxc", "r1", "r1.snap0", "r2", "r3"))
    assert pool.thin_pool and (pool.data_percent, pool.metadata_percent) == (0.82, 11.62) and pool.size == 4290772992
    assert r1.thin and r1.pool == "lxc" and r1.active and r1.size == 1 << 30 and r1.data_percent == 3.26
    assert snap.thin and snap.origin == "r1" and snap.tags == ("bdev-container-snapshot",)
    assert not r2.thin and not r2.thick_snapshot and r2.segtype == "linear" and r2.size == 64 << 20
    assert r3.thick_snapshot and r3.origin == "r2" and r3.data_percent == 0.05 and r3.size >= r2.size
    assert not found["[lxc_tdata]"].thin_pool and found["[lxc_tdata]"].active


def test_unreadable_report_is_one_sentence() -> None:
    with pytest.raises(BdevError) as bad:
        _lvm.parse_lvs("WARNING: something\n")
    assert "cannot read LVM's lv report" in one_sentence(bad.value)


# ---------------------------------------------------------------------------- refusals, with a real VG


def _refusal(backend: LvmBackend, lxcpath: Path, name: str = "c1", **opts: object) -> str:
    extra = {k: str(v) for k, v in opts.items() if k not in ("fssize", "fstype")}
    options = CreateOptions(fstype=opts.get("fstype"), fssize=opts.get("fssize"), extra=extra)  # type: ignore[arg-type]
    refusal = backend.refusal_at(Placement(lxcpath, name), options)
    assert refusal is not None
    assert "\n" not in refusal
    return refusal


def test_refusals_against_a_real_volume_group(host_vg: str, backend: LvmBackend, lxcpath: Path) -> None:
    before = lv_names(host_vg)
    free = _lvm.volume_group(host_vg).free
    assert "volume group 'nosuchvg' does not exist" in _refusal(backend, lxcpath, vgname="nosuchvg")
    too_big = _refusal(backend, lxcpath, vgname=host_vg, fssize=free + (64 << 20))
    assert "free in volume group" in too_big and host_vg in too_big
    assert "--lvname" in _refusal(backend, lxcpath, "my box", vgname=host_vg)
    assert "reserved" in _refusal(backend, lxcpath, vgname=host_vg, lvname="snapshot7")
    assert "not valid for LVM" in _refusal(backend, lxcpath, vgname="bad vg")
    assert "thin pool" in _refusal(backend, lxcpath, vgname=host_vg, thinpool="nosuchpool", fssize=8 << 20)
    assert "cannot hold a 'zfs' filesystem" in _refusal(backend, lxcpath, vgname=host_vg, fstype="zfs")
    assert "too small for xfs" in _refusal(backend, lxcpath, vgname=host_vg, fstype="xfs", fssize=64 << 20)
    metadata_volume(host_vg, "c1")
    assert f"{host_vg}/c1 already exists" in _refusal(backend, lxcpath, vgname=host_vg, fssize=8 << 20)
    lvm_run("lvremove", "-q", "-y", f"{host_vg}/c1")
    assert backend.refusal_at(Placement(lxcpath, "c1"), CreateOptions(fssize=8 << 20, extra={"vgname": host_vg})) is None
    assert lv_names(host_vg) == before and os.listdir(lxcpath) == []


def test_vg_from_lxc_conf_setting(host_vg: str, lxcpath: Path) -> None:
    configured = LvmBackend({"lxc.bdev.lvm.vg": host_vg})
    assert configured.refusal_at(Placement(lxcpath, "c1"), CreateOptions(fssize=8 << 20)) is None
    elsewhere = LvmBackend({"lxc.bdev.lvm.vg": host_vg + "-missing"})
    assert "does not exist" in elsewhere.refusal_at(Placement(lxcpath, "c1"), CreateOptions())


@needs_no_dm
def test_real_lvcreate_fails_in_one_sentence_leaving_nothing(host_vg: str, backend: LvmBackend, lxcpath: Path) -> None:
    """The backend asked to create anyway (past its own availability check): the real
    ``lvcreate`` fails on this kernel; one sentence, no volume, no rootfs directory."""
    placement = Placement(lxcpath, "c1")
    placement.directory.mkdir()
    with pytest.raises(BackendUnavailable) as failed:
        backend.create(placement, CreateOptions(fssize=8 << 20, extra={"vgname": host_vg}))
    text = one_sentence(failed.value)
    assert "lvcreate" in text and "device-mapper" in text
    assert lv_names(host_vg) == []
    assert os.listdir(placement.directory) == []


@needs_no_dm
def test_create_refused_on_a_kernel_without_device_mapper(host_vg: str, lxcpath: Path, tmp_path: Path) -> None:
    sample = make_sample_rootfs(tmp_path / "sample")
    with pytest.raises(BackendUnavailable) as refused:
        Container("c1", lxcpath).create(backend="lvm", source=sample, options=CreateOptions(extra={"vgname": host_vg}))
    assert "device-mapper is not in this kernel" in one_sentence(refused.value)
    assert os.listdir(lxcpath) == [] and lv_names(host_vg) == []


@needs_no_dm
def test_lxc_create_says_why_in_one_line(host_vg: str, lxcpath: Path) -> None:
    from click.testing import CliRunner

    from bdev.cli.lxc import create as lxc_create

    result = CliRunner().invoke(lxc_create.command, ["-n", "c1", "-t", "none", "-B", "lvm", "--vgname", host_vg, "-P", str(lxcpath)])
    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "device-mapper is not in this kernel" in lines[0], result.stderr
    assert os.listdir(lxcpath) == [] and lv_names(host_vg) == []


@needs_no_dm
def test_unavailable_reason_is_one_sentence_about_device_mapper(backend: LvmBackend) -> None:
    reasons = backend.unavailable_reasons()
    assert any(r.startswith("device-mapper is not in this kernel") and "\n" not in r for r in reasons), reasons


def test_device_mapper_detection(tmp_path: Path) -> None:
    misc = tmp_path / "misc"
    misc.write_text(" 61 vga_arbiter\n236 device-mapper\n")
    assert _lvm.device_mapper_problem(misc, tmp_path / "modules") is None
    misc.write_text(" 61 vga_arbiter\n")
    modules = tmp_path / "modules" / os.uname().release
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text("kernel/drivers/md/dm-mod.ko.xz:\n")
    assert _lvm.device_mapper_problem(misc, tmp_path / "modules") is None
    (modules / "modules.dep").write_text("kernel/fs/ext4/ext4.ko.xz:\n")
    if not Path("/sys/module/dm_mod").exists():
        assert "device-mapper is not in this kernel" in _lvm.device_mapper_problem(misc, tmp_path / "modules")


def test_destroy_removes_an_inactive_volume_and_tolerates_a_missing_one(host_vg: str, backend: LvmBackend) -> None:
    metadata_volume(host_vg, "gone")
    rootfs = Rootfs("lvm", f"/dev/{host_vg}/gone")
    assert backend.exists(rootfs)
    backend.destroy(rootfs)
    assert not backend.exists(rootfs) and lv_names(host_vg) == []
    backend.destroy(rootfs)
    with pytest.raises(NotFound):
        backend.identity(rootfs)


def test_lvm_errors_become_sentences() -> None:
    from bdev.errors import CommandError

    no_dm = CommandError(
        ["/usr/sbin/lvcreate", "-L", "8m", "-n", "c1", "vg0"], 3,
        "  /dev/mapper/control: open failed: No such device\n  striped: Required device-mapper target(s) not detected in your kernel.\n"
        "  Run `lvcreate --help' for more information.\n",
    )
    text = one_sentence(_lvm.explain(no_dm))
    assert "'lvcreate -L 8m -n c1 vg0' failed" in text and "no device-mapper striped target" in text
    space = CommandError(["lvcreate"], 5, '  Volume group "vg0" has insufficient free space (2 extents): 256 required.\n')
    assert "not enough free space" in one_sentence(_lvm.explain(space))
    exists = CommandError(["lvcreate"], 5, '  Logical Volume "c1" already exists in volume group "vg0"\n')
    assert isinstance(_lvm.explain(exists), AlreadyExists)


# ---------------------------------------------------------------------------- detection


def test_detect_refuses_what_is_not_a_logical_volume(host_vg: str, backend: LvmBackend, tmp_path: Path) -> None:
    pv = next(e.split(":", 1)[0] for e in loop_devices() if str(tmp_path) in e)
    assert _devices.dm_uuid(os.stat(f"/dev/{pv}").st_rdev) is None
    for source in (f"/dev/{pv}", str(tmp_path / "pv.img"), str(tmp_path), "/dev/null", f"/dev/{host_vg}/nothing"):
        assert backend.detect(source) is False, source
    assert _devices.is_lvm_uuid("LVM-abcdEFGH") and not _devices.is_lvm_uuid("CRYPT-LUKS2-x") and not _devices.is_lvm_uuid(None)


# ---------------------------------------------------------------------------- in the guest: real device-mapper


def _guest_volumes() -> set[str]:
    return set(_lvm.volumes(GUEST_VG))


@pytest.fixture
def guest_clean() -> Iterator[None]:
    """Every volume a test makes in the guest's VG is gone afterwards (removed here if the
    test failed, and then the test fails too)."""
    before = _guest_volumes()
    yield
    left = sorted(_guest_volumes() - before)
    for name in left:
        lvm_run("lvremove", "-q", "-y", "-f", f"{GUEST_VG}/{name}", check=False)
    assert left == [], f"logical volumes left behind: {left}"


def _guest_conf(tmp_path: Path, vg: str, thin_pool: str) -> Path:
    confdir = tmp_path / "lvmconf"
    confdir.mkdir(parents=True)
    conf = write_hermetic_lxc_conf(confdir)
    with conf.open("a") as f:
        f.write(f"lxc.bdev.lvm.vg = {vg}\nlxc.bdev.lvm.thin_pool = {thin_pool}\n")
    return conf


class _GuestContract(BackendContract):
    """The contract in the guest.  The lxcpath holds only configs and mount points, so one
    storage kind is enough."""

    backend_name = "lvm"
    storage_kinds = ("tmpdir",)


@needs_guest
class TestLvmThinContract(_GuestContract):
    """The contract on thin volumes in the guest's VG and its thin pool ``lxc``."""

    @pytest.fixture(autouse=True)
    def lvm_conf(self, tmp_path: Path, guest_clean: None) -> Iterator[None]:
        with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path, GUEST_VG, "lxc"))):
            yield


@needs_guest
class TestLvmThickContract(_GuestContract):
    """The contract on thick volumes, in a sparse 16 GiB volume group of each test's own
    without a thin pool (thick volumes take their whole size: 1 GiB each by default)."""

    @pytest.fixture(autouse=True)
    def lvm_conf(self, tmp_path: Path) -> Iterator[None]:
        with scratch_volume_group(tmp_path, "16G") as vg:
            with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path, vg, "lxc"))):
                yield
            left = sorted(_lvm.volumes(vg))
            assert left == [], f"logical volumes left behind: {left}"


@pytest.fixture
def guest(tmp_path: Path, lxcpath: Path, no_leaks: None, guest_clean: None) -> Iterator[Path]:
    """A scratch lxcpath whose lxc.conf points the lvm backend at the guest's VG (thin pool
    ``lxc``)."""
    with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path, GUEST_VG, "lxc"))):
        yield lxcpath


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


def _files(container: Container, *, readonly: bool = True) -> contextlib.AbstractContextManager[Path]:
    """The container's files, mounted for the body."""
    from bdev.engine.context import default_registry

    rootfs = container.rootfs
    return default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly)


def _differences(container: Container, expected: Path) -> list[str]:
    with _files(container) as path:
        return [d for d in tree_differences(expected, path) if not d.startswith(("etc/hostname:", "etc/hosts:"))]


def _write(container: Container, rel: str, text: str) -> None:
    with _files(container, readonly=False) as path:
        (path / rel).write_text(text)


def _read(container: Container, rel: str) -> str:
    with _files(container) as path:
        return (path / rel).read_text()


def _lv(container: Container) -> _lvm.LogicalVolume:
    vg, name = _names.split_locator(container.rootfs.source)
    lv = _lvm.volume(vg, name)
    assert lv is not None
    return lv


@needs_guest
def test_thin_container_snapshot_clone_and_names(guest: Path, sample: Path) -> None:
    a, b = Container("a", guest), Container("b", guest)
    a.create(backend="lvm", source=sample)
    b.create(backend="lvm", source=sample)
    assert a.rootfs.config_value == f"lvm:/dev/{GUEST_VG}/a" and _lv(a).thin and _lv(a).pool == "lxc"
    assert a.snapshot() == "snap0" and b.snapshot() == "snap0"
    assert {"a.snap0", "b.snap0"} <= _guest_volumes()
    clone = a.clone("a2", snapshot=True)
    assert clone.outcome.method == "snapshot" and not clone.outcome.depends_on_origin
    assert _lv(clone).thin and _lv(clone).origin == "a"
    assert a.dependents() == []
    _write(clone, "etc/motd", "clone\n")
    assert _differences(a, sample) == []
    a.destroy(with_snapshots=True)  # a thin origin may go: its clone keeps its blocks
    assert _read(clone, "etc/motd") == "clone\n"
    for c in (clone,):
        c.destroy()
    b.destroy(with_snapshots=True)


@needs_guest
def test_thick_snapshot_clone_depends_on_its_origin(guest: Path, sample: Path, tmp_path: Path) -> None:
    with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path / "thick", GUEST_VG, "bdev-no-pool"))):
        origin = Container("origin", guest)
        origin.create(backend="lvm", source=sample, options=CreateOptions(fssize=256 << 20))
        assert not _lv(origin).thin
        clone = origin.clone("dependent", snapshot=True)
        lv = _lv(clone)
        assert lv.thick_snapshot and lv.origin == "origin" and lv.size >= _lv(origin).size  # 100%ORIGIN
        assert clone.outcome.depends_on_origin and [d.name for d in origin.dependents()] == ["dependent"]
        with pytest.raises(HasDependents):
            origin.destroy()
        backend = LvmBackend({"lxc.bdev.lvm.vg": GUEST_VG})
        with pytest.raises(HasDependents) as refused:  # even past the core's records: never lvremove -f an origin
            backend.destroy(origin.rootfs)
        assert "dependent" in one_sentence(refused.value)
        _write(clone, "etc/motd", "in the clone\n")
        assert _differences(origin, sample) == []
        snap = origin.snapshot()  # a container snapshot of a thick volume is a copy, independent
        assert not _lv(Container(snap, origin.directory / "snaps")).thick_snapshot
        clone.destroy()
        origin.destroy(with_snapshots=True)


@pytest.mark.parametrize("pool", ["lxc", "bdev-no-pool"], ids=["thin", "thick"])
@needs_guest
def test_restore_in_place_keeps_newer_snapshots(guest: Path, sample: Path, tmp_path: Path, pool: str) -> None:
    with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path / "conf", GUEST_VG, pool))):
        c = Container("c1", guest)
        c.create(backend="lvm", source=sample, options=CreateOptions(fssize=256 << 20))
        uuid_before = _lv(c).uuid
        assert c.snapshot() == "snap0"
        _write(c, "etc/motd", "second\n")
        assert c.snapshot() == "snap1"
        _write(c, "etc/motd", "third\n")
        c.snapshot_restore("snap0")
        assert _differences(c, sample) == [] and _lv(c).uuid != uuid_before
        assert c.rootfs.source == f"/dev/{GUEST_VG}/c1"
        assert [s.name for s in c.snapshot_list()] == ["snap0", "snap1"]
        restored = c.snapshot_restore("snap1", "c2")
        assert _read(restored, "etc/motd") == "second\n"
        assert not any(".bdev-" in n for n in _guest_volumes())
        restored.destroy()
        c.destroy(with_snapshots=True)


@needs_guest
def test_swap_interrupted_between_renames_is_repaired(guest: Path) -> None:
    backend = LvmBackend({"lxc.bdev.lvm.vg": GUEST_VG})
    for name in ("sa", "sb"):
        lvm_run("lvcreate", "-q", "-y", "-V", "16M", "-T", f"{GUEST_VG}/lxc", "-n", name)
    a, b = (Rootfs("lvm", f"/dev/{GUEST_VG}/{n}") for n in ("sa", "sb"))
    ua, ub = backend.identity(a), backend.identity(b)
    # a crash after the first rename: rolled back
    lvm_run("lvchange", "-q", "--addtag", "bdev-swap-with=sb", f"{GUEST_VG}/sa")
    lvm_run("lvrename", "-q", GUEST_VG, "sa", "sa.bdev-swap")
    assert backend.exists(a) and backend.identity(a) == ua
    # a crash after the second rename: finished
    lvm_run("lvchange", "-q", "--addtag", "bdev-swap-with=sb", f"{GUEST_VG}/sa")
    lvm_run("lvrename", "-q", GUEST_VG, "sa", "sa.bdev-swap")
    lvm_run("lvrename", "-q", GUEST_VG, "sb", "sa")
    assert backend.identity(a) == ub and backend.identity(b) == ua
    assert not any(t.startswith("bdev-swap") for lv in _lvm.volumes(GUEST_VG).values() for t in lv.tags)
    backend.swap(a, b)
    assert (backend.identity(a), backend.identity(b)) == (ua, ub)
    for rootfs in (a, b):
        backend.destroy(rootfs)


@needs_guest
def test_xfs_clone_gets_a_new_uuid(guest: Path, sample: Path) -> None:
    c = Container("x1", guest)
    c.create(backend="lvm", source=sample, options=CreateOptions(fstype="xfs", fssize=320 << 20))
    clone = c.clone("x2", snapshot=True)

    def uuid(container: Container) -> str:
        return run(["blkid", "-p", "-o", "value", "-s", "UUID", _lv(container).path]).stdout.strip()

    assert uuid(c) and uuid(clone) and uuid(c) != uuid(clone)
    from bdev.engine.context import default_registry

    backend = default_registry().backend("lvm")
    with backend.accessed(c.rootfs, readonly=True), backend.accessed(clone.rootfs, readonly=True):
        pass  # both mounted at once: xfs refuses that for one UUID
    clone.destroy()
    c.destroy()


@needs_guest
def test_detect_a_real_logical_volume(guest: Path, sample: Path) -> None:
    c = Container("d1", guest)
    c.create(backend="lvm", source=sample)
    backend = LvmBackend({})
    assert backend.detect(c.rootfs.source) is True
    assert _devices.is_lvm_uuid(_devices.dm_uuid(os.stat(c.rootfs.source).st_rdev))
    c.destroy()


@needs_guest
def test_thin_pool_near_full_warns_then_full_refuses(guest: Path, sample: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A small pool of its own: at 80% each new volume warns; at 95% new volumes are refused
    in one sentence with nothing made (errorwhenfull: a full pool fails writes at once)."""
    pool = f"bdevfull{os.getpid()}"
    lvm_run("lvcreate", "-q", "-y", "--type", "thin-pool", "-L", "64M", "-n", pool, GUEST_VG)
    try:
        lvm_run("lvchange", "-q", "--errorwhenfull", "y", f"{GUEST_VG}/{pool}")
        lvm_run("lvcreate", "-q", "-y", "-V", "256M", "-T", f"{GUEST_VG}/{pool}", "-n", f"{pool}-fill")
        fill = f"/dev/{GUEST_VG}/{pool}-fill"
        run(["dd", "if=/dev/urandom", f"of={fill}", "bs=1M", "count=52", "oflag=direct"])  # 81%
        options = CreateOptions(extra={"thinpool": pool}, fssize=32 << 20)
        with caplog.at_level(logging.WARNING, logger="bdev.lvm"):
            c = Container("w1", guest)
            c.create(backend="lvm", source=sample, options=options)
        assert any("thin pool" in r.getMessage() and "full" in r.getMessage() for r in caplog.records)
        c.destroy()
        run(["dd", "if=/dev/urandom", f"of={fill}", "bs=1M", "count=64", "oflag=direct"], check=False)
        with pytest.raises(BdevError) as refused:
            Container("w2", guest).create(backend="lvm", source=sample, options=options)
        assert "is full" in one_sentence(refused.value)
        assert os.listdir(guest) == [] and "w2" not in _guest_volumes()
    finally:
        lvm_run("lvremove", "-q", "-y", "-f", f"{GUEST_VG}/{pool}-fill", check=False)
        lvm_run("lvremove", "-q", "-y", "-f", f"{GUEST_VG}/{pool}", check=False)


@needs_guest
def test_guest_reports_parse_live(guest: Path, sample: Path, tmp_path: Path) -> None:
    """The live ``lvs -a`` report of the thin pool, a thin volume and its thin snapshot, a
    thick volume and its thick snapshot, parsed (printed too: THIN_SAMPLE is such a report)."""
    thin = Container("r1", guest)
    thin.create(backend="lvm", source=sample)
    thin.snapshot()
    with environment("BDEV_LXC_CONF", str(_guest_conf(tmp_path / "thick", GUEST_VG, "bdev-no-pool"))):
        thick = Container("r2", guest)
        thick.create(backend="lvm", source=sample, options=CreateOptions(fssize=64 << 20))
        clone = thick.clone("r3", snapshot=True)
        text = lvm_run("lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", ",".join(_lvm.LV_FIELDS), GUEST_VG).stdout
        print(text)
        found = {lv.name: lv for lv in _lvm.parse_lvs(text)}
        assert found["lxc"].thin_pool and found["lxc"].data_percent is not None
        assert found["r1"].thin and found["r1"].active and found["r1"].pool == "lxc"
        assert found["r1.snap0"].thin and found["r1.snap0"].origin == "r1" and found["r1.snap0"].tags == ("bdev-container-snapshot",)
        assert not found["r2"].thin and found["r3"].thick_snapshot and found["r3"].origin == "r2"
        assert found["r3"].data_percent is not None
        clone.destroy()
        thick.destroy()
    thin.destroy(with_snapshots=True)


def test_copies_keep_the_size_of_a_block_device_source(tmp_path: Path) -> None:
    """A copy's default size comes from the source's filesystem when that is a mounted block
    device (a real loop-mounted ext4 here), never from a plain directory's host filesystem."""
    from bdev.testing.storage import loop_filesystem

    from bdev_lvm.backend import _block_filesystem_size

    assert _block_filesystem_size(tmp_path) is None
    with loop_filesystem("ext4", tmp_path / "fs", size="128M") as mnt:
        size = _block_filesystem_size(mnt)
        assert size is not None and 100 << 20 < size <= 128 << 20
        assert _block_filesystem_size(mnt / "lost+found") is None
