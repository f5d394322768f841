"""Fixtures shared by bdev's tests: hermetic LXC settings, scratch lxcpaths on real
filesystems, and leak checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.mounts import mounts_root
from bdev.testing.storage import loop_devices, loop_filesystem, loop_filesystem_problem, mount_table

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (real mounts, ownership, device nodes)")


@pytest.fixture(autouse=True, scope="session")
def hermetic_lxc_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point bdev at a private lxc.conf whose default container config has no network, so the
    host's /etc/lxc files do not change what tests see.  Real LXC commands still read the
    host's files; interop tests pass -P and -f explicitly."""
    base = tmp_path_factory.mktemp("lxcconf")
    default_conf = base / "default.conf"
    default_conf.write_text("lxc.net.0.type = empty\n")
    conf = base / "lxc.conf"
    conf.write_text(f"lxc.lxcpath = {base / 'default-lxcpath'}\nlxc.default_config = {default_conf}\n")
    old = os.environ.get("BDEV_LXC_CONF")
    os.environ["BDEV_LXC_CONF"] = str(conf)
    yield conf
    if old is None:
        os.environ.pop("BDEV_LXC_CONF", None)
    else:
        os.environ["BDEV_LXC_CONF"] = old


@pytest.fixture
def lxcpath(tmp_path: Path) -> Path:
    """An empty lxcpath on the test machine's own disk."""
    path = tmp_path / "lxc"
    path.mkdir()
    return path


STORAGE_KINDS = ["tmpdir", "btrfs", "xfs"]


@pytest.fixture(params=STORAGE_KINDS)
def storage_lxcpath(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An lxcpath on each kind of real filesystem: the test disk, btrfs on a loop file, xfs
    on a loop file (reflinks).  Skips, naming the reason, where the machine cannot make one."""
    kind = request.param
    if kind == "tmpdir":
        path = tmp_path / "lxc"
        path.mkdir()
        yield path
        return
    problem = loop_filesystem_problem(kind)
    if problem:
        pytest.skip(f"no {kind} lxcpath: {problem}")
    with loop_filesystem(kind, tmp_path, size="1G") as mnt:
        path = mnt / "lxc"
        path.mkdir()
        yield path


@pytest.fixture
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test if it leaves a mount or a loop device behind (ignoring other pytest
    sessions' scratch storage, which may come and go meanwhile)."""
    ours = str(tmp_path_factory.getbasetemp())
    temporary = str(mounts_root()) + "/"

    def our_mounts() -> list[str]:
        """Mounts under this session's temp tree, and bdev temporary mounts of this process or
        of dead ones (which the next command would reap); other live processes' are not ours."""
        found = []
        for mount in mount_table():
            if mount.startswith(temporary):
                pid = mount[len(temporary):].split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and Path(f"/proc/{pid}").exists():
                    continue
                found.append(mount)
            elif ours in mount:
                found.append(mount)
        return found

    def our_loops() -> list[str]:
        return [entry for entry in loop_devices() if ours in entry]

    mounts, loops = our_mounts(), our_loops()
    yield
    assert our_mounts() == mounts, "the test leaked mounts"
    assert our_loops() == loops, "the test leaked loop devices"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``root`` are skipped, with the reason, when the suite runs unprivileged."""
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="marked root: needs real mounts, foreign ownership or real LXC as root")
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)
