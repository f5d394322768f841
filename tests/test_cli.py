"""The ``bdev`` command line: argument parsing, error policy, output formats, plugins.

Most tests drive the click commands in-process (fast) on real busybox containers of the dir
backend and check what they left on disk; a few run the installed ``bdev`` program to prove the
entry point and that no traceback reaches a user.  The only monkeypatching left injects faults
(an unexpected exception, Ctrl-C) to test the error policy.
Containers are only ever made in temporary lxcpaths given with ``-P``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bdev.cli import logsetup
from bdev.cli import options as opts
from bdev.errors import InvalidInput
from bdev.cli.main import cli
from bdev.cli.output import table

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.unprivileged

BAD_NAMES = ["a/b", "..", "-x", "a\nb", "a" * 256]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A tiny rootfs to create containers from (``--source``), no root needed."""
    root = tmp_path / "src"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("src\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"x" * 1000)
    return root


def bdev(lxcpath: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``bdev -P <lxcpath> ARGS`` in-process."""
    return CliRunner().invoke(cli, ["-P", str(lxcpath), *args], env=env)


def one_error_line(result: Result, prog: str = "bdev") -> str:
    """The single line a failure printed on stderr (asserting there is exactly one)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def entries(path: Path) -> list[str]:
    """The names in ``path``, sorted; ``[]`` when it does not exist."""
    return sorted(os.listdir(path)) if path.exists() else []


def config_values(directory: Path, key: str) -> list[str]:
    """The values of ``key`` in container directory ``directory``'s ``config``, read as text."""
    found = []
    for line in (directory / "config").read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#") and name.strip() == key:
            found.append(value.strip())
    return found


# ---------------------------------------------------------------------------- parsing and help


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("create", "clone", "snapshot", "destroy", "ls", "info", "backends", "templates"):
        assert command in result.stdout


def test_snapshot_group_help() -> None:
    result = CliRunner().invoke(cli, ["snapshot", "--help"])
    assert result.exit_code == 0
    for command in ("create", "list", "restore", "destroy"):
        assert command in result.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    assert "Usage:" in result.stdout


def test_version_names_bdev_and_with_v_its_plugins() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(r"bdev \S+\n", result.stdout), result.stdout
    result = CliRunner().invoke(cli, ["-v", "--version"])
    assert result.exit_code == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("bdev ")
    assert any(line.strip().startswith("dir: bdev-dir ") for line in rest), result.stdout


def test_top_help_lists_core_commands_then_the_plugins_ones() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.stderr
    commands, offered = result.stdout.split("Commands:", 1)[1].split("Plugin commands:", 1)
    assert {line.split()[0] for line in commands.splitlines() if line.strip()} == set(cli.commands)
    from bdev.engine.context import default_registry

    assert {line.split()[0] for line in offered.splitlines() if line.strip()} == {
        command.name for command, _plugin in default_registry().commands()}

    listed = CliRunner().invoke(cli, ["backends"]).stdout
    plugin_names = {command.name for command, _plugin in default_registry().commands()}
    assert "start" in plugin_names  # bdev-runtime's, installed with the project
    line = next(line for line in listed.splitlines() if line.startswith("Plugin commands: "))
    assert all(f"{name} (" in line for name in plugin_names), line


def test_missing_argument_is_clicks_usage_error(lxcpath: Path) -> None:
    result = bdev(lxcpath, "create")
    assert result.exit_code == 2
    assert "Usage:" in result.stderr and "Missing argument" in result.stderr


def test_comment_and_comment_file_are_exclusive(lxcpath: Path, tmp_path: Path) -> None:
    note = tmp_path / "note"
    note.write_text("x\n")
    result = bdev(lxcpath, "snapshot", "create", "c1", "-c", "x", "--comment-file", str(note))
    assert result.exit_code == 2
    assert "not both" in result.stderr


@pytest.mark.parametrize("args", [["c1"], ["c1", "snap0", "--all"]])
def test_snapshot_destroy_needs_exactly_one_target(lxcpath: Path, args: list[str]) -> None:
    result = bdev(lxcpath, "snapshot", "destroy", *args)
    assert result.exit_code == 2
    assert "--all" in result.stderr


def test_backend_options_parse() -> None:
    """What ``--fssize``, ``-B`` and the lvm/zfs options mean where the dir backend cannot show
    it: bdev's bare number is bytes (LXC's programs read it as MiB)."""
    assert opts.parse_fssize("1G") == 1024**3
    assert opts.parse_fssize("500") == 500
    assert opts.parse_fssize("1.5M") == int(1.5 * 1024**2)
    assert opts.parse_fssize(None) is None
    assert opts.parse_backend("dir,directory") == ["dir", "directory"]
    assert opts.parse_backend("dir") == "dir"
    extra = {"zfsroot": None, "vgname": "vg0", "lvname": None, "thinpool": None, "dir": None,
             "rbdname": None, "rbdpool": None}
    options = opts.create_options(None, 1024**3, extra)
    assert options.fssize == 1024**3 and options.fstype is None
    assert dict(options.extra) == {"vgname": "vg0"}  # only the options given


def test_create_with_backend_options_and_template_args(lxcpath: Path) -> None:
    """``-B dir,directory`` makes a dir container; ``--fssize`` and ``--vgname`` are accepted
    (dir ignores them); what follows ``--`` reaches the template."""
    busybox = shutil.which("busybox")
    assert busybox is not None, "the busybox template needs busybox on PATH"
    result = bdev(lxcpath, "create", "c1", "-t", "busybox", "-B", "dir,directory", "--fssize", "1G",
                  "--vgname", "vg0", "--", "--busybox-path", busybox)
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["c1"]
    rootfs = lxcpath / "c1" / "rootfs"
    assert config_values(lxcpath / "c1", "lxc.rootfs.path") == [f"dir:{rootfs}"]
    assert (rootfs / "bin" / "busybox").read_bytes() == Path(busybox).read_bytes()
    assert config_values(lxcpath / "c1", "lxc.uts.name") == ["c1"]
    assert (rootfs / "etc" / "hostname").read_text() == "c1\n"


def test_create_bad_template_args_are_one_sentence(lxcpath: Path) -> None:
    result = bdev(lxcpath, "create", "c1", "-t", "busybox", "-B", "dir,directory", "--", "--flag", "value")
    assert result.exit_code != 0
    line = one_error_line(result)
    assert "template 'busybox'" in line and "'--flag'" in line
    assert entries(lxcpath) == []


MAC = "00:16:3e:aa:bb:cc"


@pytest.fixture
def origin(lxcpath: Path) -> Path:
    """Container ``a`` (busybox on dir, one network with a fixed MAC); returns its directory."""
    from bdev.api import Container

    Container("a", lxcpath).create("busybox", "dir", config=[("lxc.net.1.type", "veth"), ("lxc.net.1.hwaddr", MAC)])
    return lxcpath / "a"


def test_clone_allow_copy_means_maybe_snapshot(lxcpath: Path, origin: Path) -> None:
    """``--allow-copy`` asks for a snapshot and settles for a copy: dir has no snapshot."""
    other = lxcpath.parent / "other"
    result = bdev(lxcpath, "clone", "a", "b", "--allow-copy", "-B", "dir", "-K", "-M", "--to-lxcpath", str(other))
    assert result.exit_code == 0, result.stderr
    assert "full copy" in result.stderr
    assert entries(lxcpath) == ["a"] and entries(other) == ["b"]
    clone = other / "b"
    assert config_values(clone, "lxc.rootfs.path") == [f"dir:{clone / 'rootfs'}"]
    assert (clone / "rootfs" / "bin" / "busybox").is_file()
    assert config_values(clone, "lxc.uts.name") == ["a"]  # -K
    assert (clone / "rootfs" / "etc" / "hostname").read_text() == "a\n"
    assert config_values(clone, "lxc.net.1.hwaddr") == [MAC]  # -M


def test_clone_renames_and_gets_new_macs(lxcpath: Path, origin: Path) -> None:
    result = bdev(lxcpath, "clone", "a", "b", "-B", "dir", "--fssize", "2G")
    assert result.exit_code == 0, result.stderr
    assert entries(lxcpath) == ["a", "b"]
    clone = lxcpath / "b"
    assert config_values(clone, "lxc.rootfs.path") == [f"dir:{clone / 'rootfs'}"]
    assert config_values(clone, "lxc.uts.name") == ["b"]
    assert (clone / "rootfs" / "etc" / "hostname").read_text() == "b\n"
    (mac,) = config_values(clone, "lxc.net.1.hwaddr")
    assert mac != MAC and re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac), mac
    assert config_values(origin, "lxc.net.1.hwaddr") == [MAC]
    assert (origin / "rootfs" / "etc" / "hostname").read_text() == "a\n"


def test_clone_snapshot_of_dir_into_dir_is_refused(lxcpath: Path, origin: Path) -> None:
    other = lxcpath.parent / "other"
    for where in ([], ["--to-lxcpath", str(other)]):
        result = bdev(lxcpath, "clone", "-s", "-B", "dir", "a", "b", *where)
        assert result.exit_code == 1
        line = one_error_line(result)
        assert "snapshot" in line and "dir" in line and "'b'" in line
        assert entries(lxcpath) == ["a"] and entries(other) == []


# ---------------------------------------------------------------------------- refusals: one sentence, nothing made


@pytest.mark.parametrize("size", ["garbage", "0", "-5M", "12Q"])
def test_bad_fssize_is_one_sentence_and_creates_nothing(lxcpath: Path, size: str) -> None:
    result = bdev(lxcpath, "create", "c1", "-t", "busybox", "--fssize", size)
    assert result.exit_code != 0
    line = one_error_line(result)
    assert "--fssize" in line and repr(size) in line
    assert entries(lxcpath) == []


def test_unknown_backend_names_it_and_lists_known_ones(lxcpath: Path) -> None:
    result = bdev(lxcpath, "create", "c1", "-t", "busybox", "-B", "bogus")
    assert result.exit_code != 0
    line = one_error_line(result)
    assert "'bogus'" in line and "dir" in line and "known" in line
    assert entries(lxcpath) == []


@pytest.mark.parametrize("name", BAD_NAMES, ids=["slash", "dotdot", "dash", "newline", "256-bytes"])
def test_bad_names_are_one_sentence_and_create_nothing(lxcpath: Path, name: str) -> None:
    result = bdev(lxcpath, "create", "-t", "busybox", "--", name)
    assert result.exit_code != 0
    line = one_error_line(result)
    assert "name" in line.lower()
    assert entries(lxcpath) == []


def test_unknown_container_is_one_sentence(lxcpath: Path) -> None:
    result = bdev(lxcpath, "info", "nope")
    assert result.exit_code == 1
    assert "'nope'" in one_error_line(result)


# ---------------------------------------------------------------------------- the error policy


def test_internal_error_is_one_line_exit_70(lxcpath: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdev.api import Container

    def boom(self: Container) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Container, "snapshot_list", boom)
    monkeypatch.delenv("BDEV_DEBUG", raising=False)
    result = bdev(lxcpath, "snapshot", "list", "c1")
    assert result.exit_code == 70
    assert one_error_line(result) == (
        "bdev: internal error: RuntimeError: boom (set BDEV_DEBUG=1 for a traceback)"
    )
    debug = bdev(lxcpath, "snapshot", "list", "c1", env={"BDEV_DEBUG": "1"})
    assert debug.exit_code == 70
    assert "Traceback" in debug.stderr and "boom" in debug.stderr


def test_interrupt_exits_130(lxcpath: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdev.api import Container

    def interrupted(self: Container) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Container, "snapshot_list", interrupted)
    result = bdev(lxcpath, "snapshot", "list", "c1")
    assert result.exit_code == 130
    assert one_error_line(result) == "bdev: interrupted"


def test_verbose_configures_the_bdev_logger(lxcpath: Path) -> None:
    result = bdev(lxcpath, "ls")
    assert result.exit_code == 0
    result = CliRunner().invoke(cli, ["-v", "-P", str(lxcpath), "ls"])
    assert result.exit_code == 0
    assert logging.getLogger("bdev").level == logging.DEBUG
    logsetup.configure("bdev", None)


def test_lxc_log_levels() -> None:
    assert logsetup.lxc_level("debug") == logging.DEBUG
    assert logsetup.lxc_level("WARN") == logging.WARNING
    assert logsetup.lxc_level("TRACE") == logging.DEBUG
    with pytest.raises(InvalidInput, match="(?i)unknown log priority"):
        logsetup.lxc_level("loud")


# ---------------------------------------------------------------------------- output formats


def test_table_aligns_columns_without_trailing_blanks() -> None:
    text = table(("NAME", "X"), [("a", None), ("longer", "y\nz")])
    assert text.splitlines() == ["NAME    X", "a       -", "longer  y\\nz"]


def test_backends_text_and_json() -> None:
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ALIASES", "USABLE", "PLUGIN"]
    assert "\ndir: " in result.stdout and "  capabilities:   " in result.stdout and "  needs:          mount" in result.stdout
    assert any(row.split()[0] == "dir" for row in rows if row.strip())
    document = json.loads(CliRunner().invoke(cli, ["backends", "--format", "json"]).stdout)
    assert set(document) == {"backends", "plugins", "problems"}
    record = next(b for b in document["backends"] if b["name"] == "dir")
    assert set(record) == {"name", "aliases", "description", "usable", "unavailable_reasons",
                           "capabilities", "unprivileged", "implementation", "requires", "plugin", "distribution",
                           "version"}
    assert record["plugin"] == "dir" and isinstance(record["usable"], bool)
    assert {"kind": "tool", "name": "mount", "met": True}.items() <= record["requires"][0].items()


def test_disabled_plugin_is_absent() -> None:
    result = CliRunner().invoke(cli, ["backends", "--format", "json"], env={"BDEV_DISABLE_PLUGINS": "dir"})
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert "dir" not in [b["name"] for b in document["backends"]]
    assert {"name": "dir", "status": "disabled"}.items() <= next(
        p for p in document["plugins"] if p["name"] == "dir"
    ).items()
    text = CliRunner().invoke(cli, ["backends"], env={"BDEV_DISABLE_PLUGINS": "dir"}).stdout
    assert not any(line.split()[:1] == ["dir"] for line in text.splitlines())


def test_templates_lists_busybox() -> None:
    result = CliRunner().invoke(cli, ["templates", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    names = {t["name"]: t for t in json.loads(result.stdout)["templates"]}
    assert "busybox" in names
    assert set(names["busybox"]) == {"name", "description", "plugin", "usage"}


def test_empty_lxcpath_lists_nothing(lxcpath: Path) -> None:
    assert bdev(lxcpath, "ls").stdout == ""
    assert json.loads(bdev(lxcpath, "ls", "--format", "json").stdout) == {"lxcpath": str(lxcpath), "containers": []}


# ---------------------------------------------------------------------------- end to end (dir backend)


def test_create_snapshot_clone_restore_destroy(lxcpath: Path, source: Path) -> None:
    result = bdev(lxcpath, "create", "c1", "--source", str(source))
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr

    made = bdev(lxcpath, "snapshot", "create", "c1", "-c", "first\nsecond line")
    assert made.exit_code == 0, made.stderr
    assert made.stdout == "snap0\n"
    assert bdev(lxcpath, "-q", "snapshot", "create", "c1").stderr == ""

    listed = bdev(lxcpath, "snapshot", "list", "c1")
    assert listed.exit_code == 0
    header, first, second = listed.stdout.splitlines()
    assert header.split() == ["NAME", "TIMESTAMP", "BACKEND", "COMMENT"]
    assert first.startswith("snap0") and first.endswith("first")
    assert second.startswith("snap1")

    document = json.loads(bdev(lxcpath, "snapshot", "list", "c1", "--format", "json").stdout)
    assert document["container"] == "c1"
    snap0 = document["snapshots"][0]
    assert set(snap0) == {"name", "path", "timestamp", "comment", "rootfs", "backend"}
    assert snap0["comment"].rstrip("\n") == "first\nsecond line" and snap0["backend"] == "dir"

    assert bdev(lxcpath, "clone", "c1", "c2").exit_code == 0
    assert bdev(lxcpath, "snapshot", "restore", "c1", "snap0").exit_code == 0
    assert bdev(lxcpath, "snapshot", "restore", "c1", "snap1", "c3").exit_code == 0

    ls = json.loads(bdev(lxcpath, "ls", "--format", "json").stdout)
    assert [c["name"] for c in ls["containers"]] == ["c1", "c2", "c3"]
    assert set(ls["containers"][0]) == {"name", "state", "backend", "rootfs", "origin", "autostart",
                                        "groups", "unprivileged", "error"}
    text = bdev(lxcpath, "ls").stdout.splitlines()
    assert text[0].split() == ["NAME", "STATE", "BACKEND", "ORIGIN", "ROOTFS"]

    info = json.loads(bdev(lxcpath, "info", "c1", "--format", "json").stdout)
    assert info["backend"] == "dir" and len(info["snapshots"]) == 2
    assert set(info) >= {"name", "lxcpath", "rootfs", "usage", "origin", "dependents", "snapshots"}
    assert "backend:" in bdev(lxcpath, "info", "c1").stdout

    refused = bdev(lxcpath, "destroy", "c1")
    assert refused.exit_code == 1
    assert "snapshot" in one_error_line(refused)
    assert bdev(lxcpath, "snapshot", "destroy", "c1", "snap1").exit_code == 0
    assert bdev(lxcpath, "snapshot", "destroy", "c1", "--all").exit_code == 0
    assert bdev(lxcpath, "destroy", "c1").exit_code == 0
    assert bdev(lxcpath, "destroy", "-s", "c2").exit_code == 0
    assert entries(lxcpath) == ["c3"]


def test_create_twice_is_one_sentence(lxcpath: Path, source: Path) -> None:
    assert bdev(lxcpath, "create", "c1", "--source", str(source)).exit_code == 0
    again = bdev(lxcpath, "create", "c1", "--source", str(source))
    assert again.exit_code == 1
    assert "'c1'" in one_error_line(again)


# ---------------------------------------------------------------------------- the installed program


def run_bdev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bdev"), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=120)


@pytest.mark.parametrize("name", BAD_NAMES, ids=["slash", "dotdot", "dash", "newline", "256-bytes"])
def test_installed_bdev_refuses_bad_names_without_traceback(lxcpath: Path, name: str) -> None:
    proc = run_bdev("-P", str(lxcpath), "create", "-t", "busybox", "--", name)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("bdev: ")
    assert entries(lxcpath) == []


def test_installed_bdev_fssize_garbage(lxcpath: Path) -> None:
    proc = run_bdev("-P", str(lxcpath), "create", "c1", "-t", "busybox", "--fssize", "garbage")
    assert proc.returncode == 2
    assert proc.stderr.startswith("bdev: --fssize 'garbage' is not a size")
    assert "Traceback" not in proc.stderr
    assert entries(lxcpath) == []


def test_broken_plugin_is_reported_by_name(tmp_path: Path) -> None:
    """A plugin whose module cannot be imported shows up in ``bdev backends`` by name while
    the other plugins (dir) still load."""
    site = tmp_path / "site"
    dist = site / "bdevtest_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bdevtest-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bdev.plugins]\nbroken = bdevtest_broken_mod\n")
    (site / "bdevtest_broken_mod.py").write_text('raise ImportError("this plugin is broken on purpose")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    proc = run_bdev("backends", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(line.split()[:1] == ["dir"] for line in proc.stdout.splitlines())
    problems = proc.stdout.split("Plugin problems:", 1)[1]
    assert "broken" in problems and "broken on purpose" in problems
    version = run_bdev("-v", "--version", env=env)
    assert "broken" in version.stdout and "failed" in version.stdout
    document = json.loads(run_bdev("backends", "--format", "json", env=env).stdout)
    assert [p["plugin"] for p in document["problems"]] == ["broken"]


def test_clone_snapshot_of_dir_becomes_a_layer_as_in_lxc(lxcpath: Path, origin: Path) -> None:
    """``-s`` of a dir container without ``-B`` picks a backend that layers over dir (LXC picks
    overlay); the origin is then recorded as depended on."""
    from bdev.engine.context import default_registry

    layered = [e.name for e in default_registry().backend_entries() if e.backend.capabilities.layers_over]
    if not layered:
        pytest.skip("no backend that layers over dir is installed")
    result = bdev(lxcpath, "clone", "-s", "a", "b")
    assert result.exit_code == 0, result.stderr
    (value,) = config_values(lxcpath / "b", "lxc.rootfs.path")
    assert value.split(":", 1)[0] in layered
    assert (lxcpath / "a" / "lxc_snapshots").read_text() == f"{lxcpath}\nb\n"
    refused = bdev(lxcpath, "destroy", "a")
    assert refused.exit_code == 1 and "depend" in one_error_line(refused)


def test_backend_options_reach_the_backend_and_bad_ones_are_refused(lxcpath: Path, tmp_path: Path) -> None:
    """``-O KEY=VALUE`` lands in CreateOptions.extra; dir reads ``dir`` from it."""
    elsewhere = tmp_path / "elsewhere"
    result = bdev(lxcpath, "create", "c1", "-t", "busybox", "-O", f"dir={elsewhere}")
    assert result.exit_code == 0, result.stderr
    assert config_values(lxcpath / "c1", "lxc.rootfs.path") == [f"dir:{elsewhere}"]
    for bad in ("novalue", "=x", "Upper=x", "k="):
        refused = bdev(lxcpath, "create", "c2", "-t", "busybox", "-O", bad)
        assert refused.exit_code == 2 and "KEY=VALUE" in one_error_line(refused)
    assert entries(lxcpath) == ["c1"]
