"""What one command line invocation shares: program name, lxcpath option, quietness, the
global LXC settings and the plugin registry (each loaded once, on first use), and the
``notify`` callback that prints operation messages on standard error."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..api import Container
    from ..copying.progress import Progress
    from ..registry import Registry


class Session:
    """Shared state of one invocation.

    :param prog: the program name (``bdev``, ``lxc-create``).
    :param lxcpath: the ``-P`` option, or None for LXC's default lxcpath.
    :param quiet: suppress operation messages (``-q``); errors are always printed.
    """

    def __init__(self, prog: str, *, lxcpath: str | None = None, quiet: bool = False):
        self.prog = prog
        self.lxcpath_option = lxcpath
        self.quiet = quiet

    @cached_property
    def settings(self) -> dict[str, str]:
        """The global ``lxc.conf`` settings."""
        from ..store.lxcpath import global_settings

        return dict(global_settings())

    @cached_property
    def registry(self) -> "Registry":
        """The plugin registry, loaded with the global settings (once per process)."""
        from ..engine.context import default_registry

        return default_registry(self.settings)

    def lxcpath(self, option: str | os.PathLike[str] | None = None) -> Path:
        """``option`` (default: the ``-P`` given) resolved like LXC, or LXC's default lxcpath."""
        from ..store.lxcpath import resolve_lxcpath

        chosen = option if option is not None else self.lxcpath_option
        return Path(resolve_lxcpath(chosen, self.settings))

    def notify(self, message: str) -> None:
        """Print an operation message on standard error unless quiet."""
        if not self.quiet:
            click.echo(message, err=True)

    def progress(self, description: str) -> "Progress":
        """A progress bar for a copy, drawn on standard error when it is a terminal and the
        command is not quiet; otherwise one that draws nothing."""
        from ..copying.progress import NullProgress, terminal_progress

        return NullProgress() if self.quiet else terminal_progress(description)

    def container(self, name: str, lxcpath: str | os.PathLike[str] | None = None) -> "Container":
        """The API's :class:`~bdev.api.Container` ``name`` in ``lxcpath`` (default: ``-P``).

        :raises InvalidInput: the name is not acceptable (checked by the API).
        """
        from ..api import Container

        return Container(name, self.lxcpath(lxcpath), notify=self.notify)  # the registry loads when needed


def get_session(ctx: click.Context | None = None) -> Session:
    """The :class:`Session` stored on the root context (made by the entry command)."""
    ctx = ctx or click.get_current_context()
    session = ctx.find_object(Session)
    if session is None:  # a subcommand invoked on its own (tests)
        session = Session(ctx.find_root().info_name or "bdev")
        ctx.find_root().obj = session
    return session
