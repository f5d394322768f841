"""Section 5: ``bdev-config(5)``, the configuration keys bdev reads and writes.

The ``lxc.rootfs.path`` forms are collected from the installed backends (their names,
descriptions and the value each would write for a new container), the friendly limits from
the runtime when it is installed: a new backend or limit appears here by itself.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from ..i18n import N_, _, text
from . import roff

NAME = "bdev-config"
SAMPLE_LXCPATH = Path("/var/lib/lxc")
SAMPLE_NAME = "NAME"

_INTRO = N_(
    "bdev reads and writes LXC's container configuration (<lxcpath>/<name>/config) and LXC's "
    "global lxc.conf, keeping comments, order and repeated keys. This page lists the keys bdev "
    "itself interprets.")
_ROOTFS = N_(
    "lxc.rootfs.path = <backend>:<source> names the container's root filesystem and the "
    "backend that stores it. bdev writes this form; it also reads LXC 1.0's lxc.rootfs (with "
    "lxc.rootfs.backend) and an unprefixed source, whose backend it detects. The forms of "
    "the backends installed here, as written for a new container NAME in /var/lib/lxc:")
_LEGACY = N_(
    "lxc.utsname and lxc.rootfs (LXC 1.0) are read; bdev writes lxc.uts.name and "
    "lxc.rootfs.path instead. A clone gets a new lxc.uts.name and new MAC addresses unless "
    "asked to keep them (-K, -M).")
_GLOBAL = N_(
    "In lxc.conf (/etc/lxc/lxc.conf for root, ~/.config/lxc/lxc.conf for other users) bdev "
    "reads lxc.lxcpath, the default container path, and the storage keys of the backends. "
    "Their defaults:")
_LIMITS = N_(
    "Friendly limits (bdev limits NAME KEY=VALUE) are written as LXC's cgroup keys, "
    "lxc.cgroup.<file> for cgroup v1 and lxc.cgroup2.<file> for cgroup v2, which real LXC "
    "applies too. The keys:")
_ALIASES = N_("Also written as: {aliases}.")
_FILES = N_("cgroup v1: {v1}; cgroup v2: {v2}.")
_EXAMPLE = N_("Examples: {example}.")


def _rootfs_forms() -> list[tuple[str, list[str]]]:
    from ..engine.context import default_registry
    from ..records import CreateOptions, Placement

    placement = Placement(SAMPLE_LXCPATH, SAMPLE_NAME)
    forms = []
    for entry in default_registry().backend_entries():
        backend = entry.backend
        body = [text(backend.description)]
        try:
            body.append(f"lxc.rootfs.path = {backend.name}:{backend.default_source(placement, CreateOptions())}")
        except Exception:  # noqa: BLE001 - a backend that needs settings to name a source
            pass
        if backend.aliases:
            body.append(str(_ALIASES).format(aliases=", ".join(backend.aliases)))
        forms.append((backend.name, body))
    return forms


def _limits() -> list[tuple[str, list[str]]]:
    if find_spec("bdev_runtime") is None:
        return []
    from bdev_runtime.cgroups.limits import LIMITS, PREFIXES

    rows = []
    for name, limit in LIMITS.items():
        files = {version: ", ".join(PREFIXES[version] + f for f in limit.owned.get(version, ())) or "-"
                 for version in (1, 2)}
        body = [text(limit.summary), str(_FILES).format(v1=files[1], v2=files[2])]
        if limit.example:
            body.append(str(_EXAMPLE).format(example=text(limit.example)))
        rows.append((name, body))
    return rows


def render(version: str) -> str:
    """The page's man(7) source in the current language."""
    from ..store.lxcpath import BACKEND_DEFAULTS

    out = roff.Page(NAME, 5, f"bdev {version}", "bdev")
    out.section(_("NAME"))
    summary = _("configuration keys bdev reads and writes")
    out.raw(f"{NAME} \\- {roff.escape(summary)}")
    out.section(_("DESCRIPTION"))
    out.text(str(_INTRO))
    out.section("lxc.rootfs.path")
    out.text(str(_ROOTFS))
    for name, body in _rootfs_forms():
        out.item(roff.bold(name), body)
    out.text(str(_LEGACY))
    out.section("lxc.conf")
    out.text(str(_GLOBAL))
    out.item(roff.bold("lxc.lxcpath"), ["/var/lib/lxc, ~/.local/share/lxc"])
    for key, value in sorted(BACKEND_DEFAULTS.items()):
        out.item(roff.bold(key), [value])
    limits = _limits()
    if limits:
        out.section(_("LIMITS"))
        out.text(str(_LIMITS))
        for name, body in limits:
            out.item(roff.bold(name), body)
    out.section(_("SEE ALSO"))
    out.raw(",\n".join(roff.bold(ref) for ref in ("bdev(1)", "bdev-backends(7)", "lxc.container.conf(5)")))
    return out.render()
