"""The container's cgroup: made before its init runs, given the config's limits, holding its
processes, killed and removed when it stops (or after a crashed monitor)."""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bdev.errors import BdevError, Busy, InvalidInput, explain
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from .._i18n import _
from . import bpf, cgroupfs
from .configured import ConfigLimits, RawSetting, read_limits
from .devices import DeviceRule, parse_rule
from .hierarchy import CgroupHost
from .limits import LIMITS, UNLIMITED, Entry, Value, config_key, read_devices_list, target_version
from .claim import MAX_INDEX, Claim, drop_claim, read_claim, write_claim
from .placement import Placement, is_suffixable, placements

KILL_TIMEOUT = 10.0
CORE_CONTROLLER = "cgroup"  # cgroup.* files exist in every v2 cgroup
DEVICE_PROGRAM = "(device program)"  # stands for the BPF program in a Write's file


@dataclass(frozen=True)
class Write:
    """One value to write into the container's cgroup.

    :param origin: the friendly limit (``memory``) or the raw config key it comes from.
    """

    placement: Placement
    file: str
    value: str
    origin: str
    #: for the v2 device allow-list: the rules of the BPF program to attach instead.
    rules: tuple[DeviceRule, ...] | None = None

    @property
    def path(self) -> Path:
        """The cgroup file written."""
        return self.placement.limit_dir / self.file


def _number(text: str | None) -> int | None:
    """A cgroup file's decimal number, or None (missing, unreadable, ``max``)."""
    return int(text) if text is not None and text.strip().isdigit() else None


def _perform(write: Write) -> None:
    if write.rules is not None:
        bpf.replace_program(write.placement.limit_dir, write.rules)
    else:
        cgroupfs.write_file(write.path, write.value)


class ContainerCgroup:
    """A container's cgroup on this host's hierarchies.

    :param ref: the container (its name names the cgroup: ``lxc.payload.<name>``, or
        ``lxc.payload.<name>-N`` when that was taken at :meth:`create`: see :mod:`.claim`).
    :param config: its config (``lxc.include`` already expanded), for the limits and the
        ``lxc.cgroup.dir*`` / ``lxc.cgroup.relative`` placement keys.
    :param host: the hierarchies to use (default: those mounted here).
    """

    def __init__(self, ref: ContainerRef, config: LxcConfig, host: CgroupHost | None = None, *, euid: int | None = None):
        self.ref = ref
        self.config = config
        self.host = host if host is not None else CgroupHost.discover()
        self._euid = euid

    # ------------------------------------------------------------------ what it would do

    @cached_property
    def placements(self) -> list[Placement]:
        """The container's cgroup in each hierarchy: the one :meth:`create` claimed, else
        the plain ``lxc.payload.<name>`` (where real LXC puts a container it starts)."""
        claim = read_claim(self.ref) if is_suffixable(self.config) else None
        return self._placements_at(claim.index if claim else 0)

    def _placements_at(self, index: int) -> list[Placement]:
        try:
            return placements(self.ref.name, self.config, self.host, euid=self._euid, index=index)
        except BdevError as err:
            raise err.about(container=self.ref.label) from None

    @property
    def owned(self) -> bool:
        """Whether the cgroup is this container's for sure: claimed by :meth:`create`, or a
        ``lxc.cgroup.dir.container`` path.  An unclaimed ``lxc.payload.<name>`` may be a
        same-named container's of another lxcpath, which :meth:`kill_all` and
        :meth:`remove` leave alone."""
        return not is_suffixable(self.config) or read_claim(self.ref) is not None

    @cached_property
    def limits(self) -> ConfigLimits:
        """The config's limits as they apply on this host."""
        try:
            return read_limits(self.config, self.host)
        except BdevError as err:
            raise err.about(container=self.ref.label) from None

    def placement_for(self, controller: str, version: int) -> Placement | None:
        """The placement in the hierarchy carrying ``controller`` in ``version``."""
        for placement in self.placements:
            hierarchy = placement.hierarchy
            if hierarchy.version == version and (version == 2 or controller in hierarchy.controllers):
                return placement
        return None

    def ignored(self) -> list[str]:
        """Raw config keys LXC ignores on this host (``lxc.cgroup.*`` on a cgroup v2 only host,
        ``lxc.cgroup2.*`` on a v1 only one), and bdev likewise."""
        return [raw.key for raw in self.limits.raw if not self._raw_applies(raw.version)]

    def _raw_applies(self, version: int) -> bool:
        return self.host.unified is not None if version == 2 else self.host.layout != "unified"

    def writes(self, names: list[str] | None = None, *, unset: tuple[str, ...] = ()) -> list[Write]:
        """What :meth:`apply` writes, in order: the friendly limits (only ``names`` when
        given; ``unset`` ones lifted), then the raw settings (only when ``names`` is None).

        :raises InvalidInput: a limit's controller is not available here, naming both.
        """
        values = self.limits.values()
        planned: list[Write] = []
        for name in LIMITS if names is None else [*names, *unset]:
            if name in values or name in unset:
                planned.extend(self._limit_writes(name, values, lift=name in unset))
        if names is None:
            planned.extend(self._raw_write(raw) for raw in self.limits.raw if self._raw_applies(raw.version))
        return planned

    def _limit_writes(self, name: str, values: dict[str, Value], *, lift: bool) -> list[Write]:
        limit = LIMITS[name]
        version = target_version(limit, self.host)
        controller = limit.controller(version or self.host.preferred_version())
        placement = self.placement_for(controller, version) if version else None
        if placement is None or version is None:
            shown = "unset" if lift else limit.show(values[name])
            raise InvalidInput(_("{name} limit {shown} cannot be applied: {unusable}").format(
                name=name, shown=shown, unusable=self._unusable(controller, version)),
                               container=self.ref.label)
        if name == "devices" and version == 2:
            value = UNLIMITED if lift else values[name]
            rules = (parse_rule("a"),) if value == UNLIMITED else value
            return [Write(placement, DEVICE_PROGRAM, limit.show(value), name, rules)]
        try:
            entries = (limit.unlimited(version, self.host, values) if lift
                       else limit.entries(values[name], version, self.host, values))
        except InvalidInput as err:
            raise err.about(container=self.ref.label) from None
        return [Write(placement, e.file, e.value, name) for e in entries]

    def _raw_write(self, raw: RawSetting) -> Write:
        controller = raw.controller
        if raw.version == 2 and controller == "devices":
            raise InvalidInput(_("{key} = {value} cannot be applied: on cgroup v2 bdev applies device rules only as "
                                 "an allow-list ('devices.deny = a', then 'devices.allow' rules)").format(
                key=raw.key, value=raw.value),
                               container=self.ref.label)
        unified = self.host.unified
        offered = raw.version == 1 or controller == CORE_CONTROLLER or (unified is not None and controller in unified.controllers)
        placement = self.placement_for(controller, raw.version) if offered else None
        if placement is None:
            reason = self._unusable(controller, raw.version) if offered else self.host.missing(controller, raw.version)
            raise InvalidInput(_("{key} = {value} cannot be applied: {reason}").format(
                key=raw.key, value=raw.value, reason=reason), container=self.ref.label)
        return Write(placement, raw.file, raw.value, raw.key)

    def _unusable(self, controller: str, version: int | None) -> str:
        """Why no placement carries ``controller``: the host lacks it, or (for a user) its
        hierarchy is not delegated."""
        if version is not None and (self.host.v1(controller) if version == 1 else self.host.unified) is not None:
            return (_("the cgroup hierarchy of the {controller} controller is not writable by uid {uid} (it is not "
                      "delegated to this user)").format(
                controller=controller, uid=os.geteuid()))
        return self.host.missing(controller, version)

    def v2_controllers(self) -> frozenset[str]:
        """The controllers to enable for the container on the unified hierarchy: those its
        limits use, and on a cgroup v2 only host every one the base offers (as LXC does, so
        the container sees them)."""
        used = {w.file.split(".", 1)[0] for w in self.writes() if w.placement.hierarchy.version == 2 and w.rules is None}
        used.discard(CORE_CONTROLLER)
        if self.host.layout == "unified" and self.host.unified is not None:
            base = self.placement_for(CORE_CONTROLLER, 2)
            if base is not None:
                used |= set((cgroupfs.read_file(base.base_dir / "cgroup.controllers") or "").split())
        return frozenset(used)

    # ------------------------------------------------------------------ the interface R1 calls

    def validate(self) -> None:
        """Check everything before anything is made: the placement keys, every limit's value
        and that this host carries each controller a limit needs.

        :raises InvalidInput: one sentence naming the container, the key and the cause.
        """
        self.writes()

    def create(self) -> None:
        """Make the container's cgroup in every hierarchy.  On v2 the controllers the limits
        need are enabled on the way down.

        The first free name of ``lxc.payload.<name>``, ``lxc.payload.<name>-1`` ... (free in
        every hierarchy: ``mkdir`` decides) is taken, as LXC does, and written down once made
        (:mod:`.claim`; a crash in between leaves an empty cgroup, never a claim on a cgroup
        of another container).  Once claimed, calling it again reuses the claim (idempotent); a
        ``lxc.cgroup.dir.container`` path is used as written (an empty leftover is reused).

        :raises Busy: the cgroup already holds processes (the container runs), or every name
            up to ``-1000`` is taken.
        :raises BdevError: a cgroup could not be made; what was made is removed again.
        """
        if self.owned:
            busy = self.pids()
            if busy:
                raise Busy(_("its cgroup {limit} already holds processes ({pids}): a container of this name is "
                             "running").format(
                    limit=self.placements[0].limit, pids=', '.join(map(str, busy[:5]))),
                           container=self.ref.label)
            self._make(exclusive=False)
            return
        for index in range(MAX_INDEX + 1):
            chosen = self._placements_at(index)
            self.__dict__["placements"] = chosen  # the cached property, now this name
            try:
                self._make(exclusive=True)
            except FileExistsError:
                continue  # taken (by a same-named container of another lxcpath, or a leftover)
            try:
                write_claim(Claim(str(self.ref.lxcpath), self.ref.name, index, chosen[0].limit if chosen else ""))
            except BaseException:
                for placement in chosen:
                    cgroupfs.remove_if_empty(placement.limit_dir)
                raise
            return
        self.__dict__.pop("placements", None)
        raise Busy(_("cgroups lxc.payload.{name} to lxc.payload.{name}-{max_index} all exist (remove the leftovers)").format(
            name=self.ref.name, max_index=MAX_INDEX), container=self.ref.label)

    def _make(self, *, exclusive: bool) -> None:
        """Make the cgroup of every placement (see :meth:`create`).

        :raises FileExistsError: ``exclusive`` and the cgroup exists in some hierarchy;
            nothing made here is left.
        """
        controllers = self.v2_controllers()
        made: list[Path] = []
        try:
            for placement in self.placements:
                if not placement.base_dir.is_dir():
                    raise BdevError(_("the base cgroup {base_dir} does not exist").format(
                        base_dir=placement.base_dir), container=self.ref.label)
                made.extend(cgroupfs.make_cgroup(placement.hierarchy, placement.base_dir, placement.attach_dir,
                                                 controllers if placement.hierarchy.version == 2 else frozenset(),
                                                 exclusive=exclusive))
        except FileExistsError:
            for directory in reversed(made):
                cgroupfs.remove_if_empty(directory)
            raise
        except OSError as exc:
            for directory in reversed(made):
                cgroupfs.remove_if_empty(directory)
            where = f" ({exc.filename})" if exc.filename else ""
            hint = ""
            if exc.errno == errno.EBUSY and str(exc.filename or "").endswith(cgroupfs.SUBTREE_CONTROL):
                hint = ("; cgroup v2 lets no cgroup that holds processes hand controllers down, so place the "
                        "container elsewhere with lxc.cgroup.dir")
            raise BdevError(_("cannot make its cgroup: {cause}{where}{hint}").format(
                cause=explain(exc), where=where, hint=hint), container=self.ref.label) from None
        except BdevError:
            for directory in reversed(made):
                cgroupfs.remove_if_empty(directory)
            raise

    def apply(self) -> None:
        """Write the config's limits (then its raw settings) into the cgroup.

        :raises BdevError: the kernel refused a value, naming the file, the value and why.
        """
        self._write_all(self.writes())

    def apply_live(self, names: list[str], unset: tuple[str, ...] = ()) -> None:
        """Write just the limits ``names`` and lift the ``unset`` ones, on a running container.

        :raises BdevError: the kernel refused one (a memory limit below what is in use ...).
        """
        self._write_all(self.writes(names, unset=unset))

    def _write_all(self, writes: list[Write]) -> None:
        failed: list[tuple[Write, OSError]] = []
        for write in writes:
            try:
                _perform(write)
            except OSError as exc:
                failed.append((write, exc))
        for write, _exc in list(failed):  # v1 memory and memory+swap must be raised/lowered in a given order
            try:
                _perform(write)
                failed = [(w, e) for w, e in failed if w is not write]
            except OSError as exc:
                failed = [(w, exc if w is write else e) for w, e in failed]
        if failed:
            write, exc = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise BdevError(_("cannot set {origin} ({file} = {value} in {limit_dir}): {cause}{more}").format(
                origin=write.origin, file=write.file, value=write.value, limit_dir=write.placement.limit_dir, cause=explain(exc), more=more), container=self.ref.label)

    def attach(self, pid: int) -> None:
        """Move process ``pid`` (the container's init) into the cgroup of every hierarchy.

        :raises BdevError: the kernel refused, naming the hierarchy.
        """
        for placement in self.placements:
            try:
                cgroupfs.write_file(placement.attach_dir / cgroupfs.PROCS, str(pid))
            except OSError as exc:
                raise BdevError(_("cannot move process {pid} into {attach_dir}: {cause}").format(
                    pid=pid, attach_dir=placement.attach_dir, cause=explain(exc)),
                                container=self.ref.label) from None

    def pids(self) -> list[int]:
        """Every process still in the cgroup (and the cgroups the container made below it)."""
        found: set[int] = set()
        for placement in self.placements:
            found.update(cgroupfs.cgroup_pids(placement.limit_dir))
        return sorted(found)

    def exists(self) -> bool:
        """Whether the cgroup exists in any hierarchy."""
        return any(p.limit_dir.is_dir() for p in self.placements)

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup, with the cgroup frozen so none can
        fork past it (``cgroup.kill`` does SIGKILL at once on v2).  For SIGKILL, waits until
        the cgroup is empty.

        Does nothing to a cgroup that is not :attr:`owned`.

        :raises Busy: processes were still there after the wait.
        """
        if not self.owned or not self.pids():
            return
        unified = self.placement_for(CORE_CONTROLLER, 2)
        killed = (sig == signal.SIGKILL and unified is not None and unified.limit_dir.is_dir()
                  and cgroupfs.kill_cgroup(unified.limit_dir))
        if not killed:
            self._signal_frozen(sig)
        if sig != signal.SIGKILL:
            return
        deadline = time.monotonic() + KILL_TIMEOUT
        delay = 0.001
        while time.monotonic() < deadline:
            left = self.pids()
            if not left:
                return
            cgroupfs.signal_pids(left, signal.SIGKILL)  # anything forked between listing and killing
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise Busy(_("processes {pids} survived SIGKILL for {kill_timeout:g} s").format(
            pids=', '.join(map(str, self.pids()[:5])), kill_timeout=KILL_TIMEOUT),
                   container=self.ref.label)

    def _signal_frozen(self, sig: int) -> None:
        """Signal every process with the cgroup frozen (v1 freezer, else v2 ``cgroup.freeze``)
        where a freezer is at hand, so that no process forks between listing and signalling."""
        freezer = next((p for p in self.placements if p.hierarchy.version == 1 and "freezer" in p.hierarchy.controllers),
                       self.placement_for(CORE_CONTROLLER, 2))
        frozen = (freezer is not None and freezer.limit_dir.is_dir()
                  and cgroupfs.freeze(freezer.hierarchy, freezer.limit_dir, True))
        try:
            cgroupfs.signal_pids(self.pids(), sig)
        finally:
            if frozen and freezer is not None:
                cgroupfs.freeze(freezer.hierarchy, freezer.limit_dir, False)

    def remove(self) -> None:
        """Delete the cgroup in every hierarchy, then the ``lxc.cgroup.dir`` cgroups above it
        that no other container uses (idempotent), and drop the claim on its name.  Call it
        once the processes are gone and reaped.  A cgroup that is not :attr:`owned` is left.

        :raises Busy: processes are still in it.
        :raises BdevError: the kernel kept a cgroup busy.
        """
        if not self.owned:
            return
        left = self.pids()
        if left:
            raise Busy(_("its cgroup still holds processes {pids}; stop them first").format(
                pids=', '.join(map(str, left[:5]))),
                       container=self.ref.label)
        for placement in self.placements:
            try:
                cgroupfs.remove_cgroup(placement.limit_dir)
            except OSError as exc:
                raise BdevError(_("cannot remove its cgroup {filename}: {cause}").format(
                    filename=exc.filename or placement.limit_dir, cause=explain(exc)),
                                container=self.ref.label) from None
            parent = placement.limit_dir.parent
            while parent != placement.base_dir and placement.base_dir in parent.parents and cgroupfs.remove_if_empty(parent):
                parent = parent.parent
        drop_claim(self.ref)

    def cleanup(self) -> bool:
        """Remove a cgroup a crashed monitor left: kill what still runs in it, then remove it.
        Returns whether there was one (one that is not :attr:`owned` does not count).

        :raises BdevError: as :meth:`kill_all` and :meth:`remove`.
        """
        if not self.owned or not self.exists():
            drop_claim(self.ref)
            return False
        self.kill_all(signal.SIGKILL)
        self.remove()
        return True

    # ------------------------------------------------------------------ what runs now

    def memory_usage(self) -> tuple[int | None, int | None]:
        """``(memory, swap)`` in bytes the cgroup uses now, as ``lxc-ls -f`` shows them (None:
        not readable here): v1 ``memory.usage_in_bytes``, and the swap as
        ``memory.memsw.usage_in_bytes`` minus it (else the ``swap`` line of ``memory.stat``);
        v2 ``memory.current`` and ``memory.swap.current``."""
        v1, v2 = self.placement_for("memory", 1), self.placement_for("memory", 2)
        if v1 is not None and v1.limit_dir.is_dir():
            memory = _number(cgroupfs.read_file(v1.limit_dir / "memory.usage_in_bytes"))
            both = _number(cgroupfs.read_file(v1.limit_dir / "memory.memsw.usage_in_bytes"))
            if both is not None and memory is not None:
                return memory, max(both - memory, 0)
            stat = cgroupfs.read_file(v1.limit_dir / "memory.stat") or ""
            swap = next((_number(line.split()[1]) for line in stat.splitlines() if line.startswith("swap ")), None)
            return memory, swap
        if v2 is not None and v2.limit_dir.is_dir():
            return (_number(cgroupfs.read_file(v2.limit_dir / "memory.current")),
                    _number(cgroupfs.read_file(v2.limit_dir / "memory.swap.current")))
        return None, None

    def _v1_file(self, controller: str, name: str) -> int | None:
        placement = self.placement_for(controller, 1)
        if placement is None or not placement.limit_dir.is_dir():
            return None
        return _number(cgroupfs.read_file(placement.limit_dir / name))

    def _v2_stat(self, name: str, key: str) -> int | None:
        """Field ``key`` of the flat-keyed v2 file ``name`` (``cpu.stat``), or None."""
        placement = self.placement_for("", 2)
        if placement is None or not placement.limit_dir.is_dir():
            return None
        text = cgroupfs.read_file(placement.limit_dir / name) or ""
        return next((_number(line.split()[1]) for line in text.splitlines() if line.split()[:1] == [key]), None)

    def cpu_usage_ns(self) -> int | None:
        """CPU time the cgroup's processes used, in nanoseconds: v1 ``cpuacct.usage``, v2
        ``cpu.stat``'s ``usage_usec``; None where not readable."""
        used = self._v1_file("cpuacct", "cpuacct.usage")
        if used is not None:
            return used
        usec = self._v2_stat("cpu.stat", "usage_usec")
        return usec * 1000 if usec is not None else None

    def block_io_bytes(self) -> int | None:
        """Bytes read and written on block devices: the ``Total`` of v1
        ``blkio.throttle.io_service_bytes`` (what ``lxc-info`` shows), or the sum of v2
        ``io.stat``'s ``rbytes`` and ``wbytes``; None where not readable."""
        placement = self.placement_for("blkio", 1)
        if placement is not None and placement.limit_dir.is_dir():
            text = cgroupfs.read_file(placement.limit_dir / "blkio.throttle.io_service_bytes") or ""
            totals = [line.split()[1] for line in text.splitlines() if line.split()[:1] == ["Total"]]
            return _number(totals[-1]) if totals else None
        placement = self.placement_for("io", 2)
        if placement is None or not placement.limit_dir.is_dir():
            return None
        total = 0
        for line in (cgroupfs.read_file(placement.limit_dir / "io.stat") or "").splitlines():
            for field_ in line.split()[1:]:
                key, _sep, value = field_.partition("=")
                if key in ("rbytes", "wbytes") and value.isdigit():
                    total += int(value)
        return total

    def kernel_memory_usage(self) -> int | None:
        """Kernel memory charged to the cgroup: v1 ``memory.kmem.usage_in_bytes``, v2
        ``memory.stat``'s ``kernel``; None where not readable."""
        used = self._v1_file("memory", "memory.kmem.usage_in_bytes")
        return used if used is not None else self._v2_stat("memory.stat", "kernel")

    def live_values(self) -> dict[str, Value]:
        """The friendly limits as the running cgroup has them (limits whose files cannot be
        read are left out); empty when the cgroup does not exist."""
        found: dict[str, Value] = {}
        for name, limit in LIMITS.items():
            version = target_version(limit, self.host)
            placement = self.placement_for(limit.controller(version), version) if version else None
            if placement is None or not placement.limit_dir.is_dir():
                continue
            try:
                if name == "devices":
                    if version == 1:
                        text = cgroupfs.read_file(placement.limit_dir / "devices.list")
                        if text is not None:
                            found[name] = read_devices_list(text)
                    continue
                entries = [Entry(file, text) for file in limit.owned[version]
                           if (text := cgroupfs.read_file(placement.limit_dir / file)) is not None]
                value = limit.read(entries, version, found)
            except InvalidInput:
                continue
            if value is not None:
                found[name] = value
        return found

    def mapping(self, name: str) -> tuple[int | None, list[str], list[Path]]:
        """``(version, config keys, cgroup files)`` limit ``name`` maps to on this host."""
        limit = LIMITS[name]
        version = target_version(limit, self.host)
        if version is None:
            return None, [], []
        configured = self.limits.configured.get(name)
        if configured is None and name == "devices":
            files = list(limit.owned[version])
        else:
            value = configured.value if configured is not None else UNLIMITED
            values = {"memory": UNLIMITED, **self.limits.values()}
            try:
                files = list(dict.fromkeys(e.file for e in limit.entries(value, version, self.host, values)))
            except InvalidInput:  # cannot be written here (swap without swap accounting): name its file
                files = [limit.owned[version][0]]
        placement = self.placement_for(limit.controller(version), version)
        paths = [placement.limit_dir / f for f in files] if placement is not None else []
        return version, [config_key(version, f) for f in files], paths
