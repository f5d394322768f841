"""The dataset operations, done two ways behind one interface: through libzfs_core (pyzfs,
Debian's ``python3-pyzfs``: ioctls on ``/dev/zfs``, no process per call) where it imports and
answers, or through the ``zfs`` command otherwise.  zfs-fuse has no ``/dev/zfs``, so there
the command is the only way.

Only the operations that libzfs_core commits to are here (exists, snapshot, clone, destroy,
rollback); properties, renames, mounts and send/receive always go through the command, which
also unmounts and remounts what a rename or destroy touches.  ``BDEV_ZFS_IMPL`` forces one:
``cli``, or ``pyzfs`` (which then must work).
"""

from __future__ import annotations

import errno
import functools
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Protocol

from bdev.errors import BdevError

from . import _cli
from ._cli import BACKEND, zfs
from ._i18n import _

IMPL_ENV = "BDEV_ZFS_IMPL"
"""``cli`` forces the zfs command; ``pyzfs`` requires libzfs_core."""
CLI, PYZFS = "cli", "pyzfs"

# libzfs_core takes index properties as numbers (zfs_canmount_type_t, on/off).
_INDEX_VALUES = {
    "canmount": {"off": 0, "on": 1, "noauto": 2},
    "readonly": {"off": 0, "on": 1},
    "atime": {"off": 0, "on": 1},
}


class DatasetOps(Protocol):
    """What the backend needs done to one dataset or snapshot at a time."""

    kind: str

    def describe(self) -> str: ...
    def exists(self, name: str) -> bool: ...
    def snapshot(self, snap: str) -> None: ...
    def clone(self, snap: str, dataset: str, props: Mapping[str, str]) -> None: ...
    def destroy(self, name: str) -> None: ...
    def rollback(self, snap: str) -> bool: ...


# ---------------------------------------------------------------------------- zfs command


class CliOps:
    """The operations through the ``zfs`` command (``-H``, bounded retries of busy datasets)."""

    kind = CLI

    def describe(self) -> str:
        return "zfs CLI"

    def exists(self, name: str) -> bool:
        """Whether the filesystem or snapshot ``name`` exists."""
        return _cli.exists(name)

    def snapshot(self, snap: str) -> None:
        """``zfs snapshot snap``."""
        zfs("snapshot", snap)

    def clone(self, snap: str, dataset: str, props: Mapping[str, str]) -> None:
        """``zfs clone -o k=v ... snap dataset``."""
        options = [arg for key, value in props.items() for arg in ("-o", f"{key}={value}")]
        zfs("clone", *options, snap, dataset)

    def destroy(self, name: str) -> None:
        """Destroy a snapshot, or a filesystem with its snapshots (``-r``), retrying while busy."""
        argv = ["destroy", name] if "@" in name else ["destroy", "-r", name]
        _cli.retry_busy(argv, name.split("@", 1)[0])

    def rollback(self, snap: str) -> bool:
        """``zfs rollback snap`` (never ``-r``); False, with nothing changed, when newer
        snapshots exist."""
        result = _cli.run_zfs(["rollback", snap], check=False)
        if result.returncode == 0:
            return True
        if "more recent snapshots" in result.stderr:
            return False
        raise _cli.failure_of(result)


# ---------------------------------------------------------------------------- libzfs_core


class LzcOps:
    """The operations through libzfs_core (pyzfs)."""

    kind = PYZFS

    def __init__(self, lzc: ModuleType, exceptions: ModuleType):
        self._lzc = lzc
        self._errors = exceptions

    def describe(self) -> str:
        for dist in ("pyzfs", "python3-pyzfs"):
            try:
                return f"libzfs_core (pyzfs {importlib.metadata.version(dist)})"
            except importlib.metadata.PackageNotFoundError:
                continue
        return "libzfs_core (pyzfs)"

    def exists(self, name: str) -> bool:
        """``lzc_exists``."""
        return bool(self._call("lzc_exists", name))

    def snapshot(self, snap: str) -> None:
        """``lzc_snapshot([snap])``."""
        self._call("lzc_snapshot", [snap])

    def clone(self, snap: str, dataset: str, props: Mapping[str, str]) -> None:
        """``lzc_clone(dataset, snap, props)``, index properties as the kernel wants them."""
        encoded: dict[bytes, object] = {}
        for key, value in props.items():
            table = _INDEX_VALUES.get(key)
            encoded[key.encode()] = table[value] if table is not None else value.encode()
        self._call("lzc_clone", dataset, snap, encoded)

    def destroy(self, name: str) -> None:
        """``lzc_destroy_snaps`` for a snapshot; for a filesystem its snapshots first, then
        ``lzc_destroy``; each retried while busy (after ``zfs umount -f``)."""
        dataset = name.split("@", 1)[0]
        if "@" in name:
            snaps = [name]
        else:
            snaps = _cli.snapshots(name)
        if snaps:
            self._retry(lambda: self._call("lzc_destroy_snaps", snaps, False, raw=True), dataset, "lzc_destroy_snaps", snaps)
        if "@" in name:
            return
        if not self._lzc.is_supported(self._lzc.lzc_destroy):  # an uncommitted call, missing before OpenZFS 0.8
            CliOps().destroy(name)
            return
        self._retry(lambda: self._call("lzc_destroy", name, raw=True), dataset, "lzc_destroy", name)

    def rollback(self, snap: str) -> bool:
        """``lzc_rollback_to(dataset, snap)``; False when ``snap`` is not the latest."""
        dataset = snap.split("@", 1)[0]
        try:
            self._call("lzc_rollback_to", dataset, snap, raw=True)
        except self._errors.SnapshotNotLatest:
            return False
        except self._errors.ZFSError as exc:
            raise self._failure("lzc_rollback_to", (dataset, snap), exc) from None
        return True

    # ------------------------------------------------------------------ helpers

    def _call(self, function: str, *args: object, raw: bool = False) -> object:
        """Call ``lzc.<function>`` with names as bytes; a ZFS error becomes one sentence
        (or is raised as it is with ``raw``)."""
        encoded = [_encode(arg) for arg in args]
        try:
            return getattr(self._lzc, function)(*encoded)
        except self._errors.ZFSError as exc:
            if raw:
                raise
            raise self._failure(function, args, exc) from None

    def _retry(self, attempt: Callable[[], object], dataset: str, function: str, what: object) -> None:
        def busy(exc: BaseException) -> bool:
            nested = getattr(exc, "errors", None) or []
            return getattr(exc, "errno", None) == errno.EBUSY or any(getattr(e, "errno", None) == errno.EBUSY for e in nested)

        _cli.while_busy(attempt, dataset, catch=self._errors.ZFSError, busy=busy, fail=lambda exc: self._failure(function, (what,), exc))

    def _failure(self, function: str, args: tuple[object, ...], exc: BaseException) -> BdevError:
        nested = getattr(exc, "errors", None) or []
        detail = "; ".join(str(e) for e in nested) or str(exc) or type(exc).__name__
        shown = ", ".join(repr(a) for a in args)
        if getattr(exc, "errno", None) == errno.ENOSPC or "ENOSPC" in detail:
            return BdevError(_("{function}({shown}) failed: the pool is out of space ({detail})").format(
                function=function, shown=shown, detail=detail), backend=BACKEND)
        return BdevError(_("{function}({shown}) failed: {detail}").format(
            function=function, shown=shown, detail=detail), backend=BACKEND)


def _encode(value: object) -> object:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


# ---------------------------------------------------------------------------- choice


def wanted() -> str:
    """What ``BDEV_ZFS_IMPL`` asks for: ``cli``, ``pyzfs`` or ``auto``."""
    value = os.environ.get(IMPL_ENV, "").strip().lower() or "auto"
    return {"lzc": PYZFS, "libzfs_core": PYZFS}.get(value, value)


def library(pool: str) -> tuple[DatasetOps | None, str]:
    """libzfs_core's operations if pyzfs imports and answers ``lzc_exists(pool)``; otherwise
    None and why not."""
    return _library(pool)


@functools.cache
def _library(pool: str) -> tuple[DatasetOps | None, str]:
    try:
        lzc = importlib.import_module("libzfs_core")
        exceptions = importlib.import_module("libzfs_core.exceptions")
    except Exception as exc:  # ImportError, or the C library failing to load (OSError)
        return None, _("pyzfs is not importable: {error}").format(error=exc)
    try:
        lzc.lzc_exists(pool.encode())
    except Exception as exc:  # ZFSInitializationFailed without /dev/zfs (zfs-fuse), ...
        error = f"{type(exc).__name__} ({exc})" if str(exc) else type(exc).__name__
        return None, _("pyzfs does not answer: {error}").format(error=error)
    return LzcOps(lzc, exceptions), ""


def choose(pool: str) -> tuple[DatasetOps, str]:
    """The implementation for datasets of ``pool`` and, when it is the command, why not
    libzfs_core.  ``BDEV_ZFS_IMPL=pyzfs`` without a working pyzfs is an error."""
    want = wanted()
    if want == CLI:
        return CliOps(), f"{IMPL_ENV}=cli"
    ops, why_not = library(pool)
    if ops is not None and want in (PYZFS, "auto"):
        return ops, ""
    if want == PYZFS:
        raise BdevError(_("{impl_env}=pyzfs, but {why_not}").format(impl_env=IMPL_ENV, why_not=why_not),
                        backend=BACKEND)
    return CliOps(), why_not


def problem() -> str | None:
    """Why ``BDEV_ZFS_IMPL`` cannot be honoured, or None."""
    want = wanted()
    if want not in (CLI, PYZFS, "auto"):
        return _("{impl_env}={want!r} is neither 'cli' nor 'pyzfs'").format(impl_env=IMPL_ENV, want=want)
    return None
