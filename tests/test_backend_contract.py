"""The backend contract (:mod:`bdev.testing.kit`) for every registered backend: the built-in
ones and any installed plugin, on every kind of real filesystem this machine can make."""

from __future__ import annotations

import pytest

from bdev.registry import load_registry
from bdev.testing.kit import BackendContract

# Backends whose storage a test module of their own provides (a zfs pool on a private
# zfs-fuse daemon: tests/test_zfs.py runs the whole kit against it there; an LVM volume group
# on a kernel with device-mapper: tests/test_lvm.py runs it in the qemu guest).
OWN_STORAGE = {"zfs": "tests/test_zfs.py", "lvm": "tests/test_lvm.py"}

BACKENDS = [entry.name for entry in load_registry().backend_entries() if entry.name not in OWN_STORAGE]


class TestEveryRegisteredBackend(BackendContract):
    """Every contract test for each backend the installed plugins register."""

    @classmethod
    def contract_backends(cls, config: pytest.Config) -> list[str]:
        return BACKENDS
