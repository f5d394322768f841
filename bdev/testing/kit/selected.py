"""The contract run by ``pytest --bdev-backend=NAME`` (or the ``bdev_backends`` ini option):
the kit's plugin adds this module to the session when backends are selected."""

from __future__ import annotations

import pytest

from .contract import BackendContract
from .plugin import selected_backends


class TestSelectedBackends(BackendContract):
    """Every contract test, for each backend selected on the command line or in the ini file."""

    @classmethod
    def contract_backends(cls, config: pytest.Config) -> list[str]:
        return selected_backends(config)
