"""The limits a container config holds, read from its ``lxc.cgroup.*`` and ``lxc.cgroup2.*``
lines (written by bdev, by hand or by real LXC), and the edits ``bdev limits`` makes to them.

Lines a friendly limit owns are read as that limit; every other controller line is a *raw*
setting, applied the way LXC applies it (``lxc.cgroup.X.Y`` to file ``X.Y`` of the v1
hierarchy of controller ``X``, ``lxc.cgroup2.X.Y`` to file ``X.Y`` of the unified one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bdev.errors import InvalidInput
from bdev.store.config import LxcConfig

from .._i18n import _
from .hierarchy import CgroupHost
from .limits import LIMITS, Entry, Limit, Value, cgroup_setting, config_key, controller_of, limit_named, target_version


@dataclass(frozen=True)
class Configured:
    """A friendly limit as a config holds it.

    :param version: the cgroup version whose lines hold it.
    :param keys: those lines' keys, in file order.
    """

    limit: Limit
    value: Value
    version: int
    keys: tuple[str, ...]

    @property
    def shown(self) -> str:
        """The value as ``bdev limits`` prints it."""
        return self.limit.show(self.value)


@dataclass(frozen=True)
class RawSetting:
    """A controller line no friendly limit reads (``lxc.cgroup.cpu.shares = 512``)."""

    key: str
    version: int
    file: str
    value: str

    @property
    def controller(self) -> str:
        """The controller of its file (``cpu`` for ``cpu.shares``)."""
        return controller_of(self.file)


@dataclass
class ConfigLimits:
    """What a config says about limits.

    :param configured: per friendly limit, the setting in effect on the host (the lines of
        the version the host carries the controller on, else the other version's).
    :param shadowed: settings of the other version that a same-limit setting overrides.
    :param raw: the remaining controller lines, in file order.
    """

    configured: dict[str, Configured] = field(default_factory=dict)
    shadowed: list[Configured] = field(default_factory=list)
    raw: list[RawSetting] = field(default_factory=list)

    def values(self) -> dict[str, Value]:
        """Friendly name -> value, of the limits in effect."""
        return {name: c.value for name, c in self.configured.items()}


def read_limits(config: LxcConfig, host: CgroupHost, *, skip: Iterable[str] = ()) -> ConfigLimits:
    """The limits of ``config`` as they would apply on ``host``.

    :param skip: limits whose bad values are passed over (their lines are about to be
        replaced, so a bad value must not stop the edit that fixes it).
    :raises InvalidInput: a line a friendly limit owns holds a value it does not understand,
        naming the key (``lxc.cgroup.memory.limit_in_bytes: memory limit 'lots' is not a
        size (examples: 512M, 2G)``).
    """
    skipped = set(skip)
    lines: dict[int, list[tuple[str, str, str]]] = {1: [], 2: []}
    for key, value in config.items():
        setting = cgroup_setting(key)
        if setting is not None:
            lines[setting[0]].append((key, setting[1], value))
    found: dict[int, dict[str, Configured]] = {1: {}, 2: {}}
    claimed: set[tuple[int, str]] = set()
    for version, version_lines in lines.items():
        values: dict[str, Value] = {}
        for limit in LIMITS.values():
            mine = [(key, file, value) for key, file, value in version_lines if file in limit.owned[version]]
            if not mine:
                continue
            keys = tuple(dict.fromkeys(key for key, _f, _v in mine))
            try:
                value = limit.read([Entry(file, text) for _k, file, text in mine], version, values)
            except InvalidInput as exc:
                if limit.name not in skipped:
                    raise InvalidInput(f"{keys[-1]}: {exc.cause}") from None
                claimed.update((version, key) for key in keys)
                continue
            if value is None:
                continue
            values[limit.name] = value
            found[version][limit.name] = Configured(limit, value, version, keys)
            claimed.update((version, key) for key in keys)
    result = ConfigLimits()
    for name, limit in LIMITS.items():
        preferred = target_version(limit, host) or host.preferred_version()
        other = 2 if preferred == 1 else 1
        chosen = found[preferred].get(name) or found[other].get(name)
        if chosen is None:
            continue
        result.configured[name] = chosen
        loser = found[other if chosen.version == preferred else preferred].get(name)
        if loser is not None:
            result.shadowed.append(loser)
    for version, version_lines in lines.items():
        for key, file, value in version_lines:
            if (version, key) not in claimed:
                result.raw.append(RawSetting(key, version, file, value))
    return result


def parse_assignments(items: Mapping[str, str], host: CgroupHost) -> dict[str, Value]:
    """``{"memory": "512M"}`` as typed, checked strictly (sizes, CPUs online ...); every item
    is checked before any is used.

    :raises InvalidInput: the first bad item, in one sentence.
    """
    parsed: dict[str, Value] = {}
    for name, text in items.items():
        limit = limit_named(name)
        parsed[limit.name] = limit.parse(text, host)
    return parsed


def edit_config(config: LxcConfig, changes: Mapping[str, Value | None], host: CgroupHost,
                version: int | None = None) -> list[str]:
    """Write ``changes`` (friendly name -> value, None to unset) into ``config``.

    Each limit is written for the cgroup version the host carries its controller on (or
    ``version`` when given), and also kept in step in the other version's lines when the
    config already has them (a config meant for both kinds of host stays right on both).
    Unsetting removes the limit's lines of both versions.  Limits computed from a changed
    one (v1 swap from memory) are rewritten too.  Returns the keys written or removed.

    :raises InvalidInput: the change cannot be written (swap without memory on v1, a limit
        whose controller this host lacks) - ``config`` is unchanged then.
    """
    before = read_limits(config, host, skip=changes)
    values = before.values()
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    present = {(c.limit.name, c.version) for c in [*before.configured.values(), *before.shadowed]}
    todo = dict(changes)
    for name, configured in before.configured.items():  # dependents of a change are rewritten
        if name not in todo and any(dep in changes for v in (1, 2) for dep in configured.limit.needs(v)):
            todo[name] = configured.value
    plan: list[tuple[str, list[tuple[str, str]], list[str]]] = []
    for name, value in todo.items():
        limit = LIMITS[name]
        if value is None:
            blocked = [other for other in values if _written_on(other, 1, host, present) and name in LIMITS[other].needs(1)]
            if blocked:
                raise InvalidInput(_("{name} cannot be unset while {blocked} is set, which cgroup v1 writes as "
                                     "{name}+{blocked} (unset {blocked} too)").format(
                    name=name, blocked=blocked[0]))
            plan.append((name, [], _owned_keys(limit)))
            continue
        chosen = version or target_version(limit, host)
        if chosen is None:
            raise InvalidInput(_("cannot set {name}: {missing}").format(
                name=name, missing=host.missing(limit.controller(host.preferred_version()))))
        versions = {chosen} | {v for (n, v) in present if n == name}
        entries: list[tuple[str, str]] = []
        for v in sorted(versions):
            entries.extend((config_key(v, e.file), e.value) for e in limit.entries(value, v, host, values))
        plan.append((name, entries, _owned_keys(limit)))
    changed: list[str] = []
    for _name, entries, owned in plan:
        wanted = {key for key, _v in entries}
        for key in owned:
            if key not in wanted and config.remove(key):
                changed.append(key)
        by_key: dict[str, list[str]] = {}
        for key, value in entries:
            by_key.setdefault(key, []).append(value)
        for key, new_values in by_key.items():
            if len(new_values) == 1:
                config.set(key, new_values[0])
            else:
                config.remove(key)
                for value in new_values:
                    config.append(key, value)
            changed.append(key)
    return changed


def _written_on(name: str, version: int, host: CgroupHost, present: set[tuple[str, int]]) -> bool:
    """Whether limit ``name`` is (or will be) written in ``version``'s lines."""
    return target_version(LIMITS[name], host) == version or (name, version) in present


def _owned_keys(limit: Limit) -> list[str]:
    return [config_key(v, file) for v in (1, 2) for file in limit.owned[v]]
