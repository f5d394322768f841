"""Unprivileged containers: id maps from ``lxc.idmap``, rootfs ownership shifted at create and
clone time, a container started in a user namespace by root, and the whole cycle run by an
ordinary user the test creates (with ``/etc/subuid`` and ``/etc/subgid`` ranges) in
``~/.local/share/lxc``, who cannot touch root's containers."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bdev.command import run
from bdev.errors import BdevError, ConfigError
from bdev.idmap import IdMap, IdRange, check_allowed, parse_idmaps, subordinate_ranges
from bdev.engine.idshift import into_map, shift_acl, shift_tree
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions

from runtime_helpers import Runtime, needs_root, wait_until

MAPPED_ROOT = 1_400_000_000  # a host range no user of this machine is given
MAP_LINES = [("lxc.idmap", f"u 0 {MAPPED_ROOT} 65536"), ("lxc.idmap", f"g 0 {MAPPED_ROOT} 65536")]
BDEV = Path(sys.executable).with_name("bdev")


# ---------------------------------------------------------------------------- maps


@pytest.mark.unprivileged
def test_idmap_lines_are_parsed_and_bad_ones_refused_with_one_sentence() -> None:
    idmap = parse_idmaps(["u 0 100000 65536", "g 0 100000 65536", "b 65536 1000 1"])
    assert idmap is not None
    assert idmap.root == (100000, 100000)
    assert idmap.host_uid(65536) == 1000 and idmap.host_gid(65535) == 165535
    assert idmap.container_uid(100005) == 5 and idmap.container_uid(99999) is None
    assert parse_idmaps([]) is None
    for lines, message in (
        (["u 0 100000"], "expected 'u|g|b CONTAINER-ID HOST-ID COUNT'"),
        (["x 0 1 1", "g 0 1 1"], "expected 'u|g|b"),
        (["u 0 100000 65536"], "maps no gids"),
        (["u 0 100000 10", "u 5 200000 10", "g 0 1 1"], "overlaps another u range"),
        (["u 0 100000 0", "g 0 1 1"], "the range is empty"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_idmaps(lines)


@pytest.mark.unprivileged
def test_a_user_may_map_only_their_subordinate_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bdev.idmap as idmap_module

    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536\n# comment\n2000:300000:10\n")
    subgid.write_text("alice:100000:65536\n")
    monkeypatch.setattr(idmap_module, "SUBUID", subuid)
    monkeypatch.setattr(idmap_module, "SUBGID", subgid)
    monkeypatch.setattr(idmap_module, "_user_name", lambda uid: "alice" if uid == 2000 else "bob")
    assert subordinate_ranges(subuid, "alice", 2000) == [IdRange(0, 100000, 65536), IdRange(0, 300000, 10)]
    good = parse_idmaps(["u 0 100000 65536", "g 0 100000 65536", "u 65536 2000 1", "g 65536 2000 1"])
    assert good is not None
    check_allowed(good, uid=2000, gid=2000)  # the ranges, and their own ids alone
    outside = parse_idmaps(["u 0 100000 65537", "g 0 100000 65536"])
    assert outside is not None
    with pytest.raises(BdevError, match=r"^Lxc.idmap maps host ids 100000-165536, outside the ranges .*subuid "
                                        r"grants user alice \(100000-165535, 300000-300009\)\.$"):
        check_allowed(outside, uid=2000, gid=2000)
    with pytest.raises(BdevError, match=r"^User bob has no range in .*subuid, so they cannot map ids"):
        check_allowed(good, uid=3000, gid=3000)
    check_allowed(outside, uid=0, gid=0)  # root maps anything


# ---------------------------------------------------------------------------- shifting


def test_shifting_keeps_setuid_bits_file_capabilities_and_shifts_acls(tmp_path: Path) -> None:
    needs_root()
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    tool = root / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    capable = root / "bin" / "ping"
    capable.write_text("x")
    run(["setcap", "cap_net_raw+ep", capable])
    shared = root / "shared"
    shared.mkdir()
    run(["setfacl", "-m", "u:33:rwx,g:44:rx", "-d", "-m", "u:33:rwx", shared])
    os.link(tool, root / "hardlink")
    os.symlink("bin/tool", root / "link")
    os.chown(root / "bin", 5, 6)
    idmap = IdMap((IdRange(0, MAPPED_ROOT, 65536),), (IdRange(0, MAPPED_ROOT, 65536),))

    changed = shift_tree(root, *into_map(idmap))
    assert changed == 6  # root, bin, tool (one inode, two names), ping, shared, link
    assert (os.lstat(root).st_uid, os.lstat(root / "bin").st_uid, os.lstat(root / "bin").st_gid) == (
        MAPPED_ROOT, MAPPED_ROOT + 5, MAPPED_ROOT + 6)
    assert os.lstat(root / "link").st_uid == MAPPED_ROOT and os.stat(tool).st_uid == MAPPED_ROOT
    assert stat.S_IMODE(os.stat(tool).st_mode) == 0o4755
    assert "cap_net_raw=ep" in run(["getcap", capable]).stdout
    acl = run(["getfacl", "-n", shared]).stdout
    assert f"user:{MAPPED_ROOT + 33}:rwx" in acl and f"group:{MAPPED_ROOT + 44}:r-x" in acl
    assert f"default:user:{MAPPED_ROOT + 33}:rwx" in acl
    with pytest.raises(BdevError, match=rf"^/.*/tree is owned by uid {MAPPED_ROOT}, which lxc.idmap does not map\.$"):
        shift_tree(root, *into_map(idmap))  # shifted already: a second shift is refused
    far = tmp_path / "far"
    far.mkdir()
    os.chown(far, 0, 0)
    (far / "file").touch()
    os.chown(far / "file", 70000, 0)
    with pytest.raises(BdevError, match=r"^/.*/far/file is owned by uid 70000, which lxc.idmap does not map\.$"):
        shift_tree(far, *into_map(idmap))


@pytest.mark.unprivileged
def test_acl_entries_other_than_named_ones_keep_their_ids() -> None:
    import struct

    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, 7, ident) for tag, ident in
                                          ((0x01, 0xFFFFFFFF), (0x02, 33), (0x08, 44), (0x20, 0xFFFFFFFF)))
    shifted = shift_acl(raw, lambda u: u + 1000, lambda g: g + 2000)
    entries = [struct.unpack_from("<HHI", shifted, 4 + 8 * i) for i in range(4)]
    assert entries == [(0x01, 7, 0xFFFFFFFF), (0x02, 7, 1033), (0x08, 7, 2044), (0x20, 7, 0xFFFFFFFF)]


# ---------------------------------------------------------------------------- root, mapped


@pytest.mark.root
def test_root_starts_a_mapped_container(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    ref = runtime.create("mapped", config=MAP_LINES)
    rootfs = runtime.lxcpath / "mapped" / "rootfs"
    assert os.lstat(rootfs / "bin" / "busybox").st_uid == MAPPED_ROOT
    assert (os.lstat(rootfs).st_uid, os.lstat(rootfs).st_gid) == (MAPPED_ROOT, MAPPED_ROOT)
    lifecycle.start(runtime.ctx, ref)
    try:
        init = lifecycle.info(runtime.ctx, ref).init_pid
        assert init
        assert Path(f"/proc/{init}/uid_map").read_text().split() == ["0", str(MAPPED_ROOT), "65536"]
        assert os.stat(f"/proc/{init}").st_uid == MAPPED_ROOT  # its init runs as the mapped root
        capfd.readouterr()
        status = lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "id -u; id -g; touch /etc/made; ls -n /bin/busybox"],
                                  AttachOptions(clear_env=True))
        out = capfd.readouterr().out.split("\n")
        assert status == 0, out
        assert out[:2] == ["0", "0"]
        assert out[2].split()[2:4] == ["0", "0"]  # busybox is root's inside
        made = os.lstat(rootfs / "etc" / "made")
        assert (made.st_uid, made.st_gid) == (MAPPED_ROOT, MAPPED_ROOT)
    finally:
        lifecycle.stop(runtime.ctx, ref, kill=True)


@pytest.mark.root
def test_a_clone_of_a_mapped_container_keeps_its_ownership_and_starts(runtime: Runtime,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    from bdev.api import Container

    runtime.create("origin", config=MAP_LINES)
    Container("origin", runtime.lxcpath).clone("copy")
    ref = runtime.ref("copy")
    assert os.lstat(runtime.lxcpath / "copy" / "rootfs" / "etc" / "hostname").st_uid == MAPPED_ROOT
    lifecycle.start(runtime.ctx, ref)
    try:
        capfd.readouterr()
        assert lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "id -u; hostname"], AttachOptions(clear_env=True)) == 0
        assert capfd.readouterr().out.split() == ["0", "copy"]
    finally:
        lifecycle.stop(runtime.ctx, ref, kill=True)


@pytest.mark.root
def test_root_starts_an_overlay_clone_of_a_mapped_container(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    from bdev.api import Container

    runtime.create("origin", config=MAP_LINES)
    Container("origin", runtime.lxcpath).clone("layer", snapshot=True, backend="overlay")
    ref = runtime.ref("layer")
    upper = runtime.lxcpath / "layer" / "overlay" / "delta"
    assert (os.lstat(upper).st_uid, os.lstat(upper.parent / "work").st_uid) == (MAPPED_ROOT, MAPPED_ROOT)
    lifecycle.start(runtime.ctx, ref)
    try:
        capfd.readouterr()
        status = lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "id -u; hostname; touch /etc/made"],
                                  AttachOptions(clear_env=True))
        assert status == 0 and capfd.readouterr().out.split() == ["0", "layer"]
    finally:
        lifecycle.stop(runtime.ctx, ref, kill=True)
    made = os.lstat(upper / "etc" / "made")
    assert (made.st_uid, made.st_gid) == (MAPPED_ROOT, MAPPED_ROOT)
    assert not (runtime.lxcpath / "origin" / "rootfs" / "etc" / "made").exists()


# ---------------------------------------------------------------------------- an ordinary user


@dataclass
class OrdinaryUser:
    """An ordinary user made for the test, with subordinate ranges and a runtime directory."""

    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    subuid: int

    @property
    def lxcpath(self) -> Path:
        return self.home / ".local" / "share" / "lxc"

    def bdev(self, *args: str, check: bool = True) -> str:
        """Run ``bdev ARGS`` as the user, in a login-like environment; its output (stdout and stderr)."""
        result = run(["runuser", "-u", self.name, "--", "env", "-i", f"HOME={self.home}", f"USER={self.name}",
                      f"XDG_RUNTIME_DIR={self.runtime_dir}", "PATH=/usr/bin:/bin", BDEV, *args],
                     check=False, timeout=120)
        output = (result.stdout + result.stderr).strip()
        if check:
            assert result.returncode == 0, f"bdev {' '.join(args)} as {self.name}: {output}"
        return output

    def processes(self) -> list[int]:
        """Live processes running as the user's ids or the container ids of its range."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # ended, waiting to be reaped
                uid = os.stat(f"/proc/{pid}").st_uid
                if uid == self.uid or self.subuid <= uid < self.subuid + 65536:
                    found.append(int(pid))
        return found


def _unprivileged_problem() -> str | None:
    for tool in ("useradd", "userdel", "runuser", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian packages passwd, util-linux and uidmap)"
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists() and clone.read_text().strip() == "0":
        return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
    return None


@pytest.fixture
def test_user(no_leaks: None) -> Iterator[OrdinaryUser]:
    """A fresh user with a home, ``/etc/subuid``/``/etc/subgid`` ranges (allocated by
    useradd) and a private ``XDG_RUNTIME_DIR``; afterwards it, its files and its processes
    are gone, and the test fails if any process of it was still running."""
    needs_root()
    problem = _unprivileged_problem()
    if problem:
        pytest.skip(f"an ordinary user cannot run containers here: {problem}")
    name = f"bdevt{secrets.token_hex(4)}"
    run(["useradd", "--create-home", "--shell", "/bin/sh", "--key", "HOME_MODE=0755", name])
    try:
        entry = pwd.getpwnam(name)
        ranges = subordinate_ranges(Path("/etc/subuid"), name, entry.pw_uid)
        if not ranges or not subordinate_ranges(Path("/etc/subgid"), name, entry.pw_uid):
            pytest.skip("useradd gave the test user no /etc/subuid and /etc/subgid range (SUB_UID_COUNT is 0)")
        runtime_dir = Path("/run/user") / str(entry.pw_uid)
        runtime_dir.mkdir(parents=True, mode=0o700)
        os.chown(runtime_dir, entry.pw_uid, entry.pw_gid)
        from bdev_runtime.spawn import rootfs_mount_point

        rootfs_mount_point()  # root's, searchable by all: where mapped rootfs are bound
        user = OrdinaryUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), runtime_dir, ranges[0].outside)
        try:
            yield user
        finally:
            wait_until(lambda: not user.processes(), 10)
            left = user.processes()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(runtime_dir, ignore_errors=True)
            assert not left, f"processes of the test user were left running: {left}"
    finally:
        run(["userdel", "--remove", "--force", name], check=False)
        leftover = [line for f in ("/etc/subuid", "/etc/subgid") for line in Path(f).read_text().splitlines()
                    if line.startswith(f"{name}:")]
        assert not leftover, f"userdel left {leftover}"


def test_an_ordinary_user_runs_the_whole_cycle(test_user: OrdinaryUser) -> None:
    user = test_user
    net = user.home / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    os.chown(net, user.uid, user.gid)
    assert "created c1 on dir" in user.bdev("create", "-t", "busybox", "-f", str(net), "c1")
    c1 = user.lxcpath / "c1"
    config = (c1 / "config").read_text()
    assert f"lxc.idmap = u 0 {user.subuid} 65536" in config  # as LXC's per-user default.conf
    busybox = os.lstat(c1 / "rootfs" / "bin" / "busybox")
    assert (busybox.st_uid, busybox.st_gid) == (user.subuid, user.subuid)
    assert os.lstat(c1 / "config").st_uid == user.uid
    assert "started c1" in user.bdev("start", "c1")
    out = user.bdev("attach", "c1", "--", "sh", "-c", "id -u; touch /etc/made; hostname")
    assert out.split() == ["0", "c1"]
    assert os.lstat(c1 / "rootfs" / "etc" / "made").st_uid == user.subuid
    init = [p for p in user.processes() if Path(f"/proc/{p}/comm").read_text().strip() == "init"]
    assert init and all(os.stat(f"/proc/{p}").st_uid == user.subuid for p in init)
    assert "stopped c1" in user.bdev("stop", "c1")

    assert user.bdev("snapshot", "create", "c1").splitlines()[0] == "snap0"
    snap_rootfs = c1 / "snaps" / "snap0" / "rootfs"
    assert os.lstat(snap_rootfs / "etc" / "shadow").st_uid == user.subuid
    assert "cloned c1 to c2" in user.bdev("clone", "c1", "c2")
    c2 = user.lxcpath / "c2"
    assert os.lstat(c2 / "rootfs" / "etc" / "shadow").st_uid == user.subuid
    assert (c2 / "rootfs" / "etc" / "hostname").read_text().strip() == "c2"
    user.bdev("start", "c2")
    assert user.bdev("attach", "c2", "--", "sh", "-c", "id -u; hostname; cat /etc/made && echo kept").split() == [
        "0", "c2", "kept"]
    user.bdev("stop", "c2")
    assert "destroyed c2" in user.bdev("destroy", "c2")
    assert "destroyed c1" in user.bdev("destroy", "-s", "c1")
    assert not list(user.lxcpath.iterdir())
    assert wait_until(lambda: not user.processes(), 10), user.processes()  # monitors end once cleaned up


def test_an_ordinary_user_cannot_touch_roots_containers(test_user: OrdinaryUser, runtime: Runtime) -> None:
    ref = runtime.create("roots")
    lifecycle.start(runtime.ctx, ref)
    try:
        denied = r"bdev: container 'roots': [^\n]*[Pp]ermission denied[^\n]*\."  # one sentence, whichever file
        for args, expected in ((("start", "roots"), r"bdev: container 'roots': is already running\."),
                               (("stop", "roots"), r"bdev: container 'roots': permission denied: the container "
                                                   r"belongs to another user\."),
                               (("attach", "roots", "--", "true"), denied),
                               (("destroy", "roots"), denied),
                               (("clone", "roots", "mine"), denied),
                               (("snapshot", "create", "roots"), denied)):
            out = test_user.bdev("-P", str(runtime.lxcpath), *args, check=False)
            assert re.fullmatch(expected, out), (args, out)
        assert "permission denied" in test_user.bdev("-P", str(runtime.lxcpath), "create", "-t", "busybox", "x",
                                                     check=False)
        assert lifecycle.info(runtime.ctx, ref).init_pid  # still running, untouched
        assert sorted(p.name for p in runtime.lxcpath.iterdir()) == ["roots"]
    finally:
        lifecycle.stop(runtime.ctx, ref, kill=True)


def test_a_user_without_ranges_is_told_why(test_user: OrdinaryUser) -> None:
    user = test_user
    config = user.home / "own.conf"
    config.write_text(f"lxc.net.0.type = empty\nlxc.idmap = u 0 {user.subuid + 65536} 10\n"
                      f"lxc.idmap = g 0 {user.subuid} 65536\n")
    os.chown(config, user.uid, user.gid)
    out = user.bdev("create", "-t", "busybox", "-f", str(config), "wide", check=False)
    assert out.startswith(f"bdev: container 'wide': lxc.idmap maps host ids {user.subuid + 65536}-"), out
    assert f"outside the ranges /etc/subuid grants user {user.name}" in out
    assert not (user.lxcpath / "wide").exists()
    config.write_text("lxc.net.0.type = empty\n")
    run(["usermod", "--del-subuids", f"{user.subuid}-{user.subuid + 65535}", user.name])
    out = user.bdev("create", "-t", "busybox", "-f", str(config), "plain")  # no range: an unmapped container
    assert "lxc.idmap = u" not in (user.lxcpath / "plain" / "config").read_text()
    out = user.bdev("start", "plain", check=False)
    assert out == ("bdev: container 'plain': has no lxc.idmap, and only root may start a container without a user "
                   "namespace (give it the lxc.idmap lines of your /etc/subuid and /etc/subgid ranges)."), out
    user.bdev("destroy", "plain")


def test_an_ordinary_user_snapshots_on_btrfs(test_user: OrdinaryUser) -> None:
    from bdev.testing.kit.storage import scratch_lxcpath, storage_problem

    problem = storage_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs lxcpath here: {problem}")
    user = test_user
    net = user.home / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    with scratch_lxcpath("btrfs", user.home) as lxcpath:
        os.chown(lxcpath, user.uid, user.gid)
        as_user = ("-P", str(lxcpath))
        assert "created c1 on btrfs" in user.bdev(*as_user, "create", "-t", "busybox", "-B", "btrfs", "-f", str(net), "c1")
        assert os.lstat(lxcpath / "c1" / "rootfs" / "bin" / "busybox").st_uid == user.subuid
        assert "native snapshot" in user.bdev(*as_user, "snapshot", "create", "c1")
        assert "cloned c1 to c2: native snapshot" in user.bdev(*as_user, "clone", "-s", "c1", "c2")
        user.bdev(*as_user, "start", "c2")
        assert user.bdev(*as_user, "attach", "c2", "--", "sh", "-c", "id -u; hostname; touch /etc/x").split() == [
            "0", "c2"]
        user.bdev(*as_user, "stop", "c2")
        assert os.lstat(lxcpath / "c2" / "rootfs" / "etc" / "x").st_uid == user.subuid
        assert "destroyed c2" in user.bdev(*as_user, "destroy", "c2")
        assert "destroyed c1" in user.bdev(*as_user, "destroy", "-s", "c1")
        assert not list(lxcpath.iterdir())


def test_an_ordinary_user_restores_a_snapshot_in_place(test_user: OrdinaryUser) -> None:
    user = test_user
    net = user.home / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    user.bdev("create", "-t", "busybox", "-f", str(net), "c1")
    rootfs = user.lxcpath / "c1" / "rootfs"
    assert user.bdev("snapshot", "create", "c1").splitlines()[0] == "snap0"
    user.bdev("start", "c1")
    user.bdev("attach", "c1", "--", "sh", "-c", "echo changed > /etc/hostname; rm /bin/ls; mkdir /etc/new")
    user.bdev("stop", "c1")
    assert (rootfs / "etc" / "hostname").read_text() == "changed\n"
    out = user.bdev("snapshot", "restore", "c1", "snap0")
    assert "restored c1 to snap0 in place" in out, out
    assert (rootfs / "etc" / "hostname").read_text().strip() == "c1"
    assert os.path.lexists(rootfs / "bin" / "ls") and not (rootfs / "etc" / "new").exists()
    for path in (rootfs, rootfs / "etc" / "hostname", rootfs / "bin" / "busybox"):
        assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (user.subuid, user.subuid), path
    assert sorted(p.name for p in (user.lxcpath / "c1").iterdir()) == ["config", "rootfs", "snaps"]
    user.bdev("start", "c1")  # the restored tree starts and is the container's own
    assert user.bdev("attach", "c1", "--", "sh", "-c", "id -u; hostname; touch /etc/again").split() == ["0", "c1"]
    user.bdev("stop", "c1")
    assert os.lstat(rootfs / "etc" / "again").st_uid == user.subuid
    assert "destroyed c1" in user.bdev("destroy", "-s", "c1")
    assert not list(user.lxcpath.iterdir())


def test_an_ordinary_user_starts_an_overlay_clone_of_a_mapped_container(test_user: OrdinaryUser) -> None:
    user = test_user
    net = user.home / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    user.bdev("create", "-t", "busybox", "-f", str(net), "base")
    out = user.bdev("clone", "-s", "-B", "overlay", "base", "layer")
    assert "cloned base to layer" in out, out
    layer = user.lxcpath / "layer"
    upper = layer / "overlay" / "delta"
    assert (layer / "config").read_text().count(f"lxc.rootfs.path = overlay:{user.lxcpath}/base/rootfs:{upper}") == 1
    assert (os.lstat(upper).st_uid, os.lstat(upper).st_gid) == (user.subuid, user.subuid)  # the merged root's owner
    hostname = os.lstat(upper / "etc" / "hostname")  # rewritten through the overlay: copied up, owner kept
    assert (hostname.st_uid, hostname.st_gid) == (user.subuid, user.subuid)
    assert (upper / "etc" / "hostname").read_text().strip() == "layer"
    assert "started layer" in user.bdev("start", "layer")
    inside = user.bdev("attach", "layer", "--", "sh", "-c",
                       "id -u; hostname; ls -n /bin/busybox; echo new > /etc/made; rm /bin/ls; grep ' / ' /proc/mounts")
    lines = inside.splitlines()
    assert lines[:2] == ["0", "layer"], inside
    assert lines[2].split()[2:4] == ["0", "0"], inside  # the lower's files are root's inside
    assert lines[3].split()[:3] == ["overlay", "/", "overlay"] and "userxattr" in lines[3], inside
    user.bdev("stop", "layer")
    made = os.lstat(upper / "etc" / "made")
    assert (made.st_uid, made.st_gid) == (user.subuid, user.subuid)
    assert os.path.lexists(user.lxcpath / "base" / "rootfs" / "bin" / "ls")  # the origin is untouched
    assert not os.path.exists(user.lxcpath / "base" / "rootfs" / "etc" / "made")
    refused = user.bdev("destroy", "base", check=False)
    assert refused.startswith("bdev: container 'base'") and "layer" in refused, refused
    assert "destroyed layer" in user.bdev("destroy", "layer")
    assert "destroyed base" in user.bdev("destroy", "base")
    assert not list(user.lxcpath.iterdir())


def test_an_ordinary_users_crashed_clone_is_undone_in_its_ids(test_user: OrdinaryUser) -> None:
    """A mapped clone killed once its rootfs is copied (the files belong to the container's
    ids, which the user cannot remove as themselves): the next command undoes it from its
    journal, in the container's ids, and leaves nothing behind."""
    user = test_user
    net = user.home / "net.conf"
    net.write_text("lxc.net.0.type = empty\n")
    user.bdev("create", "-t", "busybox", "-f", str(net), "base")
    killed = run(["runuser", "-u", user.name, "--", "env", "-i", f"HOME={user.home}", f"USER={user.name}",
                  f"XDG_RUNTIME_DIR={user.runtime_dir}", "PATH=/usr/bin:/bin", "BDEV_FAULT=clone:after-rootfs",
                  BDEV, "clone", "base", "web1"], check=False, timeout=120)
    assert killed.returncode != 0 and (user.lxcpath / "web1" / "rootfs" / "bin" / "busybox").exists(), killed.stderr
    listed = user.bdev("ls")
    assert [line.split()[0] for line in listed.splitlines()[1:]] == ["base"], listed
    assert not (user.lxcpath / "web1").exists(), "the crashed clone's undo left it behind"
    assert "destroyed base" in user.bdev("destroy", "base")
