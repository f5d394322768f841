"""Built-in templates, offered through the ``bdev_templates`` hook."""

from bdev import hookimpl


@hookimpl
def bdev_templates():
    """Offer the built-in templates."""
    from .busybox import BUSYBOX
    from .local import LOCAL

    return [BUSYBOX, LOCAL]
