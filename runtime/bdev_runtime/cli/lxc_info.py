"""``lxc-info -n NAME [-s] [-p] [-i] [-S] [-c KEY]... [-H] [-P lxcpath]``: a container's
state, init pid, IP addresses and usage (CPU, block I/O, memory, links), printed as LXC prints
them (``State:          RUNNING``), for a container bdev's runtime runs and for one real LXC
runs (asked in LXC's protocol)."""

from __future__ import annotations

from typing import NoReturn

import click

from bdev.cli.completion import container_names
from bdev.cli.errors import run
from bdev.cli.lxc.common import common_options, lxc_command, require, start
from bdev.i18n import option

from .._i18n import N_
from ..spec import load_config
from ..status import status
from ..usage import container_usage, usage_lines
from .common import container_of

PROG = "lxc-info"


def field_line(label: str, value: object) -> str:
    """One line as ``lxc-info`` prints it: the label padded to 15 columns."""
    return f"{label + ':':<15} {value}"


@lxc_command(PROG, help_text=N_("lxc-info displays information about the container NAME."), usage="-n NAME [OPTIONS]")
@option("-n", "--name", metavar="NAME", shell_complete=container_names, help=N_("NAME of the container."))
@option("-c", "--config", "keys", metavar="KEY", multiple=True, help=N_("Show configuration variable KEY."))
@option("-s", "--state", "show_state", is_flag=True, help=N_("Show the state."))
@option("-p", "--pid", "show_pid", is_flag=True, help=N_("Show the process id of the init container."))
@option("-i", "--ips", "show_ips", is_flag=True, help=N_("Show the IP addresses."))
@option("-S", "--stats", "show_stats", is_flag=True, help=N_("Show usage statistics."))
@option("-H", "--no-humanize", is_flag=True, help=N_("Show stats as raw numbers, not humanized."))
@common_options()
@click.pass_context
def command(ctx: click.Context, name: str | None, keys: tuple[str, ...], show_state: bool, show_pid: bool,
            show_ips: bool, show_stats: bool, no_humanize: bool, **common: object) -> None:
    """lxc-info displays information about the container NAME."""
    session = start(ctx, **common)  # type: ignore[arg-type]
    name = require(name, "-n NAME", "container name")
    engine, ref = container_of(session, name)
    engine.store.require(ref)
    if keys:
        config = load_config(ref)
        for key in keys:
            values = config.get_all(key)
            click.echo(f"{key} = {values[-1] if values else ''}")
        if not (show_state or show_pid):
            return
    state = status(engine, ref)
    everything = not (show_state or show_pid or show_ips or show_stats)
    if everything:
        click.echo(field_line("Name", state.name))
    if everything or show_state:
        click.echo(field_line("State", state.state.value))
    if (everything or show_pid) and state.init_pid:
        click.echo(field_line("PID", state.init_pid))
    if everything or show_ips:
        for address in state.addresses():
            click.echo(field_line("IP", address))
    if (everything or show_stats) and state.init_pid:
        for label, value in usage_lines(container_usage(ref, load_config(ref), managed_by=state.managed_by),
                                        humanize=not no_humanize):
            click.echo(field_line(label, value))


def main() -> NoReturn:
    """Entry point of ``lxc-info``."""
    run(command, PROG)


if __name__ == "__main__":
    main()
