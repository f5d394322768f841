"""Tests of the built-in templates: ``busybox`` and ``local`` (bdev_runtime.templates)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bdev.command import run, which
from bdev.errors import BdevError
from bdev.templates import TemplateContext
from bdev_runtime.templates.busybox import BUSYBOX, elf_interpreter
from bdev_runtime.templates.local import LOCAL

IS_ROOT = os.geteuid() == 0
BUSYBOX_BIN = which("busybox")


def needs_root(func):
    """Mark a test as needing root and skip it, saying why, for an ordinary user."""
    func = pytest.mark.skipif(not IS_ROOT, reason="needs root (chroot, chown to another uid)")(func)
    return pytest.mark.root(func)


needs_busybox = pytest.mark.skipif(BUSYBOX_BIN is None, reason="no busybox on PATH (Debian: busybox-static)")


def _one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.endswith("."), text
    return text


def make_ctx(tmp_path: Path, *args: str, name: str = "c1") -> TemplateContext:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    return TemplateContext(name=name, rootfs=rootfs, lxcpath=tmp_path, args=list(args))


# ---------------------------------------------------------------------------- busybox


@pytest.fixture(scope="module")
def busybox_built(tmp_path_factory: pytest.TempPathFactory) -> TemplateContext:
    """One busybox rootfs, built once for the read-only checks."""
    if BUSYBOX_BIN is None:
        pytest.skip("no busybox on PATH (Debian: busybox-static)")
    ctx = make_ctx(tmp_path_factory.mktemp("bb"), name="bbox1")
    BUSYBOX.build(ctx)
    return ctx


@needs_busybox
def test_busybox_binary_runs(busybox_built: TemplateContext) -> None:
    binary = busybox_built.rootfs / "bin/busybox"
    assert binary.is_file() and not binary.is_symlink()
    assert os.access(binary, os.X_OK)
    run([binary, "true"])
    assert elf_interpreter(binary) is None


@needs_busybox
def test_busybox_skeleton(busybox_built: TemplateContext) -> None:
    root = busybox_built.rootfs
    for d in ("bin", "sbin", "dev", "etc", "proc", "sys", "tmp", "root", "var/run", "var/log",
              "usr/bin", "usr/sbin", "lib", "mnt", "home"):
        assert (root / d).is_dir(), d
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "root").stat().st_mode) == 0o700
    assert list((root / "dev").iterdir()) == []  # lxc.autodev provides /dev


@needs_busybox
def test_busybox_applet_links(busybox_built: TemplateContext) -> None:
    root = busybox_built.rootfs
    for applet in ("bin/sh", "sbin/init"):
        link = root / applet
        assert link.is_symlink(), applet
        target = os.readlink(link)
        assert not target.startswith("/"), target  # relative: valid inside and outside
        assert (link.parent / target).resolve() == (root / "bin/busybox").resolve()
    listed = run([root / "bin/busybox", "--list-full"]).stdout.split()
    missing = [a for a in listed if not (root / a).is_symlink() and not (root / a).exists()]
    assert missing == []


@needs_busybox
def test_busybox_etc_files(busybox_built: TemplateContext) -> None:
    etc = busybox_built.rootfs / "etc"
    inittab = (etc / "inittab").read_text().splitlines()
    assert "::sysinit:/etc/init.d/rcS" in inittab
    assert any(line.startswith("console::askfirst:") and line.endswith("/bin/sh") for line in inittab)
    assert any(line.startswith("::ctrlaltdel:") for line in inittab)
    assert any(line.startswith("::shutdown:") for line in inittab)
    assert os.access(etc / "init.d/rcS", os.X_OK)
    assert (etc / "hostname").read_text() == "bbox1\n"
    assert "127.0.1.1\tbbox1" in (etc / "hosts").read_text()
    assert (etc / "passwd").read_text().startswith("root:x:0:0:")
    assert (etc / "group").read_text().startswith("root:x:0:")
    assert (etc / "shadow").read_text().startswith("root:*:")
    assert stat.S_IMODE((etc / "shadow").stat().st_mode) == 0o600
    assert (etc / "fstab").exists()
    assert "PATH=" in (etc / "profile").read_text()
    rcs = (etc / "init.d/rcS").read_text()
    script = rcs.split(" -s ", 1)[1].split()[0]  # the udhcpc script the rcS names
    assert os.access(busybox_built.rootfs / script.lstrip("/"), os.X_OK)
    assert "ip addr add" in (busybox_built.rootfs / script.lstrip("/")).read_text()


@needs_busybox
def test_busybox_config_lines(busybox_built: TemplateContext) -> None:
    config = busybox_built.config
    keys = dict(config)
    assert keys["lxc.signal.halt"] == "SIGUSR1"
    assert keys["lxc.signal.reboot"] == "SIGTERM"
    assert keys["lxc.uts.name"] == "bbox1"
    assert keys["lxc.autodev"] == "1"
    assert keys["lxc.tty.max"] == "5"
    assert keys["lxc.pty.max"] == "1"
    assert keys["lxc.cap.drop"] == "sys_module mac_admin mac_override sys_time"
    assert keys["lxc.mount.auto"] == "cgroup:mixed proc:mixed sys:ro"
    entries = [v for k, v in config if k == "lxc.mount.entry"]
    assert "shm dev/shm tmpfs defaults,create=dir 0 0" in entries
    assert "mqueue dev/mqueue mqueue defaults,optional,create=dir 0 0" in entries
    assert entries[-1] == "/sys/kernel/security sys/kernel/security none ro,bind,optional 0 0"
    assert not any(k == "lxc.rootfs.path" for k, _ in config)  # the engine's business


@needs_root
@needs_busybox
def test_busybox_chroot_shell(busybox_built: TemplateContext) -> None:
    chroot = which("chroot")
    if chroot is None:
        pytest.skip("no chroot program")
    out = run([chroot, busybox_built.rootfs, "/bin/sh", "-c", "echo ok; ls /bin/busybox"]).stdout
    assert out.split() == ["ok", "/bin/busybox"]


@needs_busybox
def test_busybox_explicit_path(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, "--busybox-path", BUSYBOX_BIN)
    BUSYBOX.build(ctx)
    run([ctx.rootfs / "bin/busybox", "true"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--bogus"], "--bogus"),
        (["stray"], "stray"),
        (["--busybox-path"], "requires an argument"),
        (["--help"], "--help"),
    ],
)
def test_busybox_bad_args(tmp_path: Path, args: list[str], fragment: str) -> None:
    ctx = make_ctx(tmp_path, *args)
    with pytest.raises(BdevError) as info:
        BUSYBOX.build(ctx)
    text = _one_sentence(info.value)
    assert fragment in text and "busybox" in text and "--busybox-path" in text
    assert list(ctx.rootfs.iterdir()) == []


def test_busybox_refuses_dynamic_binary(tmp_path: Path) -> None:
    dynamic = next((p for p in (which("ls"), which("cat")) if p and elf_interpreter(Path(p))), None)
    if dynamic is None:
        pytest.skip("no dynamically linked program to try")
    with pytest.raises(BdevError, match="dynamically linked"):
        BUSYBOX.build(make_ctx(tmp_path, "--busybox-path", dynamic))


def test_busybox_refuses_non_elf_and_missing(tmp_path: Path) -> None:
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    with pytest.raises(BdevError, match="not an ELF"):
        BUSYBOX.build(make_ctx(tmp_path, "--busybox-path", str(script)))
    with pytest.raises(BdevError, match="not an existing file") as info:
        BUSYBOX.build(TemplateContext("c", tmp_path / "rootfs", tmp_path, ["--busybox-path", str(tmp_path / "x")]))
    _one_sentence(info.value)


# ---------------------------------------------------------------------------- local


def make_tree(base: Path) -> Path:
    """A small rootfs-like tree: a uid-12345 file, a symlink and a ``user.test`` xattr."""
    src = base / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("old\n")
    owned = src / "owned"
    owned.write_text("mine\n")
    os.chown(owned, 12345, 12345)
    (src / "link").symlink_to("etc/hostname")
    tagged = src / "tagged"
    tagged.write_text("x\n")
    os.setxattr(tagged, "user.test", b"hello")
    return src


def check_tree(rootfs: Path, *, hostname: str) -> None:
    owned = (rootfs / "owned").stat()
    assert (owned.st_uid, owned.st_gid) == (12345, 12345)
    assert os.readlink(rootfs / "link") == "etc/hostname"
    assert os.getxattr(rootfs / "tagged", "user.test") == b"hello"
    assert (rootfs / "etc/hostname").read_text() == hostname


COMPRESSIONS = [
    ("tar", [], None),
    ("tar.gz", ["--gzip"], "gzip"),
    ("tar.xz", ["--xz"], "xz"),
    ("tar.zst", ["--zstd"], "zstd"),
    ("tar.bz2", ["--bzip2"], "bzip2"),
]


def make_archive(base: Path, suffix: str, flags: list[str]) -> Path:
    src = make_tree(base)
    archive = base / f"tree.{suffix}"
    run(["tar", "--create", "--numeric-owner", "--xattrs", *flags, "--file", archive, "-C", src, "."])
    return archive


@needs_root
@pytest.mark.parametrize("suffix, flags, tool", COMPRESSIONS, ids=[c[0] for c in COMPRESSIONS])
def test_local_from_tarball(tmp_path: Path, suffix: str, flags: list[str], tool: str | None) -> None:
    if tool is not None and which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    archive = make_archive(tmp_path, suffix, flags)
    ctx = make_ctx(tmp_path, "--path", str(archive), name="web1")
    LOCAL.build(ctx)
    check_tree(ctx.rootfs, hostname="web1\n")
    assert ctx.config == []


@needs_root
def test_local_no_hostname(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, "tar.gz", ["--gzip"])
    ctx = make_ctx(tmp_path, "--path", str(archive), "--no-hostname")
    LOCAL.build(ctx)
    check_tree(ctx.rootfs, hostname="old\n")


@needs_root
def test_local_from_directory(tmp_path: Path) -> None:
    try:
        from bdev.copying import copytree  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"bdev.copying.copytree (the copy engine) is not importable yet: {exc}")
    src = make_tree(tmp_path)
    ctx = make_ctx(tmp_path, "--path", str(src), name="copy1")
    LOCAL.build(ctx)
    check_tree(ctx.rootfs, hostname="copy1\n")
    assert (src / "etc/hostname").read_text() == "old\n"  # the source is untouched


def test_local_writes_hostname_only_with_etc(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    src.mkdir()
    (src / "file").write_text("x")
    archive = tmp_path / "plain.tar"
    run(["tar", "--create", "--file", archive, "-C", src, "."])
    ctx = make_ctx(tmp_path, "--path", str(archive))
    LOCAL.build(ctx)
    assert (ctx.rootfs / "file").read_text() == "x"
    assert not (ctx.rootfs / "etc").exists()


def test_local_hostname_not_written_through_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("host\n")
    src = tmp_path / "tree"
    src.mkdir()
    (src / "etc").symlink_to(outside)  # absolute symlink out of the tree
    archive = tmp_path / "tree.tar"
    run(["tar", "--create", "--file", archive, "-C", src, "."])
    ctx = make_ctx(tmp_path, "--path", str(archive))
    LOCAL.build(ctx)
    assert (outside / "hostname").read_text() == "host\n"

    # etc/hostname itself a symlink out of the tree: replaced, not followed
    src2 = tmp_path / "tree2"
    (src2 / "etc").mkdir(parents=True)
    (src2 / "etc/hostname").symlink_to(outside / "hostname")
    archive2 = tmp_path / "tree2.tar"
    run(["tar", "--create", "--file", archive2, "-C", src2, "."])
    ctx2 = TemplateContext("c2", tmp_path / "rootfs2", tmp_path, ["--path", str(archive2)])
    ctx2.rootfs.mkdir()
    LOCAL.build(ctx2)
    assert (outside / "hostname").read_text() == "host\n"
    assert not (ctx2.rootfs / "etc/hostname").is_symlink()
    assert (ctx2.rootfs / "etc/hostname").read_text() == "c2\n"


def test_local_corrupt_tarball(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(256 * 1024))
    archive = tmp_path / "broken.tar.gz"
    run(["tar", "--create", "--gzip", "--file", archive, "-C", src, "."])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(BdevError) as info:
        LOCAL.build(make_ctx(tmp_path, "--path", str(archive)))
    text = _one_sentence(info.value)
    assert str(archive) in text


def test_local_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a tar archive\n" * 100)
    with pytest.raises(BdevError) as info:
        LOCAL.build(make_ctx(tmp_path, "--path", str(junk)))
    assert str(junk) in _one_sentence(info.value)


def test_local_missing_and_special_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(BdevError) as info:
        LOCAL.build(make_ctx(tmp_path, "--path", str(missing)))
    assert str(missing) in _one_sentence(info.value)
    with pytest.raises(BdevError, match="neither a directory nor a tar archive") as info:
        LOCAL.build(TemplateContext("c", tmp_path, tmp_path, ["--path", os.devnull]))
    assert os.devnull in _one_sentence(info.value)


def test_local_hostile_archive_stays_inside(tmp_path: Path) -> None:
    """GNU tar's defaults keep ``..`` members and writes through symlinks out of the rootfs."""
    import io
    import tarfile

    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, target in (("abs", str(outside)), ("rel", "../outside")):
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = target
            tar.addfile(link)
            payload = tarfile.TarInfo(f"{name}/pwned")
            payload.size = 5
            tar.addfile(payload, io.BytesIO(b"pwned"))
        up = tarfile.TarInfo("../escaped")
        up.size = 5
        tar.addfile(up, io.BytesIO(b"pwned"))
    with pytest.raises(BdevError) as info:
        LOCAL.build(make_ctx(tmp_path, "--path", str(archive)))
    assert str(archive) in _one_sentence(info.value)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [([], "--path"), (["--path"], "requires an argument"), (["--path", "x", "--frob"], "--frob"),
        (["--pat", "x"], "--pat"), (["--path", "x", "a"], "(a)")],
)
def test_local_bad_args(tmp_path: Path, args: list[str], fragment: str) -> None:
    with pytest.raises(BdevError) as info:
        LOCAL.build(make_ctx(tmp_path, *args))
    text = _one_sentence(info.value)
    assert fragment in text and "'local'" in text


# ---------------------------------------------------------------------------- registry


def test_templates_through_entry_point() -> None:
    from bdev.registry import load_registry

    registry = load_registry()
    busybox = registry.template("busybox")
    local = registry.template("local")
    assert busybox.build is BUSYBOX.build and local.build is LOCAL.build
    assert "--busybox-path" in busybox.usage
    assert "--path" in local.usage and "--no-hostname" in local.usage
    assert local.description == "a rootfs copied from a local directory or unpacked from a tarball"
    names = {t.name for t, _plugin in registry.templates()}
    assert {"busybox", "local"} <= names


def test_local_refuses_directory_holding_the_rootfs(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, "--path", str(tmp_path))
    with pytest.raises(BdevError, match="contains the new rootfs") as info:
        LOCAL.build(ctx)
    assert str(tmp_path) in _one_sentence(info.value)
