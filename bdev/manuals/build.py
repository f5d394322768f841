"""Write every manual page, in English and in each translated language, and install them
where ``man`` finds them (``<prefix>/share/man``, ``<prefix>/share/man/<lang>``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .. import __version__
from ..cli.programs import install_prefix
from ..i18n import language
from . import section1, section5, section7
from .commands import CommandPage, all_pages

LANGUAGES = (None, "ja")
"""English (None), then the translations; a page's directory is ``man<section>`` or
``<lang>/man<section>``."""
MANIFEST = ".bdev-pages"
CONCEPT_PAGES = tuple(f"{concept.name}(7)" for concept in section7.CONCEPTS)


def _see_also(page: CommandPage) -> list[str]:
    if len(page.path) > 1:
        return [f"{'-'.join(page.path[:-1])}(1)"]
    if page.name == "bdev":
        return [f"{section5.NAME}(5)", *CONCEPT_PAGES]
    return ["bdev(1)", f"{section5.NAME}(5)"]


def pages() -> Iterator[tuple[str, int, str]]:
    """``(name, section, source)`` of every page in the current language."""
    for page in all_pages():
        yield page.name, 1, section1.render(page, _see_also(page))
    yield section5.NAME, 5, section5.render(__version__)
    for concept in section7.CONCEPTS:
        yield concept.name, 7, section7.render(concept, __version__)


def build(mandir: Path) -> list[Path]:
    """Write every page of every language under ``mandir``; returns the files written."""
    written = []
    for lang in LANGUAGES:
        base = mandir / lang if lang else mandir
        with language(lang):
            for name, section, source in pages():
                path = base / f"man{section}" / f"{name}.{section}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(source, encoding="utf-8")
                written.append(path)
    return written


def install(prefix: Path) -> list[Path]:
    """Build the pages into ``<prefix>/share/man`` and remove the pages a previous install
    wrote that no longer exist (listed in the manifest ``.bdev-pages``)."""
    mandir = prefix / "share" / "man"
    manifest = mandir / MANIFEST
    before = set(manifest.read_text().split()) if manifest.exists() else set()
    written = build(mandir)
    now = {str(path.relative_to(mandir)) for path in written}
    for stale in before - now:
        (mandir / stale).unlink(missing_ok=True)
    manifest.write_text("".join(f"{name}\n" for name in sorted(now)))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m bdev.manuals [build DIR | install [PREFIX]]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    action = args.pop(0) if args else "install"
    if action == "build" and len(args) == 1:
        written = build(Path(args[0]))
    elif action == "install" and len(args) <= 1:
        written = install(Path(args[0]) if args else install_prefix())
    else:
        print("usage: python -m bdev.manuals build DIR | install [PREFIX]", file=sys.stderr)
        return 2
    where = os.path.commonpath([str(p) for p in written]) if written else "-"
    print(f"bdev.manuals: {len(written)} pages in {where}")
    return 0
