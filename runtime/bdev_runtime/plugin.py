"""The runtime as a bdev plugin: its subcommands of ``bdev`` (``start``, ``stop``, ``attach``,
``run``, and the cgroup package's ``limits``)."""

from __future__ import annotations

from collections.abc import Iterable

import click

from bdev import hookimpl


@hookimpl
def bdev_commands() -> Iterable[click.Command]:
    """``bdev start/stop/attach/run`` and ``bdev limits``."""
    from .cgroups.cli import limits_command
    from .cli.commands import COMMANDS

    return [*COMMANDS, limits_command]
