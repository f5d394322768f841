"""The runtime's command lines (``lxc-start/-info/-attach/-stop/-execute``, ``bdev start/stop``)
as programs, and interoperation with Debian's real LXC 5 in both directions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bdev_runtime import lifecycle
from bdev_runtime.state import State

from runtime_helpers import Runtime, wait_until

pytestmark = [pytest.mark.root]

VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def ours(prog: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run bdev's own ``prog`` (the virtualenv's script)."""
    return subprocess.run([str(VENV_BIN / prog), *map(str, args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def real(prog: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run real LXC's ``prog``, or skip naming what is missing."""
    found = shutil.which(prog, path=SYSTEM_PATH)
    if found is None:
        pytest.skip(f"real LXC's {prog} is not installed on the system path")
    return subprocess.run([found, *map(str, args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def real_start(lxcpath: Path, name: str) -> int:
    """Start ``name`` with real LXC's ``lxc-start``; its init's pid once LXC says RUNNING."""
    started = real("lxc-start", "-n", name, "-P", lxcpath)
    assert started.returncode == 0, started.stderr
    assert wait_until(lambda: "RUNNING" in real("lxc-info", "-n", name, "-P", lxcpath, "-s").stdout)
    return int(real("lxc-info", "-n", name, "-P", lxcpath, "-p", "-H").stdout.split()[-1])


def test_lxc_commands_start_attach_info_stop(runtime: Runtime) -> None:
    runtime.create("c1")
    lp = runtime.lxcpath
    started = ours("lxc-start", "-n", "c1", "-P", lp)
    assert started.returncode == 0, started.stderr
    info = ours("lxc-info", "-n", "c1", "-P", lp)
    lines = info.stdout.splitlines()
    assert lines[0] == "Name:           c1" and lines[1] == "State:          RUNNING" and lines[2].startswith("PID:")
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-s").stdout == "State:          RUNNING\n"
    attached = ours("lxc-attach", "-n", "c1", "-P", lp, "--clear-env", "-v", "X=1", "--", "/bin/sh", "-c",
                    "echo $X $(hostname); exit 9")
    assert attached.returncode == 9 and attached.stdout == "1 c1\n"
    again = ours("lxc-start", "-n", "c1", "-P", lp)
    assert again.returncode == 1 and again.stderr == "lxc-start: container 'c1': is already running.\n"
    stopped = ours("lxc-stop", "-n", "c1", "-P", lp, "-t", "20")
    assert stopped.returncode == 0, stopped.stderr
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-s").stdout == "State:          STOPPED\n"
    not_running = ours("lxc-stop", "-n", "c1", "-P", lp)
    assert not_running.returncode == 2 and not_running.stderr == "lxc-stop: container 'c1': is not running.\n"
    missing = ours("lxc-info", "-n", "nope", "-P", lp)
    assert missing.returncode == 1 and missing.stderr == f"lxc-info: container 'nope': no such container in {lp}.\n"


def test_lxc_execute_and_bdev_run(runtime: Runtime) -> None:
    runtime.create("app")
    done = ours("lxc-execute", "-n", "app", "-P", runtime.lxcpath, "--", "/bin/sh", "-c", "echo pid $$; exit 4")
    assert done.returncode == 4 and done.stdout == "pid 2\n", done.stderr
    done = ours("bdev", "-P", runtime.lxcpath, "run", "app", "--", "/bin/echo", "hello")
    assert done.returncode == 0 and done.stdout == "hello\n", done.stderr


def test_bdev_start_attach_stop(runtime: Runtime) -> None:
    runtime.create("c1")
    lp = runtime.lxcpath
    assert ours("bdev", "-P", lp, "start", "c1").returncode == 0
    assert lifecycle.info(runtime.ctx, runtime.ref("c1")).state is State.RUNNING
    attached = ours("bdev", "-P", lp, "attach", "c1", "--", "/bin/hostname")
    assert attached.returncode == 0 and attached.stdout == "c1\n"
    assert ours("bdev", "-P", lp, "stop", "c1", "-t", "20").returncode == 0
    assert lifecycle.info(runtime.ctx, runtime.ref("c1")).state is State.STOPPED


@pytest.mark.lxc
def test_real_lxc_info_start_and_stop_work_on_a_bdev_started_container(runtime: Runtime) -> None:
    ref = runtime.create("c1")
    lifecycle.start(runtime.ctx, ref)
    pid = lifecycle.info(runtime.ctx, ref).init_pid
    # Real lxc-info asks the monitor in LXC's own protocol (GET_STATE, GET_INIT_PID).
    shown = real("lxc-info", "-n", "c1", "-P", runtime.lxcpath)
    assert shown.stdout.splitlines() == ["Name:           c1", "State:          RUNNING", f"PID:            {pid}"]
    refused = real("lxc-start", "-n", "c1", "-P", runtime.lxcpath)
    assert "already running" in refused.stderr
    assert lifecycle.info(runtime.ctx, ref).init_pid == pid
    # Real lxc-stop -k: LXC's STOP command; it returns once the container has stopped.
    stopped = real("lxc-stop", "-k", "-n", "c1", "-P", runtime.lxcpath)
    assert stopped.returncode == 0, stopped.stderr
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED
    assert "STOPPED" in real("lxc-info", "-n", "c1", "-P", runtime.lxcpath, "-s").stdout


@pytest.mark.lxc
def test_bdev_starts_a_container_real_lxc_created(runtime: Runtime, tmp_path: Path) -> None:
    conf = tmp_path / "net.conf"
    conf.write_text("lxc.net.0.type = empty\n")
    created = real("lxc-create", "-n", "r1", "-P", runtime.lxcpath, "-t", "busybox", "-f", conf)
    assert created.returncode == 0, created.stderr
    ref = runtime.ref("r1")
    lifecycle.start(runtime.ctx, ref)
    out = ours("lxc-attach", "-n", "r1", "-P", runtime.lxcpath, "--", "/bin/sh", "-c", "hostname; cat /proc/1/cmdline")
    assert out.stdout.split("\n")[0] == "r1" and out.stdout.split("\n")[1].strip("\0") == "init"
    lifecycle.stop(runtime.ctx, ref, timeout=20)
    real("lxc-destroy", "-n", "r1", "-P", runtime.lxcpath)


@pytest.mark.lxc
def test_real_lxc_starts_a_bdev_clone_that_bdev_then_starts_too(runtime: Runtime) -> None:
    from bdev.api import Container

    runtime.create("base", config=[("lxc.apparmor.profile", "unconfined")])
    Container("base", runtime.lxcpath).clone("c2", snapshot=True, backend="overlay")
    runtime.ref("c2")
    started = real("lxc-start", "-n", "c2", "-P", runtime.lxcpath)
    assert started.returncode == 0, started.stderr
    try:
        assert wait_until(lambda: "RUNNING" in real("lxc-info", "-n", "c2", "-P", runtime.lxcpath, "-s").stdout)
        assert lifecycle.info(runtime.ctx, runtime.ref("c2")).managed_by == "lxc"
    finally:
        real("lxc-stop", "-k", "-n", "c2", "-P", runtime.lxcpath)
    assert wait_until(lambda: "STOPPED" in real("lxc-info", "-n", "c2", "-P", runtime.lxcpath, "-s").stdout)
    lifecycle.start(runtime.ctx, runtime.ref("c2"))
    lifecycle.stop(runtime.ctx, runtime.ref("c2"), kill=True)


@pytest.mark.lxc
def test_real_lxc_stop_halts_a_bdev_container_cleanly_and_lxc_wait_follows(runtime: Runtime, tmp_path: Path) -> None:
    # An init that records the halt signal it got, so a clean halt is told from a kill.
    marker = tmp_path / "halted"
    runtime.create("c1", config=[
        ("lxc.init.cmd", "/bin/sh -c 'trap \"touch /srv/halted; exit 0\" USR1; while :; do sleep 1; done'"),
        ("lxc.signal.halt", "SIGUSR1"),
        ("lxc.mount.entry", f"{tmp_path} srv none bind,create=dir 0 0"),
    ])
    lp = runtime.lxcpath
    lifecycle.start(runtime.ctx, runtime.ref("c1"))
    assert real("lxc-wait", "-n", "c1", "-P", lp, "-s", "RUNNING", "-t", "10").returncode == 0
    stopped = real("lxc-stop", "-n", "c1", "-P", lp, "-t", "20")
    assert stopped.returncode == 0, stopped.stderr
    assert marker.exists(), "real lxc-stop killed the container instead of sending lxc.signal.halt"
    assert real("lxc-wait", "-n", "c1", "-P", lp, "-s", "STOPPED", "-t", "10").returncode == 0
    assert lifecycle.info(runtime.ctx, runtime.ref("c1")).state is State.STOPPED
