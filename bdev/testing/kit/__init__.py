"""bdev's backend conformance kit: the contract every storage backend passes, as a pytest
plugin with the fixtures that make real storage for it.

Use it either way:

* ``pytest --bdev-backend=myfs`` (or ``bdev_backends = myfs`` in the ini file) runs the whole
  contract against registered backends;
* subclass the contract in your own test module, and pytest collects the inherited tests::

      from bdev.testing.kit import BackendContract

      class TestMyFs(BackendContract):
          backend_name = "myfs"

Capabilities a backend does not declare are skipped with the reason; a declared capability it
fails is reported as ``plugin <plugin> (backend <name>) claims <capability> but ...``.
"""

from __future__ import annotations

from typing import Any

from .storage import STORAGE_KINDS, LeakCheck, scratch_lxcpath, storage_problem

__all__ = ["BackendContract", "CRASH_STEPS", "STORAGE_KINDS", "LeakCheck", "Subject", "scratch_lxcpath", "storage_problem"]


def __getattr__(name: str) -> Any:
    """Import the contract on first use, so loading the pytest plugin stays cheap."""
    if name in ("BackendContract", "CRASH_STEPS"):
        from . import contract

        return getattr(contract, name)
    if name == "Subject":
        from .subject import Subject

        return Subject
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
