"""Which Ceph cluster, as which user, and the librados connection to it.

The cluster is a host setting, never a container's: ``CEPH_CONF``, else ``lxc.bdev.rbd.conf``
in ``lxc.conf``, else Ceph's own default (``/etc/ceph/ceph.conf``); the user is
``lxc.bdev.rbd.rbduser`` (default ``admin``) and its key comes from ``lxc.bdev.rbd.keyring`` or
the config file's ``keyring``.  Every connection has short timeouts
(``lxc.bdev.rbd.timeout``, default 10 s), so an unreachable cluster fails instead of hanging.
Every librados/librbd failure becomes one sentence (:func:`explain`).

Every I/O context bdev opens asks Ceph to *try* writes to a full pool (``FULL_TRY``): a write
that needs room then fails at once (``EDQUOT`` over a pool quota, ``ENOSPC`` on a full
cluster, said as :class:`PoolFull` naming the pool and its quota) instead of waiting for the
pool to have room again, and what frees room (removing data) still goes through.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bdev.errors import BdevError, InvalidInput, NotFound
from bdev.units import format_size

from ._i18n import _, N_

BACKEND = "rbd"
CONF_ENV = "CEPH_CONF"
DEFAULT_POOL = "lxc"
DEFAULT_USER = "admin"
DEFAULT_TIMEOUT = 10
KEY_POOL = "lxc.bdev.rbd.rbdpool"
KEY_USER = "lxc.bdev.rbd.rbduser"
KEY_CONF = "lxc.bdev.rbd.conf"
KEY_KEYRING = "lxc.bdev.rbd.keyring"
KEY_TIMEOUT = "lxc.bdev.rbd.timeout"


@dataclass(frozen=True)
class Cluster:
    """How to reach the cluster.

    :param conf: the ``ceph.conf`` path, or None for Ceph's default search.
    :param user: the client id (``admin`` for ``client.admin``).
    :param keyring: the keyring path, or None for the config file's.
    :param timeout: seconds allowed to connect and for each monitor or OSD operation.
    """

    conf: str | None
    user: str
    keyring: str | None
    timeout: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], env: Mapping[str, str] | None = None) -> "Cluster":
        """The cluster this host's settings name (see the module docstring).

        :raises InvalidInput: a timeout that is not a positive whole number of seconds.
        """
        env = os.environ if env is None else env
        raw = settings.get(KEY_TIMEOUT) or str(DEFAULT_TIMEOUT)
        if not raw.strip().isdigit() or int(raw) <= 0:
            raise InvalidInput(_("{key_timeout} = {raw!r} is not a positive number of seconds").format(
                key_timeout=KEY_TIMEOUT, raw=raw), backend=BACKEND)
        return cls(
            conf=env.get(CONF_ENV) or settings.get(KEY_CONF) or None,
            user=settings.get(KEY_USER) or DEFAULT_USER,
            keyring=settings.get(KEY_KEYRING) or None,
            timeout=int(raw),
        )

    def options(self) -> dict[str, str]:
        """librados options for this cluster: timeouts, no client blocklisting when a dead
        process's lock is broken, and the keyring if given."""
        t = str(self.timeout)
        opts = {
            "client_mount_timeout": t,
            "rados_mon_op_timeout": t,
            "rados_osd_op_timeout": t,
            "rbd_blocklist_on_break_lock": "false",
        }
        if self.keyring:
            opts["keyring"] = self.keyring
        return opts

    def describe(self) -> str:
        """``client.admin of /etc/ceph/ceph.conf``, for messages."""
        return _("client.{user} of {conf}").format(user=self.user, conf=self.conf or 'the default Ceph config')

    def ceph_args(self) -> str:
        """The same settings as ``CEPH_ARGS`` for Ceph's programs (rbd-fuse, rbd, rbd-nbd)."""
        args = [f"--id={self.user}"] + [f"--{k}={v}" for k, v in self.options().items() if k != "rbd_blocklist_on_break_lock"]
        return " ".join(args)

    def conf_args(self) -> list[str]:
        """``-c CONF`` when a config file is named."""
        return ["-c", self.conf] if self.conf else []


_CONNECTIONS: dict[Cluster, Any] = {}
_FAILED: dict[Cluster, tuple[float, BdevError]] = {}
_LOCK = threading.Lock()


def _rados() -> Any:
    try:
        import rados
    except ImportError:
        raise BdevError(_("the Python module rados is not installed (install python3-rados)"), backend=BACKEND) from None
    return rados


def connect(cluster: Cluster) -> Any:
    """A connected ``rados.Rados`` for ``cluster``, reused within this process; made from the
    host's network namespace when this process is a container's (:mod:`._hostns`).

    :raises BdevError: the config file or keyring is missing, no monitor answers, or the key
        is refused, in one sentence.
    """
    with _LOCK:
        handle = _CONNECTIONS.get(cluster)
        if handle is not None and handle.state == "connected":
            return handle
        failed = _FAILED.get(cluster)
        if failed is not None and time.monotonic() - failed[0] < cluster.timeout:
            raise failed[1]  # the same command asking again does not wait a second time
        rados = _rados()
        if cluster.conf and not os.path.isfile(cluster.conf):
            raise NotFound(_("the Ceph config file {conf} does not exist").format(conf=cluster.conf), backend=BACKEND)
        try:
            handle = rados.Rados(conffile=cluster.conf or "", rados_id=cluster.user, conf=cluster.options())
        except rados.Error as exc:
            raise explain(exc, _("reading the Ceph config {conf}").format(conf=cluster.conf or '(default)')) from None
        _check_keyring(handle, cluster)
        from ._hostns import host_network

        try:
            with host_network():  # from a container's init too: its sockets and threads stay in the host's
                handle.connect(timeout=cluster.timeout)
        except rados.Error as exc:
            error = _connect_error(exc, handle, cluster)  # reads mon_host before the handle goes
            with contextlib.suppress(Exception):
                handle.shutdown()
            _FAILED[cluster] = (time.monotonic(), error)
            raise error from None
        _CONNECTIONS[cluster] = handle
        return handle


def forget(cluster: Cluster) -> None:
    """Drop the cached connection (after the cluster stopped answering)."""
    with _LOCK:
        handle = _CONNECTIONS.pop(cluster, None)
    if handle is not None:
        with contextlib.suppress(Exception):
            handle.shutdown()


def _shut_down_before_fork() -> None:
    """Shut down every cached connection before this process forks (reconnected lazily).

    A connection runs librados threads (messenger workers, timers) that hold locks at any
    moment; a child forked meanwhile (the runtime's monitor starting a container's init) has
    only the forking thread and blocks on the first such lock it needs.  Shutting them down
    here covers every ``os.fork()`` without each backend operation paying a reconnect; a fork
    while another thread is inside a librados call is not supported (bdev forks from one
    thread).
    """
    with _LOCK:
        handles = list(_CONNECTIONS.values())
        _CONNECTIONS.clear()
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.shutdown()


os.register_at_fork(before=_shut_down_before_fork)


def _check_keyring(handle: Any, cluster: Cluster) -> None:
    """Refuse when none of the keyring files Ceph would read exists (librados says only
    "object not found" then, as for a refused connection)."""
    try:
        candidates = [p.strip() for p in handle.conf_get("keyring").split(",") if p.strip()]
    except Exception:  # noqa: BLE001 - no keyring option: let connect say what it says
        return
    expanded = [p.replace("$cluster", "ceph").replace("$name", f"client.{cluster.user}") for p in candidates]
    if expanded and not any(os.path.isfile(p) for p in expanded):
        raise NotFound(_("no keyring for client.{user} exists ({expanded})").format(
            user=cluster.user, expanded=', '.join(expanded)), backend=BACKEND)


def _connect_error(exc: Exception, handle: Any, cluster: Cluster) -> BdevError:
    code = getattr(exc, "errno", None)
    try:
        mons = handle.conf_get("mon_host") or "no monitors configured"
    except Exception:  # noqa: BLE001
        mons = "the configured monitors"
    if code in (errno.EACCES, errno.EPERM):
        return BdevError(_("the Ceph cluster at {mons} refused {users}: wrong key in its keyring").format(
            mons=mons, users=cluster.describe()), backend=BACKEND)
    if code in (errno.ETIMEDOUT, errno.ENOENT, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EINTR):
        return BdevError(
            _("no Ceph monitor answered at {mons} within {timeout} s ({users})").format(
                mons=mons, timeout=cluster.timeout, users=cluster.describe()), backend=BACKEND
        )
    return explain(exc, _("connecting to the Ceph cluster at {mons}").format(mons=mons))


@contextlib.contextmanager
def pool(cluster: Cluster, name: str, namespace: str = "") -> Iterator[Any]:
    """An I/O context on pool ``name`` (and RBD namespace ``namespace``), closed on exit.

    :raises NotFound: the pool does not exist (with how to make it).
    """
    rados = _rados()
    handle = connect(cluster)
    try:
        ioctx = handle.open_ioctx(name)
    except rados.ObjectNotFound:
        raise NotFound(
            _("pool {name!r} does not exist in the Ceph cluster (create it with 'ceph osd pool create {name}' and "
              "'rbd pool init {name}', or name another with --rbdpool or {key_pool})").format(
                name=name, key_pool=KEY_POOL),
            backend=BACKEND,
        ) from None
    except rados.Error as exc:
        forget(cluster)
        raise explain(exc, _("opening pool {name!r}").format(name=name)) from None
    try:
        _try_when_full(ioctx)
        if namespace:
            ioctx.set_namespace(namespace)
        yield ioctx
    except PoolFull as exc:
        if exc.reason is not None:
            raise
        raise PoolFull(exc.doing, full_reason(handle, name)) from None
    finally:
        ioctx.close()


def _try_when_full(ioctx: Any) -> None:
    """Mark ``ioctx``'s writes ``FULL_TRY`` (see the module docstring); librados renamed the
    call after Ceph 16."""
    mark = getattr(ioctx, "set_pool_full_try", None) or ioctx.set_osdmap_full_try
    mark()


class PoolFull(BdevError):
    """Ceph refused a write for want of room: the pool is over its quota, or the cluster is
    full.

    :param doing: what was being done (``creating RBD image c1``).
    :param reason: why the pool has no room (:func:`full_reason`), or None when not known yet:
        :func:`pool` fills it in from the OSD map.
    """

    def __init__(self, doing: str, reason: str | None = None):
        super().__init__(_("{doing} failed: {reason}").format(
            doing=doing, reason=reason or _("the pool is full")), backend=BACKEND)
        self.doing = doing
        self.reason = reason


def full_reason(handle: Any, pool_name: str) -> str | None:
    """Why pool ``pool_name`` takes no more data, from the monitor's OSD map: ``pool lxc is
    full (quota 16.0 MiB)``, or a full cluster; None when it has room (or the map cannot be
    read)."""
    command = json.dumps({"prefix": "osd pool ls", "detail": "detail", "format": "json"})
    try:
        code, out, _status = handle.mon_command(command, b"")
        pools = json.loads(out) if code == 0 else []
    except Exception:  # noqa: BLE001 - an unreadable map only loses the detail
        return None
    for entry in pools:
        if entry.get("pool_name") != pool_name:
            continue
        flags = set(str(entry.get("flags_names", "")).split(","))
        if "full_quota" in flags:
            limits = [format_size(int(entry["quota_max_bytes"]))] if entry.get("quota_max_bytes") else []
            if entry.get("quota_max_objects"):
                limits.append(_("{count} objects").format(count=entry["quota_max_objects"]))
            return _("pool {pool} is full (quota {quota})").format(pool=pool_name, quota=_(" and ").join(limits))
        if "full" in flags:
            return _("the Ceph cluster is full (pool {pool} takes no more data)").format(pool=pool_name)
    return None


_ERRNO_SENTENCES = {
    errno.ETIMEDOUT: N_("Ceph did not answer in time (is an OSD down?)"),
    errno.ESHUTDOWN: N_("the connection to Ceph was shut down"),
    errno.ENAMETOOLONG: N_("Ceph rejects the name: it is too long"),
    errno.EINVAL: N_("Ceph rejects the request as invalid"),
    errno.EBUSY: N_("the image is in use (watched or locked by another client)"),
    errno.EEXIST: N_("it already exists"),
    errno.ENOENT: N_("it does not exist"),
    errno.EPERM: N_("Ceph refused the operation (permission denied)"),
    errno.EACCES: N_("Ceph refused the operation (permission denied)"),
    errno.EROFS: N_("the image is read-only"),
}


def explain(exc: BaseException, doing: str) -> BdevError:
    """One sentence for a librados/librbd error raised while ``doing`` something (a
    :class:`PoolFull` when Ceph wanted room)."""
    code = getattr(exc, "errno", None)
    if code is not None and code < 0:
        code = -code
    if code in (errno.EDQUOT, errno.ENOSPC):
        return PoolFull(doing)
    reason = _ERRNO_SENTENCES.get(code or -1) or (os.strerror(code) if code else str(exc))
    return BdevError(_("{doing} failed: {reason}").format(doing=doing, reason=reason), backend=BACKEND)
