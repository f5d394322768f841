"""Concurrent callers: two commands on one container serialise on LXC's lock, the loser gets
a clear answer, nothing is corrupted; real LXC waits for bdev's lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import Busy
from bdev.store.layout import PARTIAL
from bdev.store.lock import container_lock_path, locked_file
from bdev.store.lxcpath import lock_dir

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.unprivileged]


def spawn(lxcpath: Path, code: str, env: dict | None = None) -> subprocess.Popen:
    script = (
        "import sys\nfrom bdev.api import Container\nfrom bdev.errors import BdevError\n"
        f"P = {str(lxcpath)!r}\ntry:\n    {code}\n    print('OK')\nexcept BdevError as e:\n    print('ERR', e)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


@pytest.fixture
def base(lxcpath: Path) -> Container:
    c = Container("base", lxcpath)
    c.create("busybox", "dir")
    return c


def test_two_clones_to_one_name(base: Container, lxcpath: Path) -> None:
    procs = [spawn(lxcpath, "Container('base', P).clone('web1')") for _ in range(2)]
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outputs[1] == "OK", outputs
    assert outputs[0].startswith("ERR") and "already exists" in outputs[0], outputs
    web1 = Container("web1", lxcpath)
    assert web1.defined and not (web1.directory / PARTIAL).exists()
    assert (web1.directory / "rootfs/bin/busybox").exists()


def test_concurrent_snapshots_get_distinct_numbers(base: Container, lxcpath: Path) -> None:
    procs = [spawn(lxcpath, "Container('base', P).snapshot()") for _ in range(3)]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["OK"] * 3
    assert [s.name for s in base.snapshot_list()] == ["snap0", "snap1", "snap2"]


def test_a_held_lock_gives_a_clear_busy_error(base: Container, lxcpath: Path) -> None:
    path = container_lock_path(lock_dir(lxcpath), "base")
    with locked_file(path):
        out = spawn(lxcpath, "Container('base', P).snapshot()", env={"BDEV_LOCK_TIMEOUT": "0.3"}).communicate(timeout=60)[0]
    assert out.startswith("ERR") and "locked by another process" in out, out
    assert base.snapshot_list() == []
    with pytest.raises(Busy):
        with locked_file(path):
            with locked_file(path, timeout=0.1):
                pass


@pytest.mark.lxc
@pytest.mark.root
@pytest.mark.skipif(shutil.which("lxc-destroy", path="/usr/bin:/bin") is None, reason="Debian's lxc is not installed")
def test_real_lxc_waits_for_bdevs_lock(base: Container, lxcpath: Path) -> None:
    """LXC and bdev take the same lock on the same file: while bdev holds it, real
    ``lxc-destroy`` and ``lxc-snapshot`` block (killed by ``timeout`` here) and change nothing."""
    path = container_lock_path(lock_dir(lxcpath), "base")
    with locked_file(path):
        real = {tool: shutil.which(tool, path="/usr/bin:/bin") for tool in ("lxc-destroy", "lxc-snapshot")}
        for argv in ([real["lxc-destroy"], "-n", "base", "-P", str(lxcpath)], [real["lxc-snapshot"], "-n", "base", "-P", str(lxcpath)]):
            started = time.monotonic()
            result = subprocess.run(["timeout", "2", *argv], capture_output=True, text=True)
            assert result.returncode == 124, f"{argv[0]} did not wait for the lock: {result}"
            assert time.monotonic() - started >= 1.9
    assert base.defined and base.snapshot_list() == []
    result = subprocess.run([real["lxc-snapshot"], "-n", "base", "-P", str(lxcpath)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [s.name for s in base.snapshot_list()] == ["snap0"]
