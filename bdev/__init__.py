"""bdev: pluggable storage backends and snapshots for Linux system containers.

The public surface: :class:`Container` (the python3-lxc-like API), the plugin interface
(:class:`Backend`, :data:`hookimpl`, records) and the errors.
"""

from importlib.metadata import PackageNotFoundError, version

from .backend import Backend
from .errors import BdevError
from .hookspecs import hookimpl
from .records import Capabilities, CloneOutcome, CopyStats, CreateOptions, Placement, Rootfs, Usage
from .templates import Template, TemplateContext

try:
    __version__ = version("bdev")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Backend",
    "BdevError",
    "Capabilities",
    "CloneOutcome",
    "CopyStats",
    "CreateOptions",
    "Placement",
    "Rootfs",
    "Template",
    "TemplateContext",
    "Usage",
    "hookimpl",
    "__version__",
]
