"""The generic full-copy engine (bdev.copying) and the tree comparator (bdev.testing.trees).

Root tests build a tree with every kind of entry rsync -aHAXS --numeric-ids keeps, copy it,
and compare it with the source and with rsync's own copy; others use real btrfs and tmpfs
mounts.  Tests marked ``unprivileged`` also pass as an ordinary user.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import stat
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.command import run, which
from bdev.copying import CopyError, NullProgress, copytree, terminal_progress
from bdev.copying import data as data_module
from bdev.copying import engine as engine_module
from bdev.errors import BdevError
from bdev.testing.storage import loop_devices, mount_table
from bdev.testing.trees import assert_trees_equal, describe_tree, tree_differences

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: chown to other uids, device nodes, trusted.* xattrs, mounts and loop devices"
)

MiB = 1 << 20
BASE_NS = 1_600_000_000_123_456_789


# ---------------------------------------------------------------------------- tree builders


def write(path: Path, data: bytes, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def make_sparse(path: Path, size: int = 64 * MiB) -> Path:
    """A ``size`` file with two 256 KiB data extents and holes around them."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset in (size // 16, size // 8 * 5):
            fh.seek(offset)
            fh.write(os.urandom(256 * 1024))
    return path


def stamp_times(root: Path) -> None:
    """Give every entry distinct, old, nanosecond times (children before their directory),
    so copies made within the same second as the tree cannot match by accident."""
    paths = sorted(describe_tree(root, content=False), key=lambda rel: (rel == ".", -rel.count("/"), rel))
    for i, rel in enumerate(paths):
        ns = BASE_NS + i * 1_000_003_001
        os.utime(root / rel, ns=(ns + 7, ns), follow_symlinks=False)


def build_common(root: Path) -> None:
    """Entries an ordinary user can make: files, modes, links, xattrs, fifo, socket, holes."""
    root.mkdir(parents=True, exist_ok=True)
    write(root / "etc/hostname", b"box\n")
    write(root / "etc/empty", b"")
    write(root / "bin/tool", os.urandom(3000), 0o755)
    write(root / "var/big.bin", os.urandom(3 * MiB + 17))
    write(root / "names/caf\u00e9 with space", b"unicode name\n")
    write(root / os.fsdecode(b"names/raw-\xff-byte"), b"undecodable name\n")
    write(root / "data/shared", b"one inode, three names\n")
    os.link(root / "data/shared", root / "etc/shared-link")
    os.link(root / "data/shared", root / "names/shared-link")
    make_sparse(root / "data/sparse.img")
    (root / "links").mkdir()
    os.symlink("/etc/passwd", root / "links/passwd")
    os.symlink("../nowhere/at/all", root / "links/dangling")
    os.symlink("../etc", root / "links/etc-dir")
    os.symlink("/", root / "links/root")
    os.mkfifo(root / "links/fifo")
    os.mknod(root / "links/socket", stat.S_IFSOCK | 0o644)
    os.setxattr(root / "etc/hostname", "user.comment", b"a user attribute")
    os.setxattr(root / "etc", "user.dir", b"\x00binary\xff")
    deep = root / "deep"
    for level in range(30):
        deep = deep / f"d{level}"
    write(deep / "leaf", b"leaf\n")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    write(root / "ro/inside", b"in a read-only directory\n", 0o444)
    (root / "ro/sub").mkdir()
    os.chmod(root / "ro/sub", 0o500)
    os.chmod(root / "ro", 0o555)
    os.chmod(root / "bin", 0o711)


def set_capability(path: Path) -> None:
    """``cap_net_raw+ep`` with setcap, or the raw v2 ``security.capability`` value."""
    if which("setcap"):
        run(["setcap", "cap_net_raw+ep", str(path)])
    else:
        os.setxattr(path, "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))


def build_root_tree(root: Path) -> None:
    """Everything: :func:`build_common` plus ownership, set-ID bits, capabilities, trusted
    attributes, ACLs, devices, unreadable files and hard-linked special files."""
    build_common(root)
    write(root / "bin/setuid", os.urandom(500), 0o4755)
    write(root / "bin/setgid", os.urandom(500))
    os.chown(root / "bin/setgid", 0, 100000)
    os.chmod(root / "bin/setgid", 0o2711)
    write(root / "bin/ping", os.urandom(700), 0o755)
    set_capability(root / "bin/ping")
    write(root / "bin/capped-setuid", os.urandom(100))
    os.chown(root / "bin/capped-setuid", 100000, 100000)
    os.chmod(root / "bin/capped-setuid", 0o4750)
    set_capability(root / "bin/capped-setuid")
    home = root / "home/user"
    write(home / "notes", b"owned by a mapped uid\n", 0o600)
    write(home / "other", b"another owner\n")
    os.chown(home / "notes", 100000, 100000)
    os.chown(home / "other", 100001, 100002)
    os.chown(home, 100000, 100000)
    os.chown(home.parent, 100000, 65534)
    os.symlink("notes", home / "link-to-notes")
    os.chown(home / "link-to-notes", 100000, 100003, follow_symlinks=False)
    os.link(root / "data/shared", home / "shared-link")
    write(root / "etc/secret", b"nobody may read this\n", 0o000)
    os.setxattr(root / "etc", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "links/dangling", "trusted.note", b"on a symlink", follow_symlinks=False)
    os.setxattr(root / "bin/tool", "security.bdev-test", b"label")
    if which("setfacl"):
        run(["setfacl", "-m", "u:1000:rwx,g:2000:r-x", str(root / "etc/hostname")])
        run(["setfacl", "-m", "u:100000:rwx", "-d", "-m", "u:100000:r-x,g:100:rwx", str(root / "home")])
    else:
        raise AssertionError("setfacl is missing: install the acl package")
    dev = root / "dev"
    dev.mkdir()
    os.mknod(dev / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(dev / "loop200", stat.S_IFBLK | 0o660, os.makedev(7, 200))
    os.chown(dev / "loop200", 0, 6)
    os.mknod(dev / "fifo-owned", stat.S_IFIFO | 0o620)
    os.chown(dev / "fifo-owned", 100000, 100005)
    os.link(dev / "null", dev / "null-again")
    os.link(root / "links/passwd", root / "links/passwd-hardlink", follow_symlinks=False)
    os.setxattr(dev / "null", "trusted.on-a-device", b"x")  # user.* is refused on devices


def build_tree(root: Path) -> None:
    """The fullest tree this user can make."""
    if IS_ROOT:
        build_root_tree(root)
    else:
        build_common(root)
    stamp_times(root)


def regular_inodes(root: Path) -> dict[tuple[int, int], os.stat_result]:
    """The regular files below ``root``, one per inode."""
    found = {}
    for path in root.rglob("*"):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            found[(st.st_dev, st.st_ino)] = st
    return found


def copied(source: Path, tmp_path: Path, **kw) -> tuple[Path, object]:
    target = tmp_path / "copy"
    target.mkdir()
    return target, copytree(source, target, **kw)


# ---------------------------------------------------------------------------- mounts


@contextlib.contextmanager
def mounted(argv: list[str], mountpoint: Path) -> Iterator[Path]:
    """Run a mount command and undo it whatever happens."""
    run(argv)
    try:
        yield mountpoint
    finally:
        result = run(["umount", str(mountpoint)], check=False)
        if result.returncode != 0:
            run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def leak_check(tmp_path: Path) -> Iterator[None]:
    """Fail the test if it leaves a mount or a loop device behind in its tmp directory
    (only there: other tests may mount and unmount elsewhere meanwhile)."""
    yield
    prefix = str(tmp_path.resolve())
    mounts = [m for m in mount_table() if m.startswith(prefix)]
    loops = [d for d in loop_devices() if prefix in d]
    assert mounts == [], f"the test leaked mounts: {mounts}"
    assert loops == [], f"the test leaked loop devices: {loops}"


@pytest.fixture
def btrfs(tmp_path: Path, leak_check: None) -> Iterator[Path]:
    """A fresh btrfs filesystem on a loop device, mounted in tmp; unmounted and its loop
    device detached afterwards even when the test fails."""
    if not which("mkfs.btrfs") or not which("losetup"):
        pytest.skip("btrfs-progs or losetup is not installed")
    if "btrfs" not in Path("/proc/filesystems").read_text():
        pytest.skip("the kernel has no btrfs")
    image = tmp_path / "btrfs.img"
    mnt = tmp_path / "btrfs-mnt"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(1 << 30)
    run(["mkfs.btrfs", "-q", "-f", str(image)])
    device = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
    try:
        with mounted(["mount", "-t", "btrfs", device, str(mnt)], mnt):
            yield mnt
    finally:
        run(["losetup", "-d", device], check=False)
        # The kernel lets go of the device once btrfs has released it, which can lag the unmount.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            attached = [
                line.split(":", 1)[0]
                for line in run(["losetup", "-j", str(image)], check=False).stdout.splitlines()
                if line.strip()
            ]
            if not attached:
                break
            for leftover in attached:
                run(["losetup", "-d", leftover], check=False)
            time.sleep(0.05)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path, leak_check: None) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted in tmp, unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=2M,mode=0755", "bdev-test-tiny", str(mnt)], mnt):
        yield mnt


# ============================================================================ the copy, as root


@pytest.mark.root
@needs_root
def test_copy_keeps_everything(tmp_path: Path) -> None:
    source = tmp_path / "src"
    build_tree(source)
    target, stats = copied(source, tmp_path)
    assert_trees_equal(source, target)
    # Spot checks of what the comparator sees, so its equality is not vacuous.
    entries = describe_tree(target)
    assert entries["bin/setuid"].mode == 0o4755
    assert entries["bin/setgid"].mode == 0o2711 and entries["bin/setgid"].gid == 100000
    assert entries["bin/capped-setuid"].mode == 0o4750 and entries["bin/capped-setuid"].uid == 100000
    assert "security.capability" in entries["bin/capped-setuid"].xattrs
    assert "security.capability" in entries["bin/ping"].xattrs
    assert entries["etc"].xattrs["trusted.overlay.opaque"] == b"y"
    assert entries["links/dangling"].xattrs == {"trusted.note": b"on a symlink"}
    assert "system.posix_acl_access" in entries["etc/hostname"].xattrs
    assert "system.posix_acl_default" in entries["home"].xattrs
    assert entries["home/user/other"].uid == 100001 and entries["home/user/other"].gid == 100002
    assert entries["home/user/link-to-notes"].gid == 100003
    assert entries["dev/loop200"].type == "block" and entries["dev/loop200"].rdev == os.makedev(7, 200)
    assert entries["dev/null"].link_group == entries["dev/null-again"].link_group == "dev/null"
    assert entries["links/socket"].type == "socket" and entries["links/fifo"].type == "fifo"
    assert entries["links/passwd"].symlink == "/etc/passwd"
    assert entries["links/passwd-hardlink"].link_group == "links/passwd"
    assert entries["etc/secret"].mode == 0 and entries["etc/secret"].sha256 is not None
    assert entries["ro"].mode == 0o555 and entries["tmp"].mode == 0o1777
    assert entries["."].mtime_ns == describe_tree(source)["."].mtime_ns
    shared = {rel for rel, e in entries.items() if e.link_group == "data/shared"}
    assert shared == {"data/shared", "etc/shared-link", "names/shared-link", "home/user/shared-link"}
    assert stats.hardlinks == 3 + 1 + 1
    assert stats.special == 2 + 3
    assert stats.sparse_files == 1
    assert stats.reflinked_files == 0  # ext4 cannot share extents
    assert os.lstat(target / "data/sparse.img").st_blocks * 512 < 2 * MiB


@pytest.mark.root
@needs_root
@pytest.mark.skipif(not which("rsync"), reason="rsync is not installed")
def test_copy_equals_rsync(tmp_path: Path) -> None:
    source = tmp_path / "src"
    build_tree(source)
    ours, _ = copied(source, tmp_path)
    theirs = tmp_path / "rsync"
    run(["rsync", "-aHAXS", "--numeric-ids", f"{source}/", f"{theirs}/"])
    assert_trees_equal(theirs, ours)


@pytest.mark.root
@needs_root
def test_target_gets_top_metadata_and_loses_inherited_acl(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "file", b"x")
    os.chown(source, 100000, 100001)
    os.chmod(source, 0o751)
    os.setxattr(source, "user.top", b"top")
    stamp_times(source)
    target = tmp_path / "copy"
    target.mkdir()
    os.setxattr(target, "user.stale", b"not in the source")
    run(["setfacl", "-d", "-m", "u:4242:rwx", str(target)])  # would be inherited by new files
    copytree(source, target)
    assert_trees_equal(source, target)


@pytest.mark.root
@needs_root
def test_existing_lost_found_is_reused(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "lost+found/orphan", b"x")
    os.chmod(source / "lost+found", 0o700)
    stamp_times(source)
    target = tmp_path / "copy"
    (target / "lost+found").mkdir(parents=True)
    os.setxattr(target / "lost+found", "user.stale", b"1")
    copytree(source, target)
    assert_trees_equal(source, target)


# ============================================================================ reflinks on btrfs


@pytest.mark.root
@needs_root
def test_reflinks_within_btrfs_and_not_across(btrfs: Path, tmp_path: Path) -> None:
    source = btrfs / "src"
    build_tree(source)
    regular = [st for st in regular_inodes(source).values() if st.st_size > 0]

    same_fs = btrfs / "copy"
    same_fs.mkdir()
    stats = copytree(source, same_fs)
    assert stats.reflinked_files == len(regular) > 0
    assert stats.sparse_files == 1
    assert_trees_equal(source, same_fs)
    assert os.lstat(same_fs / "data/sparse.img").st_blocks * 512 < 2 * MiB

    no_clone = btrfs / "copy-no-reflink"
    no_clone.mkdir()
    assert copytree(source, no_clone, reflink=False).reflinked_files == 0
    assert_trees_equal(source, no_clone)

    other_fs = tmp_path / "on-ext4"
    other_fs.mkdir()
    stats = copytree(source, other_fs)
    assert stats.reflinked_files == 0
    assert_trees_equal(source, other_fs)
    assert os.lstat(other_fs / "data/sparse.img").st_blocks * 512 < 2 * MiB


@pytest.mark.root
@needs_root
def test_btrfs_properties_are_dropped_where_unsupported(
    btrfs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = btrfs / "src"
    write(source / "compressed", b"x" * 10000)
    os.setxattr(source / "compressed", "btrfs.compression", b"zstd")
    os.setxattr(source / "compressed", "user.kept", b"1")
    stamp_times(source)
    same_fs = btrfs / "copy"
    same_fs.mkdir()
    copytree(source, same_fs)
    assert_trees_equal(source, same_fs)
    other_fs = tmp_path / "on-ext4"
    other_fs.mkdir()
    with caplog.at_level(logging.WARNING, logger="bdev.copying"):
        copytree(source, other_fs)
    assert tree_differences(source, other_fs) == [
        "compressed: xattrs: {'btrfs.compression': b'zstd'} != {'btrfs.compression': None}"
    ]
    assert "no btrfs.compression property" in caplog.text


# ============================================================================ mount points


@pytest.mark.root
@needs_root
def test_nested_mounts_are_not_descended(tmp_path: Path, caplog: pytest.LogCaptureFixture, leak_check: None) -> None:
    source = tmp_path / "src"
    write(source / "keep/file", b"copied\n")
    (source / "bind").mkdir()
    (source / "deeper/tmpfs").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "not-copied", b"belongs to another mount\n")
    os.chmod(elsewhere, 0o710)
    write(source / "keep/resolv.conf", b"")
    outside_file = write(tmp_path / "host-resolv.conf", b"nameserver 192.0.2.1\n", 0o640)
    recorder = RecordingProgress()
    with contextlib.ExitStack() as stack:
        # A bind mount of the same filesystem: st_dev does not change, only the mount table says so.
        stack.enter_context(mounted(["mount", "--bind", str(elsewhere), str(source / "bind")], source / "bind"))
        tmpfs = source / "deeper/tmpfs"
        stack.enter_context(mounted(["mount", "-t", "tmpfs", "-o", "size=1M", "bdev-test", str(tmpfs)], tmpfs))
        resolv = source / "keep/resolv.conf"
        stack.enter_context(mounted(["mount", "--bind", str(outside_file), str(resolv)], resolv))
        write(tmpfs / "also-not-copied", b"x")
        target = tmp_path / "copy"
        target.mkdir()
        with caplog.at_level(logging.WARNING, logger="bdev.copying"):
            stats = copytree(source, target, progress=recorder)
    assert sorted(os.listdir(target)) == ["bind", "deeper", "keep"]
    assert os.listdir(target / "bind") == [] and os.listdir(target / "deeper/tmpfs") == []
    assert (target / "keep/file").read_bytes() == b"copied\n"
    assert stat.S_IMODE(os.lstat(target / "bind").st_mode) == 0o710  # the mounted root's metadata
    assert stats.directories == 4 and stats.files == 2
    # A bind-mounted file becomes an empty file with the mounted file's metadata.
    assert (target / "keep/resolv.conf").read_bytes() == b""
    assert stat.S_IMODE(os.lstat(target / "keep/resolv.conf").st_mode) == 0o640
    assert recorder.started == (len(b"copied\n"), 6)  # mounts' contents are not counted either
    assert (recorder.bytes, recorder.files) == recorder.started
    for point in ("bind", "deeper/tmpfs", "keep/resolv.conf"):
        assert f"{point} is a mount point" in caplog.text


# ============================================================================ errors


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("where", ["across filesystems", "within the full filesystem"])
def test_full_disk_is_reported(tiny_tmpfs: Path, tmp_path: Path, where: str) -> None:
    if where == "across filesystems":
        source = tmp_path / "src"
        write(source / "small", b"fits")
        write(source / "sub/big.bin", os.urandom(3 * MiB))
    else:
        source = tiny_tmpfs / "src"
        write(source / "sub/big.bin", os.urandom(1200 * 1024))
    target = tiny_tmpfs / "copy"
    target.mkdir()
    with pytest.raises(CopyError) as caught:
        copytree(source, target)
    message = str(caught.value)
    assert "disk is full" in message
    assert message.startswith("Copying sub/big.bin failed:")
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(caught.value, BdevError)


@pytest.mark.unprivileged
def test_missing_source_and_target(tmp_path: Path) -> None:
    with pytest.raises(CopyError, match="No such file or directory"):
        copytree(tmp_path / "absent", tmp_path)
    source = tmp_path / "src"
    write(source / "f", b"x")
    with pytest.raises(CopyError, match="^Cannot copy into .*absent: No such file or directory.$"):
        copytree(source, tmp_path / "absent")


@pytest.mark.unprivileged
def test_conflicting_entry_in_target(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "etc/hosts", b"x")
    target = tmp_path / "copy"
    write(target / "etc", b"a file where a directory is needed")
    with pytest.raises(CopyError) as caught:
        copytree(source, target)
    assert str(caught.value) == "Copying etc failed: File exists."


@pytest.mark.unprivileged
def test_target_inside_source_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "inner").mkdir(parents=True)
    with pytest.raises(CopyError, match="inside the source"):
        copytree(source, source / "inner")


# ============================================================================ unprivileged copies


@pytest.mark.unprivileged
def test_copy_as_any_user(tmp_path: Path) -> None:
    source = tmp_path / "src"
    build_common(source)
    if which("setfacl"):
        run(["setfacl", "-m", f"u:{os.geteuid() + 1}:r--", str(source / "etc/hostname")])
    stamp_times(source)
    target, stats = copied(source, tmp_path)
    assert_trees_equal(source, target)
    assert stats.symlinks == 4 and stats.hardlinks == 2 and stats.special == 2
    assert stats.sparse_files == 1
    assert os.lstat(target / "data/sparse.img").st_blocks * 512 <= 1 * MiB
    assert os.readlink(target / "links/root") == "/"


@pytest.mark.unprivileged
def test_entries_vanishing_during_the_copy_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "src"
    write(source / "keep", b"stays")
    write(source / "gone-file", b"deleted after listing")
    write(source / "gone-dir/inner", b"x")
    os.symlink("keep", source / "gone-link")
    real_list = engine_module._list

    def list_then_delete(fd: int) -> list:
        entries = real_list(fd)
        if any(e.name == "gone-file" for e in entries):
            for name in ("gone-file", "gone-link", "gone-dir/inner"):
                (source / name).unlink()
            (source / "gone-dir").rmdir()
        return entries

    monkeypatch.setattr(engine_module, "_list", list_then_delete)
    with caplog.at_level(logging.WARNING, logger="bdev.copying"):
        target, stats = copied(source, tmp_path)
    assert os.listdir(target) == ["keep"] and stats.files == 1
    assert "gone-file vanished" in caplog.text and "gone-dir vanished" in caplog.text


@pytest.mark.unprivileged
def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret", b"outside the tree")
    source = tmp_path / "src"
    source.mkdir()
    os.symlink(outside, source / "to-outside-dir")
    os.symlink(outside / "secret", source / "to-outside-file")
    os.symlink("to-outside-dir", source / "chain")
    os.symlink("loop-b", source / "loop-a")
    os.symlink("loop-a", source / "loop-b")
    target, stats = copied(source, tmp_path)
    assert stats.files == 0 and stats.symlinks == 5
    for name in os.listdir(source):
        assert os.path.islink(target / name)
        assert os.readlink(target / name) == os.readlink(source / name)
    assert_trees_equal(source, target)


@pytest.mark.unprivileged
def test_top_level_symlink_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write(real / "f", b"x")
    (tmp_path / "alias").symlink_to(real)
    target, _ = copied(tmp_path / "alias", tmp_path)
    assert_trees_equal(real, target)


@pytest.mark.unprivileged
def test_sparse_file_keeps_its_holes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    make_sparse(source / "disk.img")
    write(source / "dense", os.urandom(MiB))
    hole_at_end = source / "hole-at-end"
    with open(hole_at_end, "wb") as fh:
        fh.write(b"head")
        fh.truncate(8 * MiB)
    target, stats = copied(source, tmp_path)
    assert stats.sparse_files == 2
    for name in ("disk.img", "hole-at-end"):
        st = os.lstat(target / name)
        assert st.st_size == os.lstat(source / name).st_size
        assert st.st_blocks * 512 <= 1 * MiB, f"{name} lost its holes"
    assert_trees_equal(source, target)


@pytest.mark.unprivileged
def test_read_write_fallback_keeps_data_and_holes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def no_copy_file_range(*args, **kw):
        calls.append(args)
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(data_module.os, "copy_file_range", no_copy_file_range)
    source = tmp_path / "src"
    build_common(source)
    stamp_times(source)
    target, _ = copied(source, tmp_path)
    assert_trees_equal(source, target)
    assert len(calls) == 1, "an unsupported copy_file_range must be tried once, not per file"


@pytest.mark.unprivileged
def test_refused_reflink_is_tried_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refusing_ioctl(fd, request, arg):
        assert request == data_module.FICLONE
        calls.append(fd)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(data_module.fcntl, "ioctl", refusing_ioctl)
    source = tmp_path / "src"
    for i in range(50):
        write(source / f"d{i % 5}/f{i}", os.urandom(100 + i))
    write(source / "empty", b"")
    target, stats = copied(source, tmp_path)
    assert stats.files == 51 and stats.reflinked_files == 0
    assert len(calls) == 1
    assert_trees_equal(source, target)


@pytest.mark.unprivileged
def test_successful_reflinks_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cloning_ioctl(dst, request, src):
        os.copy_file_range(src, dst, os.fstat(src).st_size, 0, 0)

    monkeypatch.setattr(data_module.fcntl, "ioctl", cloning_ioctl)
    source = tmp_path / "src"
    write(source / "a", b"aaa")
    write(source / "b", b"bbb")
    write(source / "empty", b"")
    _, stats = copied(source, tmp_path)
    assert stats.reflinked_files == 2  # an empty file needs no clone
    again = tmp_path / "again"
    again.mkdir()
    assert copytree(source, again, reflink=False).reflinked_files == 0


# ============================================================================ progress


class RecordingProgress:
    def __init__(self) -> None:
        self.started: tuple[int, int] | None = None
        self.bytes = 0
        self.files = 0
        self.finished = 0

    def start(self, total_bytes: int, total_files: int) -> None:
        assert self.started is None
        self.started = (total_bytes, total_files)

    def advance(self, nbytes: int, nfiles: int = 1) -> None:
        self.bytes += nbytes
        self.files += nfiles

    def finish(self) -> None:
        self.finished += 1


@pytest.mark.unprivileged
def test_progress_totals_match_advances(tmp_path: Path) -> None:
    source = tmp_path / "src"
    build_common(source)
    recorder = RecordingProgress()
    target, stats = copied(source, tmp_path, progress=recorder)
    entries = len(describe_tree(source, content=False)) - 1
    data = sum(st.st_size for st in regular_inodes(source).values())
    assert recorder.started == (data, entries)
    assert (recorder.bytes, recorder.files) == (data, entries)
    assert recorder.finished == 1
    assert stats.bytes == data


@pytest.mark.unprivileged
def test_progress_finishes_on_failure(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write(source / "etc/hosts", b"x")
    target = tmp_path / "copy"
    write(target / "etc", b"conflict")
    recorder = RecordingProgress()
    with pytest.raises(CopyError):
        copytree(source, target, progress=recorder)
    assert recorder.finished == 1


@pytest.mark.unprivileged
def test_null_progress_skips_the_prewalk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kw):
        raise AssertionError("no pre-walk without a real progress")

    monkeypatch.setattr(engine_module, "measure", forbidden)
    source = tmp_path / "src"
    write(source / "f", b"x")
    copied(source, tmp_path, progress=NullProgress())
    again = tmp_path / "again"
    again.mkdir()
    copytree(source, again)


@pytest.mark.unprivileged
def test_terminal_progress(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(terminal_progress("copying"), NullProgress)

    class FakeTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    bar = terminal_progress("copying")
    assert not isinstance(bar, NullProgress)
    source = tmp_path / "src"
    write(source / "f", os.urandom(1000))
    copied(source, tmp_path, progress=bar)


# ============================================================================ the comparator


def comparator_pair(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a"
    write(a / "dir/file", b"content")
    os.link(a / "dir/file", a / "file-link")
    os.symlink("dir/file", a / "sym")
    os.chmod(a / "dir/file", 0o644)
    os.setxattr(a / "dir/file", "user.x", b"1")
    stamp_times(a)
    b = tmp_path / "b"
    b.mkdir()
    copytree(a, b)
    assert tree_differences(a, b) == []
    return a, b


@pytest.mark.unprivileged
@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda b: os.chmod(b / "dir/file", 0o4600), "dir/file: mode: '0o644' != '0o4600'"),
        (lambda b: os.setxattr(b / "dir/file", "user.x", b"2"), "xattrs: {'user.x': b'1'} != {'user.x': b'2'}"),
        (lambda b: os.removexattr(b / "dir/file", "user.x"), "xattrs: {'user.x': b'1'} != {'user.x': None}"),
        (lambda b: (b / "dir/file").write_bytes(b"CONTENT"), "dir/file: mtime_ns"),
        (lambda b: os.utime(b / "dir", ns=(0, 5)), "dir: mtime_ns"),
        (lambda b: (os.unlink(b / "sym"), os.symlink("elsewhere", b / "sym")), "symlink: 'dir/file' != 'elsewhere'"),
        (lambda b: (b / "new").write_bytes(b""), "new: only in"),
        (lambda b: os.unlink(b / "file-link"), "file-link: only in"),
    ],
)
def test_comparator_detects(tmp_path: Path, change, expected: str) -> None:
    a, b = comparator_pair(tmp_path)
    change(b)
    with pytest.raises(AssertionError) as caught:
        assert_trees_equal(a, b)
    assert expected in str(caught.value)


@pytest.mark.unprivileged
def test_comparator_detects_content_with_same_times(tmp_path: Path) -> None:
    a, b = comparator_pair(tmp_path)
    st = os.lstat(b / "dir/file")
    (b / "dir/file").write_bytes(b"CONTENT")
    os.utime(b / "dir/file", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(b / "dir", ns=(st.st_atime_ns, os.lstat(a / "dir").st_mtime_ns))
    problems = tree_differences(a, b)
    assert len(problems) == 2 and all("sha256" in p for p in problems)  # both names of the inode
    assert tree_differences(a, b, content=False) == []


@pytest.mark.unprivileged
def test_comparator_detects_split_hard_link(tmp_path: Path) -> None:
    a, b = comparator_pair(tmp_path)
    times = os.lstat(b / "file-link")
    os.unlink(b / "file-link")
    write(b / "file-link", b"content")
    os.setxattr(b / "file-link", "user.x", b"1")
    os.utime(b / "file-link", ns=(times.st_atime_ns, times.st_mtime_ns))
    os.utime(b, ns=(0, os.lstat(a).st_mtime_ns))
    problems = tree_differences(a, b)
    assert any(p.startswith("file-link: link_group: 'dir/file' != None") for p in problems), problems


@pytest.mark.unprivileged
def test_comparator_detects_type_and_sparseness(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    make_sparse(a / "img", 8 * MiB)
    b = tmp_path / "b"
    write(b / "img", (a / "img").read_bytes())
    os.utime(b / "img", ns=(0, os.lstat(a / "img").st_mtime_ns))
    problems = tree_differences(a, b, ignore_times_of=["."])
    assert problems == ["img: sparse: True != False"]


@pytest.mark.unprivileged
def test_comparator_ignores_listed_times_and_caps_its_report(tmp_path: Path) -> None:
    a = tmp_path / "a"
    for i in range(30):
        write(a / f"f{i:02}", b"x")
    b = tmp_path / "b"
    for i in range(30):
        write(b / f"f{i:02}", b"x")
        os.chmod(b / f"f{i:02}", 0o600)
    with pytest.raises(AssertionError) as caught:
        assert_trees_equal(a, b, ignore_times_of=["."] + [f"f{i:02}" for i in range(30)])
    text = str(caught.value)
    assert "trees differ (30 entries)" in text
    assert "f19: mode" in text and "f20: mode" not in text
    assert "... and 10 more" in text
    assert "mtime" not in text
