"""Starting, attaching to and stopping busybox containers on every host backend, for real:
namespaces, mounts, pid 1, host name, exit statuses, and nothing left afterwards."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.testing.kit.storage import scratch_lxcpath, storage_problem
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions
from bdev_runtime.state import State

from runtime_helpers import Runtime, needs_root, wait_until

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def attached_output(rt: Runtime, name: str, script: str, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``sh -c script`` in the container; its status and standard output."""
    capfd.readouterr()
    status = lifecycle.attach(rt.ctx, rt.ref(name), ["/bin/sh", "-c", script], AttachOptions(clear_env=True))
    return status, capfd.readouterr().out


@contextlib.contextmanager
def runtime_on(kind: str, tmp_path: Path) -> Iterator[Runtime]:
    problem = storage_problem(kind)
    if problem:
        pytest.skip(f"no {kind} lxcpath here: {problem}")
    with scratch_lxcpath(kind, tmp_path) as lxcpath:
        rt = Runtime(lxcpath)
        try:
            yield rt
        finally:
            rt.close()


def make_container(rt: Runtime, backend: str) -> str:
    """A busybox container ``c1`` whose rootfs is on ``backend`` (``overlay-clone``: an overlay
    snapshot clone of a dir container, as ``lxc-copy -s`` makes)."""
    if backend == "overlay-clone":
        rt.create("base", "dir")
        Container("base", rt.lxcpath).clone("c1", snapshot=True, backend="overlay")
        rt.ref("c1")
    elif backend == "loop":
        rt.create("c1", "loop", fssize=64 * 1024 * 1024)
    else:
        rt.create("c1", backend)
    return "c1"


@pytest.mark.parametrize(("backend", "storage"), [("dir", "tmpdir"), ("btrfs", "btrfs"), ("overlay-clone", "tmpdir"),
                                                  ("loop", "tmpdir")])
def test_a_busybox_container_runs_on_each_backend(backend: str, storage: str, tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    needs_root()
    with runtime_on(storage, tmp_path) as rt:
        name = make_container(rt, backend)
        ref = rt.ref(name)
        assert lifecycle.info(rt.ctx, ref).state is State.STOPPED
        lifecycle.start(rt.ctx, ref)
        info = lifecycle.info(rt.ctx, ref)
        assert info.state is State.RUNNING and info.init_pid and info.managed_by == "bdev"
        assert Path(f"/proc/{info.init_pid}/exe").resolve().name == "busybox"

        status, out = attached_output(rt, name, "cat /proc/1/cmdline; echo; hostname; echo $container; "
                                                "cut -d' ' -f2,3 /proc/mounts; ls /dev; exit 7", capfd)
        assert status == 7
        lines = out.splitlines()
        assert lines[0].strip("\0") == "init" and lines[1] == name and lines[2] == "lxc"
        mounts = set(lines[3:])
        for expected in ("/proc proc", "/sys sysfs", "/dev tmpfs", "/dev/pts devpts", "/dev/shm tmpfs",
                         "/sys/fs/cgroup tmpfs"):
            assert expected in mounts, f"{expected!r} not mounted in the container: {sorted(mounts)}"
        assert {"null", "zero", "urandom", "console", "tty1", "ptmx", "pts"} <= set(lines), lines
        # The host does not see the container's mounts: it runs in its own mount namespace.
        host_mounts = Path("/proc/self/mountinfo").read_text()
        assert str(rt.lxcpath / name / "rootfs") + " " not in host_mounts

        lifecycle.stop(rt.ctx, ref, timeout=20)
        assert lifecycle.info(rt.ctx, ref).state is State.STOPPED
        assert not Path(f"/proc/{info.init_pid}").exists()


def test_execute_runs_one_command_under_a_minimal_init(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    runtime.create("app")
    ref = runtime.ref("app")
    capfd.readouterr()
    status = lifecycle.execute(runtime.ctx, ref, ["/bin/sh", "-c", "echo pid $$; echo $container; hostname; exit 3"])
    out = capfd.readouterr().out.splitlines()
    assert status == 3
    assert out == ["pid 2", "lxc", "app"]  # pid 1 is the minimal init
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED


def test_execute_forwards_signals_and_reports_them(runtime: Runtime) -> None:
    runtime.create("app")
    status = lifecycle.execute(runtime.ctx, runtime.ref("app"), ["/bin/sh", "-c", "kill -TERM $$; sleep 5"])
    assert status == 128 + 15


def test_stop_uses_the_halt_signal_and_kills_after_the_timeout(runtime: Runtime) -> None:
    # An init that ignores every halt signal: stop must fall back to SIGKILL after -t.
    runtime.create("stubborn", config=[("lxc.init.cmd", "/bin/sh -c 'trap \"\" USR1 PWR TERM; while :; do sleep 1; done'")])
    ref = runtime.ref("stubborn")
    lifecycle.start(runtime.ctx, ref)
    assert lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    began = time.monotonic()
    lifecycle.stop(runtime.ctx, ref, timeout=1)
    took = time.monotonic() - began
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED
    assert 1 <= took < 10, took


def test_attach_environment_like_lxc_attach(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    runtime.create("env")
    ref = runtime.ref("env")
    lifecycle.start(runtime.ctx, ref)
    os.environ["BDEV_TEST_KEPT"] = "kept"
    try:
        capfd.readouterr()
        lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "echo ${BDEV_TEST_KEPT:-none} $FOO"],
                         AttachOptions(set_vars={"FOO": "bar"}))
        lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "echo ${BDEV_TEST_KEPT:-none} $PATH"],
                         AttachOptions(clear_env=True))
        out = capfd.readouterr().out.splitlines()
    finally:
        del os.environ["BDEV_TEST_KEPT"]
    assert out[0] == "kept bar"
    assert out[1].startswith("none /usr/local/sbin:")
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_mount_entries_relative_optional_and_created(runtime: Runtime, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    runtime.create("m", config=[
        ("lxc.mount.entry", f"{shared} srv/shared none bind,ro,create=dir 0 0"),
        ("lxc.mount.entry", f"{tmp_path}/missing mnt/missing none bind,optional,create=dir 0 0"),
        ("lxc.mount.entry", "tmpfs run/scratch tmpfs size=1m,create=dir 0 0"),
    ])
    ref = runtime.ref("m")
    lifecycle.start(runtime.ctx, ref)
    capfd.readouterr()
    status = lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "cat /srv/shared/hello; touch /srv/shared/x; "
                                                                  "grep -c scratch /proc/mounts"])
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "from the host" and out[-1] == "1"
    assert status == 0 and not (shared / "x").exists()  # read-only bind
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_reboot_starts_a_new_init_and_a_reboot_inside_does_too(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    ref = runtime.create("rb")
    lifecycle.start(runtime.ctx, ref)
    first = lifecycle.info(runtime.ctx, ref).init_pid
    second = lifecycle.reboot(runtime.ctx, ref, timeout=20)  # busybox init reboots on SIGTERM
    assert second != first and lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    lifecycle.attach(runtime.ctx, ref, ["/bin/sh", "-c", "reboot"])
    assert wait_until(lambda: lifecycle.info(runtime.ctx, ref).init_pid not in (None, second), 30)
    status, out = attached_output(runtime, "rb", "hostname", capfd)
    assert status == 0 and out == "rb\n"
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_an_lxc_10_config_starts(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    """LXC 1.0's keys: ``lxc.rootfs`` without a prefix, ``lxc.utsname``, ``lxc.tty``,
    ``lxc.network.type``, ``lxc.haltsignal``."""
    runtime.create("old")
    rootfs = runtime.lxcpath / "old" / "rootfs"
    (runtime.lxcpath / "old" / "config").write_text(
        f"lxc.rootfs = {rootfs}\nlxc.utsname = oldname\nlxc.tty = 2\nlxc.pts = 1\nlxc.network.type = empty\n"
        "lxc.haltsignal = SIGUSR1\nlxc.mount.auto = proc sys cgroup\n"
    )
    ref = runtime.ref("old")
    lifecycle.start(runtime.ctx, ref)
    status, out = attached_output(runtime, "old", "hostname; ls /dev | grep -c '^tty[0-9]'", capfd)
    assert status == 0 and out.split() == ["oldname", "2"]
    lifecycle.stop(runtime.ctx, ref, timeout=20)  # SIGUSR1: busybox halts
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED
