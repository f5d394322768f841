"""Translations: every domain's Japanese catalog is complete, consistent and not stale; every
command's help and option help is marked for translation; a program run with
``LANG=ja_JP.UTF-8`` answers in Japanese (help and errors) and falls back to English.

The catalogs are the real ``.po``/``.mo`` files of every installed distribution, found through
the ``bdev.locales`` entry points; staleness is checked by extracting the messages again with
Babel, as ``scripts/i18n.sh`` does.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bdev.cli.main import cli
from bdev.cli.programs import programs
from bdev.i18n import LazyString, domains, language, languages, text, translator
from bdev.manuals.commands import all_pages

babel_messages = pytest.importorskip("babel.messages", reason="Babel (pip install Babel) extracts and checks catalogs")
from babel.messages.extract import extract_from_dir  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

pytestmark = pytest.mark.unprivileged

LANGS = ("ja",)
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
JA_LOCALE = "ja_JP.UTF-8"
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*(?:![rsa])?(?::[^{}]*)?\}|%\([a-z_]+\)[sd]")
DOMAINS = domains()


def _po(domain, lang: str):
    path = domain.localedir / lang / "LC_MESSAGES" / f"{domain.name}.po"
    assert path.is_file(), f"{domain.name}: no {lang} catalog {path} (run scripts/i18n.sh update {domain.name})"
    with path.open("rb") as handle:
        return read_po(handle)


def _msgids(catalog) -> set[str]:
    return {message.id if isinstance(message.id, str) else message.id[0] for message in catalog if message.id}


def _ids(domain) -> str:
    return domain.name


def test_every_distribution_publishes_its_domain():
    names = {domain.name for domain in DOMAINS}
    assert {"bdev", "click"} <= names
    for program in programs():
        package = program.command.callback.__module__.split(".")[0] if program.command.callback else None
        assert package in names, f"{program.name} comes from {package}, which publishes no bdev.locales domain"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("domain", DOMAINS, ids=_ids)
def test_catalog_is_complete_and_consistent(domain, lang):
    catalog = _po(domain, lang)
    untranslated = [m.id for m in catalog if m.id and (not m.string or not all(m.string) if isinstance(m.string, tuple)
                                                       else not m.string)]
    assert not untranslated, f"{domain.name}: {len(untranslated)} messages with no {lang} translation: {untranslated[:5]}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"{domain.name}: fuzzy (unchecked) translations: {fuzzy[:5]}"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, f"{domain.name}: Babel's checks fail: {problems[:5]}"
    for message in catalog:
        if not message.id:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) <= wanted, f"{domain.name}: {string!r} has placeholders {ids!r} lacks"
            if len(ids) == 1:
                assert set(PLACEHOLDER.findall(string)) == wanted, f"{domain.name}: {string!r} drops a placeholder of {ids[0]!r}"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("domain", DOMAINS, ids=_ids)
def test_catalog_is_not_stale(domain, lang):
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(domain.source_dir), keywords=KEYWORDS, comment_tags=(),
    ):
        found.add(message if isinstance(message, str) else message[0])
    catalog = _msgids(_po(domain, lang))
    assert not found - catalog, (f"{domain.name}: messages missing from the {lang} catalog (run scripts/i18n.sh "
                                 f"update {domain.name} and translate): {sorted(found - catalog)[:5]}")
    assert not catalog - found, f"{domain.name}: catalog entries no longer in the code: {sorted(catalog - found)[:5]}"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("domain", DOMAINS, ids=_ids)
def test_compiled_catalog_matches_its_source(domain, lang):
    mo = domain.localedir / lang / "LC_MESSAGES" / f"{domain.name}.mo"
    assert mo.is_file(), f"{domain.name}: {mo} is not built (run scripts/i18n.sh compile)"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for message in _po(domain, lang):
        if message.id and isinstance(message.id, str):
            assert compiled.gettext(message.id) == message.string, (
                f"{domain.name}: {mo.name} is older than the .po (run scripts/i18n.sh compile)")


def _help_texts() -> list[tuple[str, str, object, bool]]:
    """``(command, option or "help", help, is click's own help option)`` of every command."""
    found = []
    for page in all_pages():
        where = " ".join(page.path)
        found.append((where, "help", page.command.help, False))
        help_option = page.command.get_help_option(page.ctx)
        for param in page.command.get_params(page.ctx):
            if isinstance(param, click.Option) and not param.hidden:
                found.append((where, "/".join(param.opts), param.help, param is help_option))
    return found


def test_every_command_and_option_has_help_marked_for_translation():
    missing = [f"{where} {what}" for where, what, value, _own in _help_texts() if not value]
    assert not missing, f"commands or options without help: {missing}"
    unmarked = [f"{where} {what}: {str(value)[:60]!r}" for where, what, value, own in _help_texts()
                if not own and not isinstance(value, LazyString)]
    assert not unmarked, f"help not marked for translation (help=N_(...), options through bdev.i18n.option): {unmarked}"


def test_every_help_text_reads_in_japanese():
    untranslated = []
    for where, what, value, own in _help_texts():
        if own:  # click translates its own help option when the option is made
            continue
        with language(None):
            english = text(value)
        with language("ja"):
            japanese = text(value)
        if english and japanese == english:
            untranslated.append(f"{where} {what}: {english[:60]!r}")
    assert not untranslated, f"help with no Japanese translation: {untranslated}"


def test_lazy_strings_follow_the_locale_of_each_use(monkeypatch):
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(variable, raising=False)
    runner = CliRunner()
    japanese = runner.invoke(cli, ["--help"], env={"LANG": JA_LOCALE})
    english = runner.invoke(cli, ["--help"], env={"LANG": "C.UTF-8"})
    assert "使い方:" in japanese.output and "スナップショット" in japanese.output
    assert "Usage:" in english.output and "Do not print operation messages" in english.output
    assert "使い方" not in english.output


@pytest.mark.parametrize(("environment", "expected"), [
    ({"LANG": "ja_JP.UTF-8"}, ("ja_JP.UTF-8",)),
    ({"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}, ()),
    ({"LANGUAGE": "fr:ja", "LANG": "en_US.UTF-8"}, ("fr", "ja")),
    ({"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, ("ja_JP.UTF-8",)),
    ({}, ()),
])
def test_language_comes_from_the_usual_variables(monkeypatch, environment, expected):
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert languages() == expected


def test_unknown_language_and_missing_catalog_fall_back_to_english(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGUAGE", "fr")
    core = translator("bdev", Path(__import__("bdev").__file__).parent)
    assert core.gettext("interrupted") == "interrupted"
    monkeypatch.setenv("LANGUAGE", "ja")
    assert core.gettext("interrupted") == "中断されました"
    assert translator("bdev_nothing", tmp_path).gettext("interrupted") == "interrupted"


def _ja_locale_or_skip() -> None:
    """Make sure ja_JP.UTF-8 exists (generated with localedef when it does not)."""
    have = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    if any(name.lower().replace("-", "") == "ja_jp.utf8" for name in have):
        return
    localedef = shutil.which("localedef")
    if localedef is None or os.geteuid() != 0:
        pytest.skip("the ja_JP.UTF-8 locale is missing and cannot be generated here (localedef needs root)")
    done = subprocess.run([localedef, "-i", "ja_JP", "-f", "UTF-8", JA_LOCALE], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: generated with warnings
        pytest.skip(f"localedef could not generate {JA_LOCALE}: {done.stderr.strip()}")


def _run_in(lang: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([sys.executable, "-c", "import sys; from bdev.cli.errors import run; "
                           f"from {argv[0]} import {argv[1]} as c; run(c, {argv[2]!r})", *argv[3:]],
                          capture_output=True, text=True, env=env, timeout=120)


def test_japanese_help_and_errors_in_a_real_run(lxcpath):
    _ja_locale_or_skip()
    helped = _run_in(JA_LOCALE, "bdev.cli.lxc.clone", "command", "lxc-clone", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "既存のコンテナをクローンします" in helped.stdout
    assert "コピーではなくスナップショットを作成します" in helped.stdout
    assert "このメッセージを表示して終了します。" in helped.stdout
    failed = _run_in(JA_LOCALE, "bdev.cli.main", "cli", "bdev", "-P", str(lxcpath), "snapshot", "list", "nosuch")
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"bdev: コンテナ 'nosuch': {lxcpath} にそのようなコンテナはありません。"
    bad = _run_in(JA_LOCALE, "bdev.cli.main", "cli", "bdev", "-P", str(lxcpath), "clone", "a/b", "c")
    assert bad.returncode == 2
    assert "コンテナ名 'a/b' に '/' が含まれています" in bad.stderr
    usage = _run_in(JA_LOCALE, "bdev.cli.main", "cli", "bdev", "snapshot", "--bogus")
    assert usage.returncode == 2 and "エラー: オプション '--bogus' はありません。" in usage.stderr


def test_other_languages_get_english(lxcpath):
    failed = _run_in("fr_FR.UTF-8", "bdev.cli.main", "cli", "bdev", "-P", str(lxcpath), "snapshot", "list", "nosuch")
    assert failed.stderr.strip() == f"bdev: container 'nosuch': no such container in {lxcpath}."
