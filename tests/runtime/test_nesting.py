"""Nested containers: a container configured for nesting runs bdev inside itself.

The outer busybox container gets LXC's nesting settings (``lxc.mount.auto = cgroup:rw proc:rw
sys:rw``, ``lxc.apparmor.profile = unconfined``) and, read-only, the host's ``/usr`` (Python)
and bdev's own tree (its sources and virtual environment), as the sshd template binds ``/usr``.
Inside it, through attach, bdev creates a busybox container, clones it as an overlay snapshot,
starts the clone as a container of its own, stops and destroys both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import bdev
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions

from runtime_helpers import Runtime

pytestmark = [pytest.mark.root]

NESTING = [("lxc.mount.auto", "cgroup:rw proc:rw sys:rw"), ("lxc.apparmor.profile", "unconfined")]
LXC_NESTING_CONF = Path("/usr/share/lxc/config/nesting.conf")


def _bind(path: Path) -> tuple[str, str]:
    """A read-only bind of a host directory at the same place inside."""
    if any(c.isspace() for c in str(path)):
        pytest.skip(f"{path} has white space, which this test's fstab lines do not escape")
    return "lxc.mount.entry", f"{path} {str(path).lstrip('/')} none ro,bind,create=dir 0 0"


def host_software() -> list[tuple[str, str]]:
    """Bind entries giving the container the host's Python and this bdev (sources, plugins
    and virtual environment)."""
    tree = Path(bdev.__file__).resolve().parents[1]
    entries = [_bind(Path("/usr")), _bind(tree)]
    venv = Path(sys.prefix)
    if not venv.resolve().is_relative_to(tree):
        entries.append(_bind(venv))
    if Path("/lib64").is_dir():  # the dynamic loader's path on x86-64 (a merged-/usr symlink here)
        entries.append(("lxc.mount.entry", "/lib64 lib64 none ro,bind,create=dir 0 0"))
    return entries


def inside(rt: Runtime, name: str, script: str, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``sh -c script`` in ``name`` with the inner bdev on ``PATH``; status and output."""
    capfd.readouterr()
    path = f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    status = lifecycle.attach(rt.ctx, rt.ref(name), ["/bin/sh", "-c", f"exec 2>&1; {script}"],
                              AttachOptions(clear_env=True, set_vars={"PATH": path}))
    return status, capfd.readouterr().out


def test_bdev_runs_inside_a_nesting_container(runtime: Runtime, capfd: pytest.CaptureFixture[str]) -> None:
    runtime.create("outer", config=NESTING + host_software())
    lifecycle.start(runtime.ctx, runtime.ref("outer"))
    rootfs = runtime.lxcpath / "outer" / "rootfs"
    try:
        script = ("set -e; mkdir -p /tmp /var/lib/lxc; echo 'lxc.net.0.type = empty' > /tmp/inner.conf; "
                  "bdev create -t busybox -f /tmp/inner.conf c1; "
                  "bdev clone -s -B overlay c1 c2; "
                  "bdev start c2; "
                  "bdev attach c2 -- sh -c 'echo host=$(hostname) pid1=$(cat /proc/1/comm); "
                  "grep -c \" / overlay \" /proc/mounts'; "
                  "bdev ls; "
                  "bdev stop c2")
        status, out = inside(runtime, "outer", script, capfd)
        assert status == 0, out
        assert "created c1 on dir" in out and "cloned c1 to c2: overlay layer" in out
        assert "host=c2 pid1=init" in out
        assert (rootfs / "var/lib/lxc/c2/overlay/delta").is_dir()  # made inside, seen in the outer rootfs
        assert (rootfs / "var/lib/lxc/c1/rootfs/bin/busybox").is_file()
        status, out = inside(runtime, "outer", "set -e; bdev destroy c2; bdev destroy c1; ls /var/lib/lxc", capfd)
        assert status == 0, out
        assert "destroyed c2" in out and "destroyed c1" in out
        assert not list((rootfs / "var/lib/lxc").iterdir())
    finally:
        lifecycle.stop(runtime.ctx, runtime.ref("outer"), kill=True)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(rootfs) not in mounts


def test_lxcs_nesting_include_starts_with_uncovered_proc_and_sys(runtime: Runtime,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    if not LXC_NESTING_CONF.is_file():
        pytest.skip(f"LXC's {LXC_NESTING_CONF} is not installed here (Debian package lxc)")
    ref = runtime.create("included", config=[("lxc.include", str(LXC_NESTING_CONF))])
    lifecycle.start(runtime.ctx, ref)
    try:
        status, out = inside(runtime, "included", "grep ' /dev/.lxc/' /proc/mounts", capfd)
        assert status == 0, out
        assert [line.split()[1:3] for line in out.splitlines()] == [["/dev/.lxc/proc", "proc"], ["/dev/.lxc/sys", "sysfs"]]
    finally:
        lifecycle.stop(runtime.ctx, ref, kill=True)
