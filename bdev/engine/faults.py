"""Marked steps for crash-safety tests.

``checkpoint("restore:after-swap")`` kills the process with SIGKILL when the environment says
``BDEV_FAULT=restore:after-swap``, exactly as a power cut or ``kill -9`` would at that step.
The tests then show the container intact and the next command cleaning up.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "BDEV_FAULT"


def checkpoint(step: str) -> None:
    """Die here, uncleanly, if ``BDEV_FAULT`` names ``step``."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
