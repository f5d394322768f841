"""A throwaway single-node Ceph cluster for tests and benchmarks: one monitor and one memstore
OSD (no manager) on loopback, in a private directory, bootstrapped in about two seconds and
torn down (every daemon killed, the directory removed) even when the body fails.

Used by bdev's rbd tests and by the benchmarks; usable by anyone testing against RBD::

    with throwaway_cluster(tmp_path) as cluster:
        ...  # cluster.conf, cluster.keyring, cluster.pool ("lxc", an initialised RBD pool)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..command import run, which
from ..errors import BdevError
from .processes import stop_from_pidfile

PACKAGES = ("ceph-mon", "ceph-osd", "ceph-common", "python3-rbd", "python3-rados", "rbd-fuse")
"""The Debian packages a cluster (and the rbd backend) needs; one with a manager also needs
``ceph-mgr``."""

_TOOLS = {
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "ceph": "ceph-common",
    "ceph-authtool": "ceph-common",
    "monmaptool": "ceph-common",
    "rbd": "ceph-common",
    "rbd-fuse": "rbd-fuse",
}
POOL = "lxc"
"""The RBD pool every cluster holds, named as LXC's default ``lxc.bdev.rbd.rbdpool``."""
UP_TIMEOUT = 60.0
_FAST_STATISTICS = """mgr stats period = 1
mon mgr digest period = 1
mon tick interval = 1
osd client watch timeout = 10
"""
"""With a manager: statistics reported every second, so a pool quota is enforced within about
two seconds of being passed instead of about fifteen; and a killed client's watch on an image
(which keeps the image from being removed) expires after 10 s instead of 30."""


def ceph_unavailable_reason(*, manager: bool = False) -> str | None:
    """Why no throwaway cluster (with a manager, if asked) can run here (missing packages, not
    root), or None."""
    tools = {**_TOOLS, "ceph-mgr": "ceph-mgr"} if manager else _TOOLS
    missing = sorted({pkg for tool, pkg in tools.items() if not which(tool)})
    if importlib.util.find_spec("rados") is None or importlib.util.find_spec("rbd") is None:
        missing += ["python3-rados", "python3-rbd"]
    if missing:
        return f"Ceph is not installed (apt-get install {' '.join(sorted(set(missing)))})"
    if os.geteuid() != 0:
        return "a throwaway Ceph cluster is started as root here"
    return None


@dataclass(frozen=True)
class CephCluster:
    """A running throwaway cluster.

    :param conf: its ``ceph.conf`` (monitor address, cephx, the admin keyring).
    :param keyring: the ``client.admin`` keyring.
    :param pool: an initialised RBD pool (``lxc``).
    :param port: the monitor's TCP port on 127.0.0.1.
    :param directory: the private directory holding everything.
    """

    conf: Path
    keyring: Path
    pool: str
    port: int
    directory: Path

    def ceph(self, *args: str, timeout: float = 60) -> str:
        """Run ``ceph -c <conf> ARGS`` and return its standard output."""
        return run(["ceph", "-c", str(self.conf), *args], timeout=timeout).stdout

    def kill_osd(self) -> None:
        """SIGKILL the OSD (its memstore data is lost with it): every later I/O fails or times
        out, as on a cluster whose only OSD died."""
        stop_from_pidfile(self.directory / "run" / "osd.0.pid")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_conf(directory: Path, fsid: str, port: int, device_bytes: int, manager: bool) -> Path:
    d = str(directory)
    conf = directory / "ceph.conf"
    conf.write_text(
        f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{port}
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
admin socket = {d}/run/$cluster-$name.$pid.asok
keyring = {d}/ceph.client.admin.keyring
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.1
{_FAST_STATISTICS if manager else ""}client mount timeout = 10
rados mon op timeout = 10
rados osd op timeout = 10

[mon]
mon data = {d}/mon/$cluster-$id
keyring = {d}/mon.keyring

[osd]
osd data = {d}/osd/$cluster-$id
keyring = {d}/osd/$cluster-$id/keyring
osd objectstore = memstore
memstore device bytes = {device_bytes}

[mgr]
mgr data = {d}/mgr/$cluster-$id
keyring = {d}/mgr/$cluster-$id/keyring
"""
    )
    return conf


def _bootstrap(directory: Path, port: int, device_bytes: int, manager: bool) -> tuple[Path, Path]:
    """Make the keys, the monitor and the OSD (and the manager), start them and the ``lxc``
    RBD pool."""
    for sub in ("run", "log", "mon", "osd"):
        (directory / sub).mkdir()
    fsid = str(uuid.uuid4())
    conf = _write_conf(directory, fsid, port, device_bytes, manager)
    c = ["-c", str(conf)]
    mon_keyring, admin_keyring = directory / "mon.keyring", directory / "ceph.client.admin.keyring"
    run(["ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
    run(["ceph-authtool", "--create-keyring", str(admin_keyring), "--gen-key", "-n", "client.admin",
         "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *"])
    run(["ceph-authtool", str(mon_keyring), "--import-keyring", str(admin_keyring)])
    monmap = directory / "monmap"
    run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v1:127.0.0.1:{port}]", str(monmap)])
    run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(mon_keyring)])
    run(["ceph-mon", *c, "-i", "a"])
    osd_uuid = str(uuid.uuid4())
    key = run(["ceph-authtool", "--gen-print-key"]).stdout.strip()
    secret = directory / "osd-secret.json"
    secret.write_text(json.dumps({"cephx_secret": key}))
    osd_id = run(["ceph", *c, "osd", "new", osd_uuid, "-i", str(secret)], timeout=60).stdout.strip()
    osd_dir = directory / "osd" / f"ceph-{osd_id}"
    osd_dir.mkdir()
    run(["ceph-authtool", "--create-keyring", str(osd_dir / "keyring"), "--name", f"osd.{osd_id}", "--add-key", key])
    run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid])
    run(["ceph-osd", *c, "-i", osd_id])

    def osd_up() -> bool:
        dump = json.loads(run(["ceph", *c, "osd", "dump", "--format", "json"], timeout=30).stdout)
        return any(o.get("up") and o.get("in") for o in dump.get("osds", []))

    _wait_until(osd_up, "OSD", directory)
    if manager:
        _start_manager(directory, c)
    run(["ceph", *c, "osd", "pool", "create", POOL, "8", "8"], timeout=60)
    run(["rbd", *c, "pool", "init", POOL], timeout=120)
    return conf, admin_keyring


def _start_manager(directory: Path, c: list[str]) -> None:
    """Start the manager ``mgr.x`` and wait until the monitor says it is available."""
    mgr_dir = directory / "mgr" / "ceph-x"
    mgr_dir.mkdir(parents=True)
    run(["ceph", *c, "auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd", "allow *", "mds", "allow *",
         "-o", str(mgr_dir / "keyring")], timeout=60)
    run(["ceph-mgr", *c, "-i", "x"])
    _wait_until(lambda: json.loads(run(["ceph", *c, "mgr", "dump", "--format", "json"], timeout=30).stdout).get("available"),
                "manager", directory)


def _wait_until(ready: Callable[[], object], what: str, directory: Path) -> None:
    """Poll ``ready()`` every 0.1 s until it is true, for at most :data:`UP_TIMEOUT`."""
    deadline = time.monotonic() + UP_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise BdevError(f"the throwaway Ceph {what} did not come up within {UP_TIMEOUT:.0f} s (see {directory}/log)")
        time.sleep(0.1)


def _teardown(directory: Path) -> None:
    """Kill every daemon that wrote a pid file under ``directory``, then remove it."""
    for pidfile in (directory / "run").glob("*.pid"):
        stop_from_pidfile(pidfile)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster(
    workdir: Path, *, port: int | None = None, device_bytes: int = 4 << 30, manager: bool = False
) -> Iterator[CephCluster]:
    """Bootstrap a single-node cluster under ``workdir`` and yield it; on exit (or failure)
    kill its daemons and remove its files.

    :param port: the monitor's port on 127.0.0.1 (default: a free one).
    :param device_bytes: the memstore OSD's capacity (held in RAM as data is written); a
        small one makes a cluster that fills up.
    :param manager: also run a manager (about 3 s more and 300 MB of memory): without one
        the monitor has no pool statistics, so pool quotas (``ceph osd pool set-quota``) are
        never enforced.  Statistics then reach the monitor every second or so.
    :raises BdevError: the Ceph packages are missing (naming them), or the cluster did not
        come up.
    """
    problem = ceph_unavailable_reason(manager=manager)
    if problem:
        raise BdevError(problem)
    port = port or _free_port()
    directory = Path(workdir) / f"ceph-{port}"
    directory.mkdir(parents=True)
    try:
        conf, keyring = _bootstrap(directory, port, device_bytes, manager)
        yield CephCluster(conf=conf, keyring=keyring, pool=POOL, port=port, directory=directory)
    finally:
        _teardown(directory)
