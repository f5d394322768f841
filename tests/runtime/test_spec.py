"""Reading what to run from LXC configs: signals, mount entries, mount.auto, includes, and
resolving mount targets inside the rootfs (no symlink may lead out of it)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bdev.errors import ConfigError
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime import linux
from bdev_runtime.rootfs import SetupError, mount_target, resolve_in_root
from bdev_runtime.spec import container_spec, load_config, parse_mount_entry, parse_signal

pytestmark = pytest.mark.unprivileged


@pytest.mark.parametrize(("text", "number"), [("SIGUSR1", signal.SIGUSR1), ("USR1", signal.SIGUSR1), ("pwr", signal.SIGPWR),
                                               ("9", 9), ("SIGRTMIN+3", signal.SIGRTMIN + 3),
                                               ("RTMAX-1", signal.SIGRTMAX - 1)])
def test_signals_in_every_form_lxc_accepts(text: str, number: int) -> None:
    assert parse_signal(text, "lxc.signal.halt") == number


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "200", "", "SIGRTMIN+x"])
def test_bad_signals_are_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError, match=r"(?i)^lxc.signal.halt = .*: (not a signal|signal numbers)"):
        parse_signal(text, "lxc.signal.halt")


def test_mount_entry_options_split_into_flags_data_and_lxc_extras() -> None:
    entry = parse_mount_entry("/srv/data srv/data none ro,bind,nosuid,create=dir,optional,rslave 0 0")
    assert entry.flags == linux.MS_RDONLY | linux.MS_BIND | linux.MS_NOSUID
    assert entry.propagation == linux.MS_SLAVE | linux.MS_REC
    assert (entry.create, entry.optional, entry.data) == ("dir", True, "")
    tmpfs = parse_mount_entry("tmpfs run tmpfs size=1m,mode=755,nodev")
    assert tmpfs.data == "size=1m,mode=755" and tmpfs.flags == linux.MS_NODEV and not tmpfs.is_bind
    spaced = parse_mount_entry(r"/a\040b mnt/a\040b none bind 0 0")
    assert spaced.source == "/a b" and spaced.target == "mnt/a b"


@pytest.mark.parametrize("text", ["only three fields", "/a b none bind,create=pipe 0 0"])
def test_bad_mount_entries_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="(?i)lxc.mount.entry"):
        parse_mount_entry(text)


def _spec(tmp_path: Path, text: str):
    directory = tmp_path / "c1"
    directory.mkdir(exist_ok=True)
    (directory / "config").write_text(text)
    ref = ContainerRef(tmp_path, "c1")
    return container_spec(ref, load_config(ref))


def test_defaults_and_the_busybox_keys(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "lxc.uts.name = box\nlxc.signal.halt = SIGUSR1\nlxc.tty.max = 5\nlxc.pty.max = 1\n"
                           "lxc.mount.auto = cgroup:mixed proc:mixed sys:ro\nlxc.environment = A=1\n")
    assert (spec.hostname, spec.init, spec.halt_signal, spec.stop_signal) == ("box", ["/sbin/init"], signal.SIGUSR1,
                                                                              signal.SIGKILL)
    assert (spec.tty_max, spec.pty_max, spec.autodev, spec.environment) == (5, 1, True, {"A": "1"})
    assert (spec.auto("proc"), spec.auto("sys"), spec.auto("cgroup")) == ("proc:mixed", "sys:ro", "cgroup:mixed")
    assert not spec.namespaces & linux.CLONE_NEWUSER
    default = _spec(tmp_path, "")
    assert default.hostname == "c1" and default.halt_signal == signal.SIGPWR and default.mount_auto == frozenset()


def test_lxc_include_files_and_directories_are_expanded_in_place(tmp_path: Path) -> None:
    common = tmp_path / "common.conf.d"
    common.mkdir()
    (common / "10-a.conf").write_text("lxc.tty.max = 2\n")
    (common / "20-b.conf").write_text("lxc.tty.max = 3\nlxc.pty.max = 4\n")
    single = tmp_path / "single.conf"
    single.write_text("lxc.signal.halt = SIGTERM\n")
    spec = _spec(tmp_path, f"lxc.include = {common}\nlxc.include = {single}\nlxc.pty.max = 9\n")
    assert (spec.tty_max, spec.pty_max, spec.halt_signal) == (3, 9, signal.SIGTERM)


def test_a_missing_include_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"container 'c1': cannot read .*nowhere.conf"):
        _spec(tmp_path, f"lxc.include = {tmp_path}/nowhere.conf\n")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("lxc.mount.auto", "proc:bogus", "unknown value 'proc:bogus'"),
    ("lxc.tty.max", "five", "lxc.tty.max = five: not a number"),
    ("lxc.autodev", "2", "use 0 or 1"),
    ("lxc.init.cmd", "'unclosed", "lxc.init.cmd"),
    ("lxc.init.uid", "root", "not a numeric id"),
])
def test_bad_values_name_their_key(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _spec(tmp_path, f"{key} = {value}\n")


def test_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/etc", root / "abs")            # absolute: means <root>/etc
    os.symlink("../../../../..", root / "up")   # climbing: stops at the root
    os.symlink("var/../etc", root / "rel")
    real_root = os.path.realpath(root)
    assert resolve_in_root(str(root), "abs/passwd") == f"{real_root}/etc/passwd"
    assert resolve_in_root(str(root), "up/etc") == f"{real_root}/etc"
    assert resolve_in_root(str(root), "rel/new/dir") == f"{real_root}/etc/new/dir"
    assert mount_target(str(root), f"{real_root}/var/x") == f"{real_root}/var/x"  # LXC's absolute form
    assert mount_target(str(root), "/tmp/x") == f"{real_root}/tmp/x"
    os.symlink("loop", root / "loop")
    with pytest.raises(SetupError, match="(?i)too many symbolic links"):
        resolve_in_root(str(root), "loop/x")


def test_config_values_parse_like_lxc() -> None:
    config = LxcConfig.parse('lxc.uts.name = "quoted"\n')
    assert config.uts_name() == "quoted"
