"""The six container operations, timed for each tool on one backend's place.

One run of a tool is a chain on ``base``:

1. full copy ``base`` -> ``fc`` (then ``fc`` is removed, untimed);
2. snapshot clone ``base`` -> ``sc`` (removed);
3. container snapshot of ``base`` -> ``snapN``;
4. restore ``snapN`` to a new name ``rn``;
5. restore in place: ``rn`` gets a snapshot (untimed), then is restored to it;
6. destroy with snapshots: ``rn`` gets a second snapshot (untimed), then is destroyed with both.

Then ``base``'s snapshot is removed.  A step that fails marks its row failed with the tool's
message, and the steps that needed it are skipped, saying which.  The raw copy anchors (rsync,
cp) only do the full copy, into a directory on the same filesystem.  Tools and anchors take
turns in an order that rotates from run to run, so a slow spell of the disk does not land on
one of them only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from bdev.command import run

from places import BASE, Place
from timing import Row, Timer, one_line
from tools import Tool, anchor_argv

OPERATIONS = (
    "full copy",
    "snapshot clone",
    "container snapshot",
    "restore to new name",
    "restore in place",
    "destroy with snapshots",
)
ANCHORS = ("rsync", "cp")
ANCHOR_LABELS = {"rsync": "rsync -aHAXS", "cp": "cp -a --reflink"}
WORK_NAMES = ("fc", "sc", "rn")


class Rows:
    """The rows of one backend, made on first use."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.by_key: dict[tuple[str, str], Row] = {}

    def get(self, operation: str, tool: str) -> Row:
        return self.by_key.setdefault((operation, tool), Row(self.backend, operation, tool))

    def all(self) -> list[Row]:
        return list(self.by_key.values())


def run_backend(place: Place, tools: list[Tool], skipped_tools: dict[str, str], runs: int, timer: Timer,
                cleaner: Callable[[str], None], log: Callable[[str], None]) -> Rows:
    """Time every operation of every tool ``runs`` times on ``place``; ``cleaner(name)``
    removes a leftover container (untimed)."""
    rows = Rows(place.setup.label)
    for label, reason in skipped_tools.items():
        for operation in OPERATIONS:
            rows.get(operation, label).skipped = reason
    source = place.rootfs_source()
    for anchor in ANCHORS:
        if source is None:
            rows.get("full copy", ANCHOR_LABELS[anchor]).skipped = (
                f"{place.setup.label}'s rootfs is not a plain directory or image file to copy")
    turns: list[Callable[[], None]] = [lambda t=tool: run_chain(t, rows, timer, cleaner) for tool in tools]
    if source is not None:
        turns += [lambda a=anchor: run_anchor(a, source, place.scratch / "anchor-copy", rows, timer)
                  for anchor in ANCHORS]
    for r in range(runs):
        log(f"[{place.setup.label}] run {r + 1}/{runs}")
        shift = r % len(turns)
        for turn in turns[shift:] + turns[:shift]:
            turn()
    return rows


def run_anchor(anchor: str, source: Path, target: Path, rows: Rows, timer: Timer) -> None:
    """One timed raw copy of ``source`` into ``target``, removed afterwards (untimed)."""
    row = rows.get("full copy", ANCHOR_LABELS[anchor])
    with contextlib.suppress(Exception):  # the row keeps the error
        timer.time(row, lambda: run(anchor_argv(anchor, source, target)))
    run(["rm", "-rf", str(target)])


def run_chain(tool: Tool, rows: Rows, timer: Timer, cleaner: Callable[[str], None]) -> None:
    """One run of the six operations by ``tool`` (see the module's docstring)."""

    def step(operation: str, action: Callable[[], object], blocked: str | None = None) -> object:
        """Time ``action`` into its row, or, when ``blocked`` names a failed earlier step,
        record why it was not done (a row never measured says so)."""
        row = rows.get(operation, tool.label)
        if blocked is not None:
            if not row.times and row.failed is None and row.skipped is None:
                row.skipped = f"needs {blocked}, which did not succeed"
            return None
        try:
            return timer.time(row, action)
        except Exception:
            return None

    def untimed(action: Callable[[], object]) -> object | None:
        try:
            return action()
        except Exception as exc:
            tool.messages.append(f"untimed step failed: {one_line(exc)}")
            return None

    try:
        step("full copy", lambda: tool.copy(BASE, "fc", snapshot=False))
        cleaner("fc")
        step("snapshot clone", lambda: tool.copy(BASE, "sc", snapshot=True))
        cleaner("sc")
        snap = step("container snapshot", lambda: tool.snapshot(BASE))
        blocked = None if snap else "a container snapshot"
        step("restore to new name", lambda: tool.restore(BASE, str(snap), "rn"), blocked)
        ok = snap is not None and (tool.lxcpath / "rn" / "config").exists()
        blocked = None if ok else "a restore to a new name"
        rn_snap = untimed(lambda: tool.snapshot("rn")) if ok else None
        if ok and rn_snap is None:
            blocked = "a snapshot of the restored container (untimed)"
        step("restore in place", lambda: tool.restore("rn", str(rn_snap), None), blocked)
        if ok:
            untimed(lambda: tool.snapshot("rn"))
        step("destroy with snapshots", lambda: tool.destroy("rn"), blocked)
    finally:
        for name in WORK_NAMES:
            cleaner(name)
        cleaner(f"{BASE}/snapshots")
