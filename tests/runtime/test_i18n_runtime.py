"""The runtime in Japanese: with ``LANG=ja_JP.UTF-8`` its command help, its status lines and its
refusals come from the ``bdev_runtime`` catalog, on real containers; with ``LANG=C`` they stay
English (what scripts and the other runtime tests match)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_helpers import Runtime

VENV_BIN = Path(sys.executable).parent
JA = "ja_JP.UTF-8"


def run_in(lang: str, prog: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run the virtualenv's ``prog`` with ``LANG=lang`` (and no other locale variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([str(VENV_BIN / prog), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.unprivileged
def test_runtime_help_in_japanese_and_english() -> None:
    ja = run_in(JA, "lxc-start", "--help")
    assert ja.returncode == 0, ja.stderr
    assert "lxc-start はコンテナ NAME を起動します。" in ja.stdout
    assert "コンテナをデーモン化します (デフォルト)。" in ja.stdout
    en = run_in("C.UTF-8", "lxc-start", "--help")
    assert "lxc-start starts the container NAME." in en.stdout and "Daemonize the container (default)." in en.stdout
    limits = run_in(JA, "bdev", "limits", "--help")
    assert limits.returncode == 0, limits.stderr
    assert "コンテナ NAME のリソース制限を表示または設定します。" in limits.stdout
    assert "制限 KEY を削除します (複数指定可)。" in limits.stdout
    build = run_in(JA, "bdev", "image", "build", "--help")
    assert "rootfs を作成するテンプレート (busybox、debian など)。" in build.stdout, build.stderr


@pytest.mark.unprivileged
def test_runtime_usage_error_in_japanese() -> None:
    ja = run_in(JA, "lxc-stop", "-n", "c1", "-k", "--nokill")
    assert ja.returncode == 2 and "-k と --nokill は同時に指定できません" in ja.stderr, ja.stderr
    en = run_in("C.UTF-8", "lxc-stop", "-n", "c1", "-k", "--nokill")
    assert en.returncode == 2 and "-k and --nokill cannot be used together" in en.stderr, en.stderr


@pytest.mark.root
def test_starting_a_running_container_is_refused_in_japanese(runtime: Runtime) -> None:
    runtime.create("c1")
    lp = runtime.lxcpath
    started = run_in(JA, "lxc-start", "-n", "c1", "-P", lp)
    assert started.returncode == 0, started.stderr
    again = run_in(JA, "lxc-start", "-n", "c1", "-P", lp)
    assert again.returncode == 1 and again.stderr.startswith("lxc-start: "), again.stderr
    assert "'c1'" in again.stderr and again.stderr.rstrip().endswith("すでに実行中です。"), again.stderr
    stopped = run_in(JA, "bdev", "-P", lp, "stop", "c1", "-t", "20")
    assert stopped.returncode == 0, stopped.stderr
    assert "c1 を停止しました" in stopped.stdout + stopped.stderr
    not_running = run_in(JA, "lxc-stop", "-n", "c1", "-P", lp)
    assert not_running.returncode == 2 and not_running.stderr.rstrip().endswith("実行中ではありません。"), \
        not_running.stderr
