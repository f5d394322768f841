"""Resource limits and the container's cgroup.

``container_cgroup(ref, config)`` gives the :class:`ContainerCgroup` the runtime drives:
``validate`` (in the parent, before anything is made), ``create``, ``apply``, ``attach`` the
container's init, ``pids``, ``kill_all``, ``remove``, and ``cleanup`` after a crashed monitor.
Limits are read from the config's ``lxc.cgroup.*`` / ``lxc.cgroup2.*`` lines in friendly terms
(:mod:`.limits`); ``bdev limits`` (:mod:`.cli`) shows and sets them.
"""

from __future__ import annotations

from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from .configured import ConfigLimits, Configured, RawSetting, edit_config, parse_assignments, read_limits
from .group import ContainerCgroup, Write
from .hierarchy import CgroupHost, Hierarchy
from .limits import LIMITS, Limit, limit_named
from .placement import Placement

__all__ = [
    "LIMITS", "CgroupHost", "ConfigLimits", "Configured", "ContainerCgroup", "Hierarchy", "Limit", "Placement",
    "RawSetting", "Write", "container_cgroup", "edit_config", "limit_named", "parse_assignments", "read_limits",
]


def container_cgroup(ref: ContainerRef, config: LxcConfig, host: CgroupHost | None = None) -> ContainerCgroup:
    """The cgroup of container ``ref`` with the limits of ``config`` (its ``lxc.include``
    files expanded), on ``host``'s hierarchies (default: the ones mounted here)."""
    return ContainerCgroup(ref, config, host)
