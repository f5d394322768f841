"""``lxc-stop -n NAME [-t TIMEOUT] [-k] [-r] [-W] [-P lxcpath]``: stop a container with its
halt signal (``lxc.signal.halt``), killing it after TIMEOUT seconds (default 60; -1 waits
forever); ``-k`` kills at once; ``-r`` reboots it (``lxc.signal.reboot``) and waits until it
runs again.  Exit 2 when it is not running, as LXC's."""

from __future__ import annotations

from typing import NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.errors import InvalidInput, NotSupported
from bdev.i18n import option

from .. import lifecycle
from .._i18n import _, N_
from .common import container_of

PROG = "lxc-stop"


@lxc_command(PROG, help_text=N_("lxc-stop stops the container NAME."), usage="-n NAME [-t TIMEOUT] [-k] [OPTIONS]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-t", "--timeout", metavar="T", default="60", help=N_("Wait T seconds before hard-stopping (-1: forever)."))
@option("-k", "--kill", is_flag=True, help=N_("Kill the container rather than request a clean shutdown."))
@option("-W", "--nowait", is_flag=True, help=N_("Don't wait for the shutdown to complete."))
@option("-r", "--reboot", is_flag=True, help=N_("Reboot the container (lxc.signal.reboot); wait until it runs "
                                                "again."))
@option("--nolock", is_flag=True, help=N_("Accepted: stopping takes no container lock."))
@option("--nokill", is_flag=True, help=N_("Only request a clean shutdown, never kill (same as -t -1)."))
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
        raise InvalidInput(_("-t {timeout!r}: not a number of seconds").format(timeout=timeout)) from None
    if kill and nokill:
        raise click.UsageError(_("-k and --nokill cannot be used together"))
    if reboot and (kill or nokill):
        raise click.UsageError(_("-r cannot be used with -k or --nokill"))
    engine, ref = container_of(session, name)
    if reboot:
        if nowait:
            raise NotSupported(_("-r with -W is not supported: a reboot is waited for"))
        lifecycle.reboot(engine, ref, timeout=seconds)
        return
    lifecycle.stop(engine, ref, timeout=-1 if nokill else seconds, kill=kill, wait=not nowait)


def main() -> NoReturn:
    """Entry point of ``lxc-stop``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
