"""Container locks that interoperate with LXC's.

LXC serialises operations on a container with an open-file-description write lock
(``fcntl(F_OFD_SETLKW)``, falling back to a classic POSIX lock where OFD locks are missing)
on ``/run/lxc/lock/<lxcpath>/.<name>`` (``$XDG_RUNTIME_DIR/lxc/lock/...`` for users).  bdev
takes the same lock on the same file, so ``lxc-start`` and ``bdev`` never work on one container
at once.  The ``partial`` marker of a running create is locked the same way.

No maintained Python library offers OFD locks (``filelock`` and ``fasteners`` use ``flock``
or process-scoped ``lockf``, which do not exclude LXC's OFD locks reliably), so this module
packs ``struct flock`` itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import Busy
from ..i18n import _

F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK = struct.Struct("@hhqqixxxx")  # l_type, l_whence, l_start, l_len, l_pid (x86-64/aarch64 layout)
DEFAULT_TIMEOUT = float(os.environ.get("BDEV_LOCK_TIMEOUT", "60"))


def _try_lock(fd: int, kind: int = fcntl.F_WRLCK) -> bool:
    """One non-blocking attempt at a whole-file OFD lock; True when taken."""
    try:
        fcntl.fcntl(fd, F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno == errno.EINVAL:  # a kernel without OFD locks: classic POSIX lock
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                return False
        raise


def is_locked(path: Path) -> bool:
    """Whether another open file description holds a lock on ``path`` (LXC's ongoing create test)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        result = fcntl.fcntl(fd, F_OFD_GETLK, _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0))
        return _FLOCK.unpack(result)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_file(path: Path, *, timeout: float = DEFAULT_TIMEOUT, what: str = "", create_mode: int = 0o600) -> Iterator[int]:
    """Hold a write lock on ``path`` (created if missing) for the ``with`` block.

    Waits up to ``timeout`` seconds for another holder, then raises :class:`Busy`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, create_mode)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise Busy(_(
                    "{what} is locked by another process (waited {timeout:g} s)"
                ).format(what=what or path, timeout=timeout))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        yield fd
    finally:
        os.close(fd)  # closing the description releases the OFD lock


def container_lock_path(lock_dir: Path, name: str) -> Path:
    """LXC's lock file for container ``name`` under the lxcpath's lock directory."""
    return lock_dir / f".{name}"
