"""User-namespace id maps of unprivileged containers: the ``lxc.idmap`` lines and the ranges
``/etc/subuid`` and ``/etc/subgid`` grant.

A line ``u 0 100000 65536`` (LXC 1.0: ``lxc.id_map``) maps container uids 0-65535 to host
uids 100000-165535; ``g`` does the same for gids and ``b`` for both.  :func:`parse_idmaps`
reads them, :func:`check_allowed` checks them against the caller's ranges (root may map
anything), and :func:`default_idmap` is the map LXC's per-user default config gives.
:func:`write_maps` gives a process that unshared its user namespace its maps: directly in
``/proc/PID/uid_map`` as root, through the setuid helpers ``newuidmap``/``newgidmap`` (Debian
``uidmap``, which check the same files) otherwise; :func:`become_root` then makes a process
the container's root.  The engine shifts rootfs ownership (:mod:`bdev.engine.idshift`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .command import run
from .errors import BdevError, ConfigError
from .i18n import _

if TYPE_CHECKING:
    from .store.config import LxcConfig

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
#: How many ids a default map gives a user's containers (LXC's documented default).
DEFAULT_COUNT = 65536
KINDS = {"u": ("u",), "g": ("g",), "b": ("u", "g")}
CLONE_NEWUSER = 0x10000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True)
class IdRange:
    """``count`` ids from ``inside`` (in the container) mapped to ``outside`` (on the host)."""

    inside: int
    outside: int
    count: int

    def host_id(self, inside: int) -> int | None:
        """The host id of container id ``inside``, or None outside this range."""
        return self.outside + inside - self.inside if self.inside <= inside < self.inside + self.count else None

    def container_id(self, outside: int) -> int | None:
        """The container id of host id ``outside``, or None outside this range."""
        return self.inside + outside - self.outside if self.outside <= outside < self.outside + self.count else None


@dataclass(frozen=True)
class IdMap:
    """A container's uid and gid maps (both non-empty for a usable map)."""

    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    def host_uid(self, uid: int) -> int | None:
        """The host uid of container uid ``uid`` (None: unmapped)."""
        return _first(r.host_id(uid) for r in self.uids)

    def host_gid(self, gid: int) -> int | None:
        """The host gid of container gid ``gid`` (None: unmapped)."""
        return _first(r.host_id(gid) for r in self.gids)

    def container_uid(self, uid: int) -> int | None:
        """The container uid of host uid ``uid`` (None: unmapped)."""
        return _first(r.container_id(uid) for r in self.uids)

    def container_gid(self, gid: int) -> int | None:
        """The container gid of host gid ``gid`` (None: unmapped)."""
        return _first(r.container_id(gid) for r in self.gids)

    @property
    def root(self) -> tuple[int, int]:
        """The host uid and gid of the container's root.

        :raises ConfigError: the map leaves container root unmapped.
        """
        uid, gid = self.host_uid(0), self.host_gid(0)
        if uid is None or gid is None:
            raise ConfigError(_("lxc.idmap does not map the container's root (id 0) for both users and groups"))
        return uid, gid

    def config_lines(self) -> list[tuple[str, str]]:
        """The ``lxc.idmap`` lines of this map."""
        return [("lxc.idmap", f"{kind} {r.inside} {r.outside} {r.count}")
                for kind, ranges in (("u", self.uids), ("g", self.gids)) for r in ranges]


def _first(values: Iterable[int | None]) -> int | None:
    return next((v for v in values if v is not None), None)


def parse_idmaps(values: Iterable[str]) -> IdMap | None:
    """The map of ``lxc.idmap`` values (``u|g|b INSIDE OUTSIDE COUNT``); None when there are none.

    :raises ConfigError: a malformed line, overlapping ranges, or only uids or only gids mapped.
    """
    ranges: dict[str, list[IdRange]] = {"u": [], "g": []}
    for value in values:
        fields = value.split()
        if len(fields) != 4 or fields[0] not in KINDS or not all(f.isdigit() for f in fields[1:]):
            raise ConfigError(_(
                "lxc.idmap = {value}: expected 'u|g|b CONTAINER-ID HOST-ID COUNT' with numbers"
            ).format(value=value))
        inside, outside, count = (int(f) for f in fields[1:])
        if count == 0 or inside + count > 2**32 - 1 or outside + count > 2**32 - 1:
            raise ConfigError(_("lxc.idmap = {value}: the range is empty or goes past the last id").format(value=value))
        new = IdRange(inside, outside, count)
        for kind in KINDS[fields[0]]:
            for old in ranges[kind]:
                if _overlap(old.inside, old.count, inside, count) or _overlap(old.outside, old.count, outside, count):
                    raise ConfigError(_(
                        "lxc.idmap = {value}: overlaps another {kind} range"
                    ).format(value=value, kind=kind))
            ranges[kind].append(new)
    if not ranges["u"] and not ranges["g"]:
        return None
    if not ranges["u"] or not ranges["g"]:
        missing = "uids (u)" if not ranges["u"] else "gids (g)"
        raise ConfigError(_(
            "lxc.idmap maps no {missing}: an unprivileged container needs both"
        ).format(missing=missing))
    return IdMap(tuple(ranges["u"]), tuple(ranges["g"]))


def config_idmap(config: "LxcConfig") -> IdMap | None:
    """The map of a container config's ``lxc.idmap`` (and LXC 1.0 ``lxc.id_map``) lines.

    :raises ConfigError: see :func:`parse_idmaps`.
    """
    return parse_idmaps(config.get_all("lxc.idmap") + config.get_all("lxc.id_map"))


def _overlap(a: int, a_count: int, b: int, b_count: int) -> bool:
    return a < b + b_count and b < a + a_count


# ---------------------------------------------------------------------------- /etc/subuid


def subordinate_ranges(path: Path, user: str, uid: int) -> list[IdRange]:
    """The ranges ``/etc/subuid`` or ``/etc/subgid`` grants ``user`` (by name or number), as
    ranges of host ids (``inside`` unused, 0); an unreadable or missing file grants nothing."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (user, str(uid)) and fields[1].isdigit() and fields[2].isdigit():
            found.append(IdRange(0, int(fields[1]), int(fields[2])))
    return found


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def check_allowed(idmap: IdMap, *, uid: int | None = None, gid: int | None = None) -> None:
    """Refuse a map the caller may not write: for anyone but root, every host range must lie
    in the caller's ``/etc/subuid`` (``/etc/subgid``) ranges or be their own id alone (what
    ``newuidmap`` allows).

    :raises BdevError: one sentence naming the user, the file and the range.
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    if uid == 0:
        return
    user = _user_name(uid)
    for path, own, ranges in ((SUBUID, uid, idmap.uids), (SUBGID, gid, idmap.gids)):
        granted = subordinate_ranges(path, user, uid)
        if not granted:
            raise BdevError(_(
                "user {user} has no range in {path}, so they cannot map ids for an unprivileged container (add one, "
                "e.g. with usermod --add-subuids/--add-subgids)"
            ).format(user=user, path=path))
        for r in ranges:
            own_alone = r.count == 1 and r.outside == own
            inside_grant = any(g.outside <= r.outside and r.outside + r.count <= g.outside + g.count for g in granted)
            if not (own_alone or inside_grant):
                raise BdevError(_(
                    "lxc.idmap maps host ids {first}-{last}, outside the ranges {path} grants user {user} ({granted})"
                ).format(
                    first=r.outside, last=r.outside + r.count - 1, path=path, user=user, granted=_describe(granted)
                ))


def _describe(ranges: list[IdRange]) -> str:
    return ", ".join(f"{g.outside}-{g.outside + g.count - 1}" for g in ranges)


def has_subordinate_ids(*, uid: int | None = None) -> bool:
    """Whether ``/etc/subuid`` and ``/etc/subgid`` both grant the user (default: this process's) a range."""
    uid = os.geteuid() if uid is None else uid
    user = _user_name(uid)
    return all(subordinate_ranges(path, user, uid) for path in (SUBUID, SUBGID))


def default_idmap(*, uid: int | None = None) -> IdMap:
    """The map LXC's documented ``~/.config/lxc/default.conf`` gives a user: container ids
    0-65535 onto the first ``/etc/subuid`` and ``/etc/subgid`` ranges (or as many as granted).

    :raises BdevError: the user has no range.
    """
    uid = os.geteuid() if uid is None else uid
    user = _user_name(uid)
    chosen = []
    for path in (SUBUID, SUBGID):
        granted = subordinate_ranges(path, user, uid)
        if not granted:
            raise BdevError(_(
                "user {user} has no range in {path}, so their containers cannot be unprivileged (add one, e.g. with "
                "usermod --add-subuids/--add-subgids)"
            ).format(user=user, path=path))
        chosen.append(IdRange(0, granted[0].outside, min(granted[0].count, DEFAULT_COUNT)))
    return IdMap((chosen[0],), (chosen[1],))


# ---------------------------------------------------------------------------- writing


def write_maps(pid: int, idmap: IdMap, *, container: str | None = None) -> None:
    """Give process ``pid`` (just unshared into a new user namespace) its uid and gid maps.

    :raises BdevError: the kernel or ``newuidmap``/``newgidmap`` refused (one sentence).
    """
    if os.geteuid() == 0:
        for name, ranges in (("uid_map", idmap.uids), ("gid_map", idmap.gids)):
            text = "".join(f"{r.inside} {r.outside} {r.count}\n" for r in ranges)
            try:
                Path(f"/proc/{pid}/{name}").write_text(text)
            except OSError as exc:
                raise BdevError(_(
                    "writing its {name} failed: {strerror}"
                ).format(name=name, strerror=exc.strerror), container=container) from None
        return
    for tool, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
        argv = [tool, str(pid)] + [str(n) for r in ranges for n in (r.inside, r.outside, r.count)]
        run(argv, container=container)


def become_root() -> None:
    """Become the container's root in the user namespace this process is in (its maps
    written): supplementary groups dropped where the namespace allows it, then gid and uid 0.

    :raises BdevError: the namespace has no mapping for id 0.
    """
    try:
        os.setgroups([])
    except PermissionError:
        pass  # setgroups denied in this namespace (newgidmap of an unprivileged caller may do so)
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        raise BdevError(_(
            "cannot become root in the container's user namespace: {strerror}"
        ).format(strerror=exc.strerror)) from None


def unshare_user_namespace() -> None:
    """Move this process into a new user namespace (Python 3.11 has no ``os.unshare``).

    :raises OSError: the kernel refused (user namespaces disabled, too many).
    """
    if _libc.unshare(CLONE_NEWUSER) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
