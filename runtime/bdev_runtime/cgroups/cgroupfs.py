"""The cgroup filesystem operations the container's cgroup is made of: make a cgroup (and the
parents it needs), write and read its files, list and signal its processes, freeze it,
delete it.  Everything here works on plain paths; :mod:`.group` decides which paths."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from .hierarchy import Hierarchy

PROCS = "cgroup.procs"
SUBTREE_CONTROL = "cgroup.subtree_control"
REMOVE_TIMEOUT = 5.0
FREEZE_TIMEOUT = 5.0


def write_file(path: Path, value: str) -> None:
    """Write ``value`` to the cgroup file ``path`` in one ``write`` (cgroup files take one
    value per write).

    :raises OSError: as the kernel reports it (``EINVAL`` for a value it refuses, ``EBUSY``
        for a limit below current usage, ``ENOENT`` for a missing file).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as exc:  # name the file, as os.open does
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def read_file(path: Path) -> str | None:
    """The content of ``path`` without the final newline, or None when it cannot be read."""
    try:
        return path.read_text().rstrip("\n")
    except OSError:
        return None


def make_cgroup(hierarchy: Hierarchy, base: Path, target: Path, controllers: frozenset[str] = frozenset(), *,
                exclusive: bool = False) -> list[Path]:
    """Make ``target`` and the missing cgroups between ``base`` and it; returns the ones made,
    top first.  On v1 a new ``cpuset`` cgroup gets its parent's CPUs and memory nodes (the
    kernel leaves them empty, which refuses every process).  On v2 ``controllers`` are enabled
    in the ``cgroup.subtree_control`` of every cgroup from ``base`` to ``target``'s parent.

    :param exclusive: ``target`` itself must be new (``mkdir`` decides, so of two callers
        racing for one name exactly one gets it).
    :raises FileExistsError: ``exclusive`` and ``target`` exists; the parents made are removed.
    :raises OSError: a directory could not be made or a controller not enabled.
    """
    made: list[Path] = []
    chain = [target, *target.parents]
    chain = list(reversed(chain[: chain.index(base)])) if base in chain else [target]
    parent = base
    for directory in chain:
        if hierarchy.version == 2 and controllers:
            enable_controllers(parent, controllers)
        try:
            directory.mkdir()
            made.append(directory)
        except FileExistsError:
            if exclusive and directory == target:
                for leftover in reversed(made):
                    remove_if_empty(leftover)
                raise
        if hierarchy.version == 1 and "cpuset" in hierarchy.controllers:
            _inherit_cpuset(parent, directory)
        parent = directory
    return made


def _inherit_cpuset(parent: Path, child: Path) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read_file(child / name):
            value = read_file(parent / name)
            if value:
                write_file(child / name, value)


def enable_controllers(directory: Path, controllers: frozenset[str]) -> None:
    """Enable ``controllers`` for the children of the v2 cgroup ``directory`` (those already
    enabled are left alone)."""
    enabled = set((read_file(directory / SUBTREE_CONTROL) or "").split())
    missing = sorted(set(controllers) - enabled)
    if missing:
        write_file(directory / SUBTREE_CONTROL, " ".join(f"+{name}" for name in missing))


def cgroup_pids(directory: Path) -> list[int]:
    """Every process in ``directory`` and the cgroups below it (a container may make its own)."""
    found: list[int] = []
    for current, dirs, _files in os.walk(directory):
        text = read_file(Path(current) / PROCS)
        if text:
            found.extend(int(pid) for pid in text.split())
    return found


def signal_pids(pids: list[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids`` (processes that are already gone are skipped)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def freeze(hierarchy: Hierarchy, directory: Path, frozen: bool) -> bool:
    """Freeze (or thaw) ``directory`` so no process in it can fork while it is being killed:
    ``cgroup.freeze`` on v2, ``freezer.state`` on a v1 freezer hierarchy.  Returns whether the
    hierarchy could; waits for a freeze to complete."""
    if hierarchy.version == 2:
        control, value, done = directory / "cgroup.freeze", "1" if frozen else "0", None
        events = directory / "cgroup.events"
    elif "freezer" in hierarchy.controllers:
        control, value, done = directory / "freezer.state", "FROZEN" if frozen else "THAWED", "FROZEN"
        events = directory / "freezer.state"
    else:
        return False
    try:
        write_file(control, value)
    except OSError:
        return False
    if not frozen:
        return True
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while time.monotonic() < deadline:
        text = read_file(events) or ""
        if (done is None and "frozen 1" in text) or (done is not None and text.strip() == done):
            return True
        time.sleep(0.01)
    return True  # not frozen in time: signalling still goes on, just without the fork guard


def kill_cgroup(directory: Path) -> bool:
    """SIGKILL everything in a v2 cgroup at once with ``cgroup.kill`` (Linux 5.14); False
    when the kernel has no such file."""
    try:
        write_file(directory / "cgroup.kill", "1")
        return True
    except FileNotFoundError:
        return False


def remove_cgroup(directory: Path, *, timeout: float = REMOVE_TIMEOUT) -> None:
    """Delete ``directory`` and the cgroups below it, deepest first, retrying ``EBUSY`` (a
    process that just died is still being released) for up to ``timeout`` seconds.  A missing
    directory is no error.

    :raises OSError: ``EBUSY`` persisted, or another failure.
    """
    if not directory.is_dir():
        return
    children = sorted((Path(cur) for cur, _d, _f in os.walk(directory)), key=lambda p: len(p.parts), reverse=True)
    for child in children:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                child.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)


def remove_if_empty(directory: Path) -> bool:
    """Delete ``directory`` if it holds no cgroup and no process; returns whether it is gone."""
    try:
        directory.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
