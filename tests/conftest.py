"""Fixtures for bdev's own tests.  The shared ones (``lxcpath``, ``storage_lxcpath``,
``no_leaks``, ``hermetic_lxc_conf``) and the ``root`` marker's skip come from the conformance
kit's pytest plugin (:mod:`bdev.testing.kit.plugin`), loaded through its ``pytest11`` entry
point; here the hermetic lxc.conf is made to apply to every test."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True, scope="session")
def _hermetic_everywhere(hermetic_lxc_conf: Path) -> Path:
    """Every test of the suite sees the private lxc.conf, not the host's /etc/lxc files."""
    return hermetic_lxc_conf
