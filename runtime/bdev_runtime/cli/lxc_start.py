"""``lxc-start -n NAME [-d|-F] [-p PIDFILE] [-L FILE] [-P lxcpath] [-- COMMAND]``: start a
container (a daemon by default, as LXC >= 2.0; ``-F`` in the foreground on this terminal)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.errors import NotSupported
from bdev.fsops import write_atomic

from .. import control, lifecycle
from .common import container_of

PROG = "lxc-start"


@lxc_command(PROG, help_text="lxc-start starts the container NAME.", usage="-n NAME [-d|-F] [OPTIONS] [-- COMMAND]")
@click.option("-n", "--name", metavar="NAME", help="NAME of the container.")
@click.option("-d", "--daemon", is_flag=True, help="Daemonize the container (default).")
@click.option("-F", "--foreground", is_flag=True, help="Start with the current tty attached to /dev/console.")
@click.option("-p", "--pidfile", metavar="FILE", help="Create a file with the process id.")
@click.option("-L", "--console-log", metavar="FILE", help="Log the container's console output to FILE.")
@click.option("-c", "--console", metavar="FILE", help="Not supported: refused.")
@click.option("-C", "--close-all-fds", is_flag=True, help="Accepted: the monitor never passes on file descriptors.")
@click.option("-s", "--define", metavar="KEY=VAL", multiple=True, help="Not supported: refused (edit the config).")
@click.option("-f", "rcfile_short", metavar="FILE", help="Not supported: refused.")
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
        raise click.UsageError("-d and -F cannot be used together")
    if define:
        raise NotSupported("-s/--define is not supported: set the keys in the container's config")
    if console:
        raise NotSupported("-c/--console is not supported: use -L FILE or lxc.console.logfile")
    engine, ref = container_of(session, name)
    if pidfile and foreground:
        _write_pidfile(pidfile, os.getpid())  # this process is the monitor
    status = lifecycle.start(engine, ref, foreground=foreground, logfile=common.get("logfile"),  # type: ignore[arg-type]
                             loglevel=common.get("logpriority"),  # type: ignore[arg-type]
                             console_out=sys.stdout.fileno() if foreground else None,
                             console_log=console_log, init=list(command) or None)
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
