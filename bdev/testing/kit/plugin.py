"""bdev's pytest plugin (entry point ``pytest11: bdev``), loaded in every pytest session of an
environment where bdev is installed, so it stays cheap and inert unless asked:

* fixtures ``hermetic_lxc_conf``, ``lxcpath``, ``storage_lxcpath``, ``no_leaks``;
* markers ``root`` (skipped, with the reason, when not run as root) and ``unprivileged``;
* ``--bdev-backend=NAME`` (repeatable) or the ini option ``bdev_backends`` adds the whole
  backend contract, run against those registered backends, to the session;
* ``--kit-storage=KIND,...`` and ``--kit-crash-steps=STEP,...|none`` narrow the contract to some
  storage kinds and crash steps (for a slow machine or a quick look); what they leave out is
  reported as deselected, and the session header says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .crash import CRASH_STEPS
from .fixtures import hermetic_lxc_conf, lxcpath, no_leaks, storage_lxcpath
from .storage import STORAGE_KINDS

__all__ = ["hermetic_lxc_conf", "lxcpath", "no_leaks", "storage_lxcpath", "selected_backends"]

SELECTED_MODULE = Path(__file__).with_name("selected.py")
ROOT_SKIP_REASON = "marked root: needs real mounts, foreign ownership or real LXC as root"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--bdev-backend`` and the ``bdev_backends`` ini option."""
    group = parser.getgroup("bdev", "bdev backend conformance kit")
    group.addoption(
        "--bdev-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="run bdev's backend contract against this registered backend (repeat for more)",
    )
    parser.addini("bdev_backends", "registered backends to run bdev's backend contract against", type="linelist", default=[])
    group.addoption(
        "--kit-storage",
        default=None,
        metavar="KIND,...",
        help="run the contract only on these storage kinds (of: " + ", ".join(STORAGE_KINDS) + ")",
    )
    group.addoption(
        "--kit-crash-steps",
        default=None,
        metavar="STEP,...|none",
        help="run the crash tests only at these marked steps (of: " + ", ".join(CRASH_STEPS) + "), or none",
    )


def _narrowing(config: pytest.Config, option: str, known: tuple[str, ...]) -> tuple[str, ...] | None:
    """The values ``--kit-storage``/``--kit-crash-steps`` keep, or None when not given."""
    raw = config.getoption(option, default=None)
    if raw is None:
        return None
    values = tuple(value for value in raw.replace(" ", ",").split(",") if value and value != "none")
    unknown = [value for value in values if value not in known]
    if unknown:
        flag = "--" + option.replace("_", "-")
        raise pytest.UsageError(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return values


def kit_narrowing(config: pytest.Config) -> dict[str, tuple[str, ...]]:
    """The contract parameters the command line narrows: ``{"kit_storage_kind": kinds,
    "kit_crash_step": steps}``, each present only when its option was given."""
    narrowed = {}
    for option, param, known in (("kit_storage", "kit_storage_kind", STORAGE_KINDS), ("kit_crash_steps", "kit_crash_step", CRASH_STEPS)):
        values = _narrowing(config, option, known)
        if values is not None:
            narrowed[param] = values
    return narrowed


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say in the header when the contract runs narrowed, so a short run is never mistaken for
    the whole contract."""
    return [
        f"bdev kit: contract narrowed to {param} in ({', '.join(values) or 'none'}); the rest is deselected"
        for param, values in kit_narrowing(config).items()
    ]


def selected_backends(config: pytest.Config) -> list[str]:
    """The backends named by ``--bdev-backend`` and ``bdev_backends``, in order, once each."""
    names: list[str] = []
    raw = [*(config.getoption("bdev_backend", default=None) or []), *config.getini("bdev_backends")]
    for value in raw:
        for name in value.replace(",", " ").split():
            if name not in names:
                names.append(name)
    return names


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and, when backends are selected, add the contract module to what
    the session collects."""
    config.addinivalue_line("markers", "root: needs root (real mounts, chown, device nodes)")
    config.addinivalue_line("markers", "unprivileged: meant to pass as an ordinary user too")
    if selected_backends(config) and str(SELECTED_MODULE) not in config.args:
        config.args.append(str(SELECTED_MODULE))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Contract cases outside ``--kit-storage``/``--kit-crash-steps`` are deselected; tests
    marked ``root`` are skipped, with the reason, when the session runs unprivileged."""
    narrowed = kit_narrowing(config)
    if narrowed:
        kept, dropped = [], []
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            outside = any(param in params and params[param] not in values for param, values in narrowed.items())
            (dropped if outside else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=ROOT_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)
