"""Manual pages: generated for every program and subcommand of every installed bdev
distribution, in English and Japanese, rendered by the real ``man`` and ``groff``, naming every
option of their command; installed where ``man`` and ``man -L ja`` find them through ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.metadata import distributions
from pathlib import Path

import click
import pytest

from bdev.cli.programs import programs
from bdev.engine.context import default_registry
from bdev.i18n import language
from bdev.manuals import build, section5, section7
from bdev.manuals.commands import all_pages

pytestmark = pytest.mark.unprivileged

MAN = shutil.which("man")
GROFF = shutil.which("groff")
needs_man = pytest.mark.skipif(MAN is None or GROFF is None, reason="man-db and groff are not installed (apt install man-db groff-base)")
PAGES = all_pages()
CJK = "名前"


@pytest.fixture(scope="module")
def mandir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every page of every language, built once for the module."""
    directory = tmp_path_factory.mktemp("man")
    build.build(directory)
    return directory


def _render(path: Path) -> str:
    """``man -l`` of one page, plain text, wide enough that options stay on one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAN_KEEP_FORMATTING", "MANPAGER", "PAGER")}
    env.update(MANWIDTH="250", LANG="C.UTF-8")
    done = subprocess.run([MAN, "-l", "-P", "cat", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"man -l {path.name}: {done.stderr}"
    return done.stdout.replace("\u2010", "-").replace("\u2212", "-")


def _page_path(mandir: Path, lang: str | None, name: str, section: int) -> Path:
    base = mandir / lang if lang else mandir
    return base / f"man{section}" / f"{name}.{section}"


def test_every_console_script_of_every_bdev_distribution_has_a_page():
    found = {program.name for program in programs()}
    expected = set()
    for dist in distributions():
        requires = " ".join(dist.requires or [])
        if dist.metadata["Name"] == "bdev" or requires.startswith("bdev") or " bdev" in requires or "bdev;" in requires:
            expected |= {entry.name for entry in dist.entry_points.select(group="console_scripts")}
    assert expected <= found, f"programs without a click command the manual can describe: {sorted(expected - found)}"
    assert {"bdev", "lxc-clone", "lxc-copy", "lxc-create", "lxc-destroy", "lxc-ls", "lxc-snapshot"} <= found
    assert {"bdev-snapshot-create", "bdev-snapshot-restore"} <= {page.name for page in PAGES}


@needs_man
@pytest.mark.parametrize("lang", [None, "ja"], ids=["en", "ja"])
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_page_names_every_option_of_its_command(mandir, page, lang):
    rendered = _render(_page_path(mandir, lang, page.name, 1))
    for param in page.command.get_params(page.ctx):
        if isinstance(param, click.Option) and not param.hidden:
            for opt in (*param.opts, *param.secondary_opts):
                assert opt in rendered, f"{page.name}({lang or 'en'}) does not name {opt}"
    for name, _sub in page.subcommands():
        assert f"{page.name}-{name}(1)" in rendered
    if lang == "ja":
        assert CJK in rendered and "オプション" in rendered or not any(
            isinstance(p, click.Option) for p in page.command.get_params(page.ctx))
    with language(lang):
        short = page.command.get_short_help_str(limit=200)
    assert short.split()[0] in rendered


@needs_man
@pytest.mark.parametrize("lang", [None, "ja"], ids=["en", "ja"])
def test_every_page_renders_without_a_groff_warning(mandir, lang):
    base = mandir / lang if lang else mandir
    pages = sorted(p for p in base.glob("man[157]/*") if p.is_file())
    assert len(pages) >= len(PAGES) + 1 + len(section7.CONCEPTS)
    for path in pages:
        done = subprocess.run([GROFF, "-k", "-man", "-Tutf8", "-ww", "-z", str(path)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and not done.stderr.strip(), f"groff on {path}: {done.stderr[:500]}"


@needs_man
def test_config_page_lists_every_installed_backend_and_limit(mandir):
    rendered = _render(_page_path(mandir, None, section5.NAME, 5))
    for entry in default_registry().backend_entries():
        assert f"lxc.rootfs.path = {entry.backend.name}:" in rendered.replace("\n              ", " "), entry.name
    try:
        from bdev_runtime.cgroups.limits import LIMITS
    except ImportError:
        pytest.skip("bdev-runtime is not installed: the page has no limits section to check")
    for name in LIMITS:
        assert f"\n       {name}" in rendered, f"limit {name} missing from {section5.NAME}(5)"


@needs_man
@pytest.mark.parametrize("lang", [None, "ja"], ids=["en", "ja"])
def test_concept_pages_render(mandir, lang):
    for concept in section7.CONCEPTS:
        rendered = _render(_page_path(mandir, lang, concept.name, 7))
        assert concept.name in rendered
        if lang == "ja":
            assert CJK in rendered and "関連項目" in rendered


@needs_man
def test_man_finds_installed_pages_through_path(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    build.install(prefix)
    env = {k: v for k, v in os.environ.items() if k not in ("MANPATH", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["PATH"] = f"{prefix / 'bin'}:/usr/bin:/bin"
    english = subprocess.run([MAN, "-w", "lxc-clone"], capture_output=True, text=True, env=env, timeout=60)
    assert english.stdout.strip() == str(prefix / "share/man/man1/lxc-clone.1"), english.stderr
    japanese = subprocess.run([MAN, "-w", "-L", "ja", "lxc-clone"], capture_output=True, text=True, env=env, timeout=60)
    assert japanese.stdout.strip() == str(prefix / "share/man/ja/man1/lxc-clone.1"), japanese.stderr
    shown = subprocess.run([MAN, "-L", "ja", "-P", "cat", "lxc-clone"], capture_output=True, text=True,
                           env={**env, "MANWIDTH": "100", "LANG": "C.UTF-8"}, timeout=60)
    assert "既存のコンテナをクローンします" in shown.stdout, shown.stderr


def test_reinstall_removes_pages_that_no_longer_exist(tmp_path):
    written = build.install(tmp_path)
    stale = tmp_path / "share/man/man1/bdev-gone.1"
    stale.write_text(".TH X 1\n")
    manifest = tmp_path / "share/man" / build.MANIFEST
    manifest.write_text(manifest.read_text() + "man1/bdev-gone.1\n")
    unrelated = tmp_path / "share/man/man1/other.1"
    unrelated.write_text(".TH Y 1\n")
    assert build.install(tmp_path) == written
    assert not stale.exists() and unrelated.exists()
