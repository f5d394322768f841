"""The third-party example plugin ``examples/squashfs`` (distribution ``bdev-squashfs``):
immutable compressed squashfs base images, with containers running as overlay clones on top.

It must be installed from its folder with pip, not editable (``scripts/test.sh`` does it), and
bdev must find it only through its ``bdev.plugins`` entry point.  Everything here uses real
loop mounts.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import BdevError, NotSupported
from bdev.engine.context import default_registry
from bdev.records import CreateOptions, Placement
from bdev.registry import load_registry
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "squashfs"
BENCH_PAYLOAD = ROOT / "bench" / "payload.py"
DISTRIBUTION = "bdev-squashfs"

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def _installed() -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.fixture(autouse=True)
def squashfs_installed() -> None:
    """Every test needs the plugin installed (``pip install examples/squashfs``) and usable."""
    if _installed() is None:
        pytest.fail(f"{DISTRIBUTION} is not installed: run `pip install --no-deps {EXAMPLE.relative_to(ROOT)}`")
    reasons = default_registry().backend("squashfs").unavailable_reasons()
    if reasons:
        pytest.skip(f"the squashfs backend is not usable here: {'; '.join(reasons)}")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


def differences(expected: Path, actual: Path, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """:func:`tree_differences` at squashfs's time granularity (whole seconds)."""
    out = []
    for problem in tree_differences(expected, actual):
        if problem.startswith(ignore):
            continue
        path, _, detail = problem.partition(": ")
        kept = []
        for part in detail.split("; "):
            if part.startswith("mtime_ns: "):
                mine, _, theirs = part.removeprefix("mtime_ns: ").partition(" != ")
                if int(mine) // 10**9 == int(theirs) // 10**9:
                    continue
            kept.append(part)
        if kept:
            out.append(f"{path}: " + "; ".join(kept))
    return out


def files(container: Container, *, readonly: bool = True):
    rootfs = container.rootfs
    return default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly)


def image_of(container: Container) -> Path:
    assert container.rootfs.backend == "squashfs"
    return Path(container.rootfs.source)


def bdev_cli(*args: str, lxcpath: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bdev.cli.main", "-P", str(lxcpath), *args], capture_output=True, text=True, check=False
    )


# ---------------------------------------------------------------------------- packaging


def test_found_only_through_its_entry_point_as_an_installed_distribution() -> None:
    dist = _installed()
    assert dist is not None and dist.metadata["Name"] == DISTRIBUTION
    assert dist.metadata["License-Expression"] == "LGPL-2.1-or-later"
    assert [r.split(";")[0].strip() for r in dist.requires or []] == ["bdev"]
    points = [ep for ep in dist.entry_points if ep.group == "bdev.plugins"]
    assert [(ep.name, ep.value) for ep in points] == [("squashfs", "bdev_squashfs")]
    direct = dist.read_text("direct_url.json")
    if direct:  # pip records how it installed: never editable
        assert not json.loads(direct).get("dir_info", {}).get("editable", False), "installed editable"
    module = importlib.util.find_spec("bdev_squashfs")
    assert module is not None and module.origin is not None
    assert EXAMPLE not in Path(module.origin).resolve().parents, "imported from the source folder, not installed"
    backend = load_registry().backend("squashfs")
    assert type(backend).__module__ == "bdev_squashfs.backend"
    caps = backend.capabilities
    assert (caps.read_only, caps.needs_mount, caps.block_backed, caps.native_snapshot, caps.can_backup) == (
        True, True, True, True, True,
    )


def test_backends_listing_names_the_distribution(lxcpath: Path) -> None:
    out = bdev_cli("backends", lxcpath=lxcpath)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("squashfs "))
    assert "yes" in line.split()
    if "from:" in out.stdout:  # the per-backend blocks say which distribution each came from
        block = out.stdout[out.stdout.index("\nsquashfs:"):]
        assert "bdev-squashfs 0.1.0" in block.split("\n\n")[0]


# ---------------------------------------------------------------------------- images


def test_busybox_container_becomes_an_image(lxcpath: Path) -> None:
    """``bdev clone web1 base-img -B squashfs`` turns a container into an image."""
    web1 = Container("web1", lxcpath)
    web1.create("busybox", backend="dir")
    out = bdev_cli("clone", "web1", "base-img", "-B", "squashfs", lxcpath=lxcpath)
    assert out.returncode == 0, out.stderr
    image = Container("base-img", lxcpath)
    path = image_of(image)
    assert path == lxcpath / "base-img" / "rootfs.squashfs" and path.is_file()
    assert path.stat().st_mode & 0o777 == 0o444
    assert image.get_config_item("lxc.rootfs.path") == [f"squashfs:{path}"]
    with files(image) as tree:
        assert differences(Path(web1.rootfs.source), tree, ignore=("etc/hostname:", "etc/hosts:")) == []
        assert (tree / "etc/hostname").read_text() == "base-img\n"
        assert os.access(tree / "bin/busybox", os.X_OK)
    assert bdev_cli("destroy", "base-img", lxcpath=lxcpath).returncode == 0
    web1.destroy()
    assert sorted(os.listdir(lxcpath)) == []


def test_an_image_keeps_owners_modes_links_devices_and_xattrs(lxcpath: Path, sample: Path) -> None:
    c = Container("img", lxcpath)
    c.create(backend="squashfs", source=sample)
    with files(c) as tree:
        assert differences(sample, tree, ignore=("etc/hostname:", "etc/hosts:")) == []
    c.destroy()


def test_the_image_is_immutable(lxcpath: Path, sample: Path, tmp_path: Path) -> None:
    c = Container("img", lxcpath)
    c.create(backend="squashfs", source=sample)
    backend = default_registry().backend("squashfs")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with pytest.raises(BdevError, match="immutable"):
        backend.mount(c.rootfs, mountpoint, readonly=False)
    backend.mount(c.rootfs, mountpoint, readonly=True)
    try:
        for write in (
            lambda: (mountpoint / "etc/motd").write_text("changed\n"),
            lambda: (mountpoint / "new-file").write_text("new\n"),
            lambda: os.chmod(mountpoint / "etc/motd", 0o600),
            lambda: os.unlink(mountpoint / "bin/tool"),
        ):
            with pytest.raises(OSError) as caught:
                write()
            assert caught.value.errno == errno.EROFS
    finally:
        backend.umount(c.rootfs, mountpoint)
    c.destroy()


def test_edits_build_a_new_image_and_never_touch_the_old_one(lxcpath: Path, sample: Path) -> None:
    """The core's own writes (a template, a clone's hostname) give a new image under the same
    name; a snapshot made before keeps the old image, unchanged."""
    c = Container("img", lxcpath)
    c.create(backend="squashfs", source=sample)
    image = image_of(c)
    c.snapshot()
    snap = lxcpath / "img" / "snaps" / "snap0" / "rootfs.squashfs"
    before = snap.read_bytes()
    with files(c, readonly=False) as tree:
        (tree / "etc/motd").write_text("edited\n")
    assert not [p for p in image.parent.iterdir() if p.name.startswith(".")]
    assert snap.read_bytes() == before
    assert os.stat(snap).st_ino != os.stat(image).st_ino
    with files(c) as tree:
        assert (tree / "etc/motd").read_text() == "edited\n"
    c.snapshot_restore("snap0")
    with files(c) as tree:
        assert (tree / "etc/motd").read_text() == "hello from the sample rootfs\n"
    c.destroy(with_snapshots=True)


def test_refused_without_mksquashfs(lxcpath: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    backend = default_registry().backend("squashfs")
    refusal = backend.refusal_at(Placement(lxcpath, "c1"), CreateOptions())
    assert refusal is not None and "mksquashfs" in refusal and "squashfs-tools" in refusal
    assert "mksquashfs" in " ".join(backend.unavailable_reasons())


def test_unknown_compressor_is_refused_before_anything_exists(lxcpath: Path, sample: Path) -> None:
    c = Container("img", lxcpath)
    with pytest.raises(BdevError, match="compressor"):
        c.create(backend="squashfs", source=sample, options=CreateOptions(extra={"compressor": "bogus"}))
    assert not (lxcpath / "img").exists()


# ---------------------------------------------------------------------------- clones on top


def test_overlay_clones_on_top_are_writable_isolated_and_outlive_the_image(lxcpath: Path, sample: Path) -> None:
    """``bdev clone base-img webN -s -B overlay``: overlay freezes its own name of the image
    (a reflink or hard link), so the clones do not depend on the image container: it can be
    destroyed, and they keep working."""
    base = Container("base-img", lxcpath)
    base.create(backend="squashfs", source=sample)
    image = image_of(base)
    clones = []
    for name in ("web1", "web2", "web3"):
        out = bdev_cli("clone", "base-img", name, "-s", "-B", "overlay", lxcpath=lxcpath)
        assert out.returncode == 0, out.stderr
        clones.append(Container(name, lxcpath))
    lowers = []
    for clone in clones:
        assert clone.rootfs.backend == "overlay"
        frozen = next((clone.directory / "overlay").glob("lower*/rootfs.squashfs"))
        lowers.append(frozen)
        assert frozen.read_bytes() == image.read_bytes()
        assert not clone.directory.joinpath("lxc_rdepends").exists()
    inodes = {p.stat().st_ino for p in lowers}
    if inodes == {image.stat().st_ino}:  # hard links (no reflinks here): one inode, four names
        assert image.stat().st_nlink == 1 + len(clones)
    else:  # reflinks: an inode each, the data blocks shared
        assert len(inodes | {image.stat().st_ino}) == 1 + len(clones)
    for clone in clones:
        with files(clone, readonly=False) as tree:
            (tree / "etc/motd").write_text(f"I am {clone.name}\n")
            (tree / "var/log/new.log").write_text(clone.name)
    for clone in clones:
        with files(clone) as tree:
            assert (tree / "etc/motd").read_text() == f"I am {clone.name}\n"
            assert (tree / "etc/hostname").read_text() == f"{clone.name}\n"
            assert differences(sample, tree, ignore=("etc/", "var/log")) == []
    with files(base) as tree:
        assert (tree / "etc/motd").read_text() == "hello from the sample rootfs\n"
        assert not (tree / "var/log/new.log").exists()
    base.destroy()
    assert not image.exists()
    for clone in clones:
        with files(clone) as tree:
            assert (tree / "etc/motd").read_text() == f"I am {clone.name}\n"
        clone.destroy()
    assert sorted(os.listdir(lxcpath)) == []


def test_plain_snapshot_clone_is_another_image(lxcpath: Path, sample: Path) -> None:
    """``bdev clone base-img copy -s`` without ``-B``: squashfs has a native snapshot, so the
    clone is another name of the image (O(1)), independent of its origin."""
    base = Container("base-img", lxcpath)
    base.create(backend="squashfs", source=sample)
    out = bdev_cli("clone", "base-img", "copy", "-s", "-K", lxcpath=lxcpath)
    assert out.returncode == 0, out.stderr
    copy = Container("copy", lxcpath)
    assert copy.rootfs.backend == "squashfs" and image_of(copy).read_bytes() == image_of(base).read_bytes()
    base.destroy()
    with files(copy) as tree:
        assert differences(sample, tree, ignore=("etc/hostname:", "etc/hosts:")) == []
    copy.destroy()


def test_cannot_snapshot_another_backend_natively(lxcpath: Path, sample: Path) -> None:
    origin = Container("origin", lxcpath)
    origin.create(backend="dir", source=sample)
    with pytest.raises(NotSupported):
        origin.clone("img", snapshot=True, backend="squashfs")
    assert not (lxcpath / "img").exists()
    origin.destroy()


def _payload():
    if not BENCH_PAYLOAD.exists():
        pytest.skip(f"the benchmark payload generator {BENCH_PAYLOAD.name} is not in this checkout")
    spec = importlib.util.spec_from_file_location("bdev_bench_payload", BENCH_PAYLOAD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_clones_of_a_279_mb_image_are_instant(lxcpath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A container holding the benchmark payload (about 280 MB) turned into an image: an
    overlay clone on top and a snapshot of the image each take a fraction of a second."""
    info = _payload().generate(tmp_path / "payload")
    origin = Container("origin", lxcpath)
    origin.create(backend="dir", source=tmp_path / "payload")
    started = time.monotonic()
    base = origin.clone("base-img", backend="squashfs")
    built = time.monotonic() - started
    origin.destroy()
    image = image_of(base)
    timings = {}
    started = time.monotonic()
    web = base.clone("web1", snapshot=True, backend="overlay")
    timings["overlay clone (-s -B overlay)"] = time.monotonic() - started
    started = time.monotonic()
    twin = base.clone("twin", snapshot=True, keepname=True)
    timings["image clone (-s -K)"] = time.monotonic() - started
    started = time.monotonic()
    assert base.snapshot() == "snap0"
    timings["snapshot"] = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nsquashfs: image of a {info.disk_bytes / 1e6:.0f} MB container ({info.bytes / 1e6:.0f} MB of data) built in {built:.1f} s "
            f"({image.stat().st_size / 1e6:.0f} MB compressed); "
            + ", ".join(f"{what} {took:.3f} s" for what, took in timings.items())
        )
    assert all(took < 2.0 for took in timings.values()), timings
    assert twin.outcome.method == "snapshot" and not twin.outcome.depends_on_origin
    with files(web, readonly=False) as tree:
        (tree / "etc/motd").write_text("web1\n")
    for c in (web, twin):
        c.destroy()
    base.destroy(with_snapshots=True)


# ---------------------------------------------------------------------------- the contract


def _kit_is_a_pytest_plugin() -> bool:
    """Whether the installed bdev registers its conformance kit under ``pytest11``."""
    points = importlib.metadata.distribution("bdev").entry_points
    return any(ep.group == "pytest11" for ep in points)


def test_passes_the_backend_contract(tmp_path: Path) -> None:
    """The conformance kit against ``squashfs``, run as a plugin author runs it: ``pytest
    --bdev-backend=squashfs`` from a folder of their own.  ``read_only`` skips, with the
    reason, the tests that write into the rootfs; everything else must pass."""
    if importlib.util.find_spec("bdev.testing.kit.contract") is not None:
        argv = [] if _kit_is_a_pytest_plugin() else ["-p", "bdev.testing.kit.plugin"]
        argv += ["--bdev-backend=squashfs"]
        cwd = tmp_path
    else:  # a checkout from before the kit: the in-tree contract
        argv = [str(ROOT / "tests" / "test_backend_contract.py"), "-k", "squashfs"]
        cwd = ROOT
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *argv],
        capture_output=True, text=True, cwd=cwd, check=False,
    )
    print(out.stdout[-4000:])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
