"""The backend plugins in Japanese: each plugin's own gettext domain reaches the user through
``bdev`` run with ``LANG=ja_JP.UTF-8`` (``bdev backends`` and a plugin's refusal), and the same
run with ``LANG=C.UTF-8`` stays English."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bdev.i18n import domains, language

VENV_BIN = Path(sys.executable).parent
JA = "ja_JP.UTF-8"
#: backend name -> the plugin's gettext domain
PLUGIN_DOMAINS = {"dir": "bdev_dir", "btrfs": "bdev_btrfs", "loop": "bdev_loop", "overlay": "bdev_overlayfs",
                  "zfs": "bdev_zfs", "lvm": "bdev_lvm", "aufs": "bdev_aufs", "rbd": "bdev_rbd"}


def bdev_in(lang: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run the virtualenv's ``bdev`` with ``LANG=lang`` (and no other locale variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([str(VENV_BIN / "bdev"), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


def backends_in(lang: str) -> dict[str, dict]:
    """``bdev backends --format json`` in ``lang``, by backend name."""
    done = bdev_in(lang, "backends", "--format", "json")
    assert done.returncode == 0, done.stderr
    return {b["name"]: b for b in json.loads(done.stdout)["backends"]}


@pytest.mark.unprivileged
def test_every_plugin_describes_its_backend_in_japanese() -> None:
    translators = {d.name: d.translator() for d in domains()}
    english, japanese = backends_in("C.UTF-8"), backends_in(JA)
    for backend, domain in PLUGIN_DOMAINS.items():
        assert domain in translators, f"{domain} is not published under the bdev.locales entry points"
        with language("ja"):
            expected = translators[domain].gettext(english[backend]["description"])
        assert expected != english[backend]["description"], f"{domain} has no Japanese for its description"
        assert japanese[backend]["description"] == expected


@pytest.mark.unprivileged
def test_a_plugin_reason_for_being_unusable_in_japanese() -> None:
    english = backends_in("C.UTF-8")["aufs"]
    if english["usable"]:
        pytest.skip("this kernel has aufs, so the aufs backend gives no reason to be unusable")
    japanese = backends_in(JA)["aufs"]
    assert any("the kernel has no aufs filesystem" in r for r in english["unavailable_reasons"])
    assert any("カーネルに aufs ファイルシステムがありません" in r for r in japanese["unavailable_reasons"])


@pytest.mark.root
def test_a_plugin_refusal_in_japanese_changes_nothing(lxcpath: Path) -> None:
    if not backends_in("C.UTF-8")["loop"]["usable"]:
        pytest.skip("the loop backend is not usable here (no loop driver or ext4 tools)")
    ja = bdev_in(JA, "-P", lxcpath, "create", "c1", "-t", "busybox", "-B", "loop", "--fssize", "1M")
    assert "(バックエンド loop)" in ja.stderr and "は ext4 には小さすぎます" in ja.stderr, ja.stderr
    en = bdev_in("C.UTF-8", "-P", lxcpath, "create", "c1", "-t", "busybox", "-B", "loop", "--fssize", "1M")
    assert "is too small for ext4" in en.stderr, en.stderr
    assert ja.returncode == en.returncode != 0
    assert not (lxcpath / "c1").exists()
