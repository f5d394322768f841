"""Translations: one gettext domain per distribution, catalogs inside its package.

Every distribution (the core ``bdev``, ``bdev_runtime``, each plugin) ships its own catalogs in
``<package>/locale/<lang>/LC_MESSAGES/<domain>.mo``, so a third-party plugin translates its own
messages without touching the core.  A module marks its messages like this::

    from pathlib import Path
    from bdev.i18n import option, translator

    _t = translator("bdev_zfs", Path(__file__).parent)
    _, N_ = _t.gettext, _t.lazy

    raise NotFound(_("dataset {dataset} does not exist").format(dataset=name))

    @click.command("zfs-status", help=N_("Show the pools bdev's zfs backend uses."))
    @option("--pool", help=N_("Only this pool."))

``_`` translates now (an error message); ``N_`` returns a :class:`LazyString`, rendered in the
caller's locale each time it is shown (click help, built at import time).  Messages with values
use named placeholders (``{name}``) so a translation can reorder them.  Click option help must
go through :func:`option` (click cleans up the help text of its own ``Option`` class when the
option is declared, which would fix the language at import time).

The language comes from ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES`` and ``LANG``, read when a
message is translated, as gettext reads them; English (the msgid) is the fallback.  Nothing
is read from disk until a message is first translated.

A distribution publishes its domain under the ``bdev.locales`` entry-point group (the name is
the domain, the value the package holding ``locale/``)::

    [project.entry-points."bdev.locales"]
    bdev_zfs = "bdev_zfs"

:func:`domains` lists them all, so one test checks every installed catalog.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "bdev.locales"
LOCALE_DIR = "locale"
_LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
_UNTRANSLATED = ("C", "POSIX")


def languages() -> tuple[str, ...]:
    """The languages asked for by the environment, best first, as gettext chooses them: the
    first of ``LANGUAGE`` (a colon list), ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set;
    empty for the C/POSIX locale (English)."""
    for variable in _LANGUAGE_VARIABLES:
        value = os.environ.get(variable)
        if value:
            wanted = [lang for lang in value.split(":") if lang]
            break
    else:
        return ()
    for index, lang in enumerate(wanted):
        if lang.partition(".")[0] in _UNTRANSLATED:
            return tuple(wanted[:index])
    return tuple(wanted)


class Translator:
    """The messages of one gettext domain, translated into the environment's language.

    :param domain: the catalog's name (``bdev``, ``bdev_runtime``, ``bdev_zfs`` ...).
    :param localedir: the ``locale`` directory holding ``<lang>/LC_MESSAGES/<domain>.mo``.
    """

    def __init__(self, domain: str, localedir: Path):
        self.domain = domain
        self.localedir = localedir

    def catalog(self) -> gettext.NullTranslations:
        """The compiled catalog for the current environment's language (a null one, which
        answers the English msgid, when there is none)."""
        return _catalog(self.domain, str(self.localedir), languages())

    def gettext(self, message: str) -> str:
        """``message`` in the current language."""
        return self.catalog().gettext(message)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        """The singular or plural form for ``count`` in the current language (format the
        result with ``count`` yourself: ``ngettext(...).format(count=n)``)."""
        return self.catalog().ngettext(singular, plural, count)

    def lazy(self, message: str, **values: object) -> "LazyString":
        """``message`` as a :class:`LazyString`: translated each time it is rendered, then
        formatted with ``values`` if any (``N_("columns: {columns}", columns="NAME, STATE")``)."""
        return LazyString(self.gettext, message, values)

    def __repr__(self) -> str:
        return f"Translator({self.domain!r}, {str(self.localedir)!r})"


@lru_cache(maxsize=None)
def _catalog(domain: str, localedir: str, langs: tuple[str, ...]) -> gettext.NullTranslations:
    if not langs:  # English: no catalog to look for (gettext would import locale to find none)
        return gettext.NullTranslations()
    return gettext.translation(domain, localedir, languages=list(langs), fallback=True)


def translator(domain: str, package_dir: Path) -> Translator:
    """The :class:`Translator` of ``domain``, whose catalogs are under
    ``package_dir/locale``; pass the package's directory (``Path(__file__).parent`` in its
    ``__init__``; a module elsewhere in the package passes the package's directory too)."""
    return Translator(domain, Path(package_dir) / LOCALE_DIR)


class LazyString:
    """A message translated when it is used as a string, not when it is created.

    It behaves as the translated ``str`` for formatting, concatenation, comparison, length,
    slicing and every ``str`` method; ``str(lazy)`` gives the translation.  ``msgid`` is the
    English original.
    """

    __slots__ = ("_translate", "msgid", "values")

    def __init__(self, translate: Callable[[str], str], msgid: str, values: dict[str, object] | None = None):
        self._translate = translate
        self.msgid = msgid
        self.values = values or {}

    def __str__(self) -> str:
        translated = self._translate(self.msgid)
        return translated.format(**self.values) if self.values else translated

    def __repr__(self) -> str:
        return f"LazyString({self.msgid!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(str(self), name)

    def __len__(self) -> int:
        return len(str(self))

    def __bool__(self) -> bool:
        return bool(self.msgid)

    def __getitem__(self, key: Any) -> str:
        return str(self)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(str(self))

    def __contains__(self, item: str) -> bool:
        return item in str(self)

    def __add__(self, other: object) -> str:
        return str(self) + str(other)

    def __radd__(self, other: object) -> str:
        return str(other) + str(self)

    def __mod__(self, values: Any) -> str:
        return str(self) % values

    def __eq__(self, other: object) -> bool:
        return str(self) == (str(other) if isinstance(other, LazyString) else other)

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def text(value: object) -> str:
    """A help text or message as a plain ``str`` (a :class:`LazyString` rendered now)."""
    return str(value) if isinstance(value, LazyString) else value  # type: ignore[return-value]


def option(*param_decls: str, **attrs: Any) -> Callable[[Any], Any]:
    """:func:`click.option` for options whose help is a :class:`LazyString`: the option keeps
    the help lazy (click's own ``Option`` cleans it into a plain ``str`` when the option is
    declared) and renders it in the language of whoever asks for the help."""
    import click

    attrs.setdefault("cls", translated_option_class())
    return click.option(*param_decls, **attrs)


@lru_cache(maxsize=1)
def translated_option_class() -> type:
    """The :class:`click.Option` subclass :func:`option` uses (made on first use, so that
    importing this module does not import click)."""
    import click

    class TranslatedOption(click.Option):
        """A :class:`click.Option` whose help may be a :class:`LazyString`."""

        def __init__(self, *args: Any, **kwargs: Any):
            help_text = kwargs.get("help")
            super().__init__(*args, **kwargs)
            if isinstance(help_text, LazyString) and not getattr(self, "deprecated", False):  # click < 8.2 has no deprecated options
                self.help = help_text  # type: ignore[assignment]

        def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
            """click's help record, the help rendered in the current language."""
            record = super().get_help_record(ctx)
            return None if record is None else (record[0], text(record[1]))

    return TranslatedOption


@dataclass(frozen=True)
class Domain:
    """One installed gettext domain: its name, the distribution shipping it and where its
    catalogs (``<lang>/LC_MESSAGES/<name>.po`` and ``.mo``) live."""

    name: str
    distribution: str
    package_dir: Path

    @property
    def localedir(self) -> Path:
        """The ``locale`` directory of the domain."""
        return self.package_dir / LOCALE_DIR

    @property
    def source_dir(self) -> Path:
        """Where the domain's messages are extracted from: the package named like the domain
        (its own package for ``bdev``, ``bdev_zfs`` ...; click's for the ``click`` domain, the
        translation of click's own messages that the core ships)."""
        from importlib.util import find_spec

        spec = find_spec(self.name)
        if spec is None or not spec.submodule_search_locations:
            return self.package_dir
        return Path(next(iter(spec.submodule_search_locations)))

    def translator(self) -> Translator:
        """The domain's :class:`Translator`."""
        return translator(self.name, self.package_dir)


def domains() -> list[Domain]:
    """Every domain published under the ``bdev.locales`` entry-point group by an installed
    distribution, sorted by name (the core's first)."""
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    found = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        spec = find_spec(entry.value)
        if spec is None or not spec.submodule_search_locations:
            continue
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        distribution = entry.dist.name if entry.dist is not None else entry.value
        found[entry.name] = Domain(entry.name, distribution, package_dir)
    return sorted(found.values(), key=lambda d: (d.name != "bdev", d.name))


@contextmanager
def language(lang: str | None) -> Iterator[None]:
    """Translate into ``lang`` (``ja``; None for English) inside the block, whatever the
    environment says: for writing the manual of each language in one process."""
    saved = os.environ.get("LANGUAGE")
    os.environ["LANGUAGE"] = lang or "C"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["LANGUAGE"]
        else:
            os.environ["LANGUAGE"] = saved


def use_click_catalog() -> None:
    """Make click's own messages (``Usage:``, ``Show this message and exit.``, its usage
    errors) follow the locale too: click translates them through gettext's global domain,
    which this points at the ``click`` catalog the core ships."""
    gettext.bindtextdomain("click", str(core.localedir))
    gettext.textdomain("click")


# The core's own messages.
core = translator("bdev", Path(__file__).parent)
_ = core.gettext
N_ = core.lazy
ngettext = core.ngettext
