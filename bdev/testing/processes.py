"""Stopping the daemons a test started, by pid or by the pid file they wrote, and waiting
until they are gone (the Ceph daemons of :mod:`bdev.testing.ceph`, a zfs-fuse daemon)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def stop_process(pid: int, *, sig: int = signal.SIGKILL, timeout: float = 10.0) -> bool:
    """Send ``sig`` to ``pid`` and wait up to ``timeout`` seconds for it to exit.

    :return: whether it is gone (a pid that does not exist is gone).
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def stop_from_pidfile(pidfile: Path, *, sig: int = signal.SIGKILL, timeout: float = 10.0) -> bool:
    """:func:`stop_process` the daemon whose pid ``pidfile`` holds, then remove the file.

    :return: whether a pid was read from the file (False: no file, or no pid in it).
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    stop_process(pid, sig=sig, timeout=timeout)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    return True
