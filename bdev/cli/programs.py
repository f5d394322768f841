"""The installed command line programs: ``bdev`` and every ``lxc-*`` of every bdev
distribution (the core, the runtime, plugins), found through their ``console_scripts`` entry
points; the manual pages and the shell completion scripts are made for each of them."""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path

import click

CORE = "bdev"
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Program:
    """An installed program: its name, its click command and the distribution shipping it."""

    name: str
    command: click.Command
    distribution: str
    version: str


def _is_bdev_distribution(dist: Distribution) -> bool:
    if dist.metadata["Name"] == CORE:
        return True
    return any(_REQUIREMENT_NAME.match(req).group(0).lower() == CORE for req in dist.requires or [])


def _command_of(module_name: str, program: str) -> click.Command | None:
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, click.Command) and value.name == program:
            return value
    return None


def programs() -> list[Program]:
    """Every console script of bdev and of the distributions that depend on it whose module
    defines a click command named like the script, sorted by name."""
    found: dict[str, Program] = {}
    for dist in distributions():
        if not _is_bdev_distribution(dist):
            continue
        for entry in dist.entry_points.select(group="console_scripts"):
            command = _command_of(entry.module, entry.name)
            if command is not None:
                found[entry.name] = Program(entry.name, command, dist.metadata["Name"], dist.version)
    return sorted(found.values(), key=lambda p: (p.name != CORE, p.name))




def install_prefix() -> Path:
    """Where to install the programs' manual pages and completion scripts by default: the
    virtualenv bdev runs from (``man`` finds ``<venv>/share/man`` when ``<venv>/bin`` is on
    ``PATH``), else ``/usr/local``."""
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else Path("/usr/local")
