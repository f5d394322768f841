"""The aufs backend (``plugins/aufs``) on a kernel without aufs, and its conversion to overlayfs.

No mainline kernel has aufs, and Debian 12 no longer packages ``aufs-dkms``, so aufs itself
never mounts here: the tests run its real failure path (``mount -t aufs`` fails; one sentence
naming the container and offering the conversion; nothing left behind) and ``bdev backends``
reporting it unusable.  Everything that does not need the aufs filesystem is real: LXC 1.0,
2.0 and 2.1 configs, aufs branches written by hand exactly as aufs writes them (``.wh.``
whiteouts hard-linked to ``.wh..wh.aufs``, an opaque directory marker, pseudo-link and orphan
directories), converted to overlayfs and mounted with real overlayfs, then compared entry by
entry with the merged view aufs would show; converted to dir and to btrfs (on a loop file)
and compared too; used afterwards by real LXC and by bdev; and killed at each step of the
conversion, then repaired by the next command.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bdev.api import Container, list_containers
from bdev.cli.main import cli
from bdev.engine.context import Context, default_registry
from bdev.engine.convert import convert
from bdev.errors import BackendUnavailable, BdevError, InvalidInput
from bdev.records import Rootfs
from bdev.store.layout import DEPENDENTS, JOURNAL, ORIGIN
from bdev.mounts import mounts_root
from bdev.testing.kit.storage import scratch_lxcpath, storage_problem
from bdev.testing.storage import mount_table
from bdev.testing.trees import tree_differences
from bdev_aufs.kernel import AufsUnavailable, kernel_problem
from bdev_aufs.layout import AufsPaths
from bdev_aufs.testing import make_aufs_branch, make_expected_view, make_lower, write_lxc10_config
from bdev_aufs.whiteouts import overlay_xattr, translate_branch
from test_convert import no_lock_files_left, one_sentence  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.usefixtures("no_leaks", "no_lock_files_left")]

NO_AUFS = kernel_problem()


def aufs_container(lxcpath: Path, tmp_path: Path, name: str = "c1", *, style: str = "1.0", depend: bool = True) -> Path:
    """A dir container ``base`` and an aufs clone ``name`` of it as LXC 1.0 left it
    (``<name>/delta0``, an empty ``<name>/rootfs`` mount point, the dependency recorded);
    returns the expected merged view of the clone."""
    lower = make_lower(tmp_path / "lower-src")
    base = Container("base", lxcpath)
    base.create(backend="dir", source=lower)
    directory = lxcpath / name
    directory.mkdir(mode=0o770)
    (directory / "rootfs").mkdir(mode=0o755)
    base_rootfs = lxcpath / "base/rootfs"
    make_aufs_branch(base_rootfs, directory / "delta0")
    write_lxc10_config(directory, name, base_rootfs, directory / "delta0", style=style)
    if depend:
        (lxcpath / "base" / DEPENDENTS).write_text(f"{lxcpath}\n{name}\n")
        (directory / ORIGIN).write_text(f"{lxcpath}\nbase\n")
    expected = tmp_path / "expected"
    expected.mkdir()
    make_expected_view(base_rootfs, expected)
    return expected


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount an overlay rootfs value for real (``lowerdir``, ``upperdir``, ``workdir`` as LXC
    mounts it); unmounted afterwards even when the test fails."""
    mounted: list[Path] = []

    def mount(value: str) -> Path:
        *lowers, upper = value.split(":")
        work = Path(upper).parent / "work"
        work.mkdir(exist_ok=True)
        target = tmp_path / f"merged{len(mounted)}"
        target.mkdir()
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


def bdev_killed_at(lxcpath: Path, fault: str, *argv: str) -> subprocess.CompletedProcess:
    """Run the ``bdev`` command line in a child process that ``BDEV_FAULT`` kills at ``fault``."""
    env = dict(os.environ, BDEV_FAULT=fault)
    command = [sys.executable, "-m", "bdev.cli.main", "-P", str(lxcpath), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- configs and locator


@pytest.mark.unprivileged
@pytest.mark.parametrize("style", ["1.0", "2.0", "2.1"])
def test_lxc_configs_of_every_version_name_the_aufs_rootfs(lxcpath: Path, style: str) -> None:
    directory = lxcpath / "old"
    directory.mkdir()
    write_lxc10_config(directory, "old", Path("/var/lib/lxc/base/rootfs"), directory / "delta0", style=style)
    rootfs = Container("old", lxcpath).rootfs
    assert rootfs == Rootfs("aufs", f"/var/lib/lxc/base/rootfs:{directory}/delta0")
    assert rootfs.config_value == f"aufs:/var/lib/lxc/base/rootfs:{directory}/delta0"


@pytest.mark.unprivileged
def test_malformed_aufs_values_are_refused_in_one_sentence() -> None:
    registry = default_registry()
    for bad in ("aufs:/only", "aufs:/a:/b:/c", "aufs:relative:/up", "aufs:/a:", "aufs:/a,b:/up", "aufs:/a=rw:/up"):
        with pytest.raises(InvalidInput) as caught:
            registry.parse_rootfs(bad)
        assert "aufs" in one_sentence(caught.value)


@pytest.mark.unprivileged
def test_mount_options_use_a_xino_file_of_their_own() -> None:
    one = AufsPaths.parse("/l/base/rootfs:/l/c1/delta0")
    two = AufsPaths.parse("/l/base/rootfs:/l/c2/delta0")
    assert one.mount_options() == f"br=/l/c1/delta0=rw:/l/base/rootfs=ro,xino={one.xino}"
    assert one.mount_options(readonly=True).startswith("br=/l/c1/delta0=ro:/l/base/rootfs=ro,")
    assert one.xino != two.xino and one.xino.parent == Path("/dev/shm")
    assert one.container_name == "c1"


# --------------------------------------------------------------------------- a kernel without aufs


@pytest.mark.skipif(NO_AUFS is None, reason="this kernel has aufs: the unavailable path cannot be seen here")
@pytest.mark.unprivileged
def test_backends_lists_aufs_as_unusable_with_the_reason() -> None:
    result = CliRunner().invoke(cli, ["backends", "--format", "json"])
    assert result.exit_code == 0, result.output
    entry = next(b for b in json.loads(result.stdout)["backends"] if b["name"] == "aufs")
    assert entry["usable"] is False
    reason = " ".join(entry["unavailable_reasons"])
    assert "the kernel has no aufs filesystem (not in /proc/filesystems" in reason
    assert "bdev convert NAME -B overlay" in reason


@pytest.mark.skipif(NO_AUFS is None, reason="this kernel has aufs: mount -t aufs would succeed")
@pytest.mark.root
def test_a_real_aufs_mount_fails_in_one_sentence_leaving_nothing(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    c1 = Container("c1", lxcpath)
    backend = default_registry().backend("aufs")
    target = tmp_path / "mnt"
    target.mkdir()

    def ours() -> list[str]:  # other tests mount and unmount meanwhile
        return [m for m in mount_table() if m.startswith(str(tmp_path))]

    before = (ours(), sorted(os.listdir(lxcpath / "c1")))
    with pytest.raises(AufsUnavailable) as caught:
        backend.mount(c1.rootfs, target)
    text = one_sentence(caught.value)
    assert text.startswith("container 'c1' (backend aufs): the kernel has no aufs filesystem")
    assert "bdev convert c1 -B overlay" in text
    assert (ours(), sorted(os.listdir(lxcpath / "c1"))) == before
    assert os.listdir(target) == [] and not AufsPaths.parse(c1.rootfs.source).xino.exists()


@pytest.mark.skipif(NO_AUFS is None, reason="this kernel has aufs")
@pytest.mark.root
def test_operations_that_need_aufs_name_the_container_and_offer_the_conversion(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    runner = CliRunner()
    cases = (
        (["clone", "c1", "copy", "-B", "dir"], "container 'c1' (backend aufs)", "bdev convert c1 -B overlay"),
        # the origin's backend cannot read it here: the origin is named, whatever the clone
        (["snapshot", "create", "c1"], "container 'c1' (backend aufs)", "bdev convert c1 -B overlay"),
        (["clone", "c1", "c2", "-s"], "container 'c1' (backend aufs)", "bdev convert c1 -B overlay"),
    )
    for argv, subject, offer in cases:
        result = runner.invoke(cli, ["-P", str(lxcpath), *argv])
        assert result.exit_code == 1, result.output
        line = one_sentence(result.stderr.strip())
        assert line.startswith(f"bdev: {subject}: the kernel has no aufs filesystem") and offer in line, line
        assert "Traceback" not in result.output
    assert sorted(os.listdir(lxcpath)) == ["base", "c1"]
    assert not (lxcpath / "c1/snaps").exists()
    listed = runner.invoke(cli, ["-P", str(lxcpath), "ls", "--format", "json"])
    assert {c["name"]: c["backend"] for c in json.loads(listed.stdout)["containers"]} == {"base": "dir", "c1": "aufs"}


@pytest.mark.skipif(NO_AUFS is None, reason="this kernel has aufs")
@pytest.mark.unprivileged
def test_a_clone_onto_aufs_is_refused_before_anything_is_made(lxcpath: Path, tmp_path: Path) -> None:
    base = Container("base", lxcpath)
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    base.create(backend="dir", source=src)
    with pytest.raises(BackendUnavailable) as caught:
        base.clone("c1", backend="aufs", snapshot=True)
    assert "the kernel has no aufs filesystem" in one_sentence(caught.value)
    assert sorted(os.listdir(lxcpath)) == ["base"]


@pytest.mark.root
def test_diff_reads_the_branch_without_aufs(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    changes = {(c.kind, c.path) for c in Container("c1", lxcpath).diff()}
    assert {
        ("deleted", "/etc/hosts"), ("deleted", "/var/log"), ("deleted", "/bin/dangling-link"),
        ("modified", "/etc/motd"), ("opaque", "/usr/share/doc"), ("added", "/usr/share/doc/fresh.txt"),
        ("added", "/srv"), ("added", "/srv/a"), ("added", "/srv/sock"),
    } <= changes
    assert not any(".wh." in path or path == "/etc/never-existed" for _, path in changes)
    assert ("added", "/usr/share/doc/old-readme") not in changes


# --------------------------------------------------------------------------- the branch translation


@pytest.mark.root
def test_aufs_markers_become_overlay_ones(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    delta0 = lxcpath / "c1/delta0"
    times = {rel: os.lstat(delta0 / rel).st_mtime_ns for rel in ("etc", "var", "usr/share/doc", ".")}
    ctx = Context.create(lxcpath)
    outcome = convert(ctx, ctx.ref("c1"), "overlay")
    assert outcome.method == "layer" and outcome.depends_on_origin
    upper = lxcpath / "c1/overlay/delta"
    for deleted in ("etc/hosts", "var/log", "bin/dangling-link"):
        st = os.lstat(upper / deleted)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, f"{deleted} is not an overlay whiteout"
    assert os.getxattr(upper / "usr/share/doc", overlay_xattr("opaque")) == b"y"
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(upper) for name in dirs + files)
    assert not os.path.lexists(upper / "etc/never-existed"), "a whiteout hiding nothing is dropped"
    links = os.lstat(upper / "srv/a")
    assert links.st_nlink == 2 and links.st_ino == os.lstat(upper / "srv/b").st_ino
    for rel, mtime in times.items():
        assert os.lstat(upper / rel).st_mtime_ns == mtime, f"{rel} lost its time"
    assert not delta0.exists(), "the aufs branch is removed once the conversion is committed"


@pytest.mark.root
def test_translation_edge_cases(tmp_path: Path) -> None:
    lower, branch, upper = tmp_path / "lower", tmp_path / "branch", tmp_path / "upper"
    (lower / "real/dir").mkdir(parents=True)
    (lower / "real/dir/f").write_text("below\n")
    (lower / "keep").write_text("below\n")
    os.symlink("real/dir", lower / "link")
    (branch / "link").mkdir(parents=True)  # a directory replacing the symlink
    (branch / "link/.wh.f").write_bytes(b"")  # the lower's link/f is no entry: never followed
    (branch / "keep").write_text("rewritten\n")
    (branch / ".wh.keep").write_bytes(b"")  # a whiteout beside a real entry: the entry wins
    (branch / "real/.wh..wh.dir.rm0042").mkdir(parents=True)  # aufs's rmdir leftover
    (branch / "real/.wh..wh.dir.rm0042/x").write_text("x\n")
    upper.mkdir()
    result = translate_branch(branch, [lower], upper)
    assert (result.whiteouts, result.redundant_whiteouts) == (0, 2)
    assert result.dropped == ["real/.wh..wh.dir.rm0042"]
    assert sorted(os.listdir(upper)) == ["keep", "link", "real"]
    assert os.listdir(upper / "link") == [] and os.listdir(upper / "real") == []
    assert (upper / "keep").read_text() == "rewritten\n"


# --------------------------------------------------------------------------- conversions


@pytest.mark.root
def test_convert_to_overlay_keeps_the_merged_view_and_real_lxc_reads_it(
    lxcpath: Path, tmp_path: Path, overlay_mount
) -> None:
    expected = aufs_container(lxcpath, tmp_path)
    lxc_ls = shutil.which("lxc-ls")
    if lxc_ls is None:
        pytest.fail("real LXC (lxc-ls, lxc-info) is not installed; scripts/setup.sh installs it")
    listed = subprocess.run([lxc_ls, "-P", str(lxcpath), "-1"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["base"], "LXC 5 cannot load an LXC 1.0 config (lxc.rootfs, lxc.utsname)"
    result = CliRunner().invoke(cli, ["-P", str(lxcpath), "-v", "convert", "c1", "-B", "overlay"])
    assert result.exit_code == 0, result.output
    assert "converted c1 from aufs to overlay: overlay layer over the origin" in result.stderr
    assert "1 aufs pseudo-links (.wh..wh.plnk) were not folded back" in result.stderr
    config = (lxcpath / "c1/config").read_text()
    value = f"overlay:{lxcpath}/base/rootfs:{lxcpath}/c1/overlay/delta"
    assert f"lxc.rootfs.path = {value}\n" in config
    assert "lxc.utsname" not in config and "lxc.uts.name = c1" in config and "lxc.tty.max = 4" in config
    assert "# an aufs clone made by lxc-clone -s -B aufs" in config, "comments are kept"
    assert sorted(os.listdir(lxcpath / "c1")) == ["config", ORIGIN, "overlay", "rootfs"]
    # the dependency on base stays: the overlay lower is base's live rootfs, as the aufs one was
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nc1\n"

    merged = overlay_mount(value.removeprefix("overlay:"))
    assert tree_differences(expected, merged) == []

    listed = subprocess.run([lxc_ls, "-P", str(lxcpath), "-1"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["base", "c1"]
    info = subprocess.run(["lxc-info", "-P", str(lxcpath), "-n", "c1"], capture_output=True, text=True)
    assert info.returncode == 0 and "STOPPED" in info.stdout, info.stderr


@pytest.mark.root
def test_real_lxc_starts_a_converted_container_and_sees_the_deletions(lxcpath: Path, tmp_path: Path) -> None:
    from test_lxc_interop import STARTABLE, lxc, real_create, start_or_explain

    base_dir = real_create(lxcpath, "base", "".join(f"{key} = {value}\n" for key, value in STARTABLE))
    lower = base_dir / "rootfs"
    (lower / "srv/dir").mkdir(parents=True)
    (lower / "srv/gone").write_text("deleted in the clone\n")
    (lower / "srv/dir/old").write_text("hidden by the opaque directory\n")
    clone = lxcpath / "c1"
    upper = clone / "delta0"
    (upper / "srv/dir").mkdir(parents=True)
    (clone / "rootfs").mkdir()
    (upper / "srv/.wh.gone").write_bytes(b"")
    (upper / "srv/dir/.wh..wh..opq").write_bytes(b"")
    (upper / "srv/dir/new").write_text("written in the clone\n")
    lines = []  # what lxc-clone -s -B aufs of LXC 1.0 wrote: the origin's config, legacy keys
    for line in (base_dir / "config").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "lxc.rootfs.path":
            line = f"lxc.rootfs = aufs:{lower}:{upper}"
        elif key == "lxc.uts.name":
            line = "lxc.utsname = c1"
        else:
            line = line.replace(str(base_dir), str(clone))
        lines.append(line)
    (clone / "config").write_text("\n".join(lines) + "\n")

    CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", "overlay"], catch_exceptions=False)
    with contextlib.ExitStack() as stack:
        start_or_explain(lxcpath, "c1", tmp_path, stack)
        seen = lxc("lxc-attach", "-n", "c1", "-P", lxcpath, "--", "/bin/ls", "/srv", "/srv/dir", log=False).stdout
        assert seen.split() == ["/srv:", "dir", "/srv/dir:", "new"], seen
        name = lxc("lxc-attach", "-n", "c1", "-P", lxcpath, "--", "/bin/hostname", log=False).stdout
        assert name.strip() == "c1"
        lxc("lxc-stop", "-k", "-n", "c1", "-P", lxcpath)
    assert (lower / "srv/gone").exists(), "the origin's files are untouched"
    assert Container("c1", lxcpath).rootfs.backend == "overlay"


@pytest.mark.root
def test_a_converted_container_snapshots_clones_and_destroys(lxcpath: Path, tmp_path: Path) -> None:
    expected = aufs_container(lxcpath, tmp_path)
    c1 = Container("c1", lxcpath)
    CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", "overlay"], catch_exceptions=False)
    registry = default_registry()
    snap = c1.snapshot()
    copy = c1.clone("copy", backend="dir", keepname=True)
    assert tree_differences(expected, copy.directory / "rootfs") == []
    snap_copy = c1.snapshot_restore(snap, "from-snap")
    rootfs = snap_copy.rootfs
    with registry.backend_for(rootfs).accessed(rootfs, readonly=True) as files:
        assert [p for p in tree_differences(expected, files) if not p.startswith("etc/hostname")] == []
    layered = c1.clone("layered", snapshot=True, keepname=True)  # a clone of the clone stacks its layers
    assert layered.outcome.method == "snapshot"
    with registry.backend_for(layered.rootfs).accessed(layered.rootfs, readonly=True) as files:
        assert tree_differences(expected, files) == []
    layered.destroy()  # it depends on c1, which could not be restored in place under it
    with registry.backend_for(c1.rootfs).accessed(c1.rootfs) as files:
        (files / "etc/motd").write_text("changed after the snapshot\n")
    c1.snapshot_restore(snap)  # in place: the overlay upper is swapped
    with registry.backend_for(c1.rootfs).accessed(c1.rootfs, readonly=True) as files:
        assert tree_differences(expected, files) == []
    for made in (snap_copy, copy):
        made.destroy()
    c1.destroy(with_snapshots=True)
    assert not (lxcpath / "base" / DEPENDENTS).exists()
    Container("base", lxcpath).destroy()
    assert os.listdir(lxcpath) == []


@pytest.mark.root
@pytest.mark.parametrize("style", ["1.0", "2.1"])
def test_convert_to_dir_makes_the_merged_tree_and_drops_the_dependency(lxcpath: Path, tmp_path: Path, style: str) -> None:
    expected = aufs_container(lxcpath, tmp_path, style=style)
    CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", "dir"], catch_exceptions=False)
    c1 = Container("c1", lxcpath)
    assert c1.get_config_item("lxc.rootfs.path") == [f"dir:{lxcpath}/c1/rootfs"]
    assert c1.get_config_item("lxc.rootfs.backend") == []
    assert tree_differences(expected, lxcpath / "c1/rootfs") == []
    assert sorted(os.listdir(lxcpath / "c1")) == ["config", "rootfs"]
    assert not (lxcpath / "base" / DEPENDENTS).exists(), "base no longer has a dependent"
    Container("base", lxcpath).destroy()  # allowed now
    assert tree_differences(expected, lxcpath / "c1/rootfs") == []


@pytest.mark.root
def test_convert_to_btrfs_on_a_loop_file(tmp_path: Path) -> None:
    problem = storage_problem("btrfs")
    if problem:
        pytest.skip(f"no btrfs lxcpath here: {problem}")
    with scratch_lxcpath("btrfs", tmp_path) as lxcpath:
        expected = aufs_container(lxcpath, tmp_path)
        CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", "btrfs"], catch_exceptions=False)
        c1 = Container("c1", lxcpath)
        assert c1.rootfs == Rootfs("btrfs", f"{lxcpath}/c1/rootfs")
        assert os.lstat(lxcpath / "c1/rootfs").st_ino == 256, "a subvolume"
        assert tree_differences(expected, lxcpath / "c1/rootfs") == []
        assert c1.snapshot() == "snap0"
        c1.destroy(with_snapshots=True)
        Container("base", lxcpath).destroy()


@pytest.mark.root
def test_conversion_refusals_change_nothing(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    before = sorted(str(p.relative_to(lxcpath)) for p in lxcpath.rglob("*"))
    (lxcpath / "c1/overlay").mkdir()
    (lxcpath / "c1/overlay/delta").mkdir()
    (lxcpath / "c1/overlay/delta/stray").write_text("someone else's\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["-P", str(lxcpath), "convert", "c1", "-B", "overlay"])
    assert result.exit_code == 1 and "already exists" in one_sentence(result.stderr.strip())
    shutil.rmtree(lxcpath / "c1/overlay")
    for argv, words in (
        (["convert", "c1", "-B", "aufs"], "already uses the aufs backend"),
        (["convert", "c1", "-B", "bogus"], "unknown backend 'bogus'"),
        (["convert", "nosuch", "-B", "dir"], "no such container"),
        (["convert", "base", "-B", "overlay"], "clones depend on its rootfs (c1)"),
    ):
        result = runner.invoke(cli, ["-P", str(lxcpath), *argv])
        assert result.exit_code != 0 and words in one_sentence(result.stderr.strip()), result.stderr
    assert sorted(str(p.relative_to(lxcpath)) for p in lxcpath.rglob("*")) == before


@pytest.mark.root
def test_an_lxc10_clone_without_dependency_records_gets_them(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path, depend=False)
    (lxcpath / "base" / DEPENDENTS).write_text("1\n")  # LXC 1.0 kept a bare count
    CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", "overlay"], catch_exceptions=False)
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nc1\n"
    assert (lxcpath / "c1" / ORIGIN).read_text() == f"{lxcpath}\nbase\n"
    with pytest.raises(BdevError) as caught:
        Container("base", lxcpath).destroy()
    assert "clones depend on its rootfs (c1)" in one_sentence(caught.value)


# --------------------------------------------------------------------------- crash safety


def merged_files(lxcpath: Path, name: str, overlay_mount: Callable[[str], Path]) -> Path:
    """Where a container's merged files are: its overlay mounted for real, or its directory."""
    rootfs = Container(name, lxcpath).rootfs
    return overlay_mount(rootfs.source) if rootfs.backend == "overlay" else Path(rootfs.source)


@pytest.mark.root
@pytest.mark.parametrize("target", ["overlay", "dir"])
@pytest.mark.parametrize(
    "step, finished",
    [("convert:after-build", False), ("convert:after-config", True), ("convert:after-old-removed", True)],
)
def test_a_conversion_killed_at_each_step_is_repaired(
    lxcpath: Path, tmp_path: Path, overlay_mount, step: str, finished: bool, target: str
) -> None:
    expected = aufs_container(lxcpath, tmp_path)
    config_before = (lxcpath / "c1/config").read_text()
    child = bdev_killed_at(lxcpath, step, "convert", "c1", "-B", target)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert json.loads((lxcpath / "c1" / JOURNAL).read_text())["op"] == "convert"

    assert [c.name for c in list_containers(lxcpath)] == ["base", "c1"]  # the next command repairs
    assert not (lxcpath / "c1" / JOURNAL).exists() and not (lxcpath / "c1/.bdev-convert-scratch").exists()
    if finished:
        assert Container("c1", lxcpath).rootfs.backend == target and not (lxcpath / "c1/delta0").exists()
        assert (lxcpath / "base" / DEPENDENTS).exists() is (target == "overlay")
    else:
        assert (lxcpath / "c1/config").read_text() == config_before
        assert sorted(os.listdir(lxcpath / "c1")) == ["config", "delta0", ORIGIN, "rootfs"]
        assert os.listdir(lxcpath / "c1/rootfs") == []
        CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "c1", "-B", target], catch_exceptions=False)
    assert tree_differences(expected, merged_files(lxcpath, "c1", overlay_mount)) == []


@pytest.mark.root
def test_killed_with_the_merged_view_mounted_leaves_no_mount(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-m", "bdev.cli.main", "-P", str(lxcpath), "convert", "c1", "-B", "dir"],
        env=dict(os.environ, BDEV_FAULT="aufs:merged-view-mounted"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, err
    def left() -> list[str]:
        return [m for m in mount_table() if m.startswith(f"{mounts_root()}/{child.pid}-") and m.endswith("-overlay")]

    assert left(), "the killed command had the merged view mounted"
    assert [c.name for c in list_containers(lxcpath)] == ["base", "c1"]  # reaps the mount, rolls back
    assert left() == []
    assert sorted(os.listdir(lxcpath / "c1")) == ["config", "delta0", ORIGIN, "rootfs"]
    assert os.listdir(lxcpath / "c1/rootfs") == []
    assert Container("c1", lxcpath).rootfs.backend == "aufs"


@pytest.mark.root
def test_a_failed_build_rolls_back_at_once(lxcpath: Path, tmp_path: Path) -> None:
    aufs_container(lxcpath, tmp_path)
    os.rename(lxcpath / "base/rootfs", lxcpath / "base/rootfs.away")  # the lower vanished
    try:
        with pytest.raises(BdevError) as caught:
            ctx = Context.create(lxcpath)
            convert(ctx, ctx.ref("c1"), "dir")
        assert "aufs branch" in one_sentence(caught.value) and "c1" in str(caught.value)
    finally:
        os.rename(lxcpath / "base/rootfs.away", lxcpath / "base/rootfs")
    assert sorted(os.listdir(lxcpath / "c1")) == ["config", "delta0", ORIGIN, "rootfs"]
    assert os.listdir(lxcpath / "c1/rootfs") == [], "the mount point is put back"


@pytest.mark.root
def test_an_aufs_container_with_its_own_lower_keeps_it_under_overlay(lxcpath: Path, tmp_path: Path, overlay_mount) -> None:
    directory = lxcpath / "own"
    directory.mkdir(mode=0o770)
    lower = make_lower(directory / "rootfs")
    make_aufs_branch(lower, directory / "delta0")
    write_lxc10_config(directory, "own", lower, directory / "delta0")
    expected = tmp_path / "expected"
    expected.mkdir()
    make_expected_view(lower, expected)
    before = sorted(str(p.relative_to(lxcpath)) for p in lxcpath.rglob("*"))

    result = CliRunner().invoke(cli, ["-P", str(lxcpath), "convert", "own", "-B", "dir"])
    assert result.exit_code == 1 and f"uses {lower}" in one_sentence(result.stderr.strip())
    assert sorted(str(p.relative_to(lxcpath)) for p in lxcpath.rglob("*")) == before

    CliRunner().invoke(cli, ["-P", str(lxcpath), "-q", "convert", "own", "-B", "overlay"], catch_exceptions=False)
    own = Container("own", lxcpath)
    assert own.rootfs == Rootfs("overlay", f"{lower}:{directory}/overlay/delta")
    merged = overlay_mount(own.rootfs.source)
    assert tree_differences(expected, merged) == []
    subprocess.run(["umount", str(merged)], check=True)
    own.destroy()  # the lower is the container's own layer now, removed with it
    assert os.listdir(lxcpath) == []
