"""The kit's fixtures: the hermetic lxc.conf, scratch lxcpaths on every storage kind, and the
leak check.  Registered by the kit's pytest plugin, so any test in a session that loads it can
ask for them by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .storage import STORAGE_KINDS, LeakCheck, environment, scratch_lxcpath, storage_problem, write_hermetic_lxc_conf

LXC_CONF_ENV = "BDEV_LXC_CONF"


@pytest.fixture(scope="session")
def hermetic_lxc_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point bdev at a private lxc.conf (``BDEV_LXC_CONF``) whose default container config has
    no network, so the host's /etc/lxc files do not change what tests see.  Real LXC commands
    still read the host's files.  The contract uses it; a test suite that wants it everywhere
    wraps it in an autouse fixture of its own."""
    conf = write_hermetic_lxc_conf(tmp_path_factory.mktemp("lxcconf"))
    with environment(LXC_CONF_ENV, str(conf)):
        yield conf


@pytest.fixture
def lxcpath(tmp_path: Path) -> Path:
    """An empty lxcpath on the test machine's own disk."""
    path = tmp_path / "lxc"
    path.mkdir()
    return path


@pytest.fixture(params=STORAGE_KINDS)
def storage_lxcpath(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An empty lxcpath on each kind of real filesystem: the test disk, btrfs on a loop file,
    xfs on a loop file (reflinks).  Skips, naming the reason, where the machine cannot make
    one; unmounts and frees the loop device afterwards even when the test failed."""
    kind = request.param
    problem = storage_problem(kind)
    if problem:
        pytest.skip(f"no {kind} lxcpath: {problem}")
    with scratch_lxcpath(kind, tmp_path) as path:
        yield path


@pytest.fixture
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test if it leaves a mount or a loop device behind: mounts under this session's
    temp tree and bdev temporary mounts of this process or of dead ones; loop devices backed
    by files in this session's temp tree (other pytest sessions' scratch storage may come and
    go meanwhile and is ignored)."""
    with LeakCheck(tmp_path_factory.getbasetemp()).around():
        yield
