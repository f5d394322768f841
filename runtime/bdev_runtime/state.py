"""A running container's record, kept where nothing survives a reboot.

The monitor writes ``<run>/bdev/containers/<hash>.json`` (``<run>`` as for bdev's temporary
mounts: ``/run`` for root) when it starts, and removes it when the container has stopped and
everything is cleaned up.  The record names the monitor by pid *and* start time, so a record
whose monitor is gone (killed with SIGKILL, a crash) is recognised as stale, never confused
with a new process that got the same pid.  The live state itself is asked from the monitor
over its command socket (:mod:`bdev_runtime.control`); the record is what is left to clean
up when there is no monitor to ask.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bdev.fsops import write_atomic
from bdev.mounts import mounts_root
from bdev.store.layout import ContainerRef
from bdev.store.running import fnv1a_64


class State(str, enum.Enum):
    """LXC's container states, as ``lxc-info -s`` prints them."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks (``/proc/PID/stat`` field 22), None when gone."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def is_alive(pid: int | None, started: str | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (an ended process
    not yet reaped by its parent, a zombie, does not)."""
    fields = _stat_fields(pid) if pid is not None else None
    return fields is not None and fields[0] != "Z" and fields[19] == started


@dataclass
class Record:
    """What the monitor of one container writes down.

    :param init_pid: the container's init as the host sees it (0 until it exists).
    """

    lxcpath: str
    name: str
    monitor_pid: int
    monitor_started: str
    state: str = State.STARTING.value
    init_pid: int = 0
    init_started: str | None = None

    @property
    def ref(self) -> ContainerRef:
        return ContainerRef(Path(self.lxcpath), self.name)

    def monitor_alive(self) -> bool:
        """Whether the monitor that wrote this record still runs."""
        return is_alive(self.monitor_pid, self.monitor_started)

    def init_alive(self) -> bool:
        """Whether the container's init recorded here still runs."""
        return bool(self.init_pid) and is_alive(self.init_pid, self.init_started)


def records_dir() -> Path:
    """Where records live: beside bdev's temporary mounts."""
    return mounts_root().parent / "containers"


def record_path(ref: ContainerRef) -> Path:
    """The record file of ``ref``: named by the hash LXC uses for long socket names."""
    return records_dir() / f"{fnv1a_64(f'{ref.lxcpath}/{ref.name}'.encode()):016x}.json"


def _load(path: Path) -> Record | None:
    try:
        return Record(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_record(ref: ContainerRef) -> Record | None:
    """``ref``'s record, or None (none, or unreadable: a half-written one is never left,
    records are written atomically)."""
    return _load(record_path(ref))


def all_records() -> list[Record]:
    """Every readable record (of any lxcpath)."""
    try:
        paths = sorted(records_dir().glob("*.json"))
    except OSError:
        return []
    return [record for record in map(_load, paths) if record is not None]


def write_record(record: Record) -> None:
    """Write (or replace) ``record`` atomically."""
    path = record_path(record.ref)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(asdict(record), indent=1) + "\n", mode=0o600)


def remove_record(ref: ContainerRef) -> None:
    """Forget ``ref``'s record (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(ref))
