"""The local cache of downloaded images and template results, outside any checkout or lxcpath.

``$BDEV_CACHE_DIR`` if set, else ``/var/cache/bdev`` for root and ``$XDG_CACHE_HOME/bdev``
(``~/.cache/bdev``) for other users.  Each entry is filled in a staging directory beside it
and swapped in atomically under a lock, so a crash or a concurrent caller sees either the old
entry or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bdev.fsops import fsync_dir, remove_tree, rename_exchange, write_atomic
from bdev.store.lock import locked_file

#: Seconds to wait for another process filling the same cache entry (a debootstrap run can
#: take minutes).
LOCK_TIMEOUT = 1800.0
META = "cache.json"


def cache_root() -> Path:
    """The cache's top directory (not created)."""
    configured = os.environ.get("BDEV_CACHE_DIR")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/bdev")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bdev"


@contextlib.contextmanager
def entry_lock(entry: Path, what: str) -> Iterator[None]:
    """Hold the lock of the cache entry ``entry`` (a file ``.<name>.lock`` beside it)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with locked_file(entry.parent / f".{entry.name}.lock", timeout=LOCK_TIMEOUT, what=what):
        yield


@contextlib.contextmanager
def staging_dir(entry: Path) -> Iterator[Path]:
    """A fresh directory beside ``entry`` (same filesystem), removed afterwards unless it
    was installed with :func:`install_dir`."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.staging-"))
    try:
        yield staging
    finally:
        remove_tree(staging)


def install_dir(staging: Path, entry: Path) -> None:
    """Make ``staging`` the entry ``entry`` atomically; the old entry, if any, is deleted after."""
    if entry.exists():
        rename_exchange(staging, entry)  # staging now holds the old entry; its context removes it
    else:
        os.rename(staging, entry)
    fsync_dir(entry.parent)


@dataclass(frozen=True)
class CacheRecord:
    """What is known about a cached image: where and when it came from, when it expires."""

    build_id: str
    server: str
    fetched_at: float
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        """Whether a newer build should be fetched."""
        return (time.time() if now is None else now) >= self.expires_at

    def save(self, directory: Path) -> None:
        """Write the record into the entry's directory."""
        write_atomic(directory / META, json.dumps(self.__dict__, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "CacheRecord | None":
        """The record of a cache entry, or None if there is none or it is unreadable."""
        try:
            data = json.loads((directory / META).read_text())
            return cls(str(data["build_id"]), str(data["server"]), float(data["fetched_at"]), float(data["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
