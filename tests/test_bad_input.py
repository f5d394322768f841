"""Bad input gets one clear sentence and changes nothing.

Each case runs a real installed command (``bdev`` or an ``lxc-*`` compatibility command) in a
subprocess against an lxcpath holding a container ``base`` (with snapshot ``snap0``) and a
clone ``web1``, then checks: a non-zero exit, exactly one line on stderr naming the cause, no
Python traceback, and every file of the lxcpath exactly as before (names, sizes, contents).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bdev.api import Container

pytestmark = [pytest.mark.unprivileged]

BIN = Path(sys.executable).parent
LONG = "n" * 256


def fingerprint(top: Path) -> dict[str, str]:
    """Every entry under ``top`` with its type and, for files, a content hash."""
    seen = {}
    for root, dirs, files in os.walk(top):
        for name in dirs:
            seen[os.path.relpath(os.path.join(root, name), top)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                seen[os.path.relpath(path, top)] = "other"
            else:
                seen[os.path.relpath(path, top)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return seen


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lxcpath = tmp_path_factory.mktemp("bad-input") / "lxc"
    base = Container("base", lxcpath)
    base.create("busybox", "dir")
    base.snapshot()
    base.clone("web1")
    origin = Container("origin", lxcpath)
    origin.create("busybox", "dir")
    dependent = origin.clone("dependent")
    # a dependency recorded the way LXC records an overlay clone of origin
    (origin.directory / "lxc_snapshots").write_text(f"{lxcpath}\ndependent\n")
    (dependent.directory / "lxc_rdepends").write_text(f"{lxcpath}\norigin\n")
    return lxcpath


def P(lxcpath: Path) -> list[str]:
    return ["-P", str(lxcpath)]


CASES = {
    # names
    "slash in name": lambda p: ["bdev", *P(p), "create", "a/b", "-t", "busybox"],
    "dotdot name": lambda p: ["lxc-create", *P(p), "-n", "..", "-t", "busybox"],
    "newline in name": lambda p: ["bdev", *P(p), "clone", "base", "x\ny"],
    "leading dash": lambda p: ["lxc-create", *P(p), "-n", "-rf", "-t", "busybox"],
    "name over 255 bytes": lambda p: ["lxc-clone", "-P", str(p), "-p", str(p), "base", LONG],
    "snapshot name with slash": lambda p: ["lxc-snapshot", *P(p), "-n", "base", "-r", "../web1"],
    # missing things
    "missing container": lambda p: ["bdev", *P(p), "clone", "ghost", "x"],
    "missing container (lxc-copy)": lambda p: ["lxc-copy", *P(p), "-n", "ghost", "-N", "x"],
    "missing snapshot": lambda p: ["lxc-snapshot", *P(p), "-n", "base", "-r", "snap9"],
    "missing snapshot destroy": lambda p: ["bdev", *P(p), "snapshot", "destroy", "base", "snap9"],
    "destroy missing": lambda p: ["lxc-destroy", *P(p), "-n", "ghost"],
    # existing targets
    "clone onto existing": lambda p: ["lxc-clone", "-P", str(p), "-p", str(p), "base", "web1"],
    "create existing": lambda p: ["bdev", *P(p), "create", "web1", "-t", "busybox"],
    "restore onto existing": lambda p: ["lxc-snapshot", *P(p), "-n", "base", "-r", "snap0", "-N", "web1"],
    # backends and sizes
    "unknown backend": lambda p: ["lxc-create", *P(p), "-n", "c9", "-t", "busybox", "-B", "bogus"],
    "unknown clone backend": lambda p: ["bdev", *P(p), "clone", "base", "c9", "-B", "bogus"],
    "btrfs without a btrfs plugin or filesystem": lambda p: ["lxc-create", *P(p), "-n", "c9", "-t", "busybox", "-B", "btrfs"],
    "fssize garbage": lambda p: ["lxc-create", *P(p), "-n", "c9", "-t", "busybox", "--fssize", "garbage"],
    "fssize zero": lambda p: ["bdev", *P(p), "create", "c9", "-t", "busybox", "--fssize", "0"],
    "clone size garbage": lambda p: ["lxc-clone", "-L", "12X", "-P", str(p), "-p", str(p), "base", "c9"],
    # refusals that protect data
    "destroy with snapshots": lambda p: ["lxc-destroy", *P(p), "-n", "base"],
    "destroy with dependents": lambda p: ["bdev", *P(p), "destroy", "origin"],
    "destroy with dependents, -s": lambda p: ["lxc-destroy", *P(p), "-n", "origin", "-s"],
    "restore in place under dependents": lambda p: ["bdev", *P(p), "snapshot", "restore", "origin", "snap0"],
    # injection
    "newline in --dir": lambda p: ["bdev", *P(p), "create", "c9", "-t", "busybox", "--dir", "/tmp/x\nlxc.hook.start = /x"],
    "newline in lxcpath": lambda p: ["bdev", "-P", f"{p}\nlxc.x = y", "create", "c9", "-t", "busybox"],
    "unknown template": lambda p: ["lxc-create", *P(p), "-n", "c9", "-t", "nope"],
    "bad template option": lambda p: ["bdev", *P(p), "create", "c9", "-t", "busybox", "--", "--frob"],
    "comment file missing": lambda p: ["lxc-snapshot", *P(p), "-n", "base", "-c", "/nonexistent/comment"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_one_sentence_and_nothing_changed(populated: Path, case: str) -> None:
    argv = CASES[case](populated)
    before = fingerprint(populated.parent)
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, f"{case}: accepted: {result}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case}: expected one line, got: {result.stderr!r}"
    assert lines[0].startswith(f"{argv[0]}: ") and lines[0].rstrip().endswith("."), lines[0]
    assert fingerprint(populated.parent) == before, f"{case}: the lxcpath changed"


def test_messages_name_container_backend_and_cause(populated: Path) -> None:
    def stderr(*argv: str) -> str:
        return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True).stderr.strip()

    assert stderr("lxc-destroy", *P(populated), "-n", "base") == (
        "lxc-destroy: container 'base': has 1 snapshot(s) (snap0); destroy them too with -s."
    )
    assert stderr("bdev", *P(populated), "destroy", "origin") == (
        "bdev: container 'origin': clones depend on its rootfs (dependent); destroy them first."
    )
    unknown = stderr("lxc-create", *P(populated), "-n", "c9", "-t", "busybox", "-B", "bogus")
    assert "'c9'" in unknown and "unknown backend 'bogus'" in unknown and "dir" in unknown


@pytest.mark.parametrize("command", [["lxc-ls"], ["bdev", "ls"], ["bdev", "create", "c1", "-t", "busybox"]])
def test_an_lxcpath_we_may_not_read_is_explained(tmp_path: Path, command: list[str]) -> None:
    """Permission problems are one sentence naming the path, never an internal error."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    lxcpath = locked / "lxc"
    lxcpath.mkdir()
    argv = [str(BIN / command[0]), "-P", str(lxcpath), *command[1:]]
    if os.geteuid() == 0:  # root reads everything: ask as an ordinary user
        home = Path(tempfile.mkdtemp(prefix="bdev-user-"))
        os.chown(home, 65534, 65534)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "env", "-u", "BDEV_LXC_CONF", f"HOME={home}", *argv]
    else:
        os.chmod(locked, 0)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(locked, 0o700)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stderr.strip().lower().endswith(f"permission denied: {lxcpath}."), result.stderr
