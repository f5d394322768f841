"""Bad input and faults of the runtime: each refused or repaired with one sentence, and
nothing left behind (mounts, loop devices, processes, records, cgroups)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bdev.errors import Busy, ConfigError
from bdev.store.running import is_running
from bdev_runtime import lifecycle
from bdev_runtime.state import State, read_record

from runtime_helpers import Runtime, wait_until

pytestmark = [pytest.mark.root]


def test_starting_a_running_container_is_refused(runtime: Runtime) -> None:
    ref = runtime.create("c1")
    lifecycle.start(runtime.ctx, ref)
    first = lifecycle.info(runtime.ctx, ref).init_pid
    with pytest.raises(Busy, match=r"^container 'c1': is already running\.$"):
        lifecycle.start(runtime.ctx, ref)
    assert lifecycle.info(runtime.ctx, ref).init_pid == first
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_stopping_a_stopped_container_says_so(runtime: Runtime) -> None:
    ref = runtime.create("c1")
    with pytest.raises(lifecycle.NotRunning, match=r"^container 'c1': is not running\.$") as caught:
        lifecycle.stop(runtime.ctx, ref)
    assert caught.value.exit_code == 2  # as LXC's lxc-stop


def test_a_rootfs_without_init_is_refused_and_nothing_stays(runtime: Runtime) -> None:
    ref = runtime.create("noinit")
    (runtime.lxcpath / "noinit/rootfs/sbin/init").unlink()
    with pytest.raises(Exception, match=r"container 'noinit': the rootfs has no /sbin/init to run as init"):
        lifecycle.start(runtime.ctx, ref)
    assert not is_running(ref) and read_record(ref) is None
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED


def test_a_bad_config_value_is_refused_before_anything_starts(runtime: Runtime) -> None:
    ref = runtime.create("bad", config=[("lxc.signal.stop", "SIGNOPE")])
    with pytest.raises(ConfigError, match=r"container 'bad': lxc.signal.stop = SIGNOPE: not a signal"):
        lifecycle.start(runtime.ctx, ref)
    assert read_record(ref) is None


def test_a_killed_monitor_takes_its_container_down_and_the_next_command_cleans_up(runtime: Runtime) -> None:
    ref = runtime.create("c1")
    lifecycle.start(runtime.ctx, ref)
    record = read_record(ref)
    assert record is not None and record.init_pid
    init_pid = record.init_pid
    os.kill(record.monitor_pid, signal.SIGKILL)
    # The parent-death signals end the container with its monitor; its mount namespace goes too.
    assert wait_until(lambda: not Path(f"/proc/{init_pid}").exists() or
                      Path(f"/proc/{init_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    assert wait_until(lambda: not is_running(ref))
    assert read_record(ref) is not None  # the stale record is what is left to clean up
    info = lifecycle.info(runtime.ctx, ref)  # the next command sees the truth and cleans up
    assert info.state is State.STOPPED
    assert read_record(ref) is None
    # and the container starts again
    lifecycle.start(runtime.ctx, ref)
    assert lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    lifecycle.stop(runtime.ctx, ref, kill=True)
