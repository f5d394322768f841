"""``lxc.cap.drop`` / ``lxc.cap.keep``: which capabilities leave the container's bounding set.

Names are written as LXC writes them (``capabilities(7)`` names in lower case without
``CAP_``: ``sys_module mac_admin``), or as numbers up to the kernel's last capability.  Both
keys are lists spread over any number of lines; an empty value clears what earlier lines
said, and ``lxc.cap.keep = none`` keeps nothing.  LXC refuses a config that sets both.

In the container's init, just before exec, each dropped capability leaves the bounding set
(so no later exec can gain it back) and the inheritable set (which takes it out of the
ambient set too: the kernel keeps ambient within inheritable).  The effective and permitted
sets are left alone until exec, as LXC does, so the steps after this one (loading the
seccomp filter) still have the privileges they need; exec then recomputes them from the
bounding set.  python-prctl (Debian ``python3-prctl``) does the system calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bdev.errors import InvalidInput
from .._i18n import _

DROP_KEY = "lxc.cap.drop"
KEEP_KEY = "lxc.cap.keep"
CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")
_NONE = "none"

# Capabilities newer than python-prctl's name table (it names number 40 "last_cap").
_NEWER_NAMES = {"checkpoint_restore": 40}


def _prctl():
    import prctl  # Debian python3-prctl; imported late so parsing a config never needs it

    return prctl


def capability_names() -> dict[str, int]:
    """Every capability name LXC accepts, mapped to its number (from python-prctl's table)."""
    prctl = _prctl()
    names = {name: getattr(prctl, f"CAP_{name.upper()}") for name in prctl.ALL_CAP_NAMES if name != "last_cap"}
    for name, number in _NEWER_NAMES.items():
        if number <= prctl.CAP_LAST_CAP:  # python-prctl can drop it, though it cannot name it
            names.setdefault(name, number)
    return names


def kernel_last_cap() -> int:
    """The highest capability number the running kernel knows."""
    return int(CAP_LAST_CAP.read_text().strip())


@dataclass(frozen=True)
class CapabilityPlan:
    """What leaves the bounding set: ``dropped`` capability numbers, sorted.

    :param mode: ``"drop"`` (``lxc.cap.drop``), ``"keep"`` (``lxc.cap.keep``) or ``"all"``
        (neither key: nothing is dropped).
    :param listed: the names as configured, for reports.
    """

    mode: str
    dropped: tuple[int, ...]
    listed: tuple[str, ...]

    def report(self) -> str:
        """One line: what the container's bounding set will be."""
        if self.mode == "all":
            return _("capabilities: all kept (no lxc.cap.drop or lxc.cap.keep)")
        if self.mode == "keep":
            kept = f"only {' '.join(self.listed)}" if self.listed else "none"
            return _("capabilities: keeping {kept} ({keep_key}); {count} dropped").format(
                kept=kept, keep_key=KEEP_KEY, count=len(self.dropped))
        return _("capabilities: dropping {listed} ({drop_key})").format(listed=' '.join(self.listed), drop_key=DROP_KEY)

    def apply(self) -> None:
        """Drop ``dropped`` from this process's bounding and inheritable sets (and so from
        its ambient set).  Needs CAP_SETPCAP in the process's user namespace.

        :raises OSError: the kernel refused (the caller names the container).
        """
        if not self.dropped:
            return
        prctl = _prctl()
        for number in self.dropped:
            if prctl.capbset_read(number):  # dropping needs CAP_SETPCAP even when already gone
                prctl.capbset_drop(number)
        prctl.cap_inheritable.drop(*self.dropped)


def capability_plan(values_by_key: list[tuple[str, str]], *, config_file: str | None) -> CapabilityPlan:
    """Read ``lxc.cap.drop`` and ``lxc.cap.keep`` from the config's ``(key, value)`` entries
    (in file order) as LXC does.

    :param config_file: the config's path, named in errors.
    :raises InvalidInput: an unknown capability name (naming the key, the value and the file),
        a number above the kernel's last capability, or both keys set.
    """
    where = f" in {config_file}" if config_file else ""
    known = capability_names()
    last = kernel_last_cap()
    lists: dict[str, list[str]] = {DROP_KEY: [], KEEP_KEY: []}
    for key, value in values_by_key:
        if key not in lists:
            continue
        tokens = value.split()
        if not tokens:
            lists[key].clear()
            continue
        for token in tokens:
            if key == KEEP_KEY and token == _NONE:
                lists[key].clear()
            lists[key].append(token)
    drop, keep = lists[DROP_KEY], lists[KEEP_KEY]
    if drop and keep:
        raise InvalidInput(_("{drop_key} and {keep_key} are both set{where}; LXC refuses that: use one of them").format(
            drop_key=DROP_KEY, keep_key=KEEP_KEY, where=where))
    key, tokens = (KEEP_KEY, keep) if keep else (DROP_KEY, drop)
    numbers = {}
    for token in tokens:
        if key == KEEP_KEY and token == _NONE:
            continue
        numbers[token] = _parse_capability(token, key, known, last, where)
    if keep:
        if last > max(known.values()):
            raise InvalidInput(
                _("{keep_key}{where} would have to drop capability {last}, which this kernel has but python-prctl "
                  "does not know").format(
                    keep_key=KEEP_KEY, where=where, last=last)
            )
        kept = set(numbers.values())
        dropped = tuple(n for n in range(last + 1) if n not in kept)
        return CapabilityPlan("keep", dropped, tuple(t for t in dict.fromkeys(tokens) if t != _NONE))
    if drop:
        return CapabilityPlan("drop", tuple(sorted(set(numbers.values()))), tuple(dict.fromkeys(tokens)))
    return CapabilityPlan("all", (), ())


def _parse_capability(token: str, key: str, known: dict[str, int], last: int, where: str) -> int:
    if token in known:
        number = known[token]
    elif token.isascii() and token.isdigit():
        number = int(token)
    else:
        hint = ""
        bare = token.lower().removeprefix("cap_")
        if bare in known:
            hint = f" (LXC writes it {bare})"
        raise InvalidInput(
            _("{key}{where}: unknown capability {token!r}{hint}; names are capabilities(7) names in lower case "
              "without CAP_, e.g. sys_module mac_admin").format(
                key=key, where=where, token=token, hint=hint)
        )
    if number > last:
        raise InvalidInput(_("{key}{where}: capability {number} is above this kernel's last capability ({last})").format(
            key=key, where=where, number=number, last=last))
    if number > max(known.values()):
        raise InvalidInput(_("{key}{where}: capability {token!r} is unknown to python-prctl, which drops them").format(
            key=key, where=where, token=token))
    return number
