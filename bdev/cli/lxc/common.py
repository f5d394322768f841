"""What the ``lxc-*`` programs share: LXC's common options (``-P``, ``-q``, ``-l``, ``-o``,
``--rcfile``, ``--version``, ``--usage``, ``-h``/``-?``/``--help``) and the start of each run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ...i18n import N_, _, option
from ...errors import InvalidInput, NotSupported
from .. import logsetup
from ..errors import GuardedCommand
from ..session import Session

F = TypeVar("F", bound=Callable[..., Any])

HELP_OPTIONS = ["-h", "-?", "--help"]


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ... import __version__

    click.echo(__version__)
    ctx.exit(0)


def _print_usage(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(ctx.get_usage())
    ctx.exit(0)


def lxc_command(prog: str, *, help_text: str | None = None, usage: str = "[OPTIONS]") -> Callable[[F], click.Command]:
    """Declare an ``lxc-*`` program: bdev's error policy, LXC's help option names, and
    options and arguments interspersed as getopt allows.

    :param usage: what the usage line shows for the options (``-n NAME -t TEMPLATE [OPTIONS]``).
    """
    return click.command(
        prog,
        cls=GuardedCommand,
        help=help_text,
        options_metavar=usage,
        context_settings={"help_option_names": HELP_OPTIONS, "max_content_width": 100},
    )


def common_options(*, lxcpath: bool = True, logging: bool = True, rcfile: bool = True) -> Callable[[F], F]:
    """Add LXC's common options; each command's function takes ``lxcpath``, ``quiet``,
    ``logpriority``, ``logfile`` and ``rcfile`` keyword arguments for those it asked for."""

    def decorate(function: F) -> F:
        decorators = [
            option("-q", "--quiet", is_flag=True, help=N_("Don't print operation messages (errors still are).")),
            option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
                         help=N_("Print the version number.")),
            option("--usage", is_flag=True, expose_value=False, is_eager=True, callback=_print_usage,
                         help=N_("Give a short usage message.")),
        ]
        if lxcpath:
            decorators.append(option("-P", "--lxcpath", metavar="PATH", help=N_("Use specified container path.")))
        if logging:
            decorators.append(option("-o", "--logfile", metavar="FILE", help=N_(
                "Output log to FILE instead of stderr."
            )))
            decorators.append(option("-l", "--logpriority", metavar="LEVEL",
                                           help=N_("Set log priority to LEVEL (TRACE, DEBUG, INFO, WARN, ERROR ...).")))
        if rcfile:
            decorators.append(option("--rcfile", metavar="FILE", help=N_("Not supported: refused.")))
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def start(
    ctx: click.Context,
    *,
    lxcpath: str | None = None,
    quiet: bool = False,
    logpriority: str | None = None,
    logfile: str | None = None,
    rcfile: str | None = None,
) -> Session:
    """Configure logging, refuse what is not supported, and return the run's session."""
    prog = ctx.find_root().info_name or "lxc"
    level = logsetup.lxc_level(logpriority) if logpriority else None
    logsetup.configure(prog, level, logfile)
    if rcfile is not None:
        raise NotSupported(_("--rcfile is not supported: bdev reads each container's own config"))
    session = Session(prog, lxcpath=lxcpath, quiet=quiet)
    ctx.obj = session
    return session


def require(value: str | None, option: str, what: str) -> str:
    """``value`` of a required option, or a usage error naming it."""
    if value is None:
        raise click.UsageError(_("missing {what}: give {option}").format(what=what, option=option))
    if not value:
        raise InvalidInput(_("the {what} is empty").format(what=what))
    return value
