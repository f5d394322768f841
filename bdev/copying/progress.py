"""Progress reporting for tree copies.

The engine talks to a :class:`Progress`; :func:`terminal_progress` gives a ``rich`` bar on a
terminal and a :class:`NullProgress` elsewhere.  ``rich`` is imported only when a bar is
really drawn, so importing this module costs nothing at CLI start-up.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """Receives the totals of a copy, then its advances.

    ``start`` is called once with the apparent size of all regular files (hard links counted
    once) and the number of entries below the top (files, directories, links, special files);
    ``advance`` is called as entries are copied, possibly for several at once; ``finish`` is
    called once at the end, also when the copy fails.
    """

    def start(self, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int, nfiles: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """A :class:`Progress` that shows nothing.  The engine skips its counting pre-walk for it."""

    def start(self, total_bytes: int, total_files: int) -> None:
        """Ignore the totals."""

    def advance(self, nbytes: int, nfiles: int = 1) -> None:
        """Ignore an advance."""

    def finish(self) -> None:
        """Nothing to close."""


class _RichProgress:
    """A byte-based ``rich`` bar on standard error, with the entry count beside it."""

    def __init__(self, description: str):
        self._description = description
        self._bar: Any = None
        self._task: Any = None
        self._files = 0
        self._total_files = 0

    def start(self, total_bytes: int, total_files: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        self._total_files = total_files
        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[entries]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self._description, total=max(total_bytes, 1), entries=self._entries())

    def advance(self, nbytes: int, nfiles: int = 1) -> None:
        if self._bar is None:
            return
        self._files += nfiles
        self._bar.update(self._task, advance=nbytes, entries=self._entries())

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _entries(self) -> str:
        return f"{self._files}/{self._total_files} entries"


def terminal_progress(description: str) -> Progress:
    """A progress bar labelled ``description`` drawn on standard error when it is a terminal,
    otherwise a :class:`NullProgress` (so logs and pipes stay clean)."""
    stream = sys.stderr
    if stream is not None and hasattr(stream, "isatty") and stream.isatty():
        return _RichProgress(description)
    return NullProgress()
