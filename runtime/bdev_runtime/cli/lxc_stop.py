"""``lxc-stop -n NAME [-t TIMEOUT] [-k] [-r] [-W] [-P lxcpath]``: stop a container with its
halt signal (``lxc.signal.halt``), killing it after TIMEOUT seconds (default 60; -1 waits
forever); ``-k`` kills at once; ``-r`` reboots it (``lxc.signal.reboot``) and waits until it
runs again.  Exit 2 when it is not running, as LXC's."""

from __future__ import annotations

from typing import NoReturn

import click

from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.errors import InvalidInput, NotSupported

from .. import lifecycle
from .common import container_of

PROG = "lxc-stop"


@lxc_command(PROG, help_text="lxc-stop stops the container NAME.", usage="-n NAME [-t TIMEOUT] [-k] [OPTIONS]")
@click.option("-n", "--name", metavar="NAME", help="NAME of the container.")
@click.option("-t", "--timeout", metavar="T", default="60", help="Wait T seconds before hard-stopping (-1: forever).")
@click.option("-k", "--kill", is_flag=True, help="Kill the container rather than request a clean shutdown.")
@click.option("-W", "--nowait", is_flag=True, help="Don't wait for the shutdown to complete.")
@click.option("-r", "--reboot", is_flag=True, help="Reboot the container (lxc.signal.reboot); wait until it runs again.")
@click.option("--nolock", is_flag=True, help="Accepted: stopping takes no container lock.")
@click.option("--nokill", is_flag=True, help="Only request a clean shutdown, never kill (same as -t -1).")
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, timeout: str, kill: bool, nowait: bool, reboot: bool, nolock: bool,
            nokill: bool, **common: object) -> None:
    """lxc-stop stops the container NAME."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", "container name")
    try:
        seconds = float(timeout)
    except ValueError:
        raise InvalidInput(f"-t {timeout!r}: not a number of seconds") from None
    if kill and nokill:
        raise click.UsageError("-k and --nokill cannot be used together")
    if reboot and (kill or nokill):
        raise click.UsageError("-r cannot be used with -k or --nokill")
    engine, ref = container_of(session, name)
    if reboot:
        if nowait:
            raise NotSupported("-r with -W is not supported: a reboot is waited for")
        lifecycle.reboot(engine, ref, timeout=seconds)
        return
    lifecycle.stop(engine, ref, timeout=-1 if nokill else seconds, kill=kill, wait=not nowait)


def main() -> NoReturn:
    """Entry point of ``lxc-stop``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
