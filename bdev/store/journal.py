"""The intent journal that makes multi-step operations crash-safe.

Before an operation changes anything it writes ``<container>/.bdev-journal.json`` naming
what it is about to create or swap; each later step updates it atomically; success removes
it.  The next command that takes the container's lock finds a leftover journal and either
rolls the operation back or completes it (:mod:`bdev.engine.recovery`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fsops import write_atomic
from ..i18n import _


class Journal:
    """A small JSON document at ``path``: ``op``, ``pid``, ``started`` and operation fields."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def begin(cls, path: Path, op: str, **fields: Any) -> "Journal":
        """Write a new journal for ``op``."""
        journal = cls(path, {"op": op, "pid": os.getpid(), "started": time.time(), **fields})
        journal._write()
        return journal

    @classmethod
    def load(cls, path: Path) -> "Journal | None":
        """The journal at ``path``, or None when there is none."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(_(
                "the operation journal {path} is unreadable: {exc}"
            ).format(path=path, exc=exc)) from None
        return cls(path, data)

    def update(self, **fields: Any) -> None:
        """Record progress (atomically)."""
        self.data.update(fields)
        self._write()

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def finish(self) -> None:
        """The operation completed: remove the journal."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _write(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True), mode=0o600)
