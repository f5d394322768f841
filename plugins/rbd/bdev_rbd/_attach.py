"""Making an RBD image reachable as a block device or file on this host, chosen automatically:

* ``krbd``: the kernel's rbd driver (``rbd device map``, ``/dev/rbdN``), where it is loaded;
* ``nbd``: ``rbd-nbd map`` (``/dev/nbdN``), where the nbd driver is loaded;
* ``fuse``: ``rbd-fuse`` showing the one image as a file, which a loop device then mounts.

``BDEV_RBD_MAP=krbd|nbd|fuse`` forces one.  rbd-fuse retries forever when the cluster stops
answering (its writes never fail, so a writer hangs in the kernel): while this process works
through an rbd-fuse attachment, a detached watchdog process (:mod:`._watchdog`) pings the
cluster and aborts the FUSE connection when it stops answering within the cluster's timeout,
so the writer gets an error, and leaves ``<directory>.aborted`` beside the daemon's record.
An rbd-fuse daemon serves one attachment: it is started under ``<run dir>/bdev/rbd/`` with a
record of the image beside it, and stopped (``fusermount -u``) when its loop device lets go.
One whose process died and which no loop device uses any more is stopped by the next command
(:func:`reap`), which also drops abort markers of processes that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from bdev.command import run, which
from bdev.errors import BdevError, Busy, CommandError, InvalidInput
from bdev.mounts import mounts_root, mountpoints_of

from ._cluster import BACKEND, Cluster
from ._i18n import _
from ._names import ImageRef
from ._hostns import host_pid

log = logging.getLogger("bdev.rbd")
MAP_ENV = "BDEV_RBD_MAP"
KINDS = ("krbd", "nbd", "fuse")
RELEASE_TIMEOUT = 10.0


def _watchdog() -> ModuleType:
    """:mod:`._watchdog`, imported when needed: ``python -m bdev_rbd._watchdog`` imports this
    package first, and must not find the module it runs imported already."""
    from . import _watchdog

    return _watchdog


def choose() -> tuple[str | None, str]:
    """The attachment kind for this host and why (or None and why none works)."""
    forced = os.environ.get(MAP_ENV, "").strip()
    if forced:
        if forced not in KINDS:
            raise InvalidInput(_("{map_env}={forced!r} is not one of {kinds}").format(
                map_env=MAP_ENV, forced=forced, kinds=', '.join(KINDS)), backend=BACKEND)
        return forced, f"{MAP_ENV}={forced}"
    if os.path.isdir("/sys/bus/rbd") and which("rbd"):
        return "krbd", _("the kernel's rbd driver (rbd device map)")
    if os.path.isdir("/sys/module/nbd") and which("rbd-nbd"):
        return "nbd", _("rbd-nbd on the kernel's nbd driver (no rbd kernel module)")
    if which("rbd-fuse") and which("fusermount") and os.path.exists("/dev/fuse"):
        return "fuse", _("rbd-fuse and a loop device (no rbd or nbd kernel module)")
    return None, _("no rbd or nbd kernel module, and rbd-fuse is not installed (install rbd-fuse)")


def fuse_root() -> Path:
    """Where rbd-fuse daemons mount the images they serve."""
    return mounts_root().parent / "rbd"


def attach(cluster: Cluster, ref: ImageRef, *, readonly: bool) -> str:
    """Make ``ref`` reachable and return the device or file to mount or format.

    :raises BdevError: no way to attach here, or the tool failed (one sentence).
    """
    kind, why = choose()
    env = {"CEPH_ARGS": cluster.ceph_args()}
    ro = ["--read-only"] if readonly else []
    try:
        if kind == "krbd":
            return run(["rbd", "device", "map", *ro, *cluster.conf_args(), ref.spec], env=env, backend=BACKEND).stdout.strip()
        if kind == "nbd":
            return run(["rbd-nbd", "map", *ro, *cluster.conf_args(), ref.spec], env=env, backend=BACKEND).stdout.strip()
    except CommandError as exc:
        raise BdevError(_("cannot map RBD image {spec} ({detail})").format(spec=ref.spec, detail=_detail(exc)),
                        backend=BACKEND) from None
    if kind == "fuse":
        return _start_fuse(cluster, ref, env)
    raise BdevError(_("cannot attach RBD image {spec}: {why}").format(spec=ref.spec, why=why), backend=BACKEND)


def _start_fuse(cluster: Cluster, ref: ImageRef, env: dict[str, str]) -> str:
    root = fuse_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid = host_pid()
    directory = root / f"{pid}-{secrets.token_hex(4)}"
    directory.mkdir(mode=0o700)
    record = directory.with_suffix(".json")
    record.write_text(json.dumps({"pool": ref.pool, "namespace": ref.namespace, "image": ref.name, "pid": pid}))
    argv = ["rbd-fuse", *cluster.conf_args(), "-p", ref.pool, *(["-s", ref.namespace] if ref.namespace else []),
            "-r", ref.name, str(directory)]
    try:
        run(argv, env=env, timeout=cluster.timeout + 10, backend=BACKEND)
        path = directory / ref.name
        if not path.is_file():
            raise BdevError(_("rbd-fuse does not show RBD image {spec} (it does not exist, or Ceph did not answer)").format(
                spec=ref.spec), backend=BACKEND)
        _watchdog().start(cluster, ref, directory, os.minor(os.stat(directory).st_dev))
    except BaseException as exc:
        _stop_fuse(directory)
        if isinstance(exc, CommandError):
            raise BdevError(_("cannot attach RBD image {spec} through rbd-fuse ({detail})").format(
                spec=ref.spec, detail=_detail(exc)), backend=BACKEND) from None
        raise
    return str(path)


def _abort_record(marker: Path) -> dict | None:
    """The record a watchdog left in ``marker`` when it aborted an rbd-fuse attachment (the
    image and the cause), or None."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads(marker.read_text())
    return None


def _cause(marker: dict) -> str:
    return str(marker.get("cause") or _("the Ceph cluster did not answer"))


def aborted(ref: ImageRef) -> str | None:
    """Why a watchdog aborted an rbd-fuse attachment of ``ref`` made by this process (Ceph
    did not answer, or the pool is full), or None if none did."""
    for _path, data in _records("*.aborted"):
        if data["pid"] == host_pid() and (data["pool"], data["namespace"], data["image"]) == (
                ref.pool, ref.namespace, ref.name):
            return _cause(data)
    return None


def detach(path: str) -> None:
    """Undo :func:`attach` for the device or file ``path``.

    :raises BdevError: a watchdog had aborted this rbd-fuse attachment, so what was written
        through it since may be lost (said with the cause, and the abort marker removed); it
        is stopped all the same.
    """
    root = fuse_root()
    if Path(path).parent.parent == root:
        directory = Path(path).parent
        marker = _watchdog().marker(directory)
        aborted_by = _abort_record(marker)
        _stop_fuse(directory)
        if aborted_by is not None:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
            spec = ImageRef(aborted_by["pool"], aborted_by["namespace"], aborted_by["image"]).spec
            raise BdevError(_("writes to RBD image {spec} stopped: {cause}; what was written since may be lost").format(
                spec=spec, cause=_cause(aborted_by)), backend=BACKEND)
    elif path.startswith(("/dev/rbd", "/dev/nbd")):
        _unmap(["rbd", "device", "unmap"] if path.startswith("/dev/rbd") else ["rbd-nbd", "unmap"], path)


def _unmap(tool: list[str], device: str) -> None:
    """Unmap a kernel device once no filesystem holds it (rbd-nbd would disconnect one still
    mounted, losing its last writes); while one does, it stays mapped.

    :raises Busy: still held after :data:`RELEASE_TIMEOUT` seconds.
    """
    if not wait_device_released(device):
        raise Busy(_("{device} is still in use after its filesystem was unmounted; it stays mapped").format(
            device=device), backend=BACKEND)
    run([*tool, device], backend=BACKEND)


def wait_device_released(device: str) -> bool:
    """Wait until nothing holds block device ``device`` exclusively (a mounted filesystem
    does: the kernel drops a stopped container's last mount a moment after its processes
    end); False if something still does after :data:`RELEASE_TIMEOUT` seconds."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while True:
        try:
            os.close(os.open(device, os.O_RDONLY | os.O_EXCL))
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return True  # gone, or not openable: the unmapping tool says why
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@contextlib.contextmanager
def attached(cluster: Cluster, ref: ImageRef, *, readonly: bool) -> Iterator[str]:
    """:func:`attach` for the duration of the block (formatting, a UUID change)."""
    path = attach(cluster, ref, readonly=readonly)
    try:
        yield path
    finally:
        detach(path)


def _stop_fuse(directory: Path) -> None:
    """Unmount an rbd-fuse daemon's directory (the daemon exits) and remove it."""
    if _watchdog().marker(directory).exists():
        run(["umount", "-l", str(directory)], check=False)
    for _attempt in range(50):
        if str(directory) not in _fuse_mounts():
            break
        if run(["fusermount", "-u", str(directory)], check=False).returncode == 0:
            break
        time.sleep(0.1)
    else:
        run(["fusermount", "-u", "-z", str(directory)], check=False)
    with contextlib.suppress(OSError):
        directory.rmdir()
    with contextlib.suppress(OSError):
        directory.with_suffix(".json").unlink()


def _fuse_mounts() -> set[str]:
    from bdev.mounts import mount_entries

    return {e.mountpoint for e in mount_entries() if e.fstype.startswith("fuse.rbd")}


# ---------------------------------------------------------------------------- loop devices


def loop_backing(device: str) -> str | None:
    """The file behind loop device ``device`` (``/dev/loop3``), or None."""
    name = os.path.basename(device)
    if not name.startswith("loop"):
        return None
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip() or None
    except OSError:
        return None


def loops_backing(path: str) -> list[str]:
    """Loop devices whose backing file is ``path``."""
    found = []
    for entry in Path("/sys/block").glob("loop*"):
        with contextlib.suppress(OSError):
            if (entry / "loop" / "backing_file").read_text().strip() == path:
                found.append(f"/dev/{entry.name}")
    return found


def wait_loops_released(path: str) -> bool:
    """Wait until no loop device is backed by ``path`` (autoclear after an unmount)."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while loops_backing(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------------------- finding mounts


def attachments(ref: ImageRef) -> list[str]:
    """The devices or files through which ``ref`` is attached on this host now."""
    found = []
    for record, data in _records("*.json"):
        if (data["pool"], data["namespace"], data["image"]) == (ref.pool, ref.namespace, ref.name):
            found.append(str(record.with_suffix("") / ref.name))
    return found + kernel_devices(ref)


def kernel_devices(ref: ImageRef) -> list[str]:
    """The kernel block devices mapping ``ref`` (its head, not a snapshot) on this host:
    krbd's from sysfs (``/dev/rbdN``, with or without udev's ``/dev/rbd/...`` links), rbd-nbd's
    from ``rbd-nbd list-mapped`` (``/dev/nbdN``), asked only while an nbd device is connected."""
    wanted = (ref.pool, ref.namespace, ref.name, "-")
    found = []
    for device in Path("/sys/bus/rbd/devices").glob("*"):
        with contextlib.suppress(OSError):
            attrs = tuple((device / attr).read_text().strip() for attr in ("pool", "pool_ns", "name", "current_snap"))
            if attrs == wanted:
                found.append(f"/dev/rbd{device.name}")
    if any(Path("/sys/block").glob("nbd*/pid")) and which("rbd-nbd"):
        listed = run(["rbd-nbd", "list-mapped", "--format", "json"], check=False, backend=BACKEND).stdout
        with contextlib.suppress(ValueError):
            for entry in json.loads(listed or "[]"):
                head = entry.get("snap") in ("", "-")  # rbd-nbd says "" where krbd says "-"
                if head and (entry.get("pool"), entry.get("namespace") or "", entry.get("image"), "-") == wanted:
                    found.append(str(entry["device"]))
    return found


def mountpoints(ref: ImageRef) -> list[str]:
    """Where ``ref``'s filesystem is mounted on this host."""
    points: list[str] = []
    for path in attachments(ref):
        devices = loops_backing(path) if not path.startswith("/dev/") else [path]
        for device in devices:
            points += mountpoints_of(device)
    return points


def in_use(ref: ImageRef) -> bool:
    """Whether ``ref`` is attached here and in use: the kernel maps it, a loop device holds
    its rbd-fuse file, or the process that attached it through rbd-fuse still runs (a
    container's monitor, between attaching and its init's mount).  This sees a mount in
    another mount namespace too (a running container's rootfs, mounted in its own)."""
    if any(path.startswith("/dev/") or loops_backing(path) for path in attachments(ref)):
        return True
    return any(_alive(int(data["pid"])) for _record, data in _records("*.json")
               if (data["pool"], data["namespace"], data["image"]) == (ref.pool, ref.namespace, ref.name))


def reap() -> list[str]:
    """Stop rbd-fuse daemons whose process is gone and whose image no loop device uses
    (a command killed between attaching and mounting, a temporary mount reaped after its
    process died); returns the images they served."""
    reaped = []
    for record, data in _records("*.json"):
        pid, image = int(data["pid"]), str(data["image"])
        if _alive(pid):
            continue
        directory = record.with_suffix("")
        if loops_backing(str(directory / image)):
            continue
        _stop_fuse(directory)
        reaped.append(image)
    for marker, data in _records("*.aborted"):
        if not _alive(int(data["pid"])) and not marker.with_suffix(".json").exists():
            with contextlib.suppress(OSError):
                marker.unlink()
    return reaped


def _records(pattern: str) -> list[tuple[Path, dict]]:
    """The readable JSON records (daemon records, abort markers) matching ``pattern`` under
    :func:`fuse_root`, with their paths; a half-written or vanished one is skipped."""
    found = []
    for path in fuse_root().glob(pattern):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict) and {"pool", "namespace", "image", "pid"} <= data.keys():
                found.append((path, data))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _detail(exc: CommandError) -> str:
    from bdev.blockfs import detail

    return detail(exc)
