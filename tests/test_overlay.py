"""The overlay backend (``plugins/overlayfs``) on real overlay mounts.

Besides the backend contract suite (which it joins by being registered), these tests cover
what only a layered backend has: clones of dir containers laid out exactly as LXC lays them
out (and read, listed, copied and destroyed by real LXC), clones over frozen read-only copies
made by whatever registered backend can freeze (btrfs snapshots, loop images), clones of
clones that stack lowers instead of stacking overlay mounts, container snapshots restored in
place by swapping uppers, the diff read from the upper layer, dependency refusals, an origin
removed behind bdev's back, and overlay mounts made by an ordinary user in a user namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.backend import Backend
from bdev.engine.context import default_registry
from bdev.errors import BdevError, HasDependents, InvalidInput
from bdev.records import Change, CreateOptions, Placement, Rootfs
from bdev.store.layout import DEPENDENTS, ORIGIN
from bdev.store.lxcpath import lock_dir
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import mount_table
from bdev.testing.trees import tree_differences

pytestmark = [pytest.mark.usefixtures("no_leaks")]

IS_ROOT = os.geteuid() == 0
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
HOSTNAME_FILES = ("etc/hostname:", "etc/hosts:")
FIXTURES_10 = Path(__file__).parent / "fixtures" / "lxc-1.0"


# --------------------------------------------------------------------------- helpers


def overlay() -> Backend:
    backend = default_registry().backend("overlay")
    reasons = backend.unavailable_reasons()
    if reasons:
        pytest.skip(f"the overlay backend is not usable here: {'; '.join(reasons)}")
    return backend


def files(container: Container, *, readonly: bool = False):
    """The merged files of a container (a temporary mount, or a user-namespace mount)."""
    rootfs = container.rootfs
    return default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly)


def layers(container: Container) -> tuple[list[str], str]:
    """(lowers, upper) of an overlay container, as its config names them."""
    value = container.rootfs.source.split(":")
    return value[:-1], value[-1]


def record(container: Container) -> list[dict]:
    """The overlay layer record beside the container's upper."""
    _, upper = layers(container)
    return json.loads((Path(upper).parent / "lowers.json").read_text())["lowers"]


def same_tree(a: Path, b: Path, granularity_ns: int = 1) -> list[str]:
    """Differences but the hostname files, times compared at the given step (an origin on an
    image backend such as squashfs keeps whole seconds)."""
    found = tree_differences(a, b, time_granularity_ns=granularity_ns)
    return [p for p in found if not p.startswith(HOSTNAME_FILES)]


def overlay_mounts(pid: int | str = "self") -> list[dict[str, str]]:
    """The overlay mounts of a process's mount namespace: mount point and super options."""
    found = []
    with open(f"/proc/{pid}/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _source, options = right.split(" ", 2)
            if fstype == "overlay":
                found.append({"mountpoint": left.split(" ")[4], "options": options.strip()})
    return found


def lowerdirs(options: str) -> list[str]:
    for option in options.split(","):
        if option.startswith("lowerdir="):
            return option[len("lowerdir="):].split(":")
    return []


def mount_namespace_of(path: Path) -> str:
    """``self``, or the helper's pid for a path reached through ``/proc/<pid>/root``."""
    parts = path.parts
    if len(parts) > 3 and parts[1] == "proc" and parts[2].isdigit() and parts[3] == "root":
        return parts[2]
    return "self"


def tree_of(spec: dict[str, str | None], root: Path) -> Path:
    """Write ``{relative path: content}`` (None: a directory) under ``root``."""
    for rel, content in spec.items():
        target = root / rel
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    return root


def one_sentence(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text.endswith("."), f"not one sentence: {text!r}"
    return text


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


@pytest.fixture
def base(lxcpath: Path, sample: Path) -> Container:
    """A dir container ``base`` holding the sample tree."""
    overlay()
    c = Container("base", lxcpath)
    c.create(backend="dir", source=sample)
    return c


# --------------------------------------------------------------------------- the locator


@pytest.mark.unprivileged
def test_lxc_values_are_read_as_lxc_writes_them() -> None:
    registry = default_registry()
    assert registry.parse_rootfs("overlay:/l/c1/rootfs:/l/c2/overlay/delta") == Rootfs("overlay", "/l/c1/rootfs:/l/c2/overlay/delta")
    legacy = registry.parse_rootfs("overlayfs:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0")
    assert legacy == Rootfs("overlay", "/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0")
    assert legacy.config_value == "overlay:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0"
    stacked = registry.parse_rootfs("overlay:/a/top:/a/middle:/b/rootfs:/c/overlay/delta")
    assert stacked.source.split(":") == ["/a/top", "/a/middle", "/b/rootfs", "/c/overlay/delta"]
    for bad in ("overlay:/only-one", "overlay:relative:/up", "overlay:/a::/up", "overlay:"):
        with pytest.raises(InvalidInput) as caught:
            registry.parse_rootfs(bad)
        assert "overlay" in one_sentence(caught.value)


@pytest.mark.unprivileged
def test_create_makes_lxcs_layout(storage_lxcpath: Path, sample: Path) -> None:
    overlay()
    c = Container("c1", storage_lxcpath)
    c.create(backend="overlay", source=sample)
    assert c.get_config_item("lxc.rootfs.path") == [f"overlay:{storage_lxcpath}/c1/rootfs:{storage_lxcpath}/c1/overlay/delta"]
    assert sorted(os.listdir(storage_lxcpath / "c1" / "overlay")) == ["delta", "lowers.json", "work"]
    assert os.listdir(storage_lxcpath / "c1" / "rootfs") == [], "the lower of a created container stays empty"
    with files(c, readonly=True) as path:
        assert same_tree(sample, path) == []
    c.destroy()
    assert os.listdir(storage_lxcpath) == []


# --------------------------------------------------------------------------- overlay over dir


@pytest.mark.unprivileged
def test_clone_of_a_dir_container_layers_over_it_as_lxc_does(storage_lxcpath: Path, sample: Path) -> None:
    overlay()
    base = Container("base", storage_lxcpath)
    base.create(backend="dir", source=sample)
    snap = base.snapshot()
    ov = base.clone("ov", snapshot=True)
    assert ov.outcome.method == "layer" and ov.outcome.depends_on_origin
    assert ov.get_config_item("lxc.rootfs.path") == [f"overlay:{storage_lxcpath}/base/rootfs:{storage_lxcpath}/ov/overlay/delta"]
    assert (storage_lxcpath / "ov/overlay/work").is_dir() and (storage_lxcpath / "ov/rootfs").is_dir()
    # LXC's dependency files, byte for byte.
    assert (storage_lxcpath / "base" / DEPENDENTS).read_text() == f"{storage_lxcpath}\nov\n"
    assert (storage_lxcpath / "ov" / ORIGIN).read_text() == f"{storage_lxcpath}\nbase\n"
    assert [r["role"] for r in record(ov)] == ["live"]
    with files(ov, readonly=True) as path:
        assert same_tree(sample, path) == []
        assert (path / "etc/hostname").read_text() == "ov\n"

    # The origin cannot be destroyed or restored in place under its clone.
    for refused in (lambda: base.destroy(with_snapshots=True), lambda: base.snapshot_restore(snap)):
        with pytest.raises(HasDependents) as caught:
            refused()
        assert "ov" in one_sentence(caught.value)
    assert base.defined and same_tree(sample, base.directory / "rootfs") == []

    ov.destroy()
    assert not (storage_lxcpath / "base" / DEPENDENTS).exists()
    assert same_tree(sample, base.directory / "rootfs") == [], "destroying the clone touched the origin"
    base.destroy(with_snapshots=True)
    assert os.listdir(storage_lxcpath) == []


@pytest.mark.unprivileged
def test_full_copies_out_of_and_into_overlay(base: Container, lxcpath: Path) -> None:
    """LXC refuses to copy an overlay container without -s; bdev copies its merged view."""
    ov = base.clone("ov", snapshot=True)
    with files(ov) as path:
        os.unlink(path / "bin/tool")
        shutil.rmtree(path / "var/log")
        (path / "var/log").mkdir()
        (path / "var/log/fresh").write_text("fresh\n")
        (path / "etc/motd").write_text("changed\n")
    flat = ov.clone("flat", backend="dir")
    assert flat.rootfs.backend == "dir" and flat.outcome.method == "copy"
    with files(ov, readonly=True) as merged:
        assert same_tree(merged, flat.directory / "rootfs") == []
    whiteouts = [
        os.path.join(root, name)
        for root, _dirs, names in os.walk(flat.directory / "rootfs")
        for name in names
        if stat.S_ISCHR(os.lstat(os.path.join(root, name)).st_mode) and os.lstat(os.path.join(root, name)).st_rdev == 0
    ]
    assert whiteouts == [], "whiteouts leaked into a merged copy"
    again = flat.clone("again", backend="overlay")
    assert again.outcome.method == "copy" and not again.outcome.depends_on_origin
    with files(again, readonly=True) as path:
        assert same_tree(flat.directory / "rootfs", path) == []
    for c in (again, flat, ov):
        c.destroy()


# --------------------------------------------------------------------------- frozen lowers


def _freezing_backends() -> list:
    names = []
    for entry in default_registry().backend_entries():
        backend = entry.backend
        if type(backend).freeze is not Backend.freeze and entry.name != "overlay":
            names.append(entry.name)
    for wanted in ("btrfs", "loop"):
        if wanted not in names:
            names.append(pytest.param(wanted, marks=pytest.mark.skip(reason=f"no registered {wanted} backend can freeze a rootfs")))
    return names


@pytest.mark.root
@pytest.mark.parametrize("origin_backend", _freezing_backends())
def test_clone_over_a_frozen_copy_is_independent_of_its_origin(
    origin_backend: str, storage_lxcpath: Path, sample: Path
) -> None:
    """overlay-from-btrfs (a read-only snapshot lower), overlay-from-loop (a reflinked image
    mounted read-only), and any other backend that can freeze."""
    overlay()
    backend = default_registry().backend(origin_backend)
    reasons = backend.unavailable_reasons() or [r for r in [backend.refusal_at(Placement(storage_lxcpath, "probe"), CreateOptions())] if r]
    if reasons:
        pytest.skip(f"{origin_backend} cannot live at this lxcpath: {'; '.join(reasons)}")
    origin = Container("origin", storage_lxcpath)
    origin.create(backend=origin_backend, source=sample)
    clone = origin.clone("clone", snapshot=True, backend="overlay")
    if clone.outcome.depends_on_origin:
        pytest.skip(f"{origin_backend} could not freeze a rootfs on this filesystem (the clone layers over the live rootfs)")
    assert clone.outcome.method == "layer"
    assert not (storage_lxcpath / "origin" / DEPENDENTS).exists() and not (storage_lxcpath / "clone" / ORIGIN).exists()
    [lower] = record(clone)
    assert lower["role"] == "frozen" and lower["owned"] and lower["backend"] == origin_backend
    assert lower["path"].startswith(f"{storage_lxcpath}/clone/overlay/lower0")
    frozen = Rootfs(lower["backend"], lower["source"])
    with files(clone) as path:
        assert same_tree(sample, path, backend.time_granularity_ns) == []
        assert (path / "etc/hostname").read_text() == "clone\n"
        if lower["mount"]:
            mounted = {m for m in mount_table() if m.startswith(str(storage_lxcpath))}
            assert mounted == {lower["path"]}, "the frozen image is mounted at the clone's lowerN"
            with files(clone, readonly=True) as again:  # a second mount shares the mounted lower
                assert (again / "etc/hostname").read_text() == "clone\n"
            assert {m for m in mount_table() if m.startswith(str(storage_lxcpath))} == mounted
    assert not any(m.startswith(str(storage_lxcpath)) for m in mount_table()), "the frozen lower stayed mounted"

    # The origin changes and goes away: the clone keeps its point-in-time view.
    with files(origin) as path:
        (path / "etc/motd").write_text("changed in the origin\n")
    origin.destroy()
    with files(clone, readonly=True) as path:
        assert (path / "etc/motd").read_text() == (sample / "etc/motd").read_text()

    # A clone of the clone freezes the frozen copy again: still independent.
    second = clone.clone("second", snapshot=True)
    assert not second.outcome.depends_on_origin
    roles = [(r["role"], r["owned"]) for r in record(second)]
    assert roles[-1] == ("frozen", True)
    clone.destroy()
    assert not backend.exists(frozen), "destroying the clone left its frozen copy"
    with files(second, readonly=True) as path:
        assert same_tree(sample, path, backend.time_granularity_ns) == []
    second.destroy()
    assert os.listdir(storage_lxcpath) == []


@pytest.mark.root
@pytest.mark.parametrize("fault", ["clone:after-rootfs", "clone:before-commit"])
@pytest.mark.parametrize("origin_backend", _freezing_backends())
def test_a_clone_killed_midway_leaves_no_frozen_copy(
    origin_backend: str, fault: str, storage_lxcpath: Path, sample: Path
) -> None:
    overlay()
    backend = default_registry().backend(origin_backend)
    refusal = backend.refusal_at(Placement(storage_lxcpath, "probe"), CreateOptions())
    if refusal:
        pytest.skip(f"{origin_backend} cannot live at this lxcpath: {refusal}")
    origin = Container("origin", storage_lxcpath)
    origin.create(backend=origin_backend, source=sample)
    code = f"from bdev.api import Container\nContainer('origin', {str(storage_lxcpath)!r}).clone('clone', snapshot=True, backend='overlay')\n"
    env = {**os.environ, "BDEV_FAULT": fault}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr
    assert (storage_lxcpath / "clone" / "overlay").is_dir(), "the clone was killed before making its layers"
    assert [c.name for c in list_containers(storage_lxcpath)] == ["origin"]
    assert sorted(os.listdir(storage_lxcpath)) == ["origin"], "the interrupted clone was not removed"
    assert not (storage_lxcpath / "origin" / DEPENDENTS).exists()
    with files(origin, readonly=True) as path:
        assert same_tree(sample, path, backend.time_granularity_ns) == []
    origin.destroy()
    assert os.listdir(storage_lxcpath) == []


# --------------------------------------------------------------------------- stacked clones


@pytest.mark.unprivileged
def test_second_and_third_level_clones_stack_lowers_not_mounts(storage_lxcpath: Path, sample: Path) -> None:
    overlay()
    base = Container("base", storage_lxcpath)
    base.create(backend="dir", source=sample)
    l1 = base.clone("l1", snapshot=True)
    with files(l1) as path:
        (path / "level1").write_text("1\n")
        os.unlink(path / "bin/tool")
        (path / "etc/motd").write_text("motd of l1\n")
    l2 = l1.clone("l2", snapshot=True)
    with files(l2) as path:
        (path / "level2").write_text("2\n")
        (path / "bin/tool").write_text("back in l2\n")
        shutil.rmtree(path / "var/log")
    l3 = l2.clone("l3", snapshot=True)

    lowers, upper = layers(l3)
    assert lowers == [f"{storage_lxcpath}/l3/overlay/layer0", f"{storage_lxcpath}/l3/overlay/layer1", f"{storage_lxcpath}/base/rootfs"]
    assert upper == f"{storage_lxcpath}/l3/overlay/delta"
    assert [(r["role"], r["owned"]) for r in record(l3)] == [("layer", True), ("layer", True), ("live", False)]
    for child, origin in ((l1, "base"), (l2, "l1"), (l3, "l2")):
        assert child.outcome.depends_on_origin
        assert (child.directory / ORIGIN).read_text() == f"{storage_lxcpath}\n{origin}\n"

    with files(l3) as path:
        assert (path / "level1").read_text() == "1\n" and (path / "level2").read_text() == "2\n"
        assert (path / "bin/tool").read_text() == "back in l2\n"
        assert (path / "etc/motd").read_text() == "motd of l1\n"
        assert not (path / "var/log").exists()
        assert (path / "etc/hostname").read_text() == "l3\n"
        # One overlay mount, over plain directories: no overlay-on-overlay stacking.
        namespace = mount_namespace_of(path)
        mine = [m for m in overlay_mounts(namespace) if f"{storage_lxcpath}/l3/" in m["options"]]
        assert len(mine) == 1, mine
        assert lowerdirs(mine[0]["options"]) == lowers
        (path / "level3").write_text("3\n")

    # Earlier levels keep their own view; later changes below do not reach the clones.
    with files(l1) as path:
        (path / "after").write_text("made in l1 after l2 was cloned\n")
        assert not (path / "level2").exists()
    with files(l2, readonly=True) as path:
        assert not (path / "after").exists() and not (path / "level3").exists()
    assert {c.path: c.kind for c in l3.diff()} == {"/etc/hostname": "modified", "/level3": "added"}
    assert {c.path: c.kind for c in l2.diff()} == {
        "/etc/hostname": "modified", "/level2": "added", "/bin/tool": "added", "/var/log": "deleted",
    }

    for refused in (l1, l2):
        with pytest.raises(HasDependents):
            refused.destroy()
    for c in (l3, l2, l1, base):
        c.destroy()
    assert os.listdir(storage_lxcpath) == []


# --------------------------------------------------------------------------- snapshots and restore


@pytest.mark.unprivileged
def test_container_snapshot_shares_lowers_and_restores_in_place(base: Container, lxcpath: Path) -> None:
    ov = base.clone("ov", snapshot=True)
    with files(ov) as path:
        (path / "etc/motd").write_text("before the snapshot\n")
    assert ov.snapshot() == "snap0"
    snap_config = (ov.directory / "snaps/snap0/config").read_text()
    assert f"lxc.rootfs.path = overlay:{lxcpath}/base/rootfs:{ov.directory}/snaps/snap0/overlay/delta" in snap_config
    assert not (ov.directory / DEPENDENTS).exists(), "a container's own snapshot is no dependent (as LXC)"
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nov\n"

    with files(ov) as path:
        (path / "etc/motd").write_text("after the snapshot\n")
        (path / "new").write_text("new\n")
        os.unlink(path / "bin/tool")
    upper_before = os.stat(layers(ov)[1]).st_ino
    ov.snapshot_restore("snap0")
    assert os.stat(layers(ov)[1]).st_ino != upper_before, "the upper was not swapped"
    with files(ov, readonly=True) as path:
        assert (path / "etc/motd").read_text() == "before the snapshot\n"
        assert not (path / "new").exists() and (path / "bin/tool").exists()
    leftovers = [n for n in os.listdir(ov.directory) if n.startswith(".")]
    assert leftovers == []
    assert base.defined and (lxcpath / "base/rootfs/bin/tool").exists(), "the restore touched the origin"

    # Restored to a new name, the snapshot is a clone that depends on the snapshot (it shares
    # the live dir lower through it).
    old = ov.snapshot_restore("snap0", "old")
    assert [(r["role"], r["owned"]) for r in record(old)][-1] == ("live", False)
    with pytest.raises(HasDependents):
        ov.snapshot_destroy("snap0")
    old.destroy()
    ov.destroy(with_snapshots=True)
    base.destroy()
    assert os.listdir(lxcpath) == []


@pytest.mark.unprivileged
def test_restore_in_place_refuses_a_snapshot_with_other_lowers(base: Container, lxcpath: Path, sample: Path) -> None:
    other = Container("other", lxcpath)
    other.create(backend="dir", source=sample)
    ov = base.clone("ov", snapshot=True)
    ov.snapshot()
    # The snapshot's config is edited to layer over another container.
    config = ov.directory / "snaps/snap0/config"
    config.write_text(config.read_text().replace(f"{lxcpath}/base/rootfs", f"{lxcpath}/other/rootfs"))
    before = (ov.directory / "config").read_text()
    with pytest.raises(BdevError) as caught:
        ov.snapshot_restore("snap0")
    assert "lower layers differ" in one_sentence(caught.value)
    assert (ov.directory / "config").read_text() == before
    assert [n for n in os.listdir(ov.directory) if n.startswith(".")] == []
    with files(ov, readonly=True) as path:
        assert same_tree(sample, path) == []

    # The backend's swap itself refuses too (the engine rolls back and explains).
    backend = default_registry().backend("overlay")
    snap_rootfs = Container("snap0", ov.directory / "snaps").rootfs
    with pytest.raises(OSError):
        backend.swap(ov.rootfs, snap_rootfs)
    ov.destroy(with_snapshots=True)
    base.destroy()
    other.destroy()


# --------------------------------------------------------------------------- diff


DIFF_BASE = {
    "etc/motd": "hello\n",
    "etc/same": "same\n",
    "etc/touched": "touched\n",
    "meta/mode": "mode only\n",
    "gone.txt": "bye\n",
    "replaced/old": "old\n",
    "moved/inner": "inner\n",
    "dir/keep": "keep\n",
}


def _mount_layers(container: Container, mountpoint: Path, extra: str) -> None:
    lowers, upper = layers(container)
    work = Path(upper).parent / "work"
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}{extra}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(mountpoint)], check=True)


@pytest.mark.root
def test_diff_reports_every_kind_of_change(lxcpath: Path, tmp_path: Path) -> None:
    overlay()
    source = tree_of(DIFF_BASE, tmp_path / "source")
    origin = Container("origin", lxcpath)
    origin.create(backend="dir", source=source)
    ov = origin.clone("ov", snapshot=True, keepname=True)
    assert ov.diff() == []
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # As LXC mounts it (kernel defaults).
    _mount_layers(ov, mnt, "")
    try:
        (mnt / "new.txt").write_text("new\n")
        (mnt / "newdir").mkdir()
        (mnt / "newdir/file").write_text("in a new dir\n")
        (mnt / "etc/motd").write_text("changed\n")
        os.chown(mnt / "etc/same", 1234, 1234)
        os.utime(mnt / "etc/touched", (1, 1))
        os.setxattr(mnt / "dir", "user.note", b"set")
        os.unlink(mnt / "gone.txt")
        shutil.rmtree(mnt / "replaced")
        (mnt / "replaced").mkdir()
        (mnt / "replaced/fresh").write_text("fresh\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # With the features that write redirects and metacopy files.
    _mount_layers(ov, mnt, ",redirect_dir=on,metacopy=on")
    try:
        os.rename(mnt / "moved", mnt / "renamed")
        os.chmod(mnt / "meta/mode", 0o600)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # An xattr whiteout (kernel >= 6.7 layout) written straight into the upper.
    upper = Path(layers(ov)[1])
    (upper / "dir/keep").write_bytes(b"")
    os.setxattr(upper / "dir/keep", "trusted.overlay.whiteout", b"")
    os.setxattr(upper / "dir", "trusted.overlay.opaque", b"x")

    expected = [
        Change("/dir", "metadata"),
        Change("/dir/keep", "deleted"),
        Change("/etc/motd", "modified"),
        Change("/etc/same", "metadata"),
        Change("/etc/touched", "metadata"),
        Change("/gone.txt", "deleted"),
        Change("/meta/mode", "metadata"),
        Change("/new.txt", "added"),
        Change("/newdir", "added"),
        Change("/newdir/file", "added"),
        Change("/renamed", "renamed", source="/moved"),
        Change("/replaced", "opaque"),
        Change("/replaced/fresh", "added"),
    ]
    assert ov.diff() == expected

    # `bdev diff` prints the same.
    bdev = Path(sys.executable).parent / "bdev"
    result = subprocess.run([str(bdev), "-P", str(lxcpath), "diff", "ov", "--format", "json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["changes"]
    assert [(c["path"], c["kind"], c["source"]) for c in listed] == [(c.path, c.kind, c.source) for c in expected]
    ov.destroy()
    origin.destroy()


@pytest.mark.unprivileged
def test_diff_of_changes_made_through_bdev(base: Container) -> None:
    """Through bdev's own mounts (as root, or in a user namespace with user.overlay xattrs)."""
    ov = base.clone("ov", snapshot=True)
    with files(ov) as path:
        (path / "added").write_text("added\n")
        (path / "etc/motd").write_text("modified\n")
        os.chmod(path / "etc/hosts", 0o600)
        os.unlink(path / "bin/tool")
        shutil.rmtree(path / "usr/lib")
        (path / "usr/lib").mkdir()
    assert ov.diff() == [
        Change("/added", "added"),
        Change("/bin/tool", "deleted"),
        Change("/etc/hostname", "modified"),
        Change("/etc/hosts", "metadata"),
        Change("/etc/motd", "modified"),
        Change("/usr/lib", "opaque"),
    ]
    ov.destroy()


@pytest.mark.unprivileged
def test_diff_honours_whiteouts_opaque_dirs_and_redirects_in_lower_layers(tmp_path: Path) -> None:
    """Hand-made layers with ``user.overlay.`` attributes, as an unprivileged mount writes them."""
    from bdev_overlayfs.diff import LowerStack, diff

    bottom = tree_of({"a": "a\n", "d/x": "x\n", "old/y": "y\n", "k": "k\n"}, tmp_path / "bottom")
    middle = tree_of({"d": None, "new/y": "y\n"}, tmp_path / "middle")
    os.mknod(middle / "a", stat.S_IFCHR | 0o600, 0)  # deleted below
    os.setxattr(middle / "d", "user.overlay.opaque", b"y")  # d/x hidden
    os.setxattr(middle / "new", "user.overlay.redirect", b"/old")  # old renamed to new
    (middle / "k").write_bytes(b"")
    os.setxattr(middle / "k", "user.overlay.whiteout", b"")
    os.setxattr(middle, "user.overlay.opaque", b"x")
    upper = tree_of({"a": "a again\n", "d/x": "x again\n", "k": "k\n", "old/y": "changed\n"}, tmp_path / "upper")
    assert diff(upper, [middle, bottom]) == [
        Change("/a", "added"),
        Change("/d/x", "added"),
        Change("/k", "added"),
        Change("/old/y", "modified"),
    ]
    stack = LowerStack([middle, bottom])
    assert stack.lookup("new/y").path == middle / "new/y"
    assert stack.lookup("new") is not None and stack.lookup("old/y").path == bottom / "old/y"
    assert stack.lookup("a") is None and stack.lookup("k") is None and stack.lookup("d/x") is None
    assert stack.lookup("d").path == middle / "d"


# --------------------------------------------------------------------------- failures


@pytest.mark.unprivileged
def test_origin_removed_behind_our_back(base: Container, lxcpath: Path) -> None:
    ov = base.clone("ov", snapshot=True)
    shutil.rmtree(base.directory)  # not through bdev
    mounts = mount_table()
    with pytest.raises(BdevError) as caught:
        with files(ov):
            pass
    assert f"{lxcpath}/base/rootfs" in one_sentence(caught.value) and "missing" in str(caught.value)
    for attempt in (lambda: ov.clone("snap-of-ov", snapshot=True), lambda: ov.clone("copy-of-ov", backend="dir")):
        with pytest.raises(BdevError) as caught:
            attempt()
        assert "missing" in one_sentence(caught.value)
    assert sorted(os.listdir(lxcpath)) == ["ov"], "a failed clone left something"
    assert mount_table() == mounts
    assert not [m for m in overlay_mounts() if str(lxcpath) in m["options"]]
    bdev = Path(sys.executable).parent / "bdev"
    result = subprocess.run([str(bdev), "-P", str(lxcpath), "clone", "-s", "ov", "again"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    ov.destroy()
    assert os.listdir(lxcpath) == []


# --------------------------------------------------------------------------- LXC 1.x layout


@pytest.mark.unprivileged
def test_lxc_10_overlayfs_clone_with_delta0_and_olwork(lxcpath: Path) -> None:
    overlay()
    for name in ("c1", "c2"):
        text = (FIXTURES_10 / f"{name}.config").read_text().replace("/var/lib/lxc", str(lxcpath))
        (lxcpath / name).mkdir()
        (lxcpath / name / "config").write_text(text)
    tree_of({"etc/hostname": "c1\n", "etc/issue": "lower\n"}, lxcpath / "c1/rootfs")
    tree_of({"etc/issue": "upper\n"}, lxcpath / "c2/delta0")
    (lxcpath / "c2/olwork").mkdir()
    c2 = Container("c2", lxcpath)
    assert c2.rootfs == Rootfs("overlay", f"{lxcpath}/c1/rootfs:{lxcpath}/c2/delta0")
    with files(c2) as path:
        assert (path / "etc/issue").read_text() == "upper\n" and (path / "etc/hostname").read_text() == "c1\n"
        (path / "written").write_text("x\n")
    assert (lxcpath / "c2/delta0/written").exists() and not (lxcpath / "c2/work").exists()
    assert c2.diff() == [Change("/etc/issue", "modified"), Change("/written", "added")]
    c3 = c2.clone("c3", snapshot=True)
    with files(c3, readonly=True) as path:
        assert (path / "etc/issue").read_text() == "upper\n" and (path / "written").exists()
    c3.destroy()
    backend = default_registry().backend("overlay")
    backend.destroy(c2.rootfs)
    assert not (lxcpath / "c2/delta0").exists() and not (lxcpath / "c2/olwork").exists()
    assert (lxcpath / "c1/rootfs/etc/issue").read_text() == "lower\n", "the origin's data was touched"


# --------------------------------------------------------------------------- unprivileged


@pytest.mark.unprivileged
def test_namespace_mount_helper(tmp_path: Path) -> None:
    """The helper mounts in a private user namespace (userxattr); the caller reaches the files
    through /proc/<pid>/root, and nothing is mounted in the caller's namespace."""
    overlay()
    from bdev_overlayfs.userns import namespace_mount

    lower = tree_of({"f": "lower\n", "d/x": "x\n"}, tmp_path / "lower")
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    before = mount_table()
    with namespace_mount(f"lowerdir={lower},upperdir={upper},workdir={work}", readonly=False) as path:
        pid = mount_namespace_of(path)
        assert pid != "self" and mount_table() == before
        assert (path / "f").read_text() == "lower\n"
        os.unlink(path / "f")
        shutil.rmtree(path / "d")
        (path / "d").mkdir()
        (path / "new").write_text("new\n")
    assert not Path(f"/proc/{pid}").exists(), "the helper outlived its mount"
    assert stat.S_ISCHR(os.lstat(upper / "f").st_mode) and os.lstat(upper / "f").st_rdev == 0
    assert os.getxattr(upper / "d", "user.overlay.opaque") == b"y"
    assert (upper / "new").read_text() == "new\n" and (lower / "f").exists()
    with pytest.raises(BdevError) as caught:
        with namespace_mount(f"lowerdir={tmp_path}/missing,upperdir={upper},workdir={work}", readonly=False):
            pass
    assert "user namespace" in one_sentence(caught.value)


@pytest.mark.unprivileged
def test_what_an_ordinary_user_can_and_cannot_do(base: Container, tmp_path: Path) -> None:
    """Clones, copies and diffs work for anyone; a mount on a host mount point needs root and
    says so in one sentence."""
    ov = base.clone("ov", snapshot=True)
    backend = overlay()
    assert backend.capabilities.unprivileged
    target = tmp_path / "mnt"
    target.mkdir()
    if IS_ROOT:
        backend.mount(ov.rootfs, target, readonly=True)
        try:
            assert (target / "etc/hostname").read_text() == "ov\n"
            with pytest.raises(OSError):
                (target / "etc/motd").write_text("read-only\n")
        finally:
            backend.umount(ov.rootfs, target)
    else:
        with pytest.raises(BdevError) as caught:
            backend.mount(ov.rootfs, target)
        assert "needs root" in one_sentence(caught.value)
        assert "user namespace" in backend.implementation()
    assert not os.listdir(target)
    ov.destroy()


UNPRIVILEGED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from bdev.api import Container
    from bdev.engine.context import default_registry
    P = Path(sys.argv[1])
    base = Container("base", P)
    base.create(backend="dir", source=sys.argv[2])
    ov = base.clone("ov", snapshot=True)
    backend = default_registry().backend("overlay")
    with backend.accessed(ov.rootfs) as path:
        (path / "etc/motd").write_text("unprivileged\\n")
        os.unlink(path / "bin/tool")
    ov.snapshot()
    with backend.accessed(ov.rootfs) as path:
        (path / "later").write_text("later\\n")
    ov.snapshot_restore("snap0")
    two = ov.clone("two", snapshot=True)
    with backend.accessed(two.rootfs, readonly=True) as path:
        seen = {"motd": (path / "etc/motd").read_text(), "tool": (path / "bin/tool").exists(), "later": (path / "later").exists()}
    out = {"seen": seen, "diff": [[c.path, c.kind] for c in ov.diff()], "uid": os.geteuid()}
    for c in (two, ov):
        c.destroy(with_snapshots=True)
    base.destroy()
    print(json.dumps(out))
    """
)


@pytest.mark.root
def test_an_ordinary_user_clones_snapshots_restores_and_diffs() -> None:
    """Run as uid 65534 from a root test run: every mount goes through the user-namespace
    helper, and nothing is left mounted."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    home = Path(tempfile.mkdtemp(prefix="bdev-overlay-user-"))  # pytest's own tree is 0700
    try:
        _as_ordinary_user(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _as_ordinary_user(home: Path) -> None:
    (home / "run").mkdir()
    sample = make_sample_rootfs(home / "sample", privileged=False)
    (home / "lxc").mkdir()
    for root, dirs, names in os.walk(home):
        for name in [*dirs, *names]:
            os.lchown(os.path.join(root, name), 65534, 65534)
    os.chown(home, 65534, 65534)
    os.chmod(home, 0o755)
    conf = home / "lxc.conf"
    conf.write_text("lxc.lxcpath = " + str(home / "lxc") + "\n")
    env = {
        "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"), "PATH": os.environ.get("PATH", SYSTEM_PATH),
        "PYTHONDONTWRITEBYTECODE": "1", "BDEV_LXC_CONF": str(conf),
    }
    before = mount_table()
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", UNPRIVILEGED_SCRIPT,
         str(home / "lxc"), str(sample)],
        capture_output=True, text=True, env=env, cwd=home, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534
    assert out["seen"] == {"motd": "unprivileged\n", "tool": False, "later": False}
    assert ["/etc/motd", "modified"] in out["diff"] and ["/bin/tool", "deleted"] in out["diff"]
    assert mount_table() == before
    assert os.listdir(home / "lxc") == []
    shutil.rmtree(lock_dir(home / "lxc"), ignore_errors=True)


# --------------------------------------------------------------------------- real LXC


def _lxc(tool: str, *args: object, check: bool = True) -> subprocess.CompletedProcess:
    found = shutil.which(tool, path=SYSTEM_PATH)
    if found is None or Path(found).parent == Path(sys.executable).parent:
        pytest.skip(f"real LXC's {tool} is not installed on the system path")
    proc = subprocess.run([found, *map(str, args)], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"{tool} {args} failed: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def real_lxc(tmp_path: Path) -> Iterator[None]:
    if shutil.which("lxc-create", path=SYSTEM_PATH) is None:
        pytest.skip("Debian's real LXC is not installed (no lxc-create on the system path)")
    yield
    shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)


@pytest.mark.root
@pytest.mark.lxc
def test_real_lxc_and_bdev_share_overlay_clones(lxcpath: Path, real_lxc: None) -> None:
    overlay()
    conf = lxcpath.parent / "create.conf"
    conf.write_text("lxc.net.0.type = empty\n")
    _lxc("lxc-create", "-t", "busybox", "-n", "base", "-P", lxcpath, "-f", conf)
    base = Container("base", lxcpath)

    # bdev's clone, as LXC would have made it.
    ov = base.clone("ov", snapshot=True)
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nov\n"
    assert sorted(_lxc("lxc-ls", "-1", "-P", lxcpath).stdout.split()) == ["base", "ov"]
    assert ov.snapshot() == "snap0"
    listing = _lxc("lxc-snapshot", "-L", "-n", "ov", "-P", lxcpath).stdout
    assert listing.startswith(f"snap0 ({lxcpath}/ov/snaps) ")

    # Real lxc-copy -s makes the same kind of clone and records it the same way.
    _lxc("lxc-copy", "-s", "-n", "base", "-N", "real", "-P", lxcpath)
    real = Container("real", lxcpath)
    assert real.rootfs == Rootfs("overlay", f"{lxcpath}/base/rootfs:{lxcpath}/real/overlay/delta")
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nov\n{lxcpath}\nreal\n"
    assert sorted(c.name for c in base.dependents()) == ["ov", "real"]
    with files(real) as path:
        (path / "by-bdev").write_text("x\n")
    assert Change("/by-bdev", "added") in real.diff()
    with pytest.raises(HasDependents):
        base.destroy()

    # Real lxc-snapshot of bdev's clone, restored in place by bdev (same lowers, upper swapped).
    with files(ov) as path:
        (path / "etc/motd").write_text("before lxc-snapshot\n")
    _lxc("lxc-snapshot", "-n", "ov", "-P", lxcpath)
    with files(ov) as path:
        (path / "etc/motd").write_text("after lxc-snapshot\n")
    ov.snapshot_restore("snap1")
    with files(ov, readonly=True) as path:
        assert (path / "etc/motd").read_text() == "before lxc-snapshot\n"

    # Real LXC destroys bdev's clone (with its snapshots) and updates the origin's record.
    _lxc("lxc-destroy", "-s", "-n", "ov", "-P", lxcpath)
    assert not (lxcpath / "ov").exists()
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nreal\n"
    real.destroy()
    assert not (lxcpath / "base" / DEPENDENTS).exists()
    base.destroy()
    assert [c.name for c in list_containers(lxcpath)] == []


@pytest.mark.root
@pytest.mark.lxc
def test_real_lxc_starts_a_stacked_clone(lxcpath: Path, real_lxc: None, tmp_path: Path) -> None:
    """LXC mounts a second-level clone's value (two lowers) itself."""
    overlay()
    conf = lxcpath.parent / "create.conf"
    conf.write_text("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
    _lxc("lxc-create", "-t", "busybox", "-n", "base", "-P", lxcpath, "-f", conf)
    base = Container("base", lxcpath)
    l1 = base.clone("l1", snapshot=True)
    with files(l1) as path:
        (path / "from-l1").write_text("l1\n")
    l2 = l1.clone("l2", snapshot=True)
    log = tmp_path / "start.log"
    started = _lxc("lxc-start", "-d", "-n", "l2", "-P", lxcpath, "-l", "DEBUG", "-o", log, check=False)
    try:
        if started.returncode != 0:
            pytest.skip(f"real lxc-start cannot start a busybox container here: {started.stderr.strip()}")
        out = _lxc("lxc-attach", "-n", "l2", "-P", lxcpath, "--", "/bin/sh", "-c", "cat /from-l1; hostname").stdout
        assert out == "l1\nl2\n"
        _lxc("lxc-attach", "-n", "l2", "-P", lxcpath, "--", "/bin/touch", "/inside")
    finally:
        _lxc("lxc-stop", "-k", "-n", "l2", "-P", lxcpath, check=False)
        _lxc("lxc-wait", "-n", "l2", "-P", lxcpath, "-s", "STOPPED", "-t", "30", check=False)
    assert Change("/inside", "added") in l2.diff()
    for c in (l2, l1, base):
        c.destroy()
