"""Ephemeral containers: a copy-on-write clone started, written to, stopped, and gone, even
when its monitor was killed; the origin is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.store.running import is_running
from bdev_runtime import lifecycle
from bdev_runtime.state import State, read_record

from runtime_helpers import Runtime, wait_until

pytestmark = [pytest.mark.root]

VENV_BIN = Path(sys.executable).parent


def test_start_write_stop_gone(runtime: Runtime) -> None:
    origin = runtime.create("origin")
    clone, status = lifecycle.start_ephemeral(runtime.ctx, origin, name="origin-e1")
    runtime.ref(clone.name)
    assert status == 0 and lifecycle.info(runtime.ctx, clone).state is State.RUNNING
    assert lifecycle.attach(runtime.ctx, clone, ["/bin/sh", "-c", "echo scratch > /etc/written"]) == 0
    assert (runtime.lxcpath / "origin-e1").is_dir()
    lifecycle.stop(runtime.ctx, clone, timeout=20)
    assert not (runtime.lxcpath / "origin-e1").exists()
    assert [c.name for c in list_containers(runtime.lxcpath)] == ["origin"]
    assert not (runtime.lxcpath / "origin/rootfs/etc/written").exists()
    assert Container("origin", runtime.lxcpath).dependents() == []


def test_bdev_run_ephemeral_runs_a_command_in_a_throwaway_clone(runtime: Runtime) -> None:
    runtime.create("origin")
    done = subprocess.run([str(VENV_BIN / "bdev"), "-P", str(runtime.lxcpath), "run", "--ephemeral", "origin", "--",
                           "/bin/sh", "-c", "touch /etc/changed; hostname; exit 6"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 6, done.stderr
    assert done.stdout.startswith("origin_")  # the clone's host name is its own
    assert sorted(os.listdir(runtime.lxcpath)) == ["origin"]
    assert not (runtime.lxcpath / "origin/rootfs/etc/changed").exists()


def test_lxc_copy_e_and_lxc_start_ephemeral(runtime: Runtime) -> None:
    runtime.create("origin")
    copied = subprocess.run([str(VENV_BIN / "lxc-copy"), "-n", "origin", "-N", "eph", "-e", "-P", str(runtime.lxcpath)],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert copied.returncode == 0, copied.stderr
    eph = runtime.ref("eph")
    assert lifecycle.info(runtime.ctx, eph).state is State.RUNNING
    lifecycle.stop(runtime.ctx, eph, kill=True)
    assert not (runtime.lxcpath / "eph").exists()

    started = subprocess.run([str(VENV_BIN / "lxc-start-ephemeral"), "-o", "origin", "-d", "-P", str(runtime.lxcpath)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    assert name.startswith("origin_") and lifecycle.info(runtime.ctx, runtime.ref(name)).state is State.RUNNING
    lifecycle.stop(runtime.ctx, runtime.ref(name), kill=True)
    assert sorted(os.listdir(runtime.lxcpath)) == ["origin"]


def test_an_ephemeral_container_whose_monitor_was_killed_is_destroyed_by_the_next_command(runtime: Runtime) -> None:
    origin = runtime.create("origin")
    clone, _ = lifecycle.start_ephemeral(runtime.ctx, origin, name="crashy")
    runtime.ref("crashy")
    record = read_record(clone)
    assert record is not None
    os.kill(record.monitor_pid, signal.SIGKILL)
    assert wait_until(lambda: not is_running(clone))
    assert (runtime.lxcpath / "crashy").is_dir()  # nobody cleaned up yet
    # Any next runtime command, even about another container, sweeps it away.
    lifecycle.start(runtime.ctx, origin)
    assert not (runtime.lxcpath / "crashy").exists() and read_record(clone) is None
    lifecycle.stop(runtime.ctx, origin, kill=True)


def test_an_ephemeral_clone_that_cannot_start_is_destroyed(runtime: Runtime) -> None:
    origin = runtime.create("origin", config=[("lxc.init.cmd", "/no/such/init")])
    with pytest.raises(Exception, match="the rootfs has no /no/such/init"):
        lifecycle.start_ephemeral(runtime.ctx, origin, name="broken")
    runtime.ref("broken")
    assert sorted(os.listdir(runtime.lxcpath)) == ["origin"]
