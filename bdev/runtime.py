"""The container runtime (the ``bdev-runtime`` distribution), when it is installed.

bdev's core does not need it: the core only stores containers.  Where the core shows or
changes a container's life (its state in ``bdev info``, ``bdev ls`` and ``lxc-ls``; stopping
it before ``lxc-destroy -f``; the Python API's ``start``/``stop``/``attach_wait``), it imports
the runtime's :mod:`bdev_runtime.status` or :mod:`bdev_runtime.lifecycle` here, lazily, and
degrades when it is missing: the state is then RUNNING or STOPPED as the command socket says.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import NotSupported
from .i18n import _

PACKAGE = "bdev_runtime"


def runtime_module(name: str) -> ModuleType | None:
    """The runtime's module ``name`` (``status``, ``lifecycle``, ``attach``), or None when
    bdev-runtime is not installed.  An import error inside an installed runtime is raised."""
    try:
        return importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (PACKAGE, f"{PACKAGE}.{name}"):
            return None
        raise


def require_runtime(name: str, doing: str, container: str) -> ModuleType:
    """:func:`runtime_module`, or a one-sentence refusal saying that ``doing`` needs it.

    :raises NotSupported: bdev-runtime is not installed.
    """
    module = runtime_module(name)
    if module is None:
        raise NotSupported(_(
            "{doing} needs bdev-runtime, which is not installed"
        ).format(doing=doing), container=container)
    return module
