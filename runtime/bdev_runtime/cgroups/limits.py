"""Resource limits in words a user knows, and the cgroup settings they stand for.

Each friendly limit (``memory``, ``swap``, ``cpu``, ``cpuset``, ``pids``, ``io-weight``,
``devices``) knows how to read a value the user typed (refusing bad ones with one sentence),
which cgroup files it owns on cgroup v1 and on cgroup v2, the config lines that hold it
(``lxc.cgroup.<file>`` for v1, ``lxc.cgroup2.<file>`` for v2, which real LXC applies as it
applies any such line) and how to read it back from those lines or from a live cgroup.

=========  ==========================================  =============================
limit      cgroup v1 (``lxc.cgroup.``)                 cgroup v2 (``lxc.cgroup2.``)
=========  ==========================================  =============================
memory     memory.limit_in_bytes                       memory.max
swap       memory.memsw.limit_in_bytes (memory+swap)   memory.swap.max
cpu        cpu.cfs_quota_us / cpu.cfs_period_us        cpu.max
cpuset     cpuset.cpus                                 cpuset.cpus
pids       pids.max                                    pids.max
io-weight  blkio.bfq.weight (blkio.weight)             io.weight
devices    devices.deny = a, devices.allow = RULE...   devices.deny = a, devices.allow
=========  ==========================================  =============================

``swap`` is the swap a container may use on top of its memory: on v1 it is written as the
memory+swap total ``memory.memsw.limit_in_bytes`` (so it needs a memory limit there), on v2 as
``memory.swap.max``.  A limit is applied on the hierarchy version that carries its controller
on the host, whichever version's lines hold it in the config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bdev.errors import InvalidInput
from bdev.units import parse_size

from .._i18n import _, N_
from .devices import DeviceRule, parse_rule, parse_rules
from .hierarchy import CgroupHost, format_cpu_list, parse_cpu_list

V1_PREFIX = "lxc.cgroup."
V2_PREFIX = "lxc.cgroup2."
PREFIXES = {1: V1_PREFIX, 2: V2_PREFIX}
#: keys under ``lxc.cgroup.`` that configure LXC itself, not a controller.
META_KEYS = ("lxc.cgroup.dir", "lxc.cgroup.relative", "lxc.cgroup.pattern", "lxc.cgroup.use")
UNLIMITED = "max"
CPU_PERIOD_US = 100_000
CPU_MIN_QUOTA_US = 1_000
V1_UNLIMITED_FLOOR = 1 << 62  # v1 shows "no limit" as PAGE_COUNTER_MAX in bytes (about 2**63)
_KERNEL_SIZE = re.compile(r"^(\d+)([kmgtpe]?)$", re.IGNORECASE)
_ZERO = re.compile(r"^0+(\.0*)?\s*[kmgtpe]?i?b?$")
_UNITS = ("", "K", "M", "G", "T", "P", "E")


def config_key(version: int, file: str) -> str:
    """``lxc.cgroup.memory.limit_in_bytes`` for ``(1, "memory.limit_in_bytes")``."""
    return PREFIXES[version] + file


def cgroup_setting(key: str) -> tuple[int, str] | None:
    """``(version, file)`` of a controller setting key (``lxc.cgroup2.memory.max`` gives
    ``(2, "memory.max")``), or None for any other key (``lxc.cgroup.dir`` included)."""
    if key.startswith(V2_PREFIX):
        file = key[len(V2_PREFIX):]
        return (2, file) if "." in file else None
    if key.startswith(V1_PREFIX):
        if any(key == meta or key.startswith(meta + ".") for meta in META_KEYS):
            return None
        file = key[len(V1_PREFIX):]
        return (1, file) if "." in file else None
    return None


def controller_of(file: str) -> str:
    """The controller a cgroup file belongs to (``memory`` for ``memory.max``)."""
    return file.split(".", 1)[0]


def compact_size(value: int) -> str:
    """Bytes in the shortest exact form the kernel's ``memparse`` reads: ``536870912`` gives
    ``512M``; a value that is no whole number of KiB stays in bytes."""
    if value == 0:
        return "0"
    for power in range(len(_UNITS) - 1, 0, -1):
        unit = 1024 ** power
        if value % unit == 0:
            return f"{value // unit}{_UNITS[power]}"
    return str(value)


def _kernel_size(text: str) -> int | None:
    """Bytes of a value the kernel's ``memparse`` would read (``512M``, ``1073741824``)."""
    match = _KERNEL_SIZE.match(text.strip())
    if not match:
        return None
    power = _UNITS.index(match[2].upper()) if match[2] else 0
    return int(match[1]) * 1024 ** power


Value = Any


@dataclass(frozen=True)
class Entry:
    """One cgroup setting: ``file`` (``memory.max``) set to ``value``."""

    file: str
    value: str


class Limit:
    """A friendly limit.  Subclasses set the class attributes and the conversions."""

    name = ""
    summary = ""
    example = ""
    #: controller per version (v1 ``blkio`` is v2 ``io``).
    controllers: dict[int, str] = {}
    #: the files it owns per version (the first is written, all are read).
    owned: dict[int, tuple[str, ...]] = {}
    #: on v2 it needs its controller in ``cgroup.controllers`` (the device allow-list is a
    #: BPF program instead, available on every cgroup v2 hierarchy).
    v2_controller = True

    def controller(self, version: int) -> str:
        """The controller this limit uses on cgroup ``version``."""
        return self.controllers[version]

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        """The value of ``text`` as a user typed it (strict: checked against ``host``).

        :raises InvalidInput: one sentence naming the limit and what is wrong.
        """
        raise NotImplementedError

    def show(self, value: Value) -> str:
        """The value as ``bdev limits`` prints it and accepts it back."""
        return str(value)

    def entries(self, value: Value, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        """The settings that hold ``value`` on ``version`` (``values``: the other limits)."""
        return [Entry(self.owned[version][0], self.unparse(value, version))]

    def unparse(self, value: Value, version: int) -> str:
        """``value`` as the cgroup file of ``version`` takes it."""
        return str(value)

    def read(self, entries: Sequence[Entry], version: int, values: dict[str, Value]) -> Value | None:
        """The value held by ``entries`` (the config lines or live files of ``version`` this
        limit owns, in order), or None when they hold none.

        :raises InvalidInput: a value is not one the limit understands.
        """
        last = {e.file: e.value for e in entries}
        for file in self.owned[version]:
            if file in last:
                return self.read_value(last[file], version)
        return None

    def read_value(self, text: str, version: int) -> Value:
        """The value of one config line or cgroup file of ``version``."""
        return self.parse(text)

    def unlimited(self, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        """The settings that lift the limit on a live cgroup (``--unset``)."""
        return self.entries(UNLIMITED, version, host, values)

    def needs(self, version: int) -> tuple[str, ...]:
        """Other limits this one's settings on ``version`` are computed from."""
        return ()


class MemoryLimit(Limit):
    """``memory=512M``: the RAM limit (``memory.limit_in_bytes`` / ``memory.max``)."""

    name = "memory"
    summary = N_("RAM the container may use")
    example = "512M, 2G"
    controllers = {1: "memory", 2: "memory"}
    owned = {1: ("memory.limit_in_bytes",), 2: ("memory.max",)}
    what = _("memory limit")

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        word = text.strip().lower()
        if word in ("max", "unlimited", "-1"):
            return UNLIMITED
        if _ZERO.match(word):
            raise InvalidInput(_("{what} {text!r} must be more than zero (or max for no limit)").format(
                what=self.what, text=text))
        try:
            return parse_size(text, what=self.what)
        except InvalidInput:
            raise InvalidInput(_("{what} {text!r} is not a size (examples: {example})").format(
                what=self.what, text=text, example=self.example)) from None

    def read_value(self, text: str, version: int) -> Value:
        size = _kernel_size(text)
        if size is not None and size >= V1_UNLIMITED_FLOOR:
            return UNLIMITED
        return self.parse(text)

    def show(self, value: Value) -> str:
        return UNLIMITED if value == UNLIMITED else compact_size(value)

    def unparse(self, value: Value, version: int) -> str:
        if value == UNLIMITED:
            return "-1" if version == 1 else "max"
        return compact_size(value)


class SwapLimit(MemoryLimit):
    """``swap=1G``: swap on top of memory (v1 memory+swap total / v2 ``memory.swap.max``)."""

    name = "swap"
    summary = N_("swap the container may use on top of its memory")
    example = "0, 1G"
    owned = {1: ("memory.memsw.limit_in_bytes",), 2: ("memory.swap.max",)}
    what = _("swap limit")

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        if _ZERO.match(text.strip().lower()):
            return 0
        return super().parse(text, host)

    def needs(self, version: int) -> tuple[str, ...]:
        return ("memory",) if version == 1 else ()

    def entries(self, value: Value, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        if version == 2:
            return super().entries(value, version, host, values)
        hierarchy = host.v1("memory")
        if hierarchy is not None and not (hierarchy.mountpoint / self.owned[1][0]).exists():
            raise InvalidInput(_("swap limits need the kernel's swap accounting, which is off on this host (boot "
                                 "with swapaccount=1)"))
        memory = values.get("memory")
        if value == UNLIMITED or memory == UNLIMITED:
            return [Entry(self.owned[1][0], "-1")]
        if memory is None:
            raise InvalidInput(_("a swap limit needs a memory limit on cgroup v1, where memory.memsw.limit_in_bytes "
                                 "counts memory and swap together"))
        return [Entry(self.owned[1][0], compact_size(memory + value))]

    def read(self, entries: Sequence[Entry], version: int, values: dict[str, Value]) -> Value | None:
        total = super().read(entries, version, values)
        if version == 2 or total is None or total == UNLIMITED:
            return total
        memory = values.get("memory")
        if memory is None or memory == UNLIMITED:
            return UNLIMITED if memory == UNLIMITED else None
        if total < memory:
            raise InvalidInput(_("memory+swap limit {compact_size} is below the memory limit {compact_size2}, which "
                                 "the kernel refuses").format(
                compact_size=compact_size(total), compact_size2=compact_size(memory)))
        return total - memory

    def show(self, value: Value) -> str:
        return "0" if value == 0 else super().show(value)

    def unparse(self, value: Value, version: int) -> str:
        return "0" if value == 0 else super().unparse(value, version)


class CpuLimit(Limit):
    """``cpu=1.5``: CPU time in cores, as a CFS quota per 100 ms period."""

    name = "cpu"
    summary = N_("CPU time, in cores (1.5 = one and a half CPUs)")
    example = "0.5, 1.5, 2"
    controllers = {1: "cpu", 2: "cpu"}
    owned = {1: ("cpu.cfs_quota_us", "cpu.cfs_period_us"), 2: ("cpu.max",)}

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        word = text.strip().lower()
        if word in ("max", "unlimited"):
            return UNLIMITED
        try:
            cores = float(word)
        except ValueError:
            cores = float("nan")
        if not math.isfinite(cores) or cores <= 0:
            raise InvalidInput(_("cpu limit {text!r} is not a number of cores (examples: {example})").format(
                text=text, example=self.example))
        if cores * CPU_PERIOD_US < CPU_MIN_QUOTA_US:
            raise InvalidInput(_("cpu limit {text!r} is below the smallest share the kernel allows ({value:g} of a "
                                 "core)").format(
                text=text, value=CPU_MIN_QUOTA_US / CPU_PERIOD_US))
        if host is not None and host.online_cpus and cores > len(host.online_cpus):
            raise InvalidInput(_("cpu limit {text!r} is more than the {count} CPUs this host has online").format(
                text=text, count=len(host.online_cpus)))
        return round(cores, 3)

    def show(self, value: Value) -> str:
        return UNLIMITED if value == UNLIMITED else f"{value:g}"

    def entries(self, value: Value, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        quota = "-1" if value == UNLIMITED else str(round(value * CPU_PERIOD_US))
        if version == 1:
            return [Entry("cpu.cfs_period_us", str(CPU_PERIOD_US)), Entry("cpu.cfs_quota_us", quota)]
        return [Entry("cpu.max", f"{'max' if quota == '-1' else quota} {CPU_PERIOD_US}")]

    def read(self, entries: Sequence[Entry], version: int, values: dict[str, Value]) -> Value | None:
        last = {e.file: e.value.strip() for e in entries}
        if version == 1:
            if "cpu.cfs_quota_us" not in last:
                return None
            quota_text, period_text = last["cpu.cfs_quota_us"], last.get("cpu.cfs_period_us", str(CPU_PERIOD_US))
        else:
            if "cpu.max" not in last:
                return None
            quota_text, _sep, period_text = last["cpu.max"].partition(" ")
            period_text = period_text.strip() or str(CPU_PERIOD_US)
        if quota_text in ("-1", "max"):
            return UNLIMITED
        if not quota_text.isdigit() or not period_text.isdigit() or int(period_text) == 0:
            raise InvalidInput(_("cpu quota {quota_text!r} per period {period_text!r} is not a pair of microsecond "
                                 "counts").format(
                quota_text=quota_text, period_text=period_text))
        return round(int(quota_text) / int(period_text), 3)


class CpusetLimit(Limit):
    """``cpuset=0-1``: the CPUs the container may run on, checked against those online."""

    name = "cpuset"
    summary = N_("which CPUs the container may run on")
    example = "0, 0-1, 0,2"
    controllers = {1: "cpuset", 2: "cpuset"}
    owned = {1: ("cpuset.cpus",), 2: ("cpuset.cpus",)}

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        try:
            cpus = parse_cpu_list(text)
        except ValueError:
            cpus = None
        if not cpus:
            raise InvalidInput(_("cpuset {text!r} is not a list of CPUs (examples: {example})").format(
                text=text, example=self.example))
        if host is not None and host.online_cpus and not cpus <= host.online_cpus:
            missing = format_cpu_list(cpus - host.online_cpus)
            raise InvalidInput(_("cpuset {text!r} names CPUs {missing}, which this host does not have online "
                                 "(online: {online})").format(
                text=text, missing=missing, online=format_cpu_list(host.online_cpus)))
        return format_cpu_list(cpus)

    def unlimited(self, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        return [Entry("cpuset.cpus", format_cpu_list(host.online_cpus))]


class PidsLimit(Limit):
    """``pids=200``: how many tasks the container may have (fork fails with EAGAIN past it)."""

    name = "pids"
    summary = N_("how many processes and threads the container may have")
    example = "100, 1000"
    controllers = {1: "pids", 2: "pids"}
    owned = {1: ("pids.max",), 2: ("pids.max",)}

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        word = text.strip().lower()
        if word in ("max", "unlimited"):
            return UNLIMITED
        if not word.isdigit():
            raise InvalidInput(_("pids limit {text!r} is not a number of processes (examples: {example}, or max)").format(
                text=text, example=self.example))
        if int(word) < 1:
            raise InvalidInput(_("pids limit {text!r} must be at least 1 (or max for no limit)").format(text=text))
        return int(word)


class IoWeightLimit(Limit):
    """``io-weight=500``: the container's block I/O share."""

    name = "io-weight"
    summary = N_("share of block I/O against other cgroups (1-1000, default 100)")
    example = "50, 100, 500"
    controllers = {1: "blkio", 2: "io"}
    owned = {1: ("blkio.bfq.weight", "blkio.weight"), 2: ("io.weight", "io.bfq.weight")}
    lowest, highest = 1, 1000

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        word = (text.strip().lower().splitlines() or [""])[0]
        if word.startswith("default "):  # io.weight shows "default 100", then per-device weights
            word = word.split()[-1]
        if not word.isdigit() or not self.lowest <= int(word) <= self.highest:
            raise InvalidInput(_("io-weight {text!r} is not a weight from {lowest} to {highest} (default 100)").format(
                text=text, lowest=self.lowest, highest=self.highest))
        return int(word)

    def entries(self, value: Value, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        if value == UNLIMITED:
            value = 100
        return [Entry(self.weight_file(version, host), str(value))]

    def unlimited(self, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        return self.entries(100, version, host, values)

    @staticmethod
    def weight_file(version: int, host: CgroupHost) -> str:
        """``blkio.bfq.weight`` where the v1 blkio hierarchy offers BFQ (kernels since 5.0
        have no other), else the old CFQ ``blkio.weight``; ``io.weight`` on v2."""
        if version == 2:
            return "io.weight"
        hierarchy = host.v1("blkio")
        if hierarchy is not None and not (hierarchy.mountpoint / "blkio.bfq.io_service_bytes").exists():
            return "blkio.weight"
        return "blkio.bfq.weight"


class DevicesLimit(Limit):
    """``devices="c 1:3 rwm, ..."``: a device allow-list (v1 files, a BPF program on v2)."""

    name = "devices"
    summary = N_("the device nodes the container may use (an allow-list)")
    example = "c 1:3 rwm, c 1:5 rwm"
    controllers = {1: "devices", 2: "devices"}
    owned = {1: ("devices.deny", "devices.allow"), 2: ("devices.deny", "devices.allow")}
    v2_controller = False

    def parse(self, text: str, host: CgroupHost | None = None) -> Value:
        if text.strip().lower() in ("all", "any"):
            return UNLIMITED
        return parse_rules(text)

    def show(self, value: Value) -> str:
        if value == UNLIMITED:
            return "all"
        return ", ".join(str(rule) for rule in value) or "none"

    def entries(self, value: Value, version: int, host: CgroupHost, values: dict[str, Value]) -> list[Entry]:
        if value == UNLIMITED:
            return [Entry("devices.allow", "a")]
        return [Entry("devices.deny", "a"), *(Entry("devices.allow", str(rule)) for rule in value)]

    def read(self, entries: Sequence[Entry], version: int, values: dict[str, Value]) -> Value | None:
        """An allow-list: ``deny a`` then ``allow`` rules (LXC's own form).  Other shapes (a
        deny-list) are no allow-list and read as None: they stay raw settings."""
        if not entries:
            return None
        first, rest = entries[0], entries[1:]
        if len(entries) == 1 and first.file == "devices.allow" and parse_rule(first.value).type == "a":
            return UNLIMITED
        if first.file != "devices.deny" or parse_rule(first.value).type != "a":
            return None
        if any(e.file != "devices.allow" for e in rest):
            return None
        rules = tuple(parse_rule(e.value) for e in rest)
        return None if any(r.type == "a" for r in rules) else rules


def read_devices_list(text: str) -> Value:
    """A v1 ``devices.list`` as a devices value: ``all`` for ``a *:* rwm``, else its rules."""
    rules: list[DeviceRule] = [parse_rule(line) for line in text.splitlines() if line.strip()]
    if any(rule.type == "a" for rule in rules):
        return UNLIMITED
    return tuple(rules)


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (MemoryLimit(), SwapLimit(), CpuLimit(), CpusetLimit(), PidsLimit(), IoWeightLimit(), DevicesLimit())
}


def limit_named(name: str) -> Limit:
    """The friendly limit ``name``.

    :raises InvalidInput: naming the known limits.
    """
    limit = LIMITS.get(name.strip().lower())
    if limit is None:
        raise InvalidInput(_("{name!r} is not a limit bdev knows (known: {limits})").format(
            name=name, limits=', '.join(LIMITS)))
    return limit


def target_version(limit: Limit, host: CgroupHost) -> int | None:
    """The version whose hierarchy carries ``limit``'s controller on ``host``."""
    if host.version_of(limit.controller(1)) == 1:
        return 1
    if host.unified is not None and (not limit.v2_controller or host.version_of(limit.controller(2)) == 2):
        return 2
    return None
