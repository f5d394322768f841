"""The runtime tests' fixture: a scratch lxcpath with start/stop helpers, checked afterwards
for leftovers (mounts, loop devices, processes, records)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.store.lxcpath import lock_dir
from bdev_runtime.state import read_record

from runtime_helpers import Runtime, needs_root, processes_in_container_dir, wait_until


@pytest.fixture
def runtime(lxcpath: Path, no_leaks: None, tmp_path: Path) -> Iterator[Runtime]:
    """Runtime helpers on a scratch lxcpath; afterwards nothing of it may be left: no
    container running, no record, no process, no mount or loop device (``no_leaks``)."""
    needs_root()
    helper = Runtime(lxcpath)
    try:
        yield helper
    finally:
        helper.close()
        # A monitor that has cleaned up and removed its record exits a moment later.
        wait_until(lambda: not processes_in_container_dir(lxcpath), 10)
        leftovers = processes_in_container_dir(lxcpath)
        for ref in helper.refs:
            assert read_record(ref) is None, f"{ref.name}: its runtime record was left behind"
            cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"**/lxc.payload.{ref.name}")]
            assert not cgroups, f"{ref.name}: its cgroups were left behind: {cgroups}"
        shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)
        assert not leftovers, f"processes left running: {leftovers}"
