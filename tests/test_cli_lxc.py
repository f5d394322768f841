"""The LXC-compatible programs: ``lxc-create``, ``lxc-clone``, ``lxc-copy``, ``lxc-snapshot``,
``lxc-destroy``, ``lxc-ls``.

Parsing is tested in-process with the API's operations recorded instead of run; formats are
tested on their own and, where Debian's real LXC is installed, byte for byte against
``lxc-ls`` and ``lxc-snapshot`` on the same lxcpath.  Containers are only ever made in
temporary lxcpaths (``-P``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bdev.api import Container, SnapshotInfo
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


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[dict[str, Any]]]:
    """Replace a :class:`Container` method by one that records its calls."""

    def install(method: str, result: Callable[[Container], Any] = lambda self: None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def fake(self: Container, *args: Any, **kw: Any) -> Any:
            calls.append({"self": self.name, "home": self.lxcpath, "pos": args, **kw})
            return result(self)

        monkeypatch.setattr(Container, method, fake)
        return calls

    return install  # type: ignore[return-value]


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


# ---------------------------------------------------------------------------- lxc-create


def test_create_requires_a_template(lxcpath: Path) -> None:
    result = invoke(lxc_create.command, "-n", "c1", "-P", str(lxcpath))
    assert result.exit_code == 2
    assert "-t none" in result.stderr
    assert os.listdir(lxcpath) == []


def test_create_maps_lxc_options(lxcpath: Path, recorder: Any, tmp_path: Path) -> None:
    calls = recorder("create")
    extra = tmp_path / "extra.conf"
    extra.write_text("# extra\nlxc.start.auto = 1\nlxc.group = \"web db\"\n\n")
    result = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-B", "best",
                    "--fssize", "500", "--fstype", "xfs", "--zfsroot", "tank/lxc", "-f", str(extra), "--", "-x", "y")
    assert result.exit_code == 0, result.stderr
    (call,) = calls
    assert call["self"] == "c1" and call["home"] == lxcpath
    assert call["pos"] == ("busybox", "best")
    options = call["options"]
    assert options.fssize == 500 * 1024**2  # a bare number is MiB, as in LXC
    assert options.fstype == "xfs" and dict(options.extra) == {"zfsroot": "tank/lxc"}
    assert call["config"] == [("lxc.start.auto", "1"), ("lxc.group", "web db")]
    assert tuple(call["args"]) == ("-x", "y")


def test_create_template_none_and_backend_list(lxcpath: Path, recorder: Any) -> None:
    calls = recorder("create")
    result = invoke(lxc_create.command, "-n", "c1", "-t", "none", "-B", "directory,dir", "-P", str(lxcpath))
    assert result.exit_code == 0, result.stderr
    assert calls[0]["pos"] == (None, ["directory", "dir"])
    result = invoke(lxc_create.command, "-n", "c1", "-t", "none", "-P", str(lxcpath))
    assert result.exit_code == 0, result.stderr
    assert calls[-1]["pos"] == (None, "dir")


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


def test_create_unknown_log_priority_and_logfile(lxcpath: Path, recorder: Any, tmp_path: Path) -> None:
    recorder("create")
    bad = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-l", "LOUD")
    assert bad.exit_code == 2
    assert "log priority" in one_error_line(bad, "lxc-create")
    log = tmp_path / "log"
    good = invoke(lxc_create.command, "-n", "c1", "-t", "busybox", "-P", str(lxcpath), "-l", "DEBUG", "-o", str(log))
    assert good.exit_code == 0, good.stderr
    assert log.exists()


# ---------------------------------------------------------------------------- lxc-clone and lxc-copy


@pytest.mark.parametrize("form", [["a", "b"], ["-o", "a", "-n", "b"], ["-o", "a", "b"], ["b", "-o", "a"]])
def test_clone_argument_forms(lxcpath: Path, recorder: Any, form: list[str]) -> None:
    calls = recorder("clone", lambda self: self)
    result = invoke(lxc_clone.command, "-p", str(lxcpath), *form)
    assert result.exit_code == 0, result.stderr
    (call,) = calls
    assert (call["self"], call["pos"]) == ("a", ("b",))
    assert call["snapshot"] is False and call["lxcpath"] is None
    assert result.stdout == "Created container b as copy of a\n"


def test_clone_snapshot_and_paths(lxcpath: Path, recorder: Any, tmp_path: Path) -> None:
    from types import SimpleNamespace

    snapshotted = SimpleNamespace(outcome=SimpleNamespace(method="snapshot"))
    calls = recorder("clone", lambda self: snapshotted)
    other = tmp_path / "other"
    result = invoke(lxc_clone.command, "-s", "-K", "-M", "-B", "dir", "-L", "2G", "-p", str(lxcpath),
                    "-P", str(other), "a", "b")
    assert result.exit_code == 0, result.stderr
    (call,) = calls
    assert call["lxcpath"] == str(other)  # -P is the new lxcpath for lxc-clone
    assert call["snapshot"] is True and call["keepname"] is True and call["keepmac"] is True
    assert call["backend"] == "dir" and call["options"].fssize == 2 * 1024**3
    assert result.stdout == "Created container b as snapshot of a\n"


def test_clone_needs_two_names(lxcpath: Path) -> None:
    result = invoke(lxc_clone.command, "-p", str(lxcpath), "a")
    assert result.exit_code == 2
    assert "orig and new" in result.stderr


def test_copy_paths_are_reversed(lxcpath: Path, recorder: Any, tmp_path: Path) -> None:
    calls = recorder("clone", lambda self: self)
    other = tmp_path / "other"
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-P", str(lxcpath), "-p", str(other), "-s", "-L", "100")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    (call,) = calls
    assert call["self"] == "a" and call["home"] == lxcpath and call["pos"] == ("b",)
    assert Path(call["lxcpath"]) == other
    assert call["snapshot"] is True and call["options"].fssize == 100 * 1024**2


@pytest.mark.parametrize(("flag", "words"), [("-e", "ephemeral containers"), ("-R", "renaming")])
def test_copy_refuses_what_is_not_supported(lxcpath: Path, flag: str, words: str) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", flag, "-P", str(lxcpath))
    assert result.exit_code == 1
    assert words in one_error_line(result, "lxc-copy").lower()


def test_copy_ephemeral_message_names_the_runtime(lxcpath: Path) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-N", "b", "-e", "-P", str(lxcpath))
    assert "come with the runtime" in result.stderr


def test_copy_needs_a_new_name(lxcpath: Path) -> None:
    result = invoke(lxc_copy.command, "-n", "a", "-P", str(lxcpath))
    assert result.exit_code == 2
    assert "-N NEWNAME" in result.stderr


# ---------------------------------------------------------------------------- lxc-snapshot and lxc-destroy


@pytest.mark.parametrize("form", [["-r", "snap0", "new"], ["-r", "snap0", "-N", "new"], ["new", "-r", "snap0"]])
def test_snapshot_restore_forms(lxcpath: Path, recorder: Any, form: list[str]) -> None:
    calls = recorder("snapshot_restore", lambda self: self)
    result = invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), *form)
    assert result.exit_code == 0, result.stderr
    assert calls[0]["pos"] == ("snap0", "new")


def test_snapshot_restore_in_place(lxcpath: Path, recorder: Any) -> None:
    calls = recorder("snapshot_restore", lambda self: self)
    assert invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), "-r", "snap0").exit_code == 0
    assert calls[0]["pos"] == ("snap0", None)


@pytest.mark.parametrize(
    "args",
    [["-r", "snap0", "a", "b"], ["-r", "snap0", "-N", "a", "b"], ["-L", "-d", "snap0"], ["-N", "x"], ["stray"]],
)
def test_snapshot_usage_errors(lxcpath: Path, recorder: Any, args: list[str]) -> None:
    recorder("snapshot_restore")
    result = invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), *args)
    assert result.exit_code == 2, result.stderr


def test_snapshot_destroy_all_and_one(lxcpath: Path, recorder: Any) -> None:
    everything = recorder("snapshot_destroy_all")
    one = recorder("snapshot_destroy")
    assert invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), "-d", "ALL").exit_code == 0
    assert invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), "-d", "snap3").exit_code == 0
    assert len(everything) == 1 and one[0]["pos"] == ("snap3",)


def test_snapshot_create_with_comment_file(lxcpath: Path, recorder: Any, tmp_path: Path) -> None:
    calls = recorder("snapshot", lambda self: "snap0")
    note = tmp_path / "note"
    note.write_text("why\n")
    result = invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), "-c", str(note))
    assert result.exit_code == 0 and result.stdout == ""
    assert calls[0]["comment_file"] == str(note)
    missing = invoke(lxc_snapshot.command, "-n", "c1", "-P", str(lxcpath), "-c", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "comment file" in one_error_line(missing, "lxc-snapshot").lower()


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


def test_destroy_options(lxcpath: Path, recorder: Any) -> None:
    calls = recorder("destroy")
    assert invoke(lxc_destroy.command, "-n", "c1", "-P", str(lxcpath), "-s", "-f").exit_code == 0
    assert calls[0]["with_snapshots"] is True
    assert invoke(lxc_destroy.command, "-n", "c1", "-P", str(lxcpath)).exit_code == 0
    assert calls[1]["with_snapshots"] is False


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
