"""The mount table, and temporary mount points that survive nothing but their process.

The mount table is read from ``/proc/self/mountinfo`` once and then served from memory for as
long as the kernel says it has not changed: the open file is polled (``POLLPRI``, which the
kernel raises on every mount, unmount or remount in the namespace, by any process) before each
use, and read again when it has.  So an operation that asks several times reads it once,
and an answer is never older than the last mount change.

:func:`temporary_mountpoint` makes a directory ``<run>/bdev/mnt/<pid>-<starttime>-<random>``
(``<run>`` is ``/run`` for root, ``$XDG_RUNTIME_DIR`` or the temp directory otherwise).  If the
process dies with something mounted there (a crash, ``kill -9``), the next bdev command's
:func:`reap_stale_mounts` sees that the owner is gone, unmounts it (which frees an autoclear
loop device too) and removes the directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .command import run

log = logging.getLogger("bdev.mounts")

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``, paths unescaped.

    :param mountpoint: where it is mounted.
    :param fstype: the filesystem type (``btrfs``, ``overlay``, ``fuse.zfs`` ...).
    :param source: the mount source (``/dev/loop3``, a dataset name, ``overlay``).
    :param options: per-mount and superblock options together (``ro``, ``lowerdir=...``,
        ``user_subvol_rm_allowed``).
    :param root: the directory of the filesystem shown at the mount point (``/``, or the
        subdirectory of a bind mount; for a cgroup mount, the cgroup it shows).
    """

    mountpoint: str
    fstype: str
    source: str
    options: tuple[str, ...]
    root: str = "/"

    def has_option(self, name: str) -> bool:
        """Whether the option ``name`` (or ``name=value``) is set."""
        return any(o == name or o.startswith(name + "=") for o in self.options)

    def option(self, name: str) -> str | None:
        """The value of ``name=value``, or None."""
        return next((o[len(name) + 1 :] for o in self.options if o.startswith(name + "=")), None)

    def describe(self) -> str:
        """``/mnt/pool (btrfs on /dev/loop3)``, for messages."""
        return f"{self.mountpoint} ({self.fstype} on {self.source})"


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (space, tab, newline, backslash: ``\\040`` ...)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


class _MountTable:
    """This process's parsed ``/proc/self/mountinfo``, read again only when the kernel flags a
    change on the file kept open (``POLLPRI``/``POLLERR``, see ``proc(5)``).  The file is
    reopened in a forked child (a shared file description would let one process consume the
    other's change event) and after the process moves to another mount namespace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: int | None = None
        self._owner: tuple[int, int] | None = None  # (pid, mount namespace inode) of the open file
        self._poller: "select.poll | None" = None
        self._entries: list[MountEntry] | None = None
        self.reads = 0  # how many times the table was read and parsed (tests, diagnostics)

    def entries(self) -> list[MountEntry] | None:
        """The current mount table (a new list), or None without ``/proc``."""
        with self._lock:
            try:
                owner = (os.getpid(), os.stat("/proc/self/ns/mnt").st_ino)
            except OSError:
                owner = None
            if owner is None or owner != self._owner:
                self._close()
                if owner is None:  # no /proc: nothing to watch, read the file as it is
                    return _read_file(MOUNTINFO)
                self._open(owner)
            elif not self._changed():
                return None if self._entries is None else list(self._entries)
            self._entries = self._load()
            return None if self._entries is None else list(self._entries)

    def _open(self, owner: tuple[int, int]) -> None:
        try:
            self._handle = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self._owner = owner
        self._poller = select.poll()
        self._poller.register(self._handle, select.POLLPRI)

    def _changed(self) -> bool:
        if self._poller is None:
            return True
        events = self._poller.poll(0)  # also resets the file's change mark
        return any(mask & (select.POLLPRI | select.POLLERR) for _fd, mask in events)

    def _load(self) -> list[MountEntry] | None:
        if self._handle is None:
            return _read_file(MOUNTINFO)
        self.reads += 1
        try:
            os.lseek(self._handle, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(self._handle, 65536):
                chunks.append(chunk)
        except OSError:
            self._close()
            return _read_file(MOUNTINFO)
        return _parse(b"".join(chunks).decode("utf-8", "surrogateescape"))

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                os.close(self._handle)
        self._handle = self._poller = self._owner = self._entries = None

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held the parent's) and no
        table (the open file is the parent's)."""
        self._lock = threading.Lock()
        self._close()


_TABLE = _MountTable()
os.register_at_fork(after_in_child=_TABLE.after_fork)


def _read(mountinfo: str) -> list[MountEntry] | None:
    """The entries of ``mountinfo``: this process's table from :data:`_TABLE`, another file
    (tests) read now; None when it cannot be read."""
    return _TABLE.entries() if mountinfo == MOUNTINFO else _read_file(mountinfo)


def _read_file(mountinfo: str) -> list[MountEntry] | None:
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError:
        return None
    return _parse(text)


def _parse(text: str) -> list[MountEntry]:
    """The entries of a mountinfo text."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        options = fields[5].split(",") + (fields[sep + 3].split(",") if len(fields) > sep + 3 else [])
        options_unescaped = tuple(unescape(o) for o in options)  # split first: a comma in a value is \\054
        entries.append(MountEntry(unescape(fields[4]), fields[sep + 1], unescape(fields[sep + 2]), options_unescaped,
                                  unescape(fields[3])))
    return entries


def mount_entries(mountinfo: str = MOUNTINFO) -> list[MountEntry]:
    """Every mount of this mount namespace, in mount order (empty without ``/proc``)."""
    return _read(mountinfo) or []


def mount_points(mountinfo: str = MOUNTINFO) -> list[str] | None:
    """Every mount point of this mount namespace, or None without ``/proc``."""
    entries = _read(mountinfo)
    return None if entries is None else [e.mountpoint for e in entries]


def mount_at(path: str | os.PathLike[str]) -> MountEntry | None:
    """The topmost mount exactly at ``path``, or None when nothing is mounted there."""
    wanted = os.path.realpath(path)
    found = None
    for entry in mount_entries():
        if entry.mountpoint == wanted:
            found = entry
    return found


def mount_holding(path: str | os.PathLike[str]) -> MountEntry | None:
    """The mount an existing ``path`` lives on: the longest mount point above its real path
    (the last mounted where several share one)."""
    real = os.path.realpath(path)
    best: MountEntry | None = None
    for entry in mount_entries():
        point = entry.mountpoint
        if real == point or point == "/" or real.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best.mountpoint):
                best = entry
    return best


def mountpoints_of(source: str | os.PathLike[str]) -> list[str]:
    """Where ``source`` (``/dev/loop3``, a dataset) is mounted."""
    wanted = os.fspath(source)
    return [e.mountpoint for e in mount_entries() if e.source == wanted]


def mount_points_below(top: str | os.PathLike[str], mountinfo: str = MOUNTINFO) -> frozenset[str] | None:
    """Paths of the mount points strictly below ``top``, relative to it.

    Bind mounts of the same filesystem are found too (their ``st_dev`` does not change).
    Returns None when ``mountinfo`` cannot be read (no ``/proc``).
    """
    points = mount_points(mountinfo)
    if points is None:
        return None
    prefix = os.path.realpath(top).rstrip("/") + "/"
    return frozenset(p[len(prefix):] for p in points if p.startswith(prefix))


def mounts_root() -> Path:
    """Where bdev's temporary mount points live."""
    override = os.environ.get("BDEV_RUN_DIR")
    if override:
        base = Path(override)
    elif os.geteuid() == 0:
        base = Path("/run")
    else:
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / "bdev" / "mnt"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def temporary_mountpoint(label: str = "") -> Iterator[Path]:
    """A fresh directory to mount on, removed on exit (the caller unmounts first)."""
    root = mounts_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid = os.getpid()
    # os.urandom as secrets.token_hex does, without importing secrets (hmac, OpenSSL: slow to load)
    name = f"{pid}-{_start_time(pid)}-{os.urandom(4).hex()}" + (f"-{label}" if label else "")
    path = root / name
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()


def _is_mounted(path: Path) -> bool:
    return str(path) in (mount_points() or [])


def reap_stale_mounts() -> list[Path]:
    """Unmount and remove temporary mount points whose process is gone; returns them."""
    root = mounts_root()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    reaped = []
    for path in entries:
        pid, _, rest = path.name.partition("-")
        started = rest.split("-", 1)[0]
        if not pid.isdigit() or _start_time(int(pid)) == started:
            continue  # malformed, or its process still runs
        while _is_mounted(path):
            result = run(["umount", str(path)], check=False)
            if result.returncode != 0:
                run(["umount", "-l", str(path)], check=False)
                break
        with contextlib.suppress(OSError):
            path.rmdir()
            reaped.append(path)
            log.info("removed a temporary mount left by a dead process: %s", path)
    return reaped
