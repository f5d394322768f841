"""The runtime's parts working together in a real container: capabilities and seccomp from
the security plan, the container's cgroup, a veth pair from the network plan, the console,
and the rest of bdev refusing to touch a running container."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import Busy
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions
from bdev_runtime.state import State

from runtime_helpers import Runtime, wait_until

pytestmark = [pytest.mark.root]

VENV_BIN = Path(sys.executable).parent
CAP_SYS_MODULE = 16
CAP_SYS_TIME = 25


def run_inside(rt: Runtime, name: str, script: str, capfd: pytest.CaptureFixture[str], **options: object) -> str:
    capfd.readouterr()
    status = lifecycle.attach(rt.ctx, rt.ref(name), ["/bin/sh", "-c", script], AttachOptions(**options))  # type: ignore[arg-type]
    out = capfd.readouterr().out
    assert status == 0, out
    return out


def test_init_and_attached_commands_lose_the_dropped_capabilities(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    ref = runtime.create("caps")  # the busybox config drops sys_module mac_admin mac_override sys_time
    lifecycle.start(runtime.ctx, ref)
    init_pid = lifecycle.info(runtime.ctx, ref).init_pid
    status = Path(f"/proc/{init_pid}/status").read_text()
    bounding = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")), 16)
    assert not bounding & (1 << CAP_SYS_MODULE) and not bounding & (1 << CAP_SYS_TIME)
    out = run_inside(runtime, "caps", "grep CapBnd /proc/self/status", capfd)
    attached = int(out.split()[1], 16)
    assert not attached & (1 << CAP_SYS_MODULE)
    elevated = run_inside(runtime, "caps", "grep CapBnd /proc/self/status", capfd, elevated=True)
    assert int(elevated.split()[1], 16) & (1 << CAP_SYS_MODULE)  # -e keeps them
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_the_container_lives_in_its_own_cgroup_and_it_is_removed_afterwards(runtime: Runtime) -> None:
    ref = runtime.create("grp", config=[("lxc.cgroup.pids.max", "64")] if Path("/sys/fs/cgroup/pids").is_dir() else [])
    lifecycle.start(runtime.ctx, ref)
    init_pid = lifecycle.info(runtime.ctx, ref).init_pid
    groups = Path(f"/proc/{init_pid}/cgroup").read_text()
    assert "lxc.payload.grp" in groups, groups
    lifecycle.stop(runtime.ctx, ref, kill=True)
    leftovers = [str(p) for p in Path("/sys/fs/cgroup").glob("*/lxc.payload.grp")] + \
        [str(p) for p in Path("/sys/fs/cgroup").glob("lxc.payload.grp")]
    assert leftovers == []


def test_a_veth_pair_without_a_bridge(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    host_side = f"vbdrt{os.getpid() % 100000}"
    # Not busybox's init: its rcS runs udhcpc, whose deconfig step flushes the address (under
    # real LXC too).
    ref = runtime.create("net", config=[("lxc.net.0.type", "veth"), ("lxc.net.0.veth.pair", host_side),
                                        ("lxc.net.0.ipv4.address", "10.213.7.2/24"), ("lxc.net.0.flags", "up"),
                                        ("lxc.init.cmd", "/bin/sleep 1000")])
    lifecycle.start(runtime.ctx, ref)
    assert Path(f"/sys/class/net/{host_side}").exists()
    out = run_inside(runtime, "net", "ip addr show eth0", capfd)
    assert "10.213.7.2" in out
    info = subprocess.run([str(VENV_BIN / "lxc-info"), "-n", "net", "-P", str(runtime.lxcpath), "-i"],
                          capture_output=True, text=True, timeout=60)
    assert info.stdout == "IP:             10.213.7.2\n", info.stderr
    lifecycle.stop(runtime.ctx, ref, kill=True)
    assert wait_until(lambda: not Path(f"/sys/class/net/{host_side}").exists(), 10)


def test_bdev_refuses_to_destroy_or_restore_a_container_it_runs(runtime: Runtime) -> None:
    ref = runtime.create("busy")
    lifecycle.start(runtime.ctx, ref)
    container = Container("busy", runtime.lxcpath)
    assert container.state == "RUNNING"
    with pytest.raises(Busy, match="is running"):
        container.destroy()
    lifecycle.stop(runtime.ctx, ref, kill=True)
    assert container.state == "STOPPED"


def test_concurrent_starts_run_one_container(runtime: Runtime) -> None:
    runtime.create("race")
    argv = [str(VENV_BIN / "lxc-start"), "-n", "race", "-P", str(runtime.lxcpath)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.stdout.close()  # type: ignore[union-attr]
        p.stderr.close()  # type: ignore[union-attr]
    assert sorted(code for code, _ in results) == [0, 1, 1], results
    assert all("is already running" in err for code, err in results if code)
    lifecycle.stop(runtime.ctx, runtime.ref("race"), kill=True)


def test_the_console_is_logged_and_foreground_start_ends_with_the_container(runtime: Runtime, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    runtime.create("cons", config=[("lxc.init.cmd", "/bin/sh -c 'echo hello from the console; sleep 30'"),
                                   ("lxc.console.logfile", str(log))])
    proc = subprocess.Popen([str(VENV_BIN / "lxc-start"), "-F", "-n", "cons", "-P", str(runtime.lxcpath)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: log.exists() and "hello from the console" in log.read_text(), 30)
        assert lifecycle.info(runtime.ctx, runtime.ref("cons")).state is State.RUNNING
        began = time.monotonic()
        lifecycle.stop(runtime.ctx, runtime.ref("cons"), kill=True)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - began < 20
    assert "hello from the console" in out  # -F copies the console to its standard output
    assert proc.returncode == 128 + 9, err  # the init was killed


def test_foreground_start_on_a_terminal_gives_the_console_to_that_terminal(runtime: Runtime) -> None:
    import pty
    import select

    runtime.create("tty")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(VENV_BIN / "lxc-start"), ["lxc-start", "-F", "-n", "tty", "-P", str(runtime.lxcpath)])
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return marker in seen

    try:
        assert read_until(b"activate this console"), seen  # busybox init's askfirst on /dev/console
        os.write(fd, b"\n")
        time.sleep(0.5)
        os.write(fd, b"echo on-$(hostname)-console\n")
        assert read_until(b"on-tty-console"), seen
    finally:
        with contextlib.suppress(lifecycle.NotRunning):
            lifecycle.stop(runtime.ctx, runtime.ref("tty"), kill=True)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 128 + 9


def test_a_memory_limit_kills_a_hog_and_a_pids_limit_stops_a_fork_bomb(runtime: Runtime,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    v1 = Path("/sys/fs/cgroup/memory").is_dir()
    memory_key = "lxc.cgroup.memory.limit_in_bytes" if v1 else "lxc.cgroup2.memory.max"
    pids_key = "lxc.cgroup.pids.max" if v1 else "lxc.cgroup2.pids.max"
    config = [(memory_key, "32M"), (pids_key, "20")]
    if v1 and Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists():
        config.append(("lxc.cgroup.memory.memsw.limit_in_bytes", "32M"))  # no escape into swap
    ref = runtime.create("limited", config=config)
    lifecycle.start(runtime.ctx, ref)
    capfd.readouterr()
    # A shell that keeps doubling a string in memory: the kernel's OOM killer ends it.
    hog = lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "x=y; while :; do x=$x$x; done"])
    assert hog == 128 + 9, hog
    # Twenty processes at most: the fork bomb's shell cannot fork any more, and gives up.
    bomb = lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "while :; do sleep 30 & done"])
    err = capfd.readouterr().err
    assert bomb != 0 and "can't fork" in err, (bomb, err)
    lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "kill $(pidof sleep)"])
    assert lifecycle.attach(runtime.ctx, ref, ["/bin/true"]) == 0
    assert lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    lifecycle.stop(runtime.ctx, ref, kill=True)
