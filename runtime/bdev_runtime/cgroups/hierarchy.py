"""Where this host's cgroup hierarchies are, and which controllers each one carries.

A host has cgroup v1 hierarchies (one mount per controller or per co-mounted group, such as
``cpu,cpuacct``, plus named ones like ``name=systemd``), one cgroup v2 ("unified") hierarchy,
or both ("hybrid": v1 controllers and a unified hierarchy that carries whatever no v1
hierarchy took).  They are found in ``/proc/self/mountinfo`` (through :mod:`bdev.mounts`);
``/proc/cgroups`` says which controllers the kernel has and whether they are enabled.

A controller bound to a v1 hierarchy is unavailable in the unified one: the kernel allows a
controller in one hierarchy kind at a time.  :meth:`CgroupHost.version_of` answers that for
one controller, which is how a limit chooses between ``lxc.cgroup.*`` and ``lxc.cgroup2.*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bdev.errors import BdevError
from bdev.mounts import MountEntry, mount_entries
from .._i18n import _

PROC_CGROUPS = "/proc/cgroups"
ONLINE_CPUS = "/sys/devices/system/cpu/online"
V1_TYPE = "cgroup"
V2_TYPE = "cgroup2"
#: ``/proc/cgroups`` names of controllers whose v2 name differs (the block I/O controller).
KERNEL_NAMES = {"io": "blkio"}


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPUs of a kernel CPU list (``0-3,8,10-11``); empty text gives none.

    :raises ValueError: the text is not a CPU list.
    """
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            if text.strip():
                raise ValueError(text)
            continue
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(text)
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(text)
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """The kernel's compact form of a set of CPUs: ``{0, 1, 2, 5}`` gives ``0-2,5``."""
    ordered = sorted(cpus)
    ranges: list[str] = []
    start = previous = None
    for cpu in [*ordered, None]:
        if cpu is not None and previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(ranges)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    :param version: 1 (legacy) or 2 (unified).
    :param mountpoint: where it is mounted.
    :param controllers: v1: the controllers mounted together (a named hierarchy has
        ``name=systemd`` here); v2: the controllers its root offers (``cgroup.controllers``).
    :param root: the cgroup shown at the mount point (``/`` unless a subtree is bind-mounted).
    """

    version: int
    mountpoint: Path
    controllers: frozenset[str]
    root: str = "/"

    @property
    def label(self) -> str:
        """``cpu,cpuacct``, ``name=systemd`` or ``unified``, for messages."""
        return "unified" if self.version == 2 else ",".join(sorted(self.controllers))

    def directory(self, cgroup: str) -> Path:
        """The directory of ``cgroup`` (a path from the hierarchy's root, ``/lxc.payload.c1``).

        :raises BdevError: the cgroup lies outside the part of the hierarchy mounted here.
        """
        cgroup = "/" + cgroup.strip("/")
        root = "/" + self.root.strip("/")
        if root != "/":
            if cgroup != root and not cgroup.startswith(root + "/"):
                raise BdevError(_("cgroup {cgroup} is outside the {label} hierarchy mounted at {mountpoint} (which "
                                  "shows {root})").format(
                    cgroup=cgroup, label=self.label, mountpoint=self.mountpoint, root=root))
            cgroup = cgroup[len(root):] or "/"
        return self.mountpoint / cgroup.lstrip("/") if cgroup != "/" else self.mountpoint


@dataclass(frozen=True)
class CgroupHost:
    """The cgroup hierarchies of this host (or of the mount namespace that looks).

    :param hierarchies: the mounted hierarchies, v1 ones first, at most one v2 one.
    :param kernel_controllers: controller name -> enabled, from ``/proc/cgroups``.
    :param online_cpus: the CPUs online now.
    :param v1_bound: controllers ``/proc/cgroups`` shows bound to a v1 hierarchy (mounted
        here or not: such a controller is unavailable to cgroup v2 either way).
    """

    hierarchies: tuple[Hierarchy, ...]
    kernel_controllers: dict[str, bool] = field(default_factory=dict, compare=False)
    online_cpus: frozenset[int] = frozenset()
    v1_bound: frozenset[str] = frozenset()

    @classmethod
    def discover(cls, entries: list[MountEntry] | None = None, *, proc_cgroups: str = PROC_CGROUPS,
                 online: str = ONLINE_CPUS) -> "CgroupHost":
        """The hierarchies mounted in this mount namespace (``entries``: the mounts to look at,
        default every mount of ``/proc/self/mountinfo``).  A hierarchy mounted twice is taken
        at its first mount; of several cgroup2 mounts the first one is used."""
        table = read_proc_cgroups(proc_cgroups)
        kernel = {name: enabled for name, (_hierarchy, enabled) in table.items()}
        hierarchies: list[Hierarchy] = []
        seen: set[frozenset[str]] = set()
        unified: Hierarchy | None = None
        for entry in mount_entries() if entries is None else entries:
            if entry.fstype == V1_TYPE:
                names = frozenset(o for o in entry.options if o in kernel or o.startswith("name="))
                if names and names not in seen:
                    seen.add(names)
                    hierarchies.append(Hierarchy(1, Path(entry.mountpoint), names, entry.root))
            elif entry.fstype == V2_TYPE and unified is None:
                mountpoint = Path(entry.mountpoint)
                unified = Hierarchy(2, mountpoint, read_controllers(mountpoint), entry.root)
        if unified is not None:
            hierarchies.append(unified)
        try:
            cpus = parse_cpu_list(Path(online).read_text())
        except (OSError, ValueError):
            cpus = frozenset(range(os.cpu_count() or 1))
        bound = frozenset(name for name, (hierarchy_id, _enabled) in table.items() if hierarchy_id)
        return cls(tuple(hierarchies), kernel, cpus, bound)

    @property
    def layout(self) -> str:
        """``legacy`` (v1 only), ``unified`` (v2 only), ``hybrid`` (both) or ``none``."""
        v1 = any(h.version == 1 for h in self.hierarchies)
        v2 = self.unified is not None
        return {(True, True): "hybrid", (True, False): "legacy", (False, True): "unified"}.get((v1, v2), "none")

    @cached_property
    def unified(self) -> Hierarchy | None:
        """The cgroup v2 hierarchy, if one is mounted."""
        return next((h for h in self.hierarchies if h.version == 2), None)

    def v1(self, controller: str) -> Hierarchy | None:
        """The v1 hierarchy carrying ``controller`` (``memory``, ``name=systemd``), if mounted."""
        return next((h for h in self.hierarchies if h.version == 1 and controller in h.controllers), None)

    def version_of(self, controller: str) -> int | None:
        """1 when ``controller`` is on a v1 hierarchy here, 2 when the unified hierarchy offers
        it, None when neither does."""
        if self.v1(controller) is not None:
            return 1
        if self.unified is not None and controller in self.unified.controllers:
            return 2
        return None

    def preferred_version(self) -> int:
        """The version a controller that is nowhere mounted would be expected on: 2 on a
        unified host, 1 otherwise."""
        return 2 if self.layout == "unified" else 1

    def missing(self, controller: str, version: int | None = None) -> str:
        """Why ``controller`` cannot be used here (in ``version``, if given), as a sentence
        fragment: not in the kernel, disabled at boot, or on the other hierarchy kind."""
        kernel_name = KERNEL_NAMES.get(controller, controller)
        if self.kernel_controllers and kernel_name not in self.kernel_controllers:
            return _("the kernel has no {controller} controller").format(controller=controller)
        if self.kernel_controllers.get(kernel_name) is False:
            return _("the {controller} controller is disabled (cgroup_disable= on the kernel command line)").format(
                controller=controller)
        where = self.version_of(controller)
        if where is None and kernel_name in self.v1_bound:
            where = 1
        if version != 1 and where == 1:
            return _("the {controller} controller is bound to a cgroup v1 hierarchy on this host, not to cgroup v2").format(
                controller=controller)
        if version == 1 and where == 2:
            return _("the {controller} controller is in the cgroup v2 hierarchy on this host, not in a v1 one").format(
                controller=controller)
        if version == 2 and self.unified is None:
            return _("no cgroup v2 hierarchy is mounted on this host")
        if version == 2 and self.unified is not None:
            offered = ", ".join(sorted(self.unified.controllers)) or "none"
            return (_("the cgroup v2 hierarchy at {mountpoint} does not offer the {controller} controller (offered: "
                      "{offered})").format(
                mountpoint=self.unified.mountpoint, controller=controller, offered=offered))
        return _("no cgroup hierarchy with the {controller} controller is mounted on this host").format(
            controller=controller)


def read_proc_cgroups(path: str = PROC_CGROUPS) -> dict[str, tuple[int, bool]]:
    """Controller name -> (v1 hierarchy id, 0 when unbound; enabled), from ``/proc/cgroups``
    (empty when unreadable)."""
    found: dict[str, tuple[int, bool]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) >= 4 and fields[1].isdigit():
            found[fields[0]] = (int(fields[1]), fields[3] == "1")
    return found


def read_controllers(directory: Path) -> frozenset[str]:
    """The controllers a cgroup v2 directory offers (its ``cgroup.controllers``)."""
    try:
        return frozenset((directory / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def process_cgroups(pid: int | str = "self") -> dict[str, str]:
    """Where process ``pid`` sits: ``/proc/<pid>/cgroup`` as a map from each v1 controller
    (and ``name=...``) to its cgroup path, with ``""`` for the unified hierarchy."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in lines:
        _hid, _sep, rest = line.partition(":")
        controllers, _sep, path = rest.partition(":")
        if not controllers:
            found[""] = path
        for name in controllers.split(","):
            if name:
                found[name] = path
    return found


def base_of(hierarchy: Hierarchy, where: dict[str, str]) -> str:
    """The cgroup of ``hierarchy`` in a :func:`process_cgroups` map (``/`` when unknown).
    A unified path ending in systemd's ``init.scope`` gives its parent, as LXC does."""
    if hierarchy.version == 2:
        path = where.get("", "/")
        if path.rstrip("/").endswith("/init.scope"):
            path = path.rstrip("/")[: -len("/init.scope")] or "/"
        return path or "/"
    for name in sorted(hierarchy.controllers):
        if name in where:
            return where[name] or "/"
    return "/"

