"""``bdev start``, ``bdev stop``, ``bdev attach`` and ``bdev run``: the runtime in bdev's own
command line (global options such as ``-P`` come before the subcommand)."""

from __future__ import annotations

import sys
from typing import Any

import click

from bdev.cli.completion import container_names
from bdev.cli.session import get_session
from bdev.i18n import option

from .. import lifecycle
from .._i18n import _, N_
from .common import attach_options, container_of, options_of_attach


@click.command("start", help=N_("Start container NAME (in the background unless -F)."))
@click.argument("name", shell_complete=container_names)
@option("-F", "--foreground", is_flag=True, help=N_("Stay in the foreground with the console on this terminal."))
@option("-o", "--logfile", metavar="FILE", help=N_("The monitor's log."))
@option("-e", "--ephemeral", is_flag=True, help=N_("Start a copy-on-write clone, destroyed when it stops."))
def start(name: str, foreground: bool, logfile: str | None, ephemeral: bool) -> int:
    """Start container NAME (in the background unless -F)."""
    session = get_session()
    ctx, ref = container_of(session, name)
    console_out = sys.stdout.fileno() if foreground else None
    if ephemeral:
        ref, status = lifecycle.start_ephemeral(ctx, ref, foreground=foreground, logfile=logfile,
                                                console_out=console_out)
    else:
        status = lifecycle.start(ctx, ref, foreground=foreground, logfile=logfile, console_out=console_out)
    if not foreground:
        if ephemeral:
            session.notify(_("started {name} (an ephemeral clone of {origin})").format(name=ref.name, origin=name))
        else:
            session.notify(_("started {name}").format(name=ref.name))
    return status


@click.command("stop", help=N_("Stop container NAME: its halt signal, then kill after the timeout."))
@click.argument("name", shell_complete=container_names)
@option("-t", "--timeout", type=float, default=lifecycle.DEFAULT_STOP_TIMEOUT, show_default=True,
        help=N_("Seconds to wait after the halt signal before killing (-1: forever)."))
@option("-k", "--kill", is_flag=True, help=N_("Kill at once instead of asking init to halt."))
def stop(name: str, timeout: float, kill: bool) -> None:
    """Stop container NAME: its halt signal, then kill after the timeout."""
    session = get_session()
    ctx, ref = container_of(session, name)
    lifecycle.stop(ctx, ref, timeout=timeout, kill=kill)
    session.notify(_("stopped {name}").format(name=name))


@click.command("attach", context_settings={"ignore_unknown_options": True},
               help=N_("Run COMMAND (default: a shell) in the running container NAME, on a terminal of its own "
                       "when standard input is one; exits with its status."))
@click.argument("name", shell_complete=container_names)
@attach_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def attach(name: str, command: tuple[str, ...], **values: Any) -> int:
    """Run COMMAND (default: a shell) in the running container NAME, on a terminal of its own
    when standard input is one; exits with its status."""
    options = options_of_attach(values)
    ctx, ref = container_of(get_session(), name)
    return lifecycle.attach(ctx, ref, list(command), options)


@click.command("run", context_settings={"ignore_unknown_options": True},
               help=N_("Run COMMAND as container NAME's only program (like lxc-execute); exits with its status."))
@click.argument("name", shell_complete=container_names)
@option("-e", "--ephemeral", is_flag=True, help=N_("Run in a copy-on-write clone of NAME, destroyed afterwards."))
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(name: str, ephemeral: bool, command: tuple[str, ...]) -> int:
    """Run COMMAND as container NAME's only program (like lxc-execute); exits with its status."""
    ctx, ref = container_of(get_session(), name)
    if ephemeral:
        return lifecycle.start_ephemeral(ctx, ref, command=list(command))[1]
    return lifecycle.execute(ctx, ref, list(command))


COMMANDS = (start, stop, attach, run_command)
