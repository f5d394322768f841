"""Typed errors.  Every expected failure is a :class:`BdevError`.

An error renders as one sentence naming what it is about (container, backend) and the cause,
for example ``container 'web1' (backend btrfs): /var/lib/lxc is on ext4, not btrfs.``  The CLI
prints exactly that and exits non-zero; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from .i18n import N_, _


class BdevError(Exception):
    """Base of every error bdev expects and explains.

    :param cause: what went wrong, as a sentence fragment without the subject.
    :param container: the container (or snapshot) the operation was about, if any.
    :param backend: the backend involved, if any.
    """

    exit_code = 1

    def __init__(self, cause: str, *, container: str | None = None, backend: str | None = None):
        super().__init__(cause)
        self.cause = cause
        self.container = container
        self.backend = backend

    def subject(self) -> str:
        """What the error is about: ``container 'web1' (backend btrfs)``, or empty."""
        if self.container is not None and self.backend is not None:
            return _("container {name!r} (backend {backend})").format(name=self.container, backend=self.backend)
        if self.container is not None:
            return _("container {name!r}").format(name=self.container)
        if self.backend is not None:
            return _("backend {backend}").format(backend=self.backend)
        return ""

    def __str__(self) -> str:
        subject = self.subject()
        cause = str(self.cause).rstrip(".。")
        if subject:
            return _("{subject}: {cause}.").format(subject=subject, cause=cause)
        return _("{cause}.").format(cause=f"{cause[:1].upper()}{cause[1:]}")

    def about(self, *, container: str | None = None, backend: str | None = None) -> "BdevError":
        """Fill in the container or backend if the raiser did not know them; returns self."""
        if self.container is None:
            self.container = container
        if self.backend is None:
            self.backend = backend
        return self


class InvalidInput(BdevError):
    """A name, path, size or option value from the user is not acceptable."""

    exit_code = 2


class NotFound(BdevError):
    """A container, snapshot or backend does not exist."""


class AlreadyExists(BdevError):
    """The target of a create, clone or restore already exists."""


class NotSupported(BdevError):
    """The backend does not offer this operation (the base class answers this by default)."""


class BackendUnavailable(BdevError):
    """The backend is known but cannot work on this machine or at this place."""

    def __init__(self, cause: str, *, reasons: Sequence[str] = (), **kw):
        super().__init__(cause, **kw)
        self.reasons = list(reasons)


class HasDependents(BdevError):
    """Refused because something depends on it (snapshots, clones); nothing was changed."""


class Busy(BdevError):
    """Another process holds the container's lock, or the container is running."""


class ConfigError(BdevError):
    """A container configuration file cannot be read or would be written unsafely."""


class CommandError(BdevError):
    """An external command failed; carries its argv, exit status and standard error."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, **kw):
        tool = argv[0] if argv else "command"
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        detail = f": {last}" if last else ""
        super().__init__(_(
            "{tool} exited with status {status}{detail}"
        ).format(tool=tool, status=returncode, detail=detail), **kw)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class PluginError(BdevError):
    """A plugin failed to load or registered something inconsistent."""


_OS_CAUSES = {
    errno.ENOSPC: N_("the target disk is full (no space left on device)"),
    errno.EDQUOT: N_("the disk quota on the target is exceeded"),
    errno.EROFS: N_("the target filesystem is read-only"),
    errno.ELOOP: N_("it was replaced by a symbolic link while being used"),
    errno.EMFILE: N_("too many open files (the tree is nested too deeply for the open-file limit)"),
    errno.EACCES: N_("permission denied"),
    errno.EPERM: N_("operation not permitted"),
}


def explain(exc: OSError) -> str:
    """A short cause for ``exc``: a plain phrase for the errors users can act on (disk full,
    quota, read-only, permissions), otherwise the system's message."""
    if exc.errno in _OS_CAUSES:
        return str(_OS_CAUSES[exc.errno])
    return exc.strerror or str(exc)


def from_os_error(exc: OSError, *, container: str | None = None, backend: str | None = None) -> BdevError:
    """The :class:`BdevError` for an ``OSError`` that escaped an operation: the cause and the
    path it concerned, e.g. ``container 'web1': permission denied: /var/lib/lxc/web1.``"""
    where = f": {os.fsdecode(exc.filename)}" if exc.filename is not None else ""
    return BdevError(f"{explain(exc)}{where}", container=container, backend=backend)
