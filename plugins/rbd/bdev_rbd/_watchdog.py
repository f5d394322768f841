"""The watchdog of one rbd-fuse attachment, run as its own detached process.

rbd-fuse retries forever when the cluster stops answering, and waits for room when its pool
is full (over its quota, or the cluster full), so a writer would hang in the kernel.  The
watchdog pings the cluster every second and, once it misses the cluster's timeout or the pool
is full, aborts the FUSE connection (every pending and later request fails), kills the daemon
and records the abort and its cause in ``<directory>.aborted`` beside the daemon's record.
It exits when the rbd-fuse mount is gone.

It is a process of its own, not a thread of the caller: librados threads (and a thread using
them) in a process that later forks (the runtime's monitor starting a container's init) leave
the child blocked on a lock one of them held.  :func:`start` double-forks it through
``python -m bdev_rbd._watchdog`` (own session, standard streams on ``/dev/null``, no other inherited descriptors), so no process has to
reap it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from bdev.command import run

from ._cluster import BACKEND, Cluster
from ._i18n import _
from ._names import ImageRef
from ._hostns import enter_host_mounts, host_pid

log = logging.getLogger("bdev.rbd")
FUSECTL = Path("/sys/fs/fuse/connections")
INTERVAL = 1.0


def marker(directory: Path) -> Path:
    """The file recording that the watchdog of ``directory`` aborted its connection."""
    return directory.with_suffix(".aborted")


def start(cluster: Cluster, ref: ImageRef, directory: Path, connection: int) -> None:
    """Start the detached watchdog of the rbd-fuse mount at ``directory`` (FUSE connection
    ``connection``) serving ``ref``; returns once it runs on its own."""
    spec = {"cluster": [cluster.conf, cluster.user, cluster.keyring, cluster.timeout],
            "ref": [ref.pool, ref.namespace, ref.name], "directory": str(directory),
            "connection": connection, "owner": host_pid()}
    # A short-lived intermediate forks the watchdog and exits: reaping it here leaves the
    # watchdog to init (or the nearest subreaper), never a zombie of a long-lived caller.
    run([sys.executable, "-m", "bdev_rbd._watchdog", json.dumps(spec)], timeout=30, backend=BACKEND)


def watch(cluster: Cluster, ref: ImageRef, directory: Path, connection: int, owner: int,
          interval: float = INTERVAL) -> None:
    """Ping the cluster while the rbd-fuse daemon of ``directory`` serves FUSE connection
    ``connection``; abort it when Ceph stops answering or the pool is full (see the module
    docstring)."""
    from ._cluster import forget

    while served(directory, connection):
        cause = _cannot_go_on(cluster, ref)
        if cause is not None:
            if not served(directory, connection):
                return
            log.warning("aborting rbd-fuse at %s: %s", directory, cause)
            marker(directory).write_text(json.dumps(
                {"pool": ref.pool, "namespace": ref.namespace, "image": ref.name, "pid": owner, "cause": cause}))
            abort_fuse(connection)
            kill_daemon(directory)
            forget(cluster)
            return
        time.sleep(interval)
    forget(cluster)


def _cannot_go_on(cluster: Cluster, ref: ImageRef) -> str | None:
    """Why the attachment of ``ref`` cannot go on (Ceph does not answer, or the pool is
    full), as the end of a sentence; None while it can."""
    import rados

    from ._cluster import connect, full_reason, pool

    try:
        with pool(cluster, ref.pool, ref.namespace) as ioctx:
            with contextlib.suppress(rados.ObjectNotFound):
                ioctx.stat("rbd_directory")
        return full_reason(connect(cluster), ref.pool)
    except Exception:  # noqa: BLE001 - any failure to answer is the cluster's
        return _("the Ceph cluster did not answer within {timeout} s (is an OSD down?); the image is removed when "
                 "the cluster answers again").format(timeout=cluster.timeout)


def served(directory: Path, connection: int) -> bool:
    """Whether the rbd-fuse daemon of ``directory`` runs and its FUSE connection is open.
    Both are visible from any mount namespace (a container's init mounts the image in its
    own), and together they tell a reused connection number apart."""
    if not (FUSECTL / str(connection)).exists():
        run(["mount", "-t", "fusectl", "fusectl", str(FUSECTL)], check=False)
    return (FUSECTL / str(connection)).exists() and bool(daemons(directory))


def abort_fuse(connection: int) -> None:
    """Abort FUSE connection ``connection``: every pending and later request fails."""
    if not (FUSECTL / str(connection)).exists():
        run(["mount", "-t", "fusectl", "fusectl", str(FUSECTL)], check=False)
    with contextlib.suppress(OSError):
        (FUSECTL / str(connection) / "abort").write_text("1")


def daemons(directory: Path) -> list[int]:
    """The rbd-fuse processes serving ``directory`` (found by that exact argument)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and os.path.basename(argv[0]) == b"rbd-fuse" and os.fsencode(directory) in argv:
                found.append(int(proc.name))
    return found


def kill_daemon(directory: Path) -> None:
    """SIGKILL the rbd-fuse daemon serving ``directory``: once its connection is aborted it
    would retry the dead cluster forever."""
    for pid in daemons(directory):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """``python -m bdev_rbd._watchdog SPEC``: fork the watchdog (before librados is loaded)
    and return at once."""
    parser = argparse.ArgumentParser(prog="bdev_rbd._watchdog")
    parser.add_argument("spec", help="JSON: cluster, ref, directory, connection, owner")
    spec = json.loads(parser.parse_args(argv).spec)
    conf, user, keyring, timeout = spec["cluster"]
    cluster = Cluster(conf=conf, user=user, keyring=keyring, timeout=int(timeout))
    ref = ImageRef(*spec["ref"])
    if os.fork() != 0:
        return 0
    enter_host_mounts()
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the starter's output pipes reach their end
    os.close(null)
    watch(cluster, ref, Path(spec["directory"]), int(spec["connection"]), int(spec["owner"]))
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
