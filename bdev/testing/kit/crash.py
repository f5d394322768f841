"""Running a bdev operation in a child process that is SIGKILLed at a marked step
(``BDEV_FAULT``), with the same registry as the test (extra plugins re-imported by module)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...registry import Registry

CRASH_STEPS: tuple[str, ...] = (
    "create:after-rootfs",
    "create:after-template",
    "clone:after-rootfs",
    "clone:before-commit",
    "snapshot:after-rootfs",
    "restore:after-stage",
    "restore:after-swap",
    "restore:after-config",
    "destroy:after-rootfs",
)
"""The marked steps (``bdev.engine.faults.checkpoint``) the contract kills a child at."""


def transferable(extra_plugins: Sequence[tuple[str, object]]) -> tuple[list[tuple[str, str]], str | None]:
    """``(name, module name)`` pairs a child can import for ``extra_plugins``, and why not if
    one of them is not a module."""
    specs = []
    for name, plugin in extra_plugins:
        if not isinstance(plugin, types.ModuleType):
            return [], f"extra plugin {name} is not a module, so a crash-test child cannot load it"
        specs.append((name, plugin.__name__))
    return specs, None


def child_registry(specs: Sequence[tuple[str, str]]) -> "Registry":
    """In the child: the installed plugins plus the extra plugin modules named in ``specs``."""
    from ...engine.context import default_registry
    from ...registry import load_registry
    from ...store.lxcpath import global_settings

    if not specs:
        return default_registry()
    return load_registry(global_settings(), extra_plugins=[(n, importlib.import_module(m)) for n, m in specs])


def run_killed(lxcpath: Path, code: str, step: str, specs: Sequence[tuple[str, str]], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a child with ``Container``, ``P`` (the lxcpath) and ``R`` (the registry)
    defined and ``BDEV_FAULT=step``; return the finished process."""
    env = dict(os.environ, BDEV_FAULT=step)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
    script = (
        "from bdev.api import Container, list_containers\n"
        "from bdev.testing.kit.crash import child_registry\n"
        f"R = child_registry({list(specs)!r})\n"
        f"P = {str(lxcpath)!r}\n"
        f"{code}\n"
    )
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def killed(result: subprocess.CompletedProcess) -> bool:
    """Whether the child died by SIGKILL (the fault fired)."""
    return result.returncode == -signal.SIGKILL
