"""Private helpers: the ``zfs``/``zpool`` commands (through bdev's command helper) with
parsable output (``-H``, ``zfs get -H -p``: zfs-fuse has no ``list -p``), error sentences and
the bounded retry of "dataset is busy"."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from bdev.command import Completed, run
from bdev.errors import BackendUnavailable, BdevError, CommandError
from ._i18n import _

E = TypeVar("E", bound=BaseException)

BACKEND = "zfs"
BUSY_RETRIES = 25
BUSY_DELAY = 0.2
_NAME_COMPONENT = re.compile(r"^[A-Za-z0-9_.:\- ]+$")
_DAEMON_DOWN = (
    "zfs-fuse daemon is running", "failed to initialize ZFS library", "/dev/zfs", "modules are not loaded",
    "Failed to initialize the libzfs library",
)


def daemon_down(stderr: str) -> bool:
    """Whether a command's error output says no ZFS (kernel module or zfs-fuse daemon) answers."""
    return any(marker in stderr for marker in _DAEMON_DOWN)


def last_line(text: str) -> str:
    """The last non-empty line of ``text``."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def failure(exc: CommandError, *, container: str | None = None) -> BdevError:
    """One sentence for a failed zfs/zpool command, naming the command."""
    command = shlex.join([exc.argv[0].rsplit("/", 1)[-1], *exc.argv[1:]])
    detail = last_line(exc.stderr) or f"exit status {exc.returncode}"
    if daemon_down(exc.stderr) or exc.returncode == 127:
        return BackendUnavailable(_("'{command}' failed: no ZFS answers ({reason})").format(
            command=command, reason=unavailable_reason(exc.stderr)), container=container, backend=BACKEND)
    if "out of space" in detail or "No space left" in detail:
        return BdevError(_("'{command}' failed: the pool is out of space ({detail})").format(
            command=command, detail=detail), container=container, backend=BACKEND)
    return BdevError(_("'{command}' failed: {detail}").format(command=command, detail=detail),
                     container=container, backend=BACKEND)


def unavailable_reason(stderr: str) -> str:
    """Why ZFS does not answer, for a person."""
    if "command not found" in stderr:
        return _("the zfs command is not installed (install zfs-fuse or zfsutils-linux)")
    if "zfs-fuse" in stderr:
        return _("the zfs-fuse daemon is not running (start it with 'zfs-fuse' or 'systemctl start zfs-fuse')")
    return _("neither the ZFS kernel module (through /dev/zfs) nor a zfs-fuse daemon answers")


def zfs(*args: str, check: bool = True, container: str | None = None) -> str:
    """Run ``zfs args...`` and return its standard output; a failure is one sentence."""
    return _run(["zfs", *args], check=check, container=container)


def zpool(*args: str, check: bool = True) -> str:
    """Run ``zpool args...`` and return its standard output."""
    return _run(["zpool", *args], check=check)


def _run(argv: list[str], *, check: bool, container: str | None = None) -> str:
    try:
        return run(argv, check=check, backend=BACKEND, container=container).stdout
    except CommandError as exc:
        raise failure(exc, container=container) from None


def probe() -> str | None:
    """None when ZFS answers, else why not (daemon down, tool missing)."""
    try:
        result = run(["zpool", "list", "-H", "-o", "name"], check=False, backend=BACKEND, timeout=30)
    except CommandError as exc:
        return unavailable_reason(exc.stderr)
    if result.returncode != 0:
        return unavailable_reason(result.stderr) if daemon_down(result.stderr) else last_line(result.stderr)
    return None


def get(dataset: str, prop: str) -> str | None:
    """The parsable value of ``prop`` on ``dataset``; None when the dataset does not exist."""
    result = run(["zfs", "get", "-H", "-p", "-o", "value", prop, dataset], check=False, backend=BACKEND)
    if result.returncode != 0:
        if daemon_down(result.stderr):
            raise failure_of(result)
        if "does not exist" in result.stderr or "invalid" in result.stderr:
            return None
        raise failure_of(result)
    return result.stdout.rstrip("\n")


def exists(dataset: str) -> bool:
    """Whether ``dataset`` (a filesystem or snapshot) exists."""
    return get(dataset, "type") is not None


def pool_exists(pool: str) -> bool:
    """Whether the pool ``pool`` is imported."""
    result = run(["zpool", "list", "-H", "-o", "name", pool], check=False, backend=BACKEND)
    if result.returncode != 0 and daemon_down(result.stderr):
        raise failure_of(result)
    return result.returncode == 0


def origins(pool: str) -> dict[str, str]:
    """Every filesystem of ``pool`` that is a clone, with its origin snapshot."""
    out = zfs("list", "-H", "-r", "-t", "filesystem", "-o", "name,origin", pool)
    found = {}
    for line in out.splitlines():
        name, _, origin = line.partition("\t")
        if origin and origin != "-":
            found[name] = origin
    return found


def snapshots(dataset: str) -> list[str]:
    """The snapshots of ``dataset`` (full names)."""
    out = zfs("list", "-H", "-r", "-d", "1", "-t", "snapshot", "-o", "name", dataset)
    return [line for line in out.splitlines() if line.startswith(dataset + "@")]


def name_problem(name: str) -> str | None:
    """Why ZFS would reject ``name`` as a dataset name, or None."""
    if not name or len(name) > 255:
        return _("dataset name {name!r} is empty or longer than 255 characters").format(name=name)
    for part in name.split("/"):
        if not part or not _NAME_COMPONENT.match(part):
            return _("dataset name {name!r} is not valid for ZFS (components may hold only letters, digits, '_', "
                     "'-', '.', ':' and spaces)").format(
                name=name)
    return None


def retry_busy(argv: Sequence[str], dataset: str, *, container: str | None = None) -> None:
    """Run ``zfs argv`` and, while it says "dataset is busy", unmount ``dataset`` (forcibly)
    and retry every 0.2 s, a bounded number of times; then fail with one sentence."""
    while_busy(
        lambda: run(["zfs", *argv], backend=BACKEND, container=container),
        dataset,
        catch=CommandError,
        busy=lambda exc: "busy" in exc.stderr,
        fail=lambda exc: failure(exc, container=container),
    )


def while_busy(
    attempt: Callable[[], object],
    dataset: str,
    *,
    catch: type[E],
    busy: Callable[[E], bool],
    fail: Callable[[E], BdevError],
) -> None:
    """Call ``attempt``; while it raises a ``catch`` error that is ``busy``, ``zfs umount -f``
    ``dataset`` and try again every 0.2 s, a bounded number of times.  Any other error, or the
    last busy one, is raised as ``fail(error)``."""
    last: E | None = None
    for _ in range(BUSY_RETRIES):
        try:
            attempt()
            return
        except catch as exc:
            if not busy(exc):
                raise fail(exc) from None
            last = exc
        run(["zfs", "umount", "-f", dataset], check=False, backend=BACKEND)
        time.sleep(BUSY_DELAY)
    assert last is not None
    err = fail(last)
    err.cause += f" (still busy after {BUSY_RETRIES} tries over {BUSY_RETRIES * BUSY_DELAY:.0f} s)"
    raise err


def run_zfs(argv: Sequence[str], *, check: bool = True) -> Completed:
    """``zfs argv`` through bdev's command helper, returning the finished command."""
    return run(["zfs", *argv], check=check, backend=BACKEND)


def failure_of(result: Completed, *, container: str | None = None) -> BdevError:
    """One sentence for a zfs/zpool command that finished with an error."""
    return failure(CommandError(result.argv, result.returncode, result.stderr), container=container)
