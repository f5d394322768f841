"""Shell completion: bash completes container, snapshot and backend names read from the
lxcpath through each program's own completion script (the one ``install`` writes and
bash-completion loads), and zsh gets the same answers through click's zsh protocol.

Containers are real ones (dir backend, made with ``bdev create --source``) in a temporary
lxcpath; the completion runs in a real ``bash`` that calls the installed programs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bdev.cli.completion import complete_var, install, script
from bdev.cli.programs import programs
from bdev.testing.samples import make_sample_rootfs

pytestmark = pytest.mark.unprivileged

BIN = Path(sys.executable).parent
BASH = shutil.which("bash")
ZSH = shutil.which("zsh")
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An lxcpath with containers web1 (with snapshots snap0 and snap1), web2 and db."""
    top = tmp_path_factory.mktemp("completion")
    lxcpath = top / "lxc"
    source = make_sample_rootfs(top / "src", privileged=False)
    for name in ("web1", "web2", "db"):
        _bdev(lxcpath, "create", name, "--source", str(source))
    _bdev(lxcpath, "snapshot", "create", "web1")
    _bdev(lxcpath, "snapshot", "create", "web1")
    return lxcpath


def _bdev(lxcpath: Path, *args: str) -> None:
    done = subprocess.run([BIN / "bdev", "-q", "-P", str(lxcpath), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def bash_complete(prog: str, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` (``""`` completes an empty word), through
    ``prog``'s completion script."""
    code = "\n".join([
        f"source <({complete_var(prog)}=bash_source {shlex.quote(prog)})",
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in [prog, *words])})",
        f"COMP_CWORD={len(words)}",
        "COMPREPLY=()",
        f"_{prog.replace('-', '_')}_completion {shlex.quote(prog)}",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    done = subprocess.run([BASH, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@needs_bash
def test_bash_completes_container_names(store):
    assert bash_complete("bdev", ["-P", str(store), "clone", ""]) == ["db", "web1", "web2"]
    assert bash_complete("bdev", ["-P", str(store), "info", "we"]) == ["web1", "web2"]
    assert bash_complete("lxc-copy", ["-P", str(store), "-n", "d"]) == ["db"]
    assert bash_complete("lxc-destroy", ["--lxcpath", str(store), "-n", "web"]) == ["web1", "web2"]
    assert bash_complete("lxc-start", ["-P", str(store), "-n", "w"]) == ["web1", "web2"]  # the runtime's programs
    assert bash_complete("bdev", ["-P", str(store), "stop", ""]) == ["db", "web1", "web2"]  # and its bdev commands


@needs_bash
def test_bash_completes_snapshot_names_of_the_named_container(store):
    assert bash_complete("bdev", ["-P", str(store), "snapshot", "restore", "web1", ""]) == ["snap0", "snap1"]
    assert bash_complete("bdev", ["-P", str(store), "snapshot", "destroy", "web2", ""]) == []
    assert bash_complete("lxc-snapshot", ["-P", str(store), "-n", "web1", "-r", "snap"]) == ["snap0", "snap1"]


@needs_bash
def test_bash_completes_backend_names(store):
    offered = bash_complete("bdev", ["-P", str(store), "create", "x", "-B", ""])
    assert {"best", "dir", "directory", "btrfs", "loop", "overlay"} <= set(offered)
    assert bash_complete("bdev", ["create", "x", "-B", "btrfs,di"]) == ["btrfs,dir", "btrfs,directory"]
    assert "overlay" in bash_complete("lxc-clone", ["-B", "ov"])


@needs_bash
def test_unreadable_lxcpath_completes_nothing_quietly(tmp_path):
    assert bash_complete("bdev", ["-P", str(tmp_path / "missing"), "clone", ""]) == []


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
def test_zsh_script_parses_and_gets_the_same_names(store):
    for program in programs():
        done = subprocess.run([ZSH, "-n"], input=script(program.name, program.command, "zsh"), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"{program.name}: {done.stderr}"
    words = f"bdev -P {store} snapshot list w"
    env = {**_env(), "COMP_WORDS": words, "COMP_CWORD": "5", complete_var("bdev"): "zsh_complete"}
    done = subprocess.run([BIN / "bdev"], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split("\n")[:6] == ["plain", "web1", "_", "plain", "web2", "_"]


@needs_bash
@pytest.mark.skipif(not BASH_COMPLETION.is_file(), reason="bash-completion is not installed (apt install bash-completion)")
def test_installed_scripts_are_found_by_bash_completion(tmp_path, store):
    written = install(tmp_path)
    assert {p.name for p in written} >= {"bdev", "_bdev", "lxc-copy", "_lxc-copy"}
    code = "\n".join([
        f"source {BASH_COMPLETION}",
        "__load_completion lxc-copy && complete -p lxc-copy",
        f"COMP_WORDS=(lxc-copy -P {shlex.quote(str(store))} -n w); COMP_CWORD=4; COMPREPLY=()",
        "_lxc_copy_completion lxc-copy",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    env = {**_env(), "XDG_DATA_DIRS": str(tmp_path / "share"), "BASH_COMPLETION_USER_DIR": str(tmp_path / "none")}
    done = subprocess.run([BASH, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["complete -o nosort -F _lxc_copy_completion lxc-copy", "web1", "web2"]
