"""Built-in templates, offered through the ``bdev_templates`` hook, and the ``bdev image``
commands that make and serve images for the ``download`` template (``bdev_commands``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bdev import hookimpl

if TYPE_CHECKING:
    import click
    from bdev.templates import Template


@hookimpl
def bdev_templates() -> Iterable["Template"]:
    """Offer the built-in templates."""
    from .busybox import BUSYBOX
    from .debian import DEBIAN
    from .download import DOWNLOAD
    from .local import LOCAL
    from .sshd import SSHD

    return [BUSYBOX, DEBIAN, DOWNLOAD, LOCAL, SSHD]


@hookimpl
def bdev_commands() -> Iterable["click.Command"]:
    """``bdev image build | serve | list``."""
    from ..images.cli import image

    return [image]
