"""The one way bdev runs an external program.

``run`` forces ``LC_ALL=C`` so messages can be parsed, logs the argv before running it and
the output after, and turns a non-zero exit into a :class:`~bdev.errors.CommandError` that
carries standard error.  Backends never call :mod:`subprocess` directly.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import CommandError

log = logging.getLogger("bdev.command")


@dataclass(frozen=True)
class Completed:
    """The result of a successful :func:`run`."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    container: str | None = None,
    backend: str | None = None,
) -> Completed:
    """Run ``argv`` (never through a shell) with ``LC_ALL=C`` and return its output.

    :param check: raise :class:`CommandError` when the exit status is not zero.
    :param container: named in the error if the command fails.
    :param backend: named in the error if the command fails.
    :raises CommandError: the program is missing, timed out, or failed and ``check`` is set.
    """
    args = [os.fspath(a) for a in argv]
    if args and os.sep not in args[0]:
        args[0] = which(args[0]) or args[0]  # the sbin directories too, as requirement checks see them
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["LC_ALL"] = "C"
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            env=full_env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise CommandError(args, 127, f"{args[0]}: command not found", container=container, backend=backend) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {exc.timeout} s", container=container, backend=backend) from None
    log.debug("exit %d: %s%s", proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr or proc.stdout, container=container, backend=backend)
    return Completed(args, proc.returncode, proc.stdout, proc.stderr)


def which(program: str) -> str | None:
    """Path of ``program`` on ``PATH`` (plus the sbin directories root tools live in), or None."""
    path = os.environ.get("PATH", os.defpath)
    extra = [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path.split(os.pathsep)]
    return shutil.which(program, path=os.pathsep.join([path, *extra]))
