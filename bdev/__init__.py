"""bdev: pluggable storage backends and snapshots for Linux system containers.

The public surface: :class:`Container` (the python3-lxc-like API, in :mod:`bdev.api`), the plugin
interface (:class:`Backend`, :data:`hookimpl`, the records) and the errors.  Names are imported
on first use, so ``import bdev`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Backend": "bdev.backend",
    "BdevError": "bdev.errors",
    "hookimpl": "bdev.hookspecs",
    "Capabilities": "bdev.records",
    "CloneOutcome": "bdev.records",
    "CopyStats": "bdev.records",
    "CreateOptions": "bdev.records",
    "Placement": "bdev.records",
    "Rootfs": "bdev.records",
    "Usage": "bdev.records",
    "Template": "bdev.templates",
    "TemplateContext": "bdev.templates",
    "Container": "bdev.api",
    "list_containers": "bdev.api",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .api import Container, list_containers
    from .backend import Backend
    from .errors import BdevError
    from .hookspecs import hookimpl
    from .records import Capabilities, CloneOutcome, CopyStats, CreateOptions, Placement, Rootfs, Usage
    from .templates import Template, TemplateContext


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("bdev")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0+unknown"
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bdev' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
