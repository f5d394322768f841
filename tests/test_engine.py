"""Engine behaviour beyond the backend contract: clone identity (name, hostname, MACs, paths),
safety of writes into a rootfs, full disks, running containers, failed creates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.errors import AlreadyExists, BdevError, Busy, InvalidInput, NotFound
from bdev.store.layout import ContainerRef
from bdev.store.running import is_running
from bdev.testing.storage import loop_filesystem, loop_filesystem_problem

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.unprivileged]


@pytest.fixture
def base(lxcpath: Path) -> Container:
    c = Container("base", lxcpath)
    c.create(
        "busybox",
        "dir",
        config=[
            ("lxc.net.0.type", "veth"),
            ("lxc.net.0.hwaddr", "00:16:3e:12:34:56"),
            ("lxc.mount.entry", f"{lxcpath}/base/shared srv none bind,create=dir 0 0"),
            ("lxc.mount.entry", f"{lxcpath}/base2/other opt none bind 0 0"),
        ],
    )
    return c


def test_clone_rewrites_name_hostname_mac_and_own_paths(base: Container, lxcpath: Path) -> None:
    (base.directory / "rootfs/etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 base base.lan # base\n")
    web1 = base.clone("web1")
    assert web1.get_config_item("lxc.uts.name") == ["web1"]
    mac = web1.get_config_item("lxc.net.0.hwaddr")[0]
    assert mac != "00:16:3e:12:34:56" and mac.startswith("00:16:3e:")
    assert [e for e in web1.get_config_item("lxc.mount.entry") if " srv " in e or " opt " in e] == [
        f"{lxcpath}/web1/shared srv none bind,create=dir 0 0",
        f"{lxcpath}/base2/other opt none bind 0 0",  # not under base's directory: untouched
    ]
    rootfs = web1.directory / "rootfs"
    assert (rootfs / "etc/hostname").read_text() == "web1\n"
    assert (rootfs / "etc/hosts").read_text() == "127.0.0.1 localhost\n127.0.1.1 web1 base.lan # base\n"
    assert (base.directory / "rootfs/etc/hostname").read_text() == "base\n"


def test_clone_keepname_keepmac(base: Container) -> None:
    kept = base.clone("kept", keepname=True, keepmac=True)
    assert kept.get_config_item("lxc.uts.name") == ["base"]
    assert kept.get_config_item("lxc.net.0.hwaddr") == ["00:16:3e:12:34:56"]
    assert (kept.directory / "rootfs/etc/hostname").read_text() == "base\n"


def test_snapshot_keeps_name_and_mac(base: Container) -> None:
    base.snapshot()
    snap = base.directory / "snaps/snap0"
    text = (snap / "config").read_text()
    assert "lxc.uts.name = base" in text and "00:16:3e:12:34:56" in text
    assert f"lxc.rootfs.path = dir:{snap}/rootfs" in text
    assert oct(os.stat(snap).st_mode & 0o777) == "0o770"
    assert oct(os.stat(snap / "config").st_mode & 0o777) == "0o640"
    assert len((snap / "ts").read_bytes()) == 19


def test_hostname_symlink_out_of_the_rootfs_is_never_written(base: Container, tmp_path: Path) -> None:
    victim = tmp_path / "host-file"
    victim.write_text("host data\n")
    hostname = base.directory / "rootfs/etc/hostname"
    hostname.unlink()
    os.symlink(victim, hostname)
    base.clone("web1")
    assert victim.read_text() == "host data\n"


@pytest.mark.parametrize(
    "bad", ["a/b", "..", ".", ".hidden", "-rf", "x\ny", "nul\0", "tab\tname", "é" * 128 + "x", ""]
)
def test_bad_names_are_refused_before_anything_happens(lxcpath: Path, base: Container, bad: str) -> None:
    before = sorted(os.listdir(lxcpath))
    with pytest.raises(InvalidInput):
        Container(bad, lxcpath)
    with pytest.raises(InvalidInput):
        base.clone(bad)
    assert sorted(os.listdir(lxcpath)) == before


def test_missing_things_and_existing_targets(base: Container, lxcpath: Path) -> None:
    with pytest.raises(NotFound, match="no such container"):
        Container("ghost", lxcpath).clone("x")
    with pytest.raises(NotFound, match="no snapshot 'snap9'"):
        base.snapshot_restore("snap9")
    base.clone("taken")
    with pytest.raises(AlreadyExists):
        base.clone("taken")
    base.snapshot()
    with pytest.raises(AlreadyExists):
        base.snapshot_restore("snap0", "taken")
    with pytest.raises(AlreadyExists):
        Container("base", lxcpath).create("busybox")
    with pytest.raises(AlreadyExists, match="onto itself"):
        base.clone("base")


def test_unknown_backend_and_template_leave_nothing(lxcpath: Path) -> None:
    with pytest.raises(NotFound, match="container 'c1': unknown backend 'bogus'"):
        Container("c1", lxcpath).create("busybox", "bogus")
    with pytest.raises(NotFound, match="container 'c1': unknown template 'nope'"):
        Container("c1", lxcpath).create("nope")
    assert os.listdir(lxcpath) == []


def test_failing_template_leaves_nothing(lxcpath: Path) -> None:
    with pytest.raises(BdevError):
        Container("c1", lxcpath).create("busybox", args=["--no-such-option"])
    assert os.listdir(lxcpath) == []


def test_best_and_lists_choose_a_working_backend(lxcpath: Path) -> None:
    c = Container("c1", lxcpath)
    c.create("busybox", "best")
    assert c.rootfs.backend in {e.name for e in c._ctx.registry.backend_entries()}
    d = Container("c2", lxcpath)
    d.create("busybox", "bogus-or-not,dir".split(",")[1:])
    assert d.rootfs.backend == "dir"


@pytest.mark.root
def test_full_disk_fails_cleanly(base: Container, tmp_path: Path) -> None:
    problem = loop_filesystem_problem("ext4")
    if problem:
        pytest.skip(f"cannot make a small filesystem: {problem}")
    (base.directory / "rootfs/big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    with loop_filesystem("ext4", tmp_path, size="8M") as mnt:
        small = mnt / "lxc"
        with pytest.raises(BdevError, match="(?i)no space left|disk is full|full"):
            base.clone("web1", lxcpath=small)
        assert not small.exists()  # even the lxcpath the failed clone created is gone
        assert list_containers(small) == []
    assert base.defined


def test_running_container_is_detected_through_lxcs_command_socket(tmp_path: Path) -> None:
    ref = ContainerRef(Path("/var/lib/lxc"), "web1")
    table = tmp_path / "unix"
    header = "Num       RefCount Protocol Flags    Type St Inode Path\n"
    table.write_text(header + "0000000000000000: 00000002 00000000 00010000 0001 01 12345 @/var/lib/lxc/web1/command\n")
    assert is_running(ref, proc_net_unix=table)
    table.write_text(header + "0000000000000000: 00000002 00000000 00010000 0001 01 12345 @/var/lib/lxc/web10/command\n")
    assert not is_running(ref, proc_net_unix=table)


def test_destroy_refuses_a_running_container(base: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    import bdev.engine.destroy as destroy_module

    monkeypatch.setattr(destroy_module, "is_running", lambda ref: ref.name == "base")
    with pytest.raises(Busy, match="is running"):
        base.destroy()
    assert base.defined


@pytest.mark.root
def test_restore_in_place_of_a_rootfs_on_another_filesystem(lxcpath: Path, tmp_path: Path) -> None:
    """``--dir`` puts the rootfs elsewhere; the restore stages beside it, so the atomic
    exchange stays within that filesystem."""
    problem = loop_filesystem_problem("xfs")
    if problem:
        pytest.skip(f"cannot make a second filesystem: {problem}")
    from bdev.records import CreateOptions

    with loop_filesystem("xfs", tmp_path, size="512M") as mnt:
        c = Container("far", lxcpath)
        c.create("busybox", "dir", options=CreateOptions(extra={"dir": str(mnt / "far-rootfs")}))
        assert c.rootfs.source == str(mnt / "far-rootfs")
        c.snapshot()
        (mnt / "far-rootfs/etc/motd").write_text("changed\n")
        c.snapshot_restore("snap0")
        assert not (mnt / "far-rootfs/etc/motd").exists()
        assert sorted(p.name for p in mnt.iterdir()) == ["far-rootfs"]
        c.destroy(with_snapshots=True)
        assert list(mnt.iterdir()) == []


def test_restore_to_a_new_name_gets_a_new_name_and_mac(base: Container) -> None:
    base.snapshot()
    twin = base.snapshot_restore("snap0", "twin")
    assert twin.get_config_item("lxc.uts.name") == ["twin"]
    mac = twin.get_config_item("lxc.net.0.hwaddr")[0]
    assert mac != "00:16:3e:12:34:56" and mac.startswith("00:16:3e:")
    assert (twin.directory / "rootfs/etc/hostname").read_text() == "twin\n"
    base.snapshot_restore("snap0")  # in place: name and MAC kept
    assert base.get_config_item("lxc.net.0.hwaddr") == ["00:16:3e:12:34:56"]


def test_best_says_which_backend_it_chose_and_why_not_the_others(lxcpath: Path) -> None:
    messages: list[str] = []
    c = Container("c1", lxcpath, notify=messages.append)
    c.create("busybox", "best")
    (line,) = [m for m in messages if m.startswith("created c1")]
    assert f"created c1 on {c.rootfs.backend}" in line and "chosen from -B best" in line
    registry = c._ctx.registry
    ahead = [b.name for b in registry.best_candidates()]
    skipped = ahead[: ahead.index(c.rootfs.backend)]
    for name in skipped:  # every better-ranked backend is named with its reason
        assert f"{name}: " in line
