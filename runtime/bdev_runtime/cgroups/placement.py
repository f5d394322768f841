"""Where a container's cgroup goes, named as LXC 5 names it so that real LXC and bdev agree.

For root, LXC starts from the cgroup of the host's init (``/proc/1/cgroup``; systemd's
``init.scope`` is dropped), or from its own cgroup with ``lxc.cgroup.relative = 1`` and for
every other user.  Below that base the container's cgroup is:

* ``lxc.payload.<name>`` by default;
* ``<lxc.cgroup.dir>/lxc.payload.<name>`` with ``lxc.cgroup.dir`` (a relative path);
* ``<lxc.cgroup.dir.container>`` with ``lxc.cgroup.dir.container`` (which needs
  ``lxc.cgroup.dir.monitor``), the container's processes going one level deeper into
  ``lxc.cgroup.dir.container.inner`` when that is set (limits stay on the outer cgroup, out of
  the container's reach).

When ``lxc.payload.<name>`` exists already (a container of the same name in another lxcpath,
or a leftover), LXC tries ``lxc.payload.<name>-1``, ``-2`` ...; bdev does the same (``index``
below) and remembers the choice (:mod:`.claim`).  A ``lxc.cgroup.dir.container`` path is used
as written: a second container is refused while it holds processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import InvalidInput
from bdev.store.config import LxcConfig

from .._i18n import _
from .claim import suffix
from .hierarchy import CgroupHost, Hierarchy, base_of, process_cgroups

PAYLOAD_PREFIX = "lxc.payload."
DIR_KEY = "lxc.cgroup.dir"
CONTAINER_DIR_KEY = "lxc.cgroup.dir.container"
MONITOR_DIR_KEY = "lxc.cgroup.dir.monitor"
INNER_DIR_KEY = "lxc.cgroup.dir.container.inner"
RELATIVE_KEY = "lxc.cgroup.relative"


@dataclass(frozen=True)
class Placement:
    """The container's cgroup in one hierarchy.

    :param base: the cgroup the container's is made under (paths from the hierarchy's root).
    :param limit: the container's cgroup, where limits are written.
    :param attach: where its processes go (``limit``, or the inner cgroup below it).
    """

    hierarchy: Hierarchy
    base: str
    limit: str
    attach: str

    @property
    def base_dir(self) -> Path:
        """The base cgroup's directory."""
        return self.hierarchy.directory(self.base)

    @property
    def limit_dir(self) -> Path:
        """The container's cgroup directory."""
        return self.hierarchy.directory(self.limit)

    @property
    def attach_dir(self) -> Path:
        """The directory its processes go to."""
        return self.hierarchy.directory(self.attach)


def _relative_path(key: str, value: str) -> str:
    """``value`` if it is a relative path that stays below where it starts (LXC's rule)."""
    if value.strip().startswith("/"):
        raise InvalidInput(_("{key} = {value}: the path must be relative (LXC refuses absolute ones)").format(
            key=key, value=value))
    parts = [p for p in value.strip().split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidInput(_("{key} = {value}: the path must name a cgroup below the base and not walk up with '..'").format(
            key=key, value=value))
    return "/".join(parts)


def is_suffixable(config: LxcConfig) -> bool:
    """Whether the cgroup name is LXC's generated ``lxc.payload.<name>`` (which takes a
    ``-N`` suffix when taken) rather than a ``lxc.cgroup.dir.container`` path."""
    return not ((config.get(CONTAINER_DIR_KEY) or None) or (config.get(MONITOR_DIR_KEY) or None))


def relative_names(name: str, config: LxcConfig, index: int = 0) -> tuple[str, str]:
    """``(limit, attach)``: the container's cgroup and where its processes go, relative to
    the base; ``index`` N > 0 names ``lxc.payload.<name>-N`` (ignored for a
    ``lxc.cgroup.dir.container`` path).

    :raises InvalidInput: the ``lxc.cgroup.dir*`` keys are malformed or combined as LXC
        refuses.
    """
    keys = (DIR_KEY, CONTAINER_DIR_KEY, MONITOR_DIR_KEY, INNER_DIR_KEY)
    plain, container, monitor, inner = (config.get(key) or None for key in keys)
    if container or monitor:
        if plain:
            raise InvalidInput(_("{dir_key} cannot be combined with {container_dir_key} and {monitor_dir_key}").format(
                dir_key=DIR_KEY, container_dir_key=CONTAINER_DIR_KEY, monitor_dir_key=MONITOR_DIR_KEY))
        if not (container and monitor):
            raise InvalidInput(_("{container_dir_key} and {monitor_dir_key} must be set together").format(
                container_dir_key=CONTAINER_DIR_KEY, monitor_dir_key=MONITOR_DIR_KEY))
        limit = _relative_path(CONTAINER_DIR_KEY, container)
        if inner:
            if "/" in inner.strip("/") or inner.strip() in (".", ".."):
                raise InvalidInput(_("{inner_dir_key} = {inner}: it must be a single directory name").format(
                    inner_dir_key=INNER_DIR_KEY, inner=inner))
            return limit, f"{limit}/{inner.strip('/')}"
        return limit, limit
    payload = PAYLOAD_PREFIX + name + suffix(index)
    limit = f"{_relative_path(DIR_KEY, plain)}/{payload}" if plain else payload
    return limit, limit


def is_relative(config: LxcConfig, euid: int | None = None) -> bool:
    """Whether the base is the caller's own cgroup (``lxc.cgroup.relative = 1``, or not root)."""
    value = (config.get(RELATIVE_KEY) or "0").strip()
    if value not in ("0", "1"):
        raise InvalidInput(_("{relative_key} = {value}: use 0 or 1").format(relative_key=RELATIVE_KEY, value=value))
    return value == "1" or (os.geteuid() if euid is None else euid) != 0


def placements(name: str, config: LxcConfig, host: CgroupHost, *, euid: int | None = None,
               index: int = 0) -> list[Placement]:
    """The container's cgroup in each hierarchy of ``host`` (v1 ones, named ones, the
    unified one), as LXC would place it (``index``: see :func:`relative_names`).  For a user
    other than root only the hierarchies whose base cgroup the user may write (delegated to
    them, as ``libpam-cgfs`` or systemd do) are used, as LXC does; the others are left out.

    :raises InvalidInput: see :func:`relative_names`.
    """
    limit_rel, attach_rel = relative_names(name, config, index)
    where = process_cgroups("self" if is_relative(config, euid) else 1)
    root = (os.geteuid() if euid is None else euid) == 0
    found = []
    for hierarchy in host.hierarchies:
        base = base_of(hierarchy, where)
        prefix = base.rstrip("/")
        placement = Placement(hierarchy, base, f"{prefix}/{limit_rel}", f"{prefix}/{attach_rel}")
        if root or os.access(placement.base_dir, os.W_OK):
            found.append(placement)
    return found
