"""The run's one temporary directory, and leaving nothing behind: on the way out (normal end,
error, Ctrl-C or SIGTERM) everything mounted below it is unmounted, its loop devices detached,
it is removed, and so are the LXC lock directories made for its lxcpaths."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bdev.command import run
from bdev.testing.storage import mount_table

INTERRUPTED: list[int] = []  # the signals received, so a child killed by the same Ctrl-C is not called a failure


def mounts_below(directory: Path) -> list[str]:
    """Mount points below ``directory``, deepest first."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    return sorted((m for m in mount_table() if m.startswith(prefix)), reverse=True)


def cleanup(workdir: Path) -> None:
    """Unmount whatever is still mounted below ``workdir``, detach its loop devices, remove it
    and the LXC lock directories made for its lxcpaths.  Ctrl-C is ignored meanwhile."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for mountpoint in mounts_below(workdir):
        if run(["umount", mountpoint], check=False).returncode != 0:
            time.sleep(1)
            if run(["umount", mountpoint], check=False).returncode != 0:
                run(["umount", "-l", mountpoint], check=False)
    for entry in Path("/sys/block").glob("loop*"):
        backing = entry / "loop" / "backing_file"
        with contextlib.suppress(OSError):
            if backing.read_text().strip().startswith(str(workdir.resolve()) + "/"):
                run(["losetup", "-d", f"/dev/{entry.name}"], check=False)
    left = mounts_below(workdir)
    if left:
        print(f"warning: still mounted, {workdir} kept: {', '.join(left)}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    remove_lock_dirs(workdir)


def remove_lock_dirs(workdir: Path) -> None:
    """Remove ``/run/lxc/lock/<lxcpath>`` of every lxcpath that was below ``workdir``."""
    with contextlib.suppress(Exception):
        from bdev.store.lxcpath import lock_dir

        locks = lock_dir(workdir.resolve())
        if locks.is_dir() and locks != lock_dir("/"):
            shutil.rmtree(locks, ignore_errors=True)


def on_interrupt(signum: int, frame: object) -> None:
    INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def on_terminate(signum: int, frame: object) -> None:
    INTERRUPTED.append(signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM SystemExit, both noted in INTERRUPTED, so
    the clean-up runs either way."""
    previous = signal.signal(signal.SIGINT, on_interrupt), signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def ignore_interrupts() -> None:
    """Ignore Ctrl-C (while unmounting: an unmount cut short leaves a mount behind)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def handle_interrupts() -> None:
    """Handle Ctrl-C again (see :func:`signals_handled`)."""
    signal.signal(signal.SIGINT, on_interrupt)
