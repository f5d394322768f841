"""The LXC-compatible programs: ``lxc-create``, ``lxc-clone``, ``lxc-copy``, ``lxc-snapshot``,
``lxc-destroy``, ``lxc-ls``.

Each program runs in-process for real, on busybox containers of the ``dir`` backend in a
temporary lxcpath (``-P``), and the tests check what it left on disk: which containers and
snapshots exist where, their configs (name, MAC addresses, rootfs path) and the hostname inside
their rootfs.  Options that change nothing observable with the ``dir`` backend (sizes,
filesystem types, zfs/lvm settings) are checked through the pure parsing functions of
:mod:`bdev.cli.options`, and the real commands are shown to accept them.  Formats are tested on
their own and, where Debian's real LXC is installed, byte for byte against ``lxc-ls`` and
``lxc-snapshot`` on the same lxcpath.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bdev.api import Container, SnapshotInfo
from bdev.cli import logsetup
from bdev.cli import options as opts
from bdev.cli.lxc import clone as lxc_clone
from bdev.cli.lxc import copy as lxc_copy
from bdev.cli.lxc import create as lxc_create
from bdev.cli.lxc import destroy as lxc_destroy
from bdev.cli.lxc import ls as lxc_ls
from bdev.cli.lxc import lsformat
from bdev.cli.lxc import snapshot as lxc_snapshot
from bdev.errors import InvalidInput

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.unprivileged
BAD_NAMES = ["a/b", "..", "-x", "a\nb", "a" * 256]
BAD_IDS = ["slash", "dotdot", "dash", "newline", "256-bytes"]


def real_lxc(tool: str) -> str | None:
    """Debian's real LXC program ``tool`` (found on PATH, never our own in the venv)."""
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d and Path(d) != BIN]
    return shutil.which(tool, path=os.pathsep.join(dirs))


REAL_LS = real_lxc("lxc-ls")
REAL_CREATE = real_lxc("lxc-create")
REAL_SNAPSHOT = real_lxc("lxc-snapshot")
needs_real_lxc = pytest.mark.skipif(
    not (REAL_LS and REAL_CREATE and REAL_SNAPSHOT), reason="Debian's real LXC (lxc-ls, lxc-create) is not installed"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real lxc-create)")


def invoke(command: Any, *args: str) -> Result:
    return CliRunner().invoke(command, list(args))


def one_error_line(result: Result, prog: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def make_source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("src\n")
    return root


MAC = "00:16:3e:aa:bb:cc"
NETWORK = [("lxc.net.1.type", "veth"), ("lxc.net.1.link", "lxcbr0"), ("lxc.net.1.hwaddr", MAC)]
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOST_BUSYBOX = shutil.which("busybox")


@pytest.fixture
def origin(lxcpath: Path) -> Container:
    """Container ``a``: busybox on dir, a network with a fixed MAC, and a marker file in its
    rootfs."""
    container = Container("a", lxcpath)
    container.create("busybox", "dir", config=NETWORK)
    (lxcpath / "a" / "rootfs" / "marker").write_text("from a\n")
    return container


def entries(path: Path) -> list[str]:
    """The names in ``path``, sorted; ``[]`` when it does not exist."""
    return sorted(os.listdir(path)) if path.exists() else []


def config_values(directory: Path, key: str) -> list[str]:
    """The values of ``key`` in the ``config`` file of container directory ``directory``,
    read as text (``key = value`` lines)."""
    found = []
    for line in (directory / "config").read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#") and name.strip() == key:
            found.append(value.strip())
    return found


def config_entries(directory: Path) -> list[tuple[str, str]]:
    out = []
    for line in (directory / "config").read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            out.append((name.strip(), value.strip()))
    return out


def hosts_file(host: str) -> str:
    """The busybox template's ``/etc/hosts`` for hostname ``host``."""
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def assert_dir_rootfs(directory: Path) -> Path:
    """``directory``'s config names a dir rootfs inside it, holding a busybox system; returns it."""
    rootfs = directory / "rootfs"
    assert config_values(directory, "lxc.rootfs.path") == [f"dir:{rootfs}"]
    assert rootfs.is_dir() and not rootfs.is_symlink()
    assert (rootfs / "bin" / "busybox").is_file()
    return rootfs


def assert_copy_of_a(directory: Path, *, keepname: bool, keepmac: bool) -> None:
    """``directory`` holds a complete copy of the ``origin`` fixture's container, named for
    its directory unless ``keepname``, with its MAC unless ``keepmac``."""
    new = directory.name
    rootfs = assert_dir_rootfs(directory)
    assert (rootfs / "marker").read_text() == "from a\n"
    host = "a" if keepname else new
    assert config_values(directory, "lxc.uts.name") == [host]
    assert (rootfs / "etc" / "hostname").read_text() == f"{host}\n"
    assert (rootfs / "etc" / "hosts").read_text() == hosts_file(host)
    (mac,) = config_values(directory, "lxc.net.1.hwaddr")
    if keepmac:
        assert mac == MAC
    else:
        assert mac != MAC and MAC_RE.match(mac), mac


def assert_origin_untouched(lxcpath: Path) -> None:
    directory = lxcpath / "a"
    rootfs = assert_dir_rootfs(directory)
    assert config_values(directory, "lxc.uts.name") == ["a"]
    assert config_values(directory, "lxc.net.1.hwaddr") == [MAC]
    assert (rootfs / "etc" / "hostname").read_text() == "a\n"
    assert (rootfs / "etc" / "hosts").read_text() == hosts_file("a")
    assert (rootfs / "marker").read_text() == "from a\n"


# ---------------------------------------------------------------------------- lxc-create


def test_create_requires_a_template(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-P", str(lxcpath))
    assert result.exit_code == 2
    assert "-t none" in result.stderr
    assert os.listdir(lxcpath) == []


def test_lxc_size_and_backend_options_parse() -> None:
    """What ``--fssize``/``-L``, ``-B``, ``--fstype`` and the zfs/lvm options mean, where the
    dir backend cannot show it: a bare number is MiB, as in LXC."""
    assert opts.parse_fssize("500", default_unit="M") == 500 * 1024**2
    assert opts.parse_fssize(" 1.5 ", default_unit="M") == int(1.5 * 1024**2)
    assert opts.parse_fssize("2G", what="-L", default_unit="M") == 2 * 1024**3
    assert opts.parse_fssize("100", what="-L", default_unit="M") == 100 * 1024**2
    assert opts.parse_fssize(None, default_unit="M") is None
    with pytest.raises(InvalidInput, match="-L 'garbage'"):
        opts.parse_fssize("garbage", what="-L", default_unit="M")
    with pytest.raises(InvalidInput, match="--fssize '0'"):
        opts.parse_fssize("0", default_unit="M")
    assert opts.parse_backend("best") == "best"
    assert opts.parse_backend("directory,dir") == ["directory", "dir"]
    assert opts.parse_backend(None) is None
    for bad in ("", ",", "dir,", " , dir"):
        with pytest.raises(InvalidInput, match="backend"):
            opts.parse_backend(bad)
    extra = {"zfsroot": "tank/lxc", "vgname": None, "lvname": None, "thinpool": None, "dir": None,
             "rbdname": None, "rbdpool": None}
    options = opts.create_options("xfs", 500 * 1024**2, extra)
    assert options.fstype == "xfs" and options.fssize == 500 * 1024**2
    assert dict(options.extra) == {"zfsroot": "tank/lxc"}
    assert dict(opts.create_options(None, 2 * 1024**3, {"vgname": "vg0"}).extra) == {"vgname": "vg0"}
    with pytest.raises(InvalidInput, match="--zfsroot"):
        opts.create_options(None, None, {"zfsroot": " "})
    with pytest.raises(InvalidInput, match="--fstype"):
        opts.create_options("", None, {})


def test_create_config_file_entries_parse(tmp_path: Path) -> None:
    extra = tmp_path / "extra.conf"
    extra.write_text("# extra\nlxc.start.auto = 1\nlxc.group = \"web db\"\n\n  lxc.net.1.link='br 0'\n")
    assert opts.read_config_file(str(extra)) == [
        ("lxc.start.auto", "1"), ("lxc.group", "web db"), ("lxc.net.1.link", "br 0"),
    ]
    extra.write_text("lxc.start.auto = 1\nnot an entry\n")
    with pytest.raises(InvalidInput, match="line 2"):
        opts.read_config_file(str(extra))
    with pytest.raises(InvalidInput, match="(?i)cannot read config file"):
        opts.read_config_file(str(tmp_path / "absent"))


def test_create_with_lxc_options(lxcpath: Path, tmp_path: Path) -> None:
    """``-B best``, ``--fssize``, ``--fstype``, ``--zfsroot`` are accepted (dir ignores them),
    ``-f`` entries land in the config, and template arguments reach the template."""
    assert HOST_BUSYBOX is not None, "the busybox template needs busybox on PATH"
    extra = tmp_path / "extra.conf"
    extra.write_text("# extra\nlxc.start.auto = 1\nlxc.group = \"web db\"\n\n" + "".join(
        f"{key} = {value}\n" for key, value in NETWORK
    ))
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-B", "best",
                    "--fssize", "500", "--fstype", "xfs", "--zfsroot", "tank/lxc", "-f", str(extra),
                    "--", "--busybox-path", HOST_BUSYBOX)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert entries(lxcpath) == ["c1"]
    directory = lxcpath / "c1"
    rootfs = assert_dir_rootfs(directory)  # best is dir: the only backend
    assert (rootfs / "bin" / "busybox").read_bytes() == Path(HOST_BUSYBOX).read_bytes()
    assert config_values(directory, "lxc.start.auto") == ["1"]
    assert config_values(directory, "lxc.group") == ["web db"]
    assert config_values(directory, "lxc.net.1.hwaddr") == [MAC]
    found = config_entries(directory)
    extra_lines = [("lxc.start.auto", "1"), ("lxc.group", "web db"), *NETWORK]
    start = found.index(extra_lines[0])
    assert found[start:start + len(extra_lines)] == extra_lines  # in the file's order
    assert config_values(directory, "lxc.uts.name") == ["c1"]
    assert (rootfs / "etc" / "hostname").read_text() == "c1\n"


def test_create_config_file_random_mac(lxcpath: Path, tmp_path: Path) -> None:
    """An ``xx`` MAC in ``-f`` becomes a random one, as LXC does."""
    extra = tmp_path / "net.conf"
    extra.write_text("lxc.net.1.type = veth\nlxc.net.1.hwaddr = 00:16:3e:xx:xx:xx\n")
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-f", str(extra))
    assert result.exit_code == 0, result.stderr
    (mac,) = config_values(lxcpath / "c1", "lxc.net.1.hwaddr")
    assert mac.startswith("00:16:3e:") and MAC_RE.match(mac), mac


@pytest.mark.parametrize("args", [["--bogus"], ["-x", "y"], ["--busybox-path"]])
def test_create_bad_template_argument(lxcpath: Path, args: list[str]) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "--", *args)
    assert result.exit_code != 0
    line = one_error_line(result, "lxc-create")
    assert "template 'busybox'" in line and args[0] in line
    assert entries(lxcpath) == []


def test_create_missing_busybox_path(lxcpath: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-busybox"
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath),
                    "--", "--busybox-path", str(missing))
    assert result.exit_code != 0
    assert f"--busybox-path {missing}" in one_error_line(result, "lxc-create")
    assert entries(lxcpath) == []


def test_create_missing_config_file(lxcpath: Path, tmp_path: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath),
                    "-f", str(tmp_path / "absent"))
    assert result.exit_code != 0
    assert "config file" in one_error_line(result, "lxc-create")
    assert entries(lxcpath) == []


def test_create_template_none_and_backend_list(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "none", "-B", "directory,dir", "-P", str(lxcpath))
    assert result.exit_code == 0, result.stderr
    result = invoke(lxc_create.command, "-n", "c2", "-t", "none", "-P", str(lxcpath))
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["c1", "c2"]
    for name in ("c1", "c2"):
        rootfs = lxcpath / name / "rootfs"
        assert config_values(lxcpath / name, "lxc.rootfs.path") == [f"dir:{rootfs}"]
        assert rootfs.is_dir() and os.listdir(rootfs) == []  # -t none: nothing in it
        assert config_values(lxcpath / name, "lxc.uts.name") in ([], [name])


def test_create_template_none_refuses_template_arguments(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "none", "-P", str(lxcpath), "--", "-x")
    assert result.exit_code != 0
    assert "'none'" in one_error_line(result, "lxc-create")
    assert entries(lxcpath) == []


def test_create_dir_backend(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-B", "dir", "-P", str(lxcpath))
    assert result.exit_code == 0, result.stderr
    assert_dir_rootfs(lxcpath / "c1")


@pytest.mark.parametrize("size", ["garbage", "0", "0M", "5X"])
def test_create_bad_fssize(lxcpath: Path, size: str) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "--fssize", size, "-P", str(lxcpath))
    assert result.exit_code != 0
    line = one_error_line(result, "lxc-create")
    assert f"--fssize {size!r}" in line
    assert os.listdir(lxcpath) == []


def test_create_unknown_backend(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-B", "bogus", "-P", str(lxcpath))
    assert result.exit_code == 1
    line = one_error_line(result, "lxc-create")
    assert "'bogus'" in line and "known" in line and "dir" in line
    assert os.listdir(lxcpath) == []


@pytest.mark.parametrize("name", BAD_NAMES, ids=BAD_IDS)
def test_create_bad_names(lxcpath: Path, name: str) -> None:
    result = invoke(lxc_create.command, "-n", name, "-t", "busybox", "-P", str(lxcpath))
    assert result.exit_code != 0
    assert "name" in one_error_line(result, "lxc-create").lower()
    assert os.listdir(lxcpath) == []


def test_create_unknown_log_priority_and_logfile(lxcpath: Path, tmp_path: Path) -> None:
    bad = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-l", "LOUD")
    assert bad.exit_code == 2
    assert "log priority" in one_error_line(bad, "lxc-create")
    assert entries(lxcpath) == []
    log = tmp_path / "log"
    try:
        good = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-l", "DEBUG",
                      "-o", str(log))
    finally:
        logsetup.configure("lxc-create", None)  # drop the file handler the run installed
    assert good.exit_code == 0, good.stderr
    assert_dir_rootfs(lxcpath / "c1")
    assert log.exists()
    assert "lxc-create " in log.read_text() and "DEBUG" in log.read_text()


# ---------------------------------------------------------------------------- lxc-clone and lxc-copy


@pytest.mark.parametrize("form", [["a", "b"], ["-o", "a", "-n", "b"], ["-o", "a", "b"], ["b", "-o", "a"]])
def test_clone_argument_forms(lxcpath: Path, origin: Container, form: list[str]) -> None:
    result = invoke(lxc_clone.command, "-p", str(lxcpath), *form)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Created container b as copy of a\n"
    assert entries(lxcpath) == ["a", "b"]  # no -P: the clone goes beside its origin
    assert_copy_of_a(lxcpath / "b", keepname=False, keepmac=False)
    assert_origin_untouched(lxcpath)


def test_clone_keep_name_and_mac_into_new_lxcpath(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    """lxc-clone's ``-p`` is the origin's lxcpath and ``-P`` the clone's; ``-L``, ``-v`` and
    ``-t`` are accepted and mean nothing to dir."""
    other = tmp_path / "other"
    result = invoke(lxc_clone.command, "-K", "-M", "-B", "dir", "-L", "2G", "-v", "vg0", "-t", "xfs",
                    "-p", str(lxcpath), "-P", str(other), "a", "b")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Created container b as copy of a\n"
    assert entries(lxcpath) == ["a"] and entries(other) == ["b"]
    assert_copy_of_a(other / "b", keepname=True, keepmac=True)
    assert_origin_untouched(lxcpath)


@pytest.mark.parametrize(("keep", "keepname", "keepmac"), [(["-K"], True, False), (["-M"], False, True)])
def test_clone_keeps_only_what_it_is_told(lxcpath: Path, origin: Container, keep: list[str], keepname: bool,
                                          keepmac: bool) -> None:
    result = invoke(lxc_clone.command, *keep, "-p", str(lxcpath), "a", "b")
    assert result.exit_code == 0, result.stderr
    assert_copy_of_a(lxcpath / "b", keepname=keepname, keepmac=keepmac)


def test_clone_snapshot_of_dir_is_refused(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    """dir has no native snapshot and no backend that layers over it is installed: ``-s`` is
    refused in one sentence and nothing is made, wherever the clone would have gone."""
    other = tmp_path / "other"
    for where in ([], ["-P", str(other)]):
        result = invoke(lxc_clone.command, "-s", "-K", "-M", "-B", "dir", "-L", "2G", "-p", str(lxcpath),
                        *where, "a", "b")
        assert result.exit_code == 1, result.stderr
        line = one_error_line(result, "lxc-clone")
        assert "snapshot" in line and "dir" in line and "'b'" in line
        assert result.stdout == ""
        assert entries(lxcpath) == ["a"] and entries(other) == []
        assert_origin_untouched(lxcpath)


@pytest.mark.parametrize("size", ["garbage", "0", "5X"])
def test_clone_bad_size(lxcpath: Path, origin: Container, size: str) -> None:
    result = invoke(lxc_clone.command, "-L", size, "-p", str(lxcpath), "a", "b")
    assert result.exit_code == 2
    assert f"-L {size!r}" in one_error_line(result, "lxc-clone")
    assert entries(lxcpath) == ["a"]


def test_clone_backend_list_and_unknown_backend(lxcpath: Path, origin: Container) -> None:
    listed = invoke(lxc_clone.command, "-B", "dir,directory", "-p", str(lxcpath), "a", "b")
    assert listed.exit_code != 0
    assert "list" in one_error_line(listed, "lxc-clone")
    unknown = invoke(lxc_clone.command, "-B", "bogus", "-p", str(lxcpath), "a", "b")
    assert unknown.exit_code != 0
    assert "'bogus'" in one_error_line(unknown, "lxc-clone")
    assert entries(lxcpath) == ["a"]


def test_clone_onto_an_existing_container(lxcpath: Path, origin: Container) -> None:
    Container("b", lxcpath).create(None, "dir")
    result = invoke(lxc_clone.command, "-p", str(lxcpath), "a", "b")
    assert result.exit_code == 1
    assert "'b'" in one_error_line(result, "lxc-clone")
    assert os.listdir(lxcpath / "b" / "rootfs") == []  # the existing b is left alone


def test_clone_needs_two_names(lxcpath: Path, origin: Container) -> None:
    result = invoke(lxc_clone.command, "-p", str(lxcpath), "a")
    assert result.exit_code == 2
    assert "orig and new" in result.stderr
    assert entries(lxcpath) == ["a"]


def test_copy_paths_are_reversed(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    """lxc-copy's ``-P`` is the origin's lxcpath and ``-p`` the copy's; it prints nothing."""
    other = tmp_path / "other"
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), "-p", str(other), "-L", "100")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert entries(lxcpath) == ["a"] and entries(other) == ["b"]
    assert_copy_of_a(other / "b", keepname=False, keepmac=False)
    assert_origin_untouched(lxcpath)


def test_copy_in_the_same_lxcpath_keeping_name_and_mac(lxcpath: Path, origin: Container) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), "-K", "-M", "-B", "dir")
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["a", "b"]
    assert_copy_of_a(lxcpath / "b", keepname=True, keepmac=True)


def test_copy_same_name_to_another_lxcpath(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    other = tmp_path / "other"
    onto_itself = invoke(lxc_copy.command, "-n", "a", "-N", "a", "-P", str(lxcpath))
    assert onto_itself.exit_code == 1
    assert "itself" in one_error_line(onto_itself, "lxc-copy")
    result = invoke(lxc_copy.command, "-n", "a", "-N", "a", "-P", str(lxcpath), "-p", str(other))
    assert result.exit_code == 0, result.stderr
    assert entries(other) == ["a"]
    assert_copy_of_a(other / "a", keepname=False, keepmac=False)
    assert_origin_untouched(lxcpath)


def test_copy_snapshot_of_dir_is_refused(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    other = tmp_path / "other"
    for where in ([], ["-p", str(other)]):
        result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), *where, "-s", "-B", "dir", "-L", "100")
        assert result.exit_code == 1, result.stderr
        line = one_error_line(result, "lxc-copy")
        assert "snapshot" in line and "dir" in line and "'b'" in line
        assert entries(lxcpath) == ["a"] and entries(other) == []
        assert_origin_untouched(lxcpath)


def test_copy_bad_size(lxcpath: Path, origin: Container) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), "-L", "garbage")
    assert result.exit_code == 2
    assert "-L 'garbage'" in one_error_line(result, "lxc-copy")
    assert entries(lxcpath) == ["a"]


def test_copy_ephemeral_only_options_are_ignored_with_a_warning(lxcpath: Path, origin: Container) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), "-D", "-t")
    assert result.exit_code == 0, result.stderr
    assert "-D, -t only apply to ephemeral containers" in result.stderr
    assert_copy_of_a(lxcpath / "b", keepname=False, keepmac=False)


@pytest.mark.parametrize(("flags", "words"), [(("-R",), "renaming")])
def test_copy_refuses_what_is_not_supported(lxcpath: Path, flags: tuple[str, ...], words: str) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", *flags, "-P", str(lxcpath))
    assert result.exit_code == 1
    assert words in one_error_line(result, "lxc-copy").lower()


def test_copy_needs_a_new_name(lxcpath: Path) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-P", str(lxcpath))
    assert result.exit_code == 2
    assert "-N NEWNAME" in result.stderr


# ---------------------------------------------------------------------------- lxc-snapshot and lxc-destroy


def snapshot_dirs(lxcpath: Path, name: str = "a") -> list[str]:
    return entries(lxcpath / name / "snaps")


@pytest.fixture
def snapshotted(lxcpath: Path, origin: Container) -> Container:
    """The ``origin`` with ``snap0`` taken, then its marker changed."""
    assert origin.snapshot() == "snap0"
    (lxcpath / "a" / "rootfs" / "marker").write_text("changed\n")
    return origin


@pytest.mark.parametrize("form", [["-r", "snap0", "new"], ["-r", "snap0", "-N", "new"], ["new", "-r", "snap0"]])
def test_snapshot_restore_forms(lxcpath: Path, snapshotted: Container, form: list[str]) -> None:
    result = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), *form)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert entries(lxcpath) == ["a", "new"]
    new = lxcpath / "new"
    rootfs = assert_dir_rootfs(new)
    assert (rootfs / "marker").read_text() == "from a\n"  # the snapshot's content
    assert config_values(new, "lxc.uts.name") == ["new"]
    assert (rootfs / "etc" / "hostname").read_text() == "new\n"
    assert (rootfs / "etc" / "hosts").read_text() == hosts_file("new")
    assert snapshot_dirs(lxcpath) == ["snap0"]  # the snapshot stays
    assert (lxcpath / "a" / "rootfs" / "marker").read_text() == "changed\n"  # the origin is not restored
    assert entries(new) == ["config", "rootfs"]  # not a snapshot directory (no ts, comment)


def test_snapshot_restore_in_place(lxcpath: Path, snapshotted: Container) -> None:
    (lxcpath / "a" / "rootfs" / "added").write_text("after the snapshot\n")
    result = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-r", "snap0")
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["a"]
    assert_origin_untouched(lxcpath)  # marker back to the snapshot's, name and MAC as they were
    assert not (lxcpath / "a" / "rootfs" / "added").exists()
    assert snapshot_dirs(lxcpath) == ["snap0"]


def test_snapshot_restore_missing_snapshot_or_taken_name(lxcpath: Path, snapshotted: Container) -> None:
    missing = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-r", "snap9", "new")
    assert missing.exit_code == 1
    assert "'snap9'" in one_error_line(missing, "lxc-snapshot")
    Container("taken", lxcpath).create(None, "dir")
    taken = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-r", "snap0", "-N", "taken")
    assert taken.exit_code == 1
    assert "'taken'" in one_error_line(taken, "lxc-snapshot")
    assert entries(lxcpath) == ["a", "taken"]
    assert os.listdir(lxcpath / "taken" / "rootfs") == []


@pytest.mark.parametrize(
    "args",
    [["-r", "snap0", "a", "b"], ["-r", "snap0", "-N", "a", "b"], ["-L", "-d", "snap0"], ["-N", "x"], ["stray"],
     ["-r", "snap0", "-d", "snap0"], ["-c", "note", "-d", "ALL"]],
)
def test_snapshot_usage_errors(lxcpath: Path, snapshotted: Container, args: list[str]) -> None:
    result = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), *args)
    assert result.exit_code == 2, result.stderr
    assert entries(lxcpath) == ["a"]  # nothing restored, created or destroyed
    assert snapshot_dirs(lxcpath) == ["snap0"]
    assert (lxcpath / "a" / "rootfs" / "marker").read_text() == "changed\n"


def test_snapshot_destroy_all_and_one(lxcpath: Path, origin: Container) -> None:
    for index in range(4):
        assert origin.snapshot() == f"snap{index}"
    one = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-d", "snap3")
    assert one.exit_code == 0, one.stderr
    assert snapshot_dirs(lxcpath) == ["snap0", "snap1", "snap2"]
    missing = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-d", "snap3")
    assert missing.exit_code == 1
    assert "'snap3'" in one_error_line(missing, "lxc-snapshot")
    everything = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-d", "ALL")
    assert everything.exit_code == 0, everything.stderr
    assert snapshot_dirs(lxcpath) == []
    assert entries(lxcpath) == ["a"]
    assert_origin_untouched(lxcpath)  # the container itself stays


def test_snapshot_create_with_comment_file(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    note = tmp_path / "note"
    note.write_text("why\n")
    result = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-c", str(note))
    assert result.exit_code == 0 and result.stdout == "", result.stderr
    assert snapshot_dirs(lxcpath) == ["snap0"]
    snap0 = lxcpath / "a" / "snaps" / "snap0"
    assert (snap0 / "comment").read_text() == "why\n"
    assert (snap0 / "rootfs" / "marker").read_text() == "from a\n"
    assert re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d\n?", (snap0 / "ts").read_text())
    plain = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath))
    assert plain.exit_code == 0 and plain.stdout == "", plain.stderr
    assert snapshot_dirs(lxcpath) == ["snap0", "snap1"]
    assert not (lxcpath / "a" / "snaps" / "snap1" / "comment").exists()
    note.write_text("first line\nno newline")
    verbatim = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-c", str(note))
    assert verbatim.exit_code == 0, verbatim.stderr
    assert (lxcpath / "a" / "snaps" / "snap2" / "comment").read_text() == "first line\nno newline"
    assert invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-d", "snap2").exit_code == 0
    missing = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-c", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "comment file" in one_error_line(missing, "lxc-snapshot").lower()
    assert snapshot_dirs(lxcpath) == ["snap0", "snap1"]


def test_snapshot_quiet_prints_nothing(lxcpath: Path, origin: Container) -> None:
    result = invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-q")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert snapshot_dirs(lxcpath) == ["snap0"]


def test_snapshot_list_format() -> None:
    snaps = [
        SnapshotInfo("snap0", Path("/x/c1/snaps"), "2024:01:02 03:04:05", "line one\nline two\n", None),
        SnapshotInfo("snap1", Path("/x/c1/snaps"), "2024:01:02 03:04:06", None, None),
        SnapshotInfo("snap2", Path("/x/c1/snaps"), "2024:01:02 03:04:07", "no newline", None),
    ]
    assert lxc_snapshot.format_list(snaps, comments=False) == (
        "snap0 (/x/c1/snaps) 2024:01:02 03:04:05\n"
        "snap1 (/x/c1/snaps) 2024:01:02 03:04:06\n"
        "snap2 (/x/c1/snaps) 2024:01:02 03:04:07\n"
    )
    assert lxc_snapshot.format_list(snaps, comments=True) == (
        "snap0 (/x/c1/snaps) 2024:01:02 03:04:05\nline one\nline two\n"
        "snap1 (/x/c1/snaps) 2024:01:02 03:04:06\n"
        "snap2 (/x/c1/snaps) 2024:01:02 03:04:07\nno newline\n"
    )
    assert lxc_snapshot.format_list([], comments=True) == "No snapshots\n"


def test_destroy_options(lxcpath: Path, origin: Container) -> None:
    origin.snapshot()
    origin.snapshot()
    refused = invoke(lxc_destroy.command, "-n", "a", "-P", str(lxcpath))
    assert refused.exit_code == 1
    assert "snapshot" in one_error_line(refused, "lxc-destroy")
    assert_origin_untouched(lxcpath)
    assert snapshot_dirs(lxcpath) == ["snap0", "snap1"]
    result = invoke(lxc_destroy.command, "-n", "a", "-P", str(lxcpath), "-s", "-f")
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == []  # the container and its snapshots are gone
    Container("b", lxcpath).create("busybox", "dir")
    plain = invoke(lxc_destroy.command, "-n", "b", "-P", str(lxcpath))
    assert plain.exit_code == 0, plain.stderr
    assert entries(lxcpath) == []


def test_destroy_with_snapshots_keeps_what_was_restored_from_them(lxcpath: Path, origin: Container) -> None:
    """A container restored from a snapshot does not depend on it (dir copies), so ``-s``
    removes the snapshots and leaves the restored container whole."""
    origin.snapshot()
    assert invoke(lxc_snapshot.command, "-n", "a", "-P", str(lxcpath), "-r", "snap0", "r").exit_code == 0
    result = invoke(lxc_destroy.command, "-n", "a", "-P", str(lxcpath), "-s")
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["r"]
    assert (assert_dir_rootfs(lxcpath / "r") / "marker").read_text() == "from a\n"


def test_destroy_unknown_container(lxcpath: Path) -> None:
    result = invoke(lxc_destroy.command, "-n", "nope", "-P", str(lxcpath))
    assert result.exit_code == 1
    assert "'nope'" in one_error_line(result, "lxc-destroy")


def test_rcfile_is_refused(lxcpath: Path) -> None:
    result = invoke(lxc_destroy.command, "-n", "c1", "-P", str(lxcpath), "--rcfile", "x")
    assert result.exit_code == 1
    assert "--rcfile" in one_error_line(result, "lxc-destroy")


# ---------------------------------------------------------------------------- lxc-ls formats


ROWS = [
    lsformat.Row("a"),
    lsformat.Row("web-server-01", autostart=True, groups="web, db"),
    lsformat.Row("u1", unprivileged=True),
]


def test_ls_names_one_per_line_without_terminal() -> None:
    assert lsformat.names(ROWS, termwidth=0, one_per_line=False) == (
        b"a            \nweb-server-01\nu1           \n"
    )
    assert lsformat.names(ROWS, termwidth=0, one_per_line=True) == b"a\nweb-server-01\nu1\n"
    assert lsformat.names([lsformat.Row("ab")], termwidth=80, one_per_line=False) == b"ab   \n"
    assert lsformat.names([], termwidth=80, one_per_line=False) == b""


def test_ls_names_packed_to_terminal_width() -> None:
    assert lsformat.names(ROWS, termwidth=30, one_per_line=False) == (
        b"a             web-server-01\nu1            \n"
    )


def test_ls_fancy_default_columns() -> None:
    assert lsformat.fancy(ROWS).decode().splitlines() == [
        "NAME          STATE   AUTOSTART GROUPS  IPV4 IPV6 UNPRIVILEGED ",
        "a             STOPPED 0         -       -    -    false        ",
        "web-server-01 STOPPED 1         web, db -    -    false        ",
        "u1            STOPPED 0         -       -    -    true         ",
    ]


def test_ls_fancy_all_columns() -> None:
    columns = lsformat.parse_columns("name,PID, ram ,swap,interface")
    assert lsformat.fancy(ROWS[:1], columns).decode().splitlines() == [
        "NAME PID RAM    SWAP   INTERFACE ",
        "a    -   -      -      -         ",
    ]


def test_ls_bad_column_and_regex(lxcpath: Path) -> None:
    with pytest.raises(InvalidInput, match="BOGUS"):
        lsformat.parse_columns("NAME,BOGUS")
    result = invoke(lxc_ls.command, "-P", str(lxcpath), "-f", "-F", "NAME,BOGUS")
    assert result.exit_code == 2
    assert "'BOGUS'" in one_error_line(result, "lxc-ls")
    result = invoke(lxc_ls.command, "-P", str(lxcpath), "c[")
    assert result.exit_code == 2
    assert "regular expression" in one_error_line(result, "lxc-ls")


def test_ls_missing_lxcpath_prints_nothing(tmp_path: Path) -> None:
    result = invoke(lxc_ls.command, "-P", str(tmp_path / "absent"), "-f")
    assert result.exit_code == 0 and result.stdout == ""


def test_ls_reads_config(tmp_path: Path) -> None:
    lxcpath = tmp_path / "lxc"
    source = make_source(tmp_path)
    for name in ("c1", "c2"):
        made = invoke(lxc_create.command, "-n", name, "-t", "local", "-P", str(lxcpath), "--", "--path", str(source))
        assert made.exit_code == 0, made.stderr
    with open(lxcpath / "c2" / "config", "a") as config:
        config.write("lxc.start.auto = 1\nlxc.group = web db\nlxc.group = onboot\nlxc.idmap = u 0 100000 65536\n")
    result = invoke(lxc_ls.command, "-P", str(lxcpath), "-f")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "c1   STOPPED 0         -               -    -    false        ",
        "c2   STOPPED 1         web, db, onboot -    -    true         ",
    ]
    assert invoke(lxc_ls.command, "-P", str(lxcpath), "-1", "-g", "db,web").stdout == "c2\n"
    assert invoke(lxc_ls.command, "-P", str(lxcpath), "-1", "--filter", "1$").stdout == "c1\n"
    assert invoke(lxc_ls.command, "-P", str(lxcpath), "-1", "--running").stdout == ""
    assert invoke(lxc_ls.command, "-P", str(lxcpath), "-1", "--stopped", "--defined").stdout == "c1\nc2\n"


# ---------------------------------------------------------------------------- the installed programs


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("name", BAD_NAMES, ids=BAD_IDS)
def test_installed_lxc_create_bad_names(lxcpath: Path, name: str) -> None:
    proc = run_tool("lxc-create", "-n", name, "-t", "busybox", "-P", str(lxcpath))
    stderr = proc.stderr.decode()
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("lxc-create: ")
    assert os.listdir(lxcpath) == []


@pytest.mark.parametrize("tool", ["lxc-create", "lxc-clone", "lxc-copy", "lxc-snapshot", "lxc-destroy", "lxc-ls"])
def test_installed_programs_answer_help(tool: str) -> None:
    proc = run_tool(tool, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: {tool}".encode())


def test_installed_clone_and_copy_paths(lxcpath: Path, origin: Container, tmp_path: Path) -> None:
    """The installed programs, run as a user would: lxc-clone ``-p ORIGPATH -P NEWPATH`` and
    lxc-copy ``-P ORIGPATH -p NEWPATH`` put the new container in NEWPATH."""
    cloned_to, copied_to = tmp_path / "cloned", tmp_path / "copied"
    clone = run_tool("lxc-clone", "-p", str(lxcpath), "-P", str(cloned_to), "-M", "a", "b")
    assert clone.returncode == 0, clone.stderr
    assert clone.stdout == b"Created container b as copy of a\n"
    copy = run_tool("lxc-copy", "-P", str(lxcpath), "-p", str(copied_to), "-n", "a", "-N", "c", "-K")
    assert copy.returncode == 0, copy.stderr
    assert copy.stdout == b""
    assert entries(lxcpath) == ["a"] and entries(cloned_to) == ["b"] and entries(copied_to) == ["c"]
    assert_copy_of_a(cloned_to / "b", keepname=False, keepmac=True)
    assert_copy_of_a(copied_to / "c", keepname=True, keepmac=False)
    refused = run_tool("lxc-copy", "-P", str(lxcpath), "-n", "a", "-N", "d", "-s", "-B", "dir")
    assert refused.returncode == 1 and b"Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith(b"lxc-copy: ")
    assert entries(lxcpath) == ["a"]


def test_installed_lxc_snapshot_unknown_container(lxcpath: Path) -> None:
    proc = run_tool("lxc-snapshot", "-n", "nope", "-P", str(lxcpath), "-L")
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr
    assert proc.stderr.decode().startswith("lxc-snapshot: container 'nope'")


# ---------------------------------------------------------------------------- against Debian's real LXC


def both(real: str | None, ours: str, *args: str) -> tuple[bytes, bytes]:
    """Standard output of the real LXC program and of ours, run the same way (no terminal)."""
    assert real is not None
    theirs = subprocess.run([real, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    mine = run_tool(ours, *args)
    assert mine.returncode == theirs.returncode, (mine.stderr, theirs.stderr)
    return theirs.stdout, mine.stdout


@pytest.fixture
def mixed_lxcpath(tmp_path: Path) -> Path:
    """An lxcpath holding containers made by real LXC and by bdev, with autostart, groups and
    an id map."""
    lxcpath = tmp_path / "mixed"
    lxcpath.mkdir()
    assert REAL_CREATE is not None
    for name in ("real-one", "x"):
        subprocess.run([REAL_CREATE, "-n", name, "-t", "busybox", "-P", str(lxcpath)], check=True,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    for name in ("bdev-made-container", "b", "zé"):
        proc = run_tool("lxc-create", "-n", name, "-t", "busybox", "-P", str(lxcpath))
        assert proc.returncode == 0, proc.stderr
    with open(lxcpath / "real-one" / "config", "a") as config:
        config.write("lxc.start.auto = 1\nlxc.group = web db\nlxc.group = onboot\n")
    with open(lxcpath / "b" / "config", "a") as config:
        config.write("lxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\nlxc.group = web\n")
    return lxcpath


LS_FORMS = [
    [],
    ["-1"],
    ["-f"],
    ["-f", "-F", "NAME,STATE,PID,RAM,SWAP,AUTOSTART,GROUPS,INTERFACE,IPV4,IPV6,UNPRIVILEGED"],
    ["-f", "-F", "unprivileged,name"],
    ["-f", "-g", "web"],
    ["-f", "--filter", "^b"],
    ["-1", "e"],
    ["--stopped"],
    ["-f", "--running"],
    ["--defined", "-f"],
]


@pytest.mark.lxc
@pytest.mark.root
@needs_real_lxc
@needs_root
def test_lxc_ls_matches_real_lxc(mixed_lxcpath: Path) -> None:
    for form in LS_FORMS:
        theirs, mine = both(REAL_LS, "lxc-ls", "-P", str(mixed_lxcpath), *form)
        assert mine == theirs, form


@pytest.mark.lxc
@needs_real_lxc
def test_lxc_ls_empty_and_missing_lxcpath_match_real_lxc(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "absent"):
        for form in ([], ["-f"]):
            theirs, mine = both(REAL_LS, "lxc-ls", "-P", str(path), *form)
            assert mine == theirs == b""


@pytest.mark.lxc
@pytest.mark.root
@needs_real_lxc
@needs_root
def test_lxc_snapshot_list_matches_real_lxc(mixed_lxcpath: Path, tmp_path: Path) -> None:
    assert REAL_SNAPSHOT is not None
    note = tmp_path / "note"
    note.write_text("first line\nsecond line\n")
    for name in ("real-one", "bdev-made-container"):
        for args in ([], ["-L"], ["-L", "-C"]):  # [] creates a snapshot with each: both print nothing
            theirs, mine = both(REAL_SNAPSHOT, "lxc-snapshot", "-n", name, "-P", str(mixed_lxcpath), *args)
            assert mine == theirs, (name, args)
        subprocess.run([REAL_SNAPSHOT, "-n", name, "-P", str(mixed_lxcpath), "-c", str(note)], check=True,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
        for _ in range(3):
            made = run_tool("lxc-snapshot", "-n", name, "-P", str(mixed_lxcpath), "-c", str(note), "-q")
            assert made.returncode == 0 and made.stdout == b"" and made.stderr == b"", made.stderr
        made = run_tool("lxc-snapshot", "-n", name, "-P", str(mixed_lxcpath))
        assert made.returncode == 0 and made.stdout == b""
        for args in (["-L"], ["-L", "-C"]):
            theirs, mine = both(REAL_SNAPSHOT, "lxc-snapshot", "-n", name, "-P", str(mixed_lxcpath), *args)
            assert mine == theirs, (name, args)
            assert sum(line.startswith(b"snap") for line in mine.splitlines()) == 7, mine
    theirs, mine = both(REAL_SNAPSHOT, "lxc-snapshot", "-n", "x", "-P", str(mixed_lxcpath), "-L")
    assert mine == theirs == b"No snapshots\n"


@pytest.mark.lxc
@pytest.mark.root
@needs_real_lxc
@needs_root
def test_lxc_tools_round_trip_on_real_containers(mixed_lxcpath: Path) -> None:
    """Our lxc-copy, lxc-clone, lxc-snapshot -r and lxc-destroy on containers real LXC made;
    real lxc-ls sees the result."""
    path = str(mixed_lxcpath)
    assert run_tool("lxc-copy", "-n", "real-one", "-N", "copied", "-P", path).returncode == 0
    cloned = run_tool("lxc-clone", "-p", path, "-P", path, "x", "cloned")
    assert cloned.returncode == 0 and cloned.stdout == b"Created container cloned as copy of x\n"
    assert run_tool("lxc-snapshot", "-n", "copied", "-P", path, "-q").returncode == 0
    assert run_tool("lxc-snapshot", "-n", "copied", "-P", path, "-r", "snap0", "restored").returncode == 0
    refused = run_tool("lxc-destroy", "-n", "copied", "-P", path)
    assert refused.returncode == 1 and b"snapshot" in refused.stderr
    assert run_tool("lxc-destroy", "-n", "copied", "-s", "-P", path).returncode == 0
    theirs, mine = both(REAL_LS, "lxc-ls", "-P", path, "-1")
    assert mine == theirs
    assert mine.split() == [b"b", b"bdev-made-container", b"cloned", b"real-one", b"restored", b"x",
                            "zé".encode()]
