"""Scratch lxcpaths on real filesystems, the hermetic lxc.conf and the leak check, as plain
functions and context managers (the fixtures in :mod:`bdev.testing.kit.fixtures` wrap them).

Everything made here is undone in ``finally`` blocks, so a failing test leaves no mount and no
loop device behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

STORAGE_KINDS: tuple[str, ...] = ("tmpdir", "btrfs", "xfs")
"""Where scratch lxcpaths live: the test disk, btrfs on a loop file, xfs on a loop file."""

LOOP_SIZE = "1G"


def storage_problem(kind: str) -> str | None:
    """Why a scratch lxcpath of ``kind`` cannot be made on this machine, or None."""
    if kind == "tmpdir":
        return None
    if kind not in STORAGE_KINDS:
        return f"unknown storage kind {kind!r} (known: {', '.join(STORAGE_KINDS)})"
    from ..storage import loop_filesystem_problem

    return loop_filesystem_problem(kind)


@contextlib.contextmanager
def scratch_lxcpath(kind: str, directory: Path) -> Iterator[Path]:
    """An empty lxcpath ``lxc`` made in ``directory`` on storage ``kind``; a loop filesystem is
    unmounted and its loop device released on exit, even when the body fails.

    :raises RuntimeError: the storage cannot be made here (check :func:`storage_problem` first).
    """
    problem = storage_problem(kind)
    if problem:
        raise RuntimeError(f"no {kind} lxcpath: {problem}")
    if kind == "tmpdir":
        path = directory / "lxc"
        path.mkdir()
        yield path
        return
    from ..storage import loop_filesystem

    with loop_filesystem(kind, directory, size=LOOP_SIZE) as mnt:
        path = mnt / "lxc"
        path.mkdir()
        yield path


def write_hermetic_lxc_conf(base: Path) -> Path:
    """Write a private ``lxc.conf`` in ``base`` whose default container config has no network
    and whose default lxcpath is inside ``base``; returns its path."""
    default_conf = base / "default.conf"
    default_conf.write_text("lxc.net.0.type = empty\n")
    conf = base / "lxc.conf"
    conf.write_text(f"lxc.lxcpath = {base / 'default-lxcpath'}\nlxc.default_config = {default_conf}\n")
    return conf


@contextlib.contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` for the body, then put back what was there."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class LeakCheck:
    """Mounts and loop devices that belong to one pytest session and process.

    Mounts count when they are under ``scratch_root`` (the session's temp tree), or are bdev
    temporary mounts of this process or of dead processes (which the next command would reap);
    other live processes' temporary mounts are not ours.  Loop devices count when their
    backing file is under ``scratch_root``.
    """

    def __init__(self, scratch_root: Path):
        self.scratch_root = str(scratch_root)

    def mounts(self) -> list[str]:
        """Our mounts, sorted."""
        from ...mounts import mounts_root
        from ..storage import mount_table

        temporary = str(mounts_root()) + "/"
        found = []
        for mount in mount_table():
            if mount.startswith(temporary):
                pid = mount[len(temporary):].split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and Path(f"/proc/{pid}").exists():
                    continue
                found.append(mount)
            elif self.scratch_root in mount:
                found.append(mount)
        return found

    def loops(self) -> list[str]:
        """Our loop devices (``loopN:backing file``), sorted."""
        from ..storage import loop_devices

        return [entry for entry in loop_devices() if self.scratch_root in entry]

    @contextlib.contextmanager
    def around(self, what: str = "the test") -> Iterator[None]:
        """Fail (AssertionError) if the body leaves a mount or a loop device of ours behind."""
        mounts, loops = self.mounts(), self.loops()
        yield
        leaked_mounts = sorted(set(self.mounts()) - set(mounts))
        leaked_loops = sorted(set(self.loops()) - set(loops))
        assert not leaked_mounts and self.mounts() == mounts, f"{what} leaked mounts: {leaked_mounts}"
        assert not leaked_loops and self.loops() == loops, f"{what} leaked loop devices: {leaked_loops}"
