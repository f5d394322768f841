"""A minimal init for application containers (``lxc-execute``), like LXC's ``lxc-init``.

It runs as pid 1 of the container: it starts the command, forwards every signal it can catch
to it, reaps every process that ends (orphans are re-parented to pid 1), and exits with the
command's status once the command has ended (the kernel then ends the rest of the container).
Everything it needs is imported before ``pivot_root``: it runs without the host's files.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from .rootfs import exec_error

#: Signals pid 1 cannot catch, or must not forward (its own children ending).
NOT_FORWARDED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def exit_status(wait_status: int) -> int:
    """A process's exit status as a shell reports it: its code, or 128 + the killing signal."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def run_init(argv: Sequence[str], env: dict[str, str], error_fd: int) -> None:
    """Run ``argv`` as the container's only program under this process (never returns).

    A failing ``exec`` is reported on ``error_fd`` (closed by a successful one) and ends the
    container with status 127, as a shell would.
    """
    child = os.fork()
    if child == 0:
        try:
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            os.write(error_fd, exec_error(argv, exc).encode())
        os._exit(127)
    os.close(error_fd)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in signal.valid_signals():
        if sig not in NOT_FORWARDED:
            try:
                signal.signal(sig, forward)
            except (OSError, ValueError):
                continue
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == child:
            os._exit(exit_status(wait_status))
