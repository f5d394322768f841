"""The one error the copy engine raises, and how an ``OSError`` becomes a sentence."""

from __future__ import annotations

from ..errors import BdevError, explain


class CopyError(BdevError):
    """Copying a tree failed.

    Renders as one sentence naming the entry (relative to the source) and the cause:
    ``Copying usr/bin/x failed: the target disk is full (no space left on device).``

    :param cause: the whole sentence fragment.
    :param relpath: the entry it is about, relative to the source top, if any.
    :param errno: the ``errno`` of the underlying :class:`OSError`, if any.
    """

    def __init__(self, cause: str, *, relpath: str | None = None, errno: int | None = None, **kw):
        super().__init__(cause, **kw)
        self.relpath = relpath
        self.errno = errno


def copy_error(relpath: str, exc: OSError) -> CopyError:
    """The :class:`CopyError` for ``exc`` raised while copying ``relpath``:
    ``copying <relpath> failed: <cause>``."""
    return CopyError(f"copying {relpath} failed: {explain(exc)}", relpath=relpath, errno=exc.errno)
