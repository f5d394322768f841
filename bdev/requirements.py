"""What a backend needs from the machine, declared up front and checked before use.

A backend lists :class:`Tool`, :class:`PythonModule` and :class:`KernelFilesystem`
requirements; :func:`unmet` turns them into human reasons (an empty list means usable).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .command import which


@dataclass(frozen=True)
class Tool:
    """An executable on ``PATH``; ``package`` names the Debian package that ships it."""

    name: str
    package: str | None = None
    optional: bool = False
    kind = "tool"

    def problem(self) -> str | None:
        if which(self.name):
            return None
        hint = f" (install {self.package})" if self.package else ""
        return f"{self.name} is not installed{hint}"


@dataclass(frozen=True)
class PythonModule:
    """An importable module; optional ones only change how the backend works."""

    name: str
    package: str | None = None
    optional: bool = False
    kind = "python-module"

    def problem(self) -> str | None:
        try:
            found = importlib.util.find_spec(self.name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return None
        hint = f" (install {self.package})" if self.package else ""
        return f"Python module {self.name} is missing{hint}"


@dataclass(frozen=True)
class KernelFilesystem:
    """A filesystem type the running kernel must know (``/proc/filesystems``)."""

    name: str
    optional: bool = False
    kind = "kernel-filesystem"

    def problem(self) -> str | None:
        try:
            known = {line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines() if line.strip()}
        except OSError:
            return None
        if self.name in known:
            return None
        return f"the kernel has no {self.name} filesystem"


Requirement = Tool | PythonModule | KernelFilesystem


def describe(requirement: Requirement) -> dict[str, object]:
    """A record of ``requirement`` for listings: kind, name, package, optional, met."""
    return {
        "kind": requirement.kind,
        "name": requirement.name,
        "package": getattr(requirement, "package", None),
        "optional": requirement.optional,
        "met": requirement.problem() is None,
    }


def unmet(requirements: tuple[Requirement, ...], *, include_optional: bool = False) -> list[str]:
    """Reasons the ``requirements`` are not met; optional ones only if asked."""
    reasons = []
    for req in requirements:
        if req.optional and not include_optional:
            continue
        problem = req.problem()
        if problem:
            reasons.append(problem)
    return reasons
