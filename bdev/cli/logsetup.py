"""Logging set-up for the command line: ``bdev -v`` and LXC's ``-l LEVEL -o FILE``.

Only the ``bdev`` logger is configured (the command helper logs every external argv at
DEBUG).  Calling :func:`configure` again replaces the handler it installed before, so tests that
run many commands in one process do not pile up handlers.
"""

from __future__ import annotations

import sys

from ..errors import InvalidInput
from ..i18n import _

# The standard levels of :mod:`logging` (fixed values), so that a command that logs nothing
# does not import it: ``logging`` costs about 2 ms of every start-up.
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

#: LXC's log priorities (``lxc-* -l``) and the Python levels they map to.
LXC_LEVELS: dict[str, int] = {
    "TRACE": DEBUG,
    "DEBUG": DEBUG,
    "INFO": INFO,
    "NOTICE": INFO,
    "WARN": WARNING,
    "WARNING": WARNING,
    "ERROR": ERROR,
    "CRIT": CRITICAL,
    "ALERT": CRITICAL,
    "FATAL": CRITICAL,
}

_MARK = "_bdev_cli_handler"


def lxc_level(text: str) -> int:
    """The Python level for an LXC priority name (case-insensitive) or a number.

    :raises InvalidInput: an unknown name.
    """
    key = text.strip().upper()
    if key in LXC_LEVELS:
        return LXC_LEVELS[key]
    if key.isdigit():
        return int(key)
    known = ", ".join(n for n in LXC_LEVELS if n != "WARNING")
    raise InvalidInput(_("unknown log priority {text!r} (known: {known})").format(text=text, known=known))


def configure(prog: str, level: int | None, logfile: str | None = None) -> None:
    """Send the ``bdev`` logger's records at ``level`` and above to ``logfile`` (appended) or
    standard error.  ``level`` None and no ``logfile``: leave logging unconfigured (quiet)."""
    if level is None and logfile is None and "logging" not in sys.modules:
        return  # nothing was configured before, and nothing is now
    import logging

    logger = logging.getLogger("bdev")
    for handler in list(logger.handlers):
        if getattr(handler, _MARK, False):
            logger.removeHandler(handler)
            handler.close()
            logger.setLevel(logging.NOTSET)
    if level is None and logfile is None:
        return
    if level is None:
        level = ERROR  # LXC's default priority when only -o is given
    if logfile:
        try:
            handler: logging.Handler = logging.FileHandler(logfile, encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(_(
                "cannot open log file {logfile}: {reason}"
            ).format(logfile=logfile, reason=exc.strerror or exc)) from None
        fmt = f"{prog} %(asctime)s %(levelname)-7s %(name)s - %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = f"{prog}: %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.setLevel(level)
