"""What the runtime's command lines share: the engine context and container of a run, and
the options of ``lxc-attach`` and ``bdev attach``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bdev.cli.session import Session
from bdev.engine.context import Context
from bdev.i18n import option
from bdev.store.layout import ContainerRef

from .._i18n import _, N_
from ..attach import AttachOptions, parse_assignments
from ..lifecycle import context_for

__all__ = ["attach_options", "container_of", "options_of_attach", "parse_assignments"]

F = TypeVar("F", bound=Callable[..., Any])
ID_RANGE = click.IntRange(0, 2**32 - 2)


def container_of(session: Session, name: str) -> tuple[Context, ContainerRef]:
    """The engine context of ``session``'s lxcpath and the validated container ``name``.

    :raises InvalidInput: the name is not acceptable.
    """
    ctx = context_for(session.lxcpath(), notify=session.notify)
    return ctx, ctx.ref(name)


def attach_options(command: F) -> F:
    """Add ``lxc-attach``'s options for the attached command to ``command``: ``-e``,
    ``--clear-env``/``--keep-env``, ``-v/--set-var``, ``--keep-var``, ``-u/--uid``,
    ``-g/--gid`` (read back with :func:`options_of_attach`)."""
    options = [
        option("-e", "--elevated-privileges", "elevated", is_flag=True,
               help=N_("Keep the privileges the container dropped.")),
        option("--clear-env", is_flag=True, help=N_("Clear all environment variables before attaching.")),
        option("--keep-env", is_flag=True, help=N_("Keep the current environment (default).")),
        option("-v", "--set-var", "set_vars", metavar="VAR=VALUE", multiple=True,
               help=N_("Set VAR in the environment.")),
        option("--keep-var", "keep_vars", metavar="VAR", multiple=True, help=N_("With --clear-env, keep VAR.")),
        option("-u", "--uid", type=ID_RANGE, metavar="UID", help=N_("Run the command as UID (in the container).")),
        option("-g", "--gid", type=ID_RANGE, metavar="GID", help=N_("Run the command as GID (in the container).")),
    ]
    for decorator in reversed(options):
        command = decorator(command)
    return command


def options_of_attach(values: dict[str, Any]) -> AttachOptions:
    """The :class:`AttachOptions` of the values :func:`attach_options` added (removed from
    ``values``).

    :raises click.UsageError: ``--clear-env`` with ``--keep-env``.
    :raises InvalidInput: a ``-v`` word that is not ``NAME=VALUE``.
    """
    clear_env, keep_env = values.pop("clear_env"), values.pop("keep_env")
    if clear_env and keep_env:
        raise click.UsageError(_("--clear-env and --keep-env cannot be used together"))
    return AttachOptions(clear_env=clear_env, keep_vars=values.pop("keep_vars"),
                         set_vars=parse_assignments(values.pop("set_vars"), "-v"), elevated=values.pop("elevated"),
                         uid=values.pop("uid"), gid=values.pop("gid"))
