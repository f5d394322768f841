"""bdev's pytest plugin (entry point ``pytest11: bdev``), loaded in every pytest session of an
environment where bdev is installed, so it stays cheap and inert unless asked:

* fixtures ``hermetic_lxc_conf``, ``lxcpath``, ``storage_lxcpath``, ``no_leaks``;
* markers ``root`` (skipped, with the reason, when not run as root) and ``unprivileged``;
* ``--bdev-backend=NAME`` (repeatable) or the ini option ``bdev_backends`` adds the whole
  backend contract, run against those registered backends, to the session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .fixtures import hermetic_lxc_conf, lxcpath, no_leaks, storage_lxcpath

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
    """Tests marked ``root`` are skipped, with the reason, when the session runs unprivileged."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=ROOT_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)
