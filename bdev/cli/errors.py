"""How every bdev command line program reports failures.

One policy for ``bdev`` and every ``lxc-*`` program:

* a :class:`~bdev.errors.BdevError` prints ``<prog>: <sentence>`` on standard error and exits
  with ``err.exit_code`` (1, or 2 for invalid input);
* click's usage errors print click's usual message and exit 2;
* an interrupt (Ctrl-C) prints ``<prog>: interrupted`` and exits 130;
* anything else is a bug: one line ``<prog>: internal error: <type>: <message> (set
  BDEV_DEBUG=1 for a traceback)``, exit 70; the traceback is printed only with
  ``BDEV_DEBUG=1`` (which also shows the traceback behind an expected error).

The policy lives in :class:`GuardedCommand` and :class:`GuardedGroup`, which commands use as
their ``cls`` so that click's test runner exercises it too, and in :func:`run`, the entry
point every ``main()`` calls.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ..errors import BdevError
from ..i18n import _

DEBUG_ENV = "BDEV_DEBUG"
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def debugging() -> bool:
    """Whether ``BDEV_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "no", "false")


def prog_name(ctx: click.Context | None) -> str:
    """The program name to prefix messages with (``bdev``, ``lxc-create`` ...)."""
    if ctx is None:
        return os.path.basename(sys.argv[0]) or "bdev"
    return ctx.find_root().info_name or "bdev"


def error_line(prog: str, message: str) -> None:
    """Print ``<prog>: <message>`` on standard error."""
    click.echo(f"{prog}: {message}", err=True)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _print_traceback(exc: BaseException) -> None:
    """The traceback behind ``exc`` on standard error (``traceback`` is imported only then:
    it costs start-up time every command would pay)."""
    import traceback

    traceback.print_exception(exc, file=sys.stderr)


def exit_code_for(exc: BaseException, prog: str) -> int:
    """Report ``exc`` per the policy above and return the exit status to use."""
    if isinstance(exc, BdevError):
        if debugging():
            _print_traceback(exc)
        error_line(prog, str(exc))
        return int(getattr(exc, "exit_code", 1) or 1)
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        error_line(prog, _("interrupted"))
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if debugging():
        _print_traceback(exc)
    detail = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    error_line(prog, _(
        "internal error: {message} (set {variable}=1 for a traceback)"
    ).format(message=message, variable=DEBUG_ENV))
    return EXIT_INTERNAL


class _Guard:
    """Mixin for click commands: turns exceptions raised while the command runs into one
    line on standard error and an exit status (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (click.exceptions.Exit, click.ClickException):
            raise
        except (Exception, KeyboardInterrupt, click.Abort) as exc:  # noqa: BLE001 - the policy
            code = exit_code_for(exc, prog_name(ctx))
        ctx.exit(code)


class GuardedCommand(_Guard, click.Command):
    """A :class:`click.Command` that follows bdev's error policy."""


class GuardedGroup(_Guard, click.Group):
    """A :class:`click.Group` that follows bdev's error policy for all its subcommands."""

    command_class = click.Command
    group_class = type


def run(command: click.Command, prog: str, args: Sequence[str] | None = None) -> NoReturn:
    """Run ``command`` as program ``prog`` and exit: the body of every ``main()``.

    Usage errors keep click's format (exit 2); everything else follows the policy above, even
    what escapes the command itself (an interrupt while parsing, a failing final flush).
    """
    try:
        try:
            result = command.main(args=list(args) if args is not None else None, prog_name=prog, standalone_mode=False)
            code = result if isinstance(result, int) else 0
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (Exception, KeyboardInterrupt, click.Abort) as exc:  # noqa: BLE001 - the policy
            code = exit_code_for(exc, prog)
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
            code = code or EXIT_BROKEN_PIPE
        except (OSError, ValueError):  # stdout closed or unusable: nothing left to say there
            code = code or 1
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)
