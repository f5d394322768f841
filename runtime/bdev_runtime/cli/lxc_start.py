"""``lxc-start -n NAME [-d|-F] [-p PIDFILE] [-L FILE] [-c FILE] [-s KEY=VAL]... [-P lxcpath]
[-- COMMAND]``: start a container (a daemon by default, as LXC >= 2.0; ``-F`` in the
foreground on this terminal).  ``-s`` sets config keys for this start only and ``-c`` is
``-s lxc.console.path=FILE``, as LXC has them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.fsops import write_atomic
from bdev.i18n import option

from .. import control, lifecycle
from ..spec import CONSOLE_PATH_KEY, parse_define
from .._i18n import _, N_
from .common import container_of

PROG = "lxc-start"


@lxc_command(PROG, help_text=N_("lxc-start starts the container NAME."), usage="-n NAME [-d|-F] [OPTIONS] [-- COMMAND]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-d", "--daemon", is_flag=True, help=N_("Daemonize the container (default)."))
@option("-F", "--foreground", is_flag=True, help=N_("Start with the current tty attached to /dev/console."))
@option("-p", "--pidfile", metavar="FILE", help=N_("Create a file with the process id."))
@option("-L", "--console-log", metavar="FILE", help=N_("Log the container's console output to FILE."))
@option("-c", "--console", metavar="FILE", help=N_("Use FILE as the container's console (lxc.console.path): its "
                                                   "output is written there, and a terminal's input is read."))
@option("-C", "--close-all-fds", is_flag=True, help=N_("Accepted: the monitor never passes on file descriptors."))
@option("-s", "--define", metavar="KEY=VAL", multiple=True, help=N_("Assign VAL to configuration KEY for this start "
                                                                    "(repeatable)."))
@option("-f", "rcfile_short", metavar="FILE", help=N_("Not supported: refused."))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, daemon: bool, foreground: bool, pidfile: str | None,
            console_log: str | None, console: str | None, close_all_fds: bool, define: tuple[str, ...],
            rcfile_short: str | None, command: tuple[str, ...], **common: object) -> int:
    """lxc-start starts the container NAME."""
    if rcfile_short is not None:
        common["rcfile"] = rcfile_short
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", "container name")
    if daemon and foreground:
        raise click.UsageError(_("-d and -F cannot be used together"))
    defines = [parse_define(text) for text in define]
    if console:
        defines.append((CONSOLE_PATH_KEY, os.path.abspath(console)))
    engine, ref = container_of(session, name)
    if pidfile and foreground:
        _write_pidfile(pidfile, os.getpid())  # this process is the monitor
    status = lifecycle.start(engine, ref, foreground=foreground, logfile=common.get("logfile"),  # type: ignore[arg-type]
                             loglevel=common.get("logpriority"),  # type: ignore[arg-type]
                             console_out=sys.stdout.fileno() if foreground else None,
                             console_log=console_log, init=list(command) or None, define=defines)
    if pidfile and not foreground:
        answer = control.request(ref, "state") or {}
        _write_pidfile(pidfile, int(answer.get("monitor_pid") or 0))
    return status


def _write_pidfile(path: str, pid: int) -> None:
    """LXC's ``-p``: the monitor's pid, one line."""
    write_atomic(Path(os.path.abspath(path)), f"{pid}\n")


def main() -> NoReturn:
    """Entry point of ``lxc-start``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
