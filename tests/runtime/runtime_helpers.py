"""Helpers of the runtime tests: busybox containers on real backends, stopped and checked for
leftovers (processes, records) afterwards.  (A plain module: ``conftest`` is a name every test
folder has, so tests import from here.)"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.records import CreateOptions
from bdev.store.layout import ContainerRef
from bdev.store.running import is_running
from bdev_runtime import lifecycle
from bdev_runtime.state import read_record

#: A busybox container that starts on a host without a bridge.
STARTABLE = [("lxc.net.0.type", "empty")]


def needs_root() -> None:
    """Skip unless root: namespaces, mounts and device nodes of a system container need it."""
    if os.geteuid() != 0:
        pytest.skip("starting a system container needs root (namespaces, mounts, device nodes)")


def processes_in_container_dir(lxcpath: Path) -> list[str]:
    """Live processes whose root or command line points into ``lxcpath`` (a leaked container
    or monitor; an ended monitor waiting for the host's init to reap it does not count)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if os.readlink(f"/proc/{pid}/root").startswith(str(lxcpath)):
                found.append(pid)
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if f'"lxcpath": "{lxcpath}"' in cmdline:
                found.append(f"{pid} {cmdline}")
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` every 50 ms for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Runtime:
    """Start/stop helpers for one lxcpath; :meth:`close` stops whatever is still running."""

    def __init__(self, lxcpath: Path):
        self.lxcpath = lxcpath
        self.ctx = lifecycle.context_for(lxcpath)
        self.refs: list[ContainerRef] = []

    def create(self, name: str, backend: str = "dir", config: list[tuple[str, str]] | None = None,
               **options: object) -> ContainerRef:
        """A busybox container made by bdev's template."""
        Container(name, self.lxcpath).create("busybox", backend, config=STARTABLE + (config or []),
                                             options=CreateOptions(**options))  # type: ignore[arg-type]
        return self.ref(name)

    def ref(self, name: str) -> ContainerRef:
        ref = self.ctx.ref(name)
        if ref not in self.refs:
            self.refs.append(ref)
        return ref

    def close(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(lifecycle.NotRunning, Exception):
                lifecycle.stop(self.ctx, ref, kill=True, timeout=0)
            wait_until(lambda: not is_running(ref) and read_record(ref) is None, 30)
            lifecycle.clean_stale(self.ctx, ref)
