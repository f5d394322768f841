"""Timing: a cold start before every timed operation, and the figures kept for each row.

A :class:`Row` is one operation done by one tool on one backend (``snapshot`` by ``bdev CLI``
on ``btrfs``).  It holds every run's wall time, CPU time and the time of the ``sync`` just
after, or the reason it was not measured (``skipped``) or the error it ended with (``failed``).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Cache:
    """``sync`` plus dropping the page cache, dentries and inodes, between timed runs; or,
    warm, neither (a smoke test on a busy machine, where each ``sync`` waits for everyone's
    writes)."""

    def __init__(self, drop: bool = True) -> None:
        self.can_drop = drop
        self.warm = not drop
        self.note = "" if drop else "warm run: no sync and no page cache drop between runs (asked for)"

    def settle(self) -> None:
        """Write everything back, then drop the caches (once refused, never tried again)."""
        if self.warm:
            return
        os.sync()
        os.sync()  # a loop filesystem's writeback lands in the backing file's page cache first
        if not self.can_drop:
            return
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        except OSError as exc:
            self.can_drop = False
            self.note = f"page cache NOT dropped between runs ({exc.strerror}); timings are warm-cache"


def cpu_seconds() -> float:
    """User plus system time of this process and of its waited-for descendants (so a tool's
    helpers count too: LXC's rsync, rsync's receiver)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Stats:
    """Median, min and max of a list of seconds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> "Stats":
        return cls(statistics.median(values), min(values), max(values))


@dataclass
class Row:
    """One operation by one tool on one backend, over the runs."""

    backend: str
    operation: str
    tool: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    syncs: list[float] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    skipped: str | None = None
    failed: str | None = None

    @property
    def measured(self) -> bool:
        return bool(self.times) and self.failed is None

    @property
    def stats(self) -> Stats | None:
        return Stats.of(self.times) if self.measured else None

    @property
    def status(self) -> str:
        if self.failed is not None:
            return "failed"
        if self.times:
            return "measured"
        return "skipped"

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats
        found: dict[str, Any] = {
            "backend": self.backend, "operation": self.operation, "tool": self.tool, "status": self.status,
            "times": self.times, "cpu": self.cpu, "sync_after": self.syncs,
            "messages": sorted(set(self.messages)),
        }
        if stats:
            found.update(median=stats.median, min=stats.low, max=stats.high)
        if self.skipped is not None:
            found["reason"] = self.skipped
        if self.failed is not None:
            found["reason"] = self.failed
        return found


class Timer:
    """Takes cold timings into rows: settle, run, time the ``sync`` after."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def time(self, row: Row, action: Callable[[], Any]) -> Any:
        """Settle the caches, run ``action`` timed into ``row`` and return what it returned.
        An exception marks the row failed (the first error is kept) and is raised again."""
        self.cache.settle()
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        try:
            result = action()
        except Exception as exc:
            if row.failed is None:
                row.failed = one_line(exc)
            raise
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds() - cpu_before
        if not self.cache.warm:
            start = time.perf_counter()
            os.sync()
            row.syncs.append(time.perf_counter() - start)
        row.times.append(elapsed)
        row.cpu.append(cpu)
        return result


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def warm_times(action: Callable[[], Any], runs: int) -> list[float]:
    """Wall times of ``runs`` calls of ``action`` after one uncounted warm-up call."""
    action()
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        found.append(time.perf_counter() - start)
    return found
