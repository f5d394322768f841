"""The backend contract: the same tests for every registered backend, on every kind of real
filesystem this machine can make (the test disk, btrfs and xfs on loop files).

A backend joins by being registered; capabilities it does not declare are skipped with the
reason, never failed.  Each test also checks that no mount or loop device leaks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import AlreadyExists, HasDependents, NotSupported
from bdev.records import CreateOptions
from bdev.registry import load_registry
from bdev.store.layout import JOURNAL, PARTIAL
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.trees import tree_differences
from bdev.engine.context import default_registry

BACKENDS = [entry.name for entry in load_registry().backend_entries()]


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest, storage_lxcpath: Path) -> str:
    """Each registered backend that can work on this machine at ``storage_lxcpath``."""
    registry = default_registry()
    backend = registry.backend(request.param)
    reasons = backend.unavailable_reasons()
    if reasons:
        pytest.skip(f"backend {request.param} is not usable here: {'; '.join(reasons)}")
    from bdev.records import Placement

    refusal = backend.refusal_at(Placement(storage_lxcpath, "probe"), CreateOptions())
    if refusal:
        pytest.skip(f"backend {request.param} cannot live at this lxcpath: {refusal}")
    return request.param


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_rootfs(tmp_path / "sample")


def rootfs_tree(container: Container, *, readonly: bool = True):
    """Context manager giving the container's files (mounted if the backend needs it)."""
    rootfs = container.rootfs
    return default_registry().backend_for(rootfs).accessed(rootfs, readonly=readonly)


def assert_matches(container: Container, expected: Path, *, hostname: str | None = None) -> None:
    with rootfs_tree(container) as path:
        rewritten = ("etc/hostname:", "etc/hosts:") if hostname else ()
        problems = [p for p in tree_differences(expected, path) if not p.startswith(rewritten)]
        assert problems == [], f"{container.name} differs from {expected}:\n" + "\n".join(problems[:20])
        if hostname:
            assert (path / "etc/hostname").read_text() == f"{hostname}\n"


def assert_clean(container: Container) -> None:
    """No staging, journal or partial marker left in the container directory."""
    leftovers = [p.name for p in container.directory.iterdir() if p.name.startswith(".") or p.name == PARTIAL]
    assert leftovers == [], f"left behind in {container.directory}: {leftovers}"


pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.unprivileged]


def test_create_then_destroy(backend_name: str, storage_lxcpath: Path, sample: Path) -> None:
    c = Container("c1", storage_lxcpath)
    c.create(backend=backend_name, source=sample)
    assert c.defined and c.rootfs.backend == backend_name
    assert c.get_config_item("lxc.rootfs.path") == [c.rootfs.config_value]
    assert_matches(c, sample, hostname="c1")
    rootfs = c.rootfs
    c.destroy()
    assert not c.defined and not c.directory.exists()
    assert not default_registry().backend_for(rootfs).exists(rootfs)


def test_full_copy_both_ways_against_dir(backend_name: str, storage_lxcpath: Path, sample: Path) -> None:
    origin = Container("origin", storage_lxcpath)
    origin.create(backend="dir", source=sample)
    into = origin.clone("into", backend=backend_name)
    assert into.rootfs.backend == backend_name
    assert_matches(into, sample, hostname="into")
    back = into.clone("back", backend="dir")
    assert_matches(back, sample, hostname="back")
    for c in (back, into, origin):
        c.destroy()


def test_snapshot_clone(backend_name: str, storage_lxcpath: Path, sample: Path) -> None:
    origin = Container("origin", storage_lxcpath)
    origin.create(backend=backend_name, source=sample)
    backend = default_registry().backend(backend_name)
    if backend.snapshot_refusal(origin.rootfs, backend, origin._ref.placement) is not None:
        with pytest.raises(NotSupported):
            origin.clone("snapclone", snapshot=True, backend=backend_name)
        assert not (storage_lxcpath / "snapclone").exists()
        clone = origin.clone("snapclone", snapshot=True, maybe_snapshot=True, backend=backend_name)
    else:
        clone = origin.clone("snapclone", snapshot=True)
    assert_matches(clone, sample, hostname="snapclone")
    with rootfs_tree(clone, readonly=False) as path:
        (path / "etc/motd").write_text("changed in the clone\n")
    assert_matches(origin, sample, hostname="origin")
    clone.destroy()
    origin.destroy()


def test_container_snapshots_restore_in_place_and_to_new_name(
    backend_name: str, storage_lxcpath: Path, sample: Path, tmp_path: Path
) -> None:
    c = Container("c1", storage_lxcpath)
    c.create(backend=backend_name, source=sample)
    with rootfs_tree(c) as path:
        expected = tmp_path / "expected"
        from bdev.copying import copytree

        expected.mkdir()
        copytree(path, expected)
    assert c.snapshot(comment="before the change\n") == "snap0"
    assert c.snapshot() == "snap1"
    listed = c.snapshot_list()
    assert [s.name for s in listed] == ["snap0", "snap1"]
    assert listed[0].comment == "before the change\n" and listed[1].comment is None
    assert len(listed[0].timestamp) == 19
    with rootfs_tree(c, readonly=False) as path:
        (path / "etc/motd").write_text("upgraded\n")
        (path / "var/log/new.log").write_text("new\n")
        os.unlink(path / "bin/tool")
    c.snapshot_restore("snap0")
    assert_matches(c, expected)
    assert_clean(c)
    assert c.get_config_item("lxc.uts.name") == ["c1"]
    restored = c.snapshot_restore("snap1", "c2")
    assert restored.rootfs.backend == backend_name
    assert_matches(restored, sample, hostname="c2")
    with pytest.raises(AlreadyExists):
        c.snapshot_restore("snap0", "c2")
    with pytest.raises(HasDependents):
        c.destroy()
    assert c.defined and len(c.snapshot_list()) == 2
    c.snapshot_destroy("snap1")
    assert [s.name for s in c.snapshot_list()] == ["snap0"]
    c.destroy(with_snapshots=True)
    restored.destroy()
    assert sorted(os.listdir(storage_lxcpath)) == []


def test_clone_refuses_existing_target(backend_name: str, storage_lxcpath: Path, sample: Path) -> None:
    a = Container("a", storage_lxcpath)
    a.create(backend=backend_name, source=sample)
    b = a.clone("b")
    before = b.directory.joinpath("config").read_text()
    with pytest.raises(AlreadyExists):
        a.clone("b")
    assert b.directory.joinpath("config").read_text() == before
    assert_matches(b, sample, hostname="b")
    b.destroy()
    a.destroy()
