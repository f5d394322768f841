"""The bdev_rbd gettext domain (catalogs in ``locale/``): ``_`` translates a message now,
``N_`` marks a help text translated each time it is shown, ``ngettext`` picks a plural form."""

from pathlib import Path

from bdev.i18n import translator

_translator = translator("bdev_rbd", Path(__file__).parent)
_, N_, ngettext = _translator.gettext, _translator.lazy, _translator.ngettext
