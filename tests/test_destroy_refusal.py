"""``destroy -s`` asks before it destroys: a container (or one of its snapshots) whose backend
would refuse to destroy it now (mounted elsewhere) is refused before any snapshot goes.

Everything runs on real kernel objects: loop images mounted by the test with mount(8), tmpfs
mounted inside dir and btrfs rootfs, btrfs subvolumes bind-mounted elsewhere (a btrfs lxcpath
on a loop file), an overlay rootfs mounted by its own backend.  The race (something mounts while the destroy runs) is made real
too: the test mounts the container's image from inside the destroy of a snapshot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bdev.api import Container
from bdev.cli.main import cli
from bdev.command import run
from bdev.engine.context import default_registry
from bdev.errors import Busy
from bdev.records import Rootfs
from bdev.store.layout import JOURNAL
from bdev.testing.kit.storage import scratch_lxcpath, storage_problem
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

HOSTNAME_FILES = ("etc/hostname:", "etc/hosts:")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


class Mounts:
    """Mounts made with mount(8) on fresh directories (or on ``at=``), unmounted in reverse."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.points: list[Path] = []

    def __call__(self, source: str | Path, *options: str, at: Path | None = None) -> Path:
        point = at or self.scratch / f"elsewhere{len(self.points)}"
        point.mkdir(exist_ok=True)
        run(["mount", *options, str(source), str(point)])
        self.points.append(point)
        return point

    def unmount_all(self) -> None:
        while self.points:
            point = self.points.pop()
            if os.path.ismount(point):
                run(["umount", str(point)])


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Mounts]:
    """``mounted(source, *options)`` mounts; everything is unmounted at teardown even when the
    test failed."""
    mounts = Mounts(tmp_path)
    yield mounts
    mounts.unmount_all()


def usable(backend: str) -> None:
    """Skip, naming the reasons, where ``backend`` cannot work on this machine."""
    reasons = default_registry().backend(backend).unavailable_reasons()
    if reasons:
        pytest.skip(f"the {backend} backend cannot work here: {'; '.join(reasons)}")


def with_two_snapshots(lxcpath: Path, backend: str, sample: Path) -> Container:
    c = Container("c1", lxcpath)
    c.create(backend=backend, source=sample)
    assert c.snapshot() == "snap0" and c.snapshot() == "snap1"
    return c


def destroy_s(lxcpath: Path, *, destroyed: tuple[str, ...] = ()) -> str:
    """``bdev destroy c1 -s``, which must fail with one error line after reporting the
    ``destroyed`` snapshots and nothing else; the error line."""
    result = CliRunner().invoke(cli, ["-P", str(lxcpath), "destroy", "c1", "-s"])
    assert result.exit_code != 0 and "Traceback" not in result.stderr, result.output
    *reports, error = result.stderr.splitlines()
    assert reports == [f"destroyed snapshot {name} of c1" for name in destroyed], result.stderr
    assert error.startswith("bdev: "), result.stderr
    return error


def assert_whole(c: Container, sample: Path, snapshots: list[str]) -> None:
    """``c`` and its ``snapshots`` are all there, with the sample's files, and nothing
    journaled that a later command would finish."""
    fresh = Container(c.name, c.lxcpath)
    listed = fresh.snapshot_list()
    assert fresh.defined and [s.name for s in listed] == snapshots
    for directory, rootfs in [(fresh.directory, fresh.rootfs), *((s.lxcpath / s.name, s.rootfs) for s in listed)]:
        assert rootfs is not None and not (directory / JOURNAL).exists(), directory
        assert files_differ(rootfs, sample) == [], rootfs


def files_differ(rootfs: Rootfs, expected: Path) -> list[str]:
    backend = default_registry().backend_for(rootfs)
    with backend.accessed(rootfs, readonly=True) as path:
        return [d for d in tree_differences(expected, path) if not d.startswith(HOSTNAME_FILES)]


# ---------------------------------------------------------------------------- loop


def test_loop_container_mounted_elsewhere_keeps_its_snapshots(
    lxcpath: Path, sample: Path, mounted: Mounts
) -> None:
    """The bug: the snapshots went first, then the container's image refused.  Now nothing
    goes, the sentence names the container, the backend and the mount, and once unmounted
    the same command destroys everything."""
    usable("loop")
    c = with_two_snapshots(lxcpath, "loop", sample)
    image = Path(c.rootfs.source)
    point = mounted(image, "-o", "loop")
    line = destroy_s(lxcpath)
    assert line.startswith(f"bdev: container 'c1' (backend loop): the image {image} is in use by /dev/loop"), line
    assert f"(mounted on {point})" in line and line.endswith("unmount it before removing it."), line
    mounted.unmount_all()
    assert_whole(c, sample, ["snap0", "snap1"])
    c.destroy(with_snapshots=True)
    assert not c.directory.exists()


def test_loop_snapshot_mounted_elsewhere_refuses_before_any_goes(
    lxcpath: Path, sample: Path, mounted: Mounts
) -> None:
    """A busy snapshot, not the first one: neither ``destroy -s`` nor destroying all the
    snapshots (``lxc-snapshot -d ALL``) removes the snapshot before it."""
    usable("loop")
    c = with_two_snapshots(lxcpath, "loop", sample)
    snap1 = c.snapshot_list()[1].rootfs
    assert snap1 is not None
    mounted(snap1.source, "-o", "loop,ro")
    line = destroy_s(lxcpath)
    assert line.startswith(f"bdev: container 'c1/snap1' (backend loop): the image {snap1.source} is in use"), line
    with pytest.raises(Busy, match="c1/snap1.*unmount it before removing it"):
        c.snapshot_destroy_all()
    mounted.unmount_all()
    assert_whole(c, sample, ["snap0", "snap1"])


def test_loop_container_mounted_during_the_destroy_keeps_the_rest(
    lxcpath: Path, sample: Path, mounted: Mounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the container's image is mounted after every rootfs was asked, while snap0 is
    being destroyed.  The container is asked again before snap1 goes, so snap1 and the
    container stay, and the sentence says snap0 is gone."""
    usable("loop")
    c = with_two_snapshots(lxcpath, "loop", sample)
    image, snap0 = Path(c.rootfs.source), c.snapshot_list()[0].rootfs
    backend = type(default_registry().backend("loop"))
    destroy = backend.destroy

    def destroy_then_mount(self: object, rootfs: Rootfs) -> None:
        destroy(self, rootfs)
        if rootfs == snap0:
            mounted(image, "-o", "loop")

    monkeypatch.setattr(backend, "destroy", destroy_then_mount)
    line = destroy_s(lxcpath, destroyed=("snap0",))
    assert line.startswith(f"bdev: container 'c1' (backend loop): the image {image} is in use"), line
    assert line.endswith("(found after destroying its snapshots snap0; everything else is intact)."), line
    mounted.unmount_all()
    assert_whole(c, sample, ["snap1"])


def test_loop_container_mounted_after_it_was_asked_is_refused_by_its_backend(
    lxcpath: Path, sample: Path, mounted: Mounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest race: the image is mounted after the last time it was asked.  The
    backend's own Busy then stops the destroy (abandoned, not journaled to finish later),
    and the sentence lists the snapshots already gone."""
    usable("loop")
    c = with_two_snapshots(lxcpath, "loop", sample)
    image = Path(c.rootfs.source)
    mounted(image, "-o", "loop")
    monkeypatch.setattr(type(default_registry().backend("loop")), "destroy_refusal", lambda self, rootfs: None)
    line = destroy_s(lxcpath, destroyed=("snap0", "snap1"))
    assert line.startswith(f"bdev: container 'c1' (backend loop): the image {image} is in use"), line
    assert line.endswith("(found after destroying its snapshots snap0, snap1; everything else is intact)."), line
    mounted.unmount_all()
    assert_whole(c, sample, [])


# ---------------------------------------------------------------------------- dir, btrfs, overlay


@pytest.fixture
def lxcpath_on(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``lxcpath_on(kind)``: a scratch lxcpath on storage ``kind`` (skipping, with the reason,
    where it cannot be made), torn down afterwards."""
    with contextlib.ExitStack() as stack:

        def make(kind: str) -> Path:
            problem = storage_problem(kind)
            if problem:
                pytest.skip(f"no {kind} lxcpath: {problem}")
            return stack.enter_context(scratch_lxcpath(kind, tmp_path))

        yield make


@pytest.mark.parametrize(("backend", "storage", "refusal"), [
    ("dir", "tmpdir", "{inside} is a mount point inside {rootfs}; unmount it before removing"),
    ("btrfs", "btrfs", "{inside} is mounted inside {rootfs}; unmount it before destroying"),
])
def test_a_mount_inside_the_container_keeps_its_snapshots(
    backend: str, storage: str, refusal: str, lxcpath_on: Callable[[str], Path], sample: Path, mounted: Mounts
) -> None:
    """A mount left inside a dir rootfs or btrfs subvolume (a crashed runtime's bind mount):
    refused before the snapshots go, and before any journal that the next command would
    finish (the backend's own refusal used to leave one)."""
    usable(backend)
    lxcpath = lxcpath_on(storage)
    c = with_two_snapshots(lxcpath, backend, sample)
    inside = Path(c.rootfs.source) / "tmp"  # a directory of the sample: nothing changes
    mounted("tmpfs", "-t", "tmpfs", at=inside)
    cause = refusal.format(inside=inside, rootfs=c.rootfs.source)
    assert destroy_s(lxcpath) == f"bdev: container 'c1' (backend {backend}): {cause}."
    assert os.path.ismount(inside) and not (c.directory / JOURNAL).exists()
    mounted.unmount_all()
    assert_whole(c, sample, ["snap0", "snap1"])
    c.destroy(with_snapshots=True)


def test_btrfs_subvolume_mounted_elsewhere_keeps_its_snapshots(
    lxcpath_on: Callable[[str], Path], sample: Path, mounted: Mounts
) -> None:
    """The kernel deletes a subvolume that a bind mount still shows elsewhere, emptying that
    mount; bdev refuses instead, for the container and for a snapshot alike."""
    usable("btrfs")
    lxcpath = lxcpath_on("btrfs")
    c = with_two_snapshots(lxcpath, "btrfs", sample)
    for label, rootfs in (("c1", c.rootfs), ("c1/snap0", c.snapshot_list()[0].rootfs)):
        assert rootfs is not None
        where = mounted(rootfs.source, "--bind")
        assert destroy_s(lxcpath) == (f"bdev: container '{label}' (backend btrfs): {rootfs.source} is also mounted "
                                      f"on {where}; unmount it before destroying.")
        assert (where / "etc/motd").is_file()
        mounted.unmount_all()
    assert_whole(c, sample, ["snap0", "snap1"])
    c.destroy(with_snapshots=True)


def test_overlay_container_mounted_keeps_its_snapshots(lxcpath: Path, sample: Path) -> None:
    """An overlay rootfs mounted by its own backend (as a running container's is)."""
    usable("overlay")
    c = with_two_snapshots(lxcpath, "overlay", sample)
    rootfs = c.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs) as where:
        line = destroy_s(lxcpath)
        assert line.startswith("bdev: container 'c1' (backend overlay): "), line
        assert line.endswith(f"is a layer of the overlay mounted on {where}; unmount it before destroying the rootfs."), line
    assert_whole(c, sample, ["snap0", "snap1"])
    c.destroy(with_snapshots=True)
