"""Global LXC settings, the lxcpath and lock directories, for root and for other users."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bdev.errors import ConfigError, InvalidInput
from bdev.store.lxcpath import (
    default_settings,
    global_config_path,
    global_settings,
    lock_dir,
    lock_path,
    resolve_lxcpath,
)

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
USER = 1000

unprivileged = pytest.mark.unprivileged


def user_env(home: Path | str, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


# ---------------------------------------------------------------------- global_config_path


@unprivileged
def test_config_path_env_override(tmp_path):
    conf = tmp_path / "lxc.conf"
    assert global_config_path(uid=0, env={"BDEV_LXC_CONF": str(conf)}) == conf
    assert global_config_path(uid=USER, env={"BDEV_LXC_CONF": str(conf), "HOME": "/h"}) == conf


@unprivileged
def test_config_path_root():
    assert global_config_path(uid=0, env={"HOME": "/root", "XDG_CONFIG_HOME": "/x"}) == Path("/etc/lxc/lxc.conf")


@unprivileged
def test_config_path_user_ignores_xdg_config_home_like_lxc():
    env = user_env("/home/u", XDG_CONFIG_HOME="/elsewhere")
    assert global_config_path(uid=USER, env=env) == Path("/home/u/.config/lxc/lxc.conf")


@unprivileged
def test_config_path_user_without_home_is_under_slash_like_lxc():
    assert global_config_path(uid=USER, env={}) == Path("/.config/lxc/lxc.conf")


@unprivileged
def test_config_path_defaults_to_current_process(monkeypatch, tmp_path):
    monkeypatch.delenv("BDEV_LXC_CONF", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = Path("/etc/lxc/lxc.conf") if os.geteuid() == 0 else tmp_path / ".config/lxc/lxc.conf"
    assert global_config_path() == expected


# ---------------------------------------------------------------------- settings


@unprivileged
def test_defaults_root_and_user():
    root = default_settings(uid=0, env={})
    assert root == {
        "lxc.lxcpath": "/var/lib/lxc",
        "lxc.default_config": "/etc/lxc/default.conf",
        "lxc.bdev.lvm.vg": "lxc",
        "lxc.bdev.lvm.thin_pool": "lxc",
        "lxc.bdev.zfs.root": "lxc",
        "lxc.bdev.rbd.rbdpool": "lxc",
    }
    user = default_settings(uid=USER, env=user_env("/home/u/", XDG_DATA_HOME="/elsewhere"))
    assert user["lxc.lxcpath"] == "/home/u/.local/share/lxc"
    assert user["lxc.default_config"] == "/home/u/.config/lxc/default.conf"
    assert "lxc.bdev.rbd.rbduser" not in user


@unprivileged
def test_settings_missing_file_gives_defaults(tmp_path):
    env = {"BDEV_LXC_CONF": str(tmp_path / "absent.conf")}
    assert global_settings(uid=0, env=env) == default_settings(uid=0, env=env)


@unprivileged
def test_settings_from_bdev_lxc_conf(tmp_path, monkeypatch):
    conf = tmp_path / "lxc.conf"
    conf.write_text(
        "# global LXC settings\n"
        "lxc.lxcpath = /srv/lxc//\n"
        "lxc.bdev.lvm.vg=vg0\n"
        "  lxc.bdev.zfs.root =\ttank/lxc  \n"
        "lxc.bdev.zfs.root = second/ignored\n"
        "lxc.bdev.rbd.rbduser = admin\n"
        "lxc.bdev.lvm.thin_pool =\n"
        "#lxc.bdev.rbd.rbdpool = commented\n"
        "lxc.cgroup.pattern = lxc.payload.%n\n"
        "lxc.future.key = kept"
    )
    monkeypatch.setenv("BDEV_LXC_CONF", str(conf))
    settings = global_settings(uid=0)
    assert settings == {
        "lxc.lxcpath": "/srv/lxc",
        "lxc.default_config": "/etc/lxc/default.conf",
        "lxc.bdev.lvm.vg": "vg0",
        "lxc.bdev.lvm.thin_pool": "lxc",  # empty value: LXC keeps the default
        "lxc.bdev.zfs.root": "tank/lxc",  # first line wins, as in LXC
        "lxc.bdev.rbd.rbdpool": "lxc",
        "lxc.bdev.rbd.rbduser": "admin",
        "lxc.cgroup.pattern": "lxc.payload.%n",
        "lxc.future.key": "kept",
    }
    assert resolve_lxcpath(None, uid=0) == Path("/srv/lxc")
    assert resolve_lxcpath(None, settings) == Path("/srv/lxc")


@unprivileged
def test_settings_explicit_path_argument(tmp_path):
    conf = tmp_path / "other.conf"
    conf.write_text("lxc.lxcpath = /a\n")
    assert global_settings(conf, uid=USER, env=user_env("/h"))["lxc.lxcpath"] == "/a"


@unprivileged
def test_settings_unreadable_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        global_settings(uid=0, env={"BDEV_LXC_CONF": str(tmp_path)})  # a directory
    bad = tmp_path / "lxc.conf"
    bad.write_bytes(b"lxc.lxcpath = /\xff\n")
    with pytest.raises(ConfigError, match="lxc.conf"):
        global_settings(uid=0, env={"BDEV_LXC_CONF": str(bad)})


@unprivileged
def test_settings_dangling_symlink_is_config_error(tmp_path):
    link = tmp_path / "lxc.conf"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="lxc.conf"):
        global_settings(uid=0, env={"BDEV_LXC_CONF": str(link)})


@unprivileged
def test_settings_for_user_from_home(tmp_path):
    (tmp_path / ".config/lxc").mkdir(parents=True)
    (tmp_path / ".config/lxc/lxc.conf").write_text("lxc.lxcpath = /data/containers\n")
    env = user_env(tmp_path)
    assert global_settings(uid=USER, env=env)["lxc.lxcpath"] == "/data/containers"
    assert resolve_lxcpath(None, uid=USER, env=env) == Path("/data/containers")
    assert resolve_lxcpath(None, uid=USER, env=user_env(tmp_path / "nohome")) == tmp_path / "nohome/.local/share/lxc"


# ---------------------------------------------------------------------- resolve_lxcpath


@unprivileged
def test_resolve_option_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {"lxc.lxcpath": "/from/settings"}
    assert resolve_lxcpath("/opt//lxc/", settings) == Path("/opt/lxc")
    assert resolve_lxcpath("rel/../here", settings) == tmp_path / "here"
    assert resolve_lxcpath(Path("/p"), settings) == Path("/p")
    assert resolve_lxcpath(None, settings) == Path("/from/settings")


@unprivileged
@pytest.mark.parametrize("option", ["", "-n", "/a\nb", "/a\0b"])
def test_resolve_bad_option(option):
    with pytest.raises(InvalidInput):
        resolve_lxcpath(option, {"lxc.lxcpath": "/x"})


@unprivileged
def test_resolve_bad_setting_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="lxc.lxcpath"):
        resolve_lxcpath(None, {"lxc.lxcpath": "/a\x1bb"}, uid=0, env={"BDEV_LXC_CONF": str(tmp_path / "c")})


# ---------------------------------------------------------------------- lock_dir


@unprivileged
def test_lock_dir_root_normalises_lxc_double_slash():
    assert lock_dir("/var/lib/lxc", uid=0, env={}) == Path("/run/lxc/lock/var/lib/lxc")
    # LXC builds "%s/lxc/lock/%s" % ("/run", lxcpath): the same directory with a double slash.
    assert lock_dir("/var/lib/lxc", uid=0, env={}) == Path(os.path.normpath("/run/lxc/lock//var/lib/lxc"))
    assert lock_dir("/var/lib/lxc/", uid=0, env={}) == Path("/run/lxc/lock/var/lib/lxc")
    assert lock_dir("/", uid=0, env={}) == Path("/run/lxc/lock")


@unprivileged
def test_lock_dir_user_xdg_runtime_dir():
    env = user_env("/home/u", XDG_RUNTIME_DIR="/run/user/1000")
    assert lock_dir("/home/u/.local/share/lxc", uid=USER, env=env) == Path(
        "/run/user/1000/lxc/lock/home/u/.local/share/lxc"
    )


@unprivileged
def test_lock_dir_user_without_xdg_runtime_dir_is_under_home_cache():
    # LXC >= 2.0 (get_rundir): $HOME/.cache/lxc/run when XDG_RUNTIME_DIR is unset.
    assert lock_dir("/srv/lxc", uid=USER, env=user_env("/home/u")) == Path("/home/u/.cache/lxc/run/lxc/lock/srv/lxc")
    assert lock_dir("/srv/lxc", uid=USER, env=user_env("/home/u", XDG_RUNTIME_DIR="")) == Path(
        "/home/u/.cache/lxc/run/lxc/lock/srv/lxc"
    )


@unprivileged
def test_lock_dir_user_without_anything_fails():
    with pytest.raises(ConfigError, match="XDG_RUNTIME_DIR"):
        lock_dir("/srv/lxc", uid=USER, env={})


@unprivileged
def test_lock_dir_env_override(tmp_path):
    env = {"BDEV_LOCK_DIR": str(tmp_path)}
    assert lock_dir("/var/lib/lxc", uid=0, env=env) == tmp_path / "var/lib/lxc"
    assert lock_dir("/var/lib/lxc", uid=USER, env=env) == tmp_path / "var/lib/lxc"


@unprivileged
def test_lock_path_is_hidden_file():
    assert lock_path("/var/lib/lxc", "c1", uid=0, env={}) == Path("/run/lxc/lock/var/lib/lxc/.c1")


# ---------------------------------------------------------------------- as a real other user


def _as_nobody(code: str, env: dict[str, str]) -> dict:
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", code]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), **env}
    out = subprocess.run(argv, env=full_env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to become another user"
)


@pytest.fixture
def nobody_home():
    """A HOME that uid 65534 owns, outside pytest's root-only tmp directory."""
    home = Path(tempfile.mkdtemp(prefix="bdev-nobody-"))
    os.chown(home, NOBODY, NOBODY)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


PROBE = """
import json
from bdev.store import lxcpath as l
print(json.dumps({
    "conf": str(l.global_config_path()),
    "settings": l.global_settings(),
    "lxcpath": str(l.resolve_lxcpath(None)),
    "lock": str(l.lock_dir(l.resolve_lxcpath(None))),
}))
"""


@needs_setpriv
def test_defaults_as_uid_65534(nobody_home):
    got = _as_nobody(PROBE, {"HOME": str(nobody_home)})
    assert got["conf"] == str(nobody_home / ".config/lxc/lxc.conf")
    assert got["lxcpath"] == str(nobody_home / ".local/share/lxc")
    assert got["settings"]["lxc.default_config"] == str(nobody_home / ".config/lxc/default.conf")
    rel = str(nobody_home).lstrip("/")
    assert got["lock"] == str(nobody_home / ".cache/lxc/run/lxc/lock" / rel / ".local/share/lxc")


@needs_setpriv
def test_user_config_as_uid_65534(nobody_home):
    conf = nobody_home / ".config/lxc/lxc.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("lxc.lxcpath = /srv/nobody-lxc\n")
    got = _as_nobody(PROBE, {"HOME": str(nobody_home), "XDG_RUNTIME_DIR": "/run/user/65534"})
    assert got["lxcpath"] == "/srv/nobody-lxc"
    assert got["lock"] == "/run/user/65534/lxc/lock/srv/nobody-lxc"


# ---------------------------------------------------------------------- against Debian's LXC


needs_lxc = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("lxc-config") is None or shutil.which("setpriv") is None,
    reason="needs root, setpriv and LXC",
)


def _lxc_as_nobody(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(prefix + argv, env=full_env, capture_output=True, text=True, timeout=60)


@pytest.mark.lxc
@needs_lxc
def test_user_settings_match_lxc_config(nobody_home):
    conf = nobody_home / ".config/lxc/lxc.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("lxc.bdev.lvm.vg = first\nlxc.bdev.lvm.vg = second\nlxc.lxcpath = /srv/x//\n")
    env = {"HOME": str(nobody_home), "XDG_CONFIG_HOME": str(nobody_home / "xdg")}
    ours = global_settings(uid=NOBODY, env=env)
    for key in ("lxc.lxcpath", "lxc.default_config", "lxc.bdev.lvm.vg", "lxc.bdev.lvm.thin_pool", "lxc.bdev.zfs.root"):
        theirs = _lxc_as_nobody(["lxc-config", key], env).stdout.strip()
        assert ours[key] == theirs, key


@pytest.mark.lxc
@needs_lxc
@pytest.mark.parametrize("xdg", [False, True])
def test_user_lock_dir_matches_lxc(nobody_home, xdg):
    lxcpath = nobody_home / "lxcpath"
    lxcpath.mkdir()
    os.chown(lxcpath, NOBODY, NOBODY)
    env = {"HOME": str(nobody_home)}
    if xdg:
        runtime = nobody_home / "runtime"
        runtime.mkdir()
        os.chown(runtime, NOBODY, NOBODY)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    # Any command that opens a container makes its lock directory, even for a missing one.
    _lxc_as_nobody(["lxc-info", "-n", "probe", "-P", str(lxcpath)], env)
    expected = lock_dir(lxcpath, uid=NOBODY, env=env)
    assert expected.is_dir()
    assert expected.is_relative_to(nobody_home / ("runtime" if xdg else ".cache/lxc/run"))


@pytest.mark.lxc
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("lxc-info") is None, reason="needs root and LXC")
def test_root_lock_dir_matches_lxc():
    lxcpath = Path(tempfile.mkdtemp(prefix="bdev-lockprobe-"))
    expected = lock_dir(lxcpath, uid=0, env={})
    created = [p for p in [expected, *expected.parents] if not p.exists()]
    try:
        subprocess.run(["lxc-info", "-n", "probe", "-P", str(lxcpath)], capture_output=True, timeout=60)
        assert expected.is_dir()
        assert expected == Path("/run/lxc/lock") / str(lxcpath).lstrip("/")
    finally:
        for path in created:  # deepest first: only what LXC made for this probe
            try:
                path.rmdir()
            except OSError:
                pass
        lxcpath.rmdir()
