"""bdev's command line programs (``bdev`` and the ``lxc-*`` commands).

Importing it makes click's own messages (``Usage:``, usage errors) follow the locale like
bdev's, through the ``click`` catalog the core ships (see :mod:`bdev.i18n`).
"""

from ..i18n import use_click_catalog

use_click_catalog()
