"""Interoperation with Debian's real LXC 5, proven on real files.

Each test drives the real ``lxc-*`` tools (found at run time on the system path, never the
virtualenv's own ``lxc-*`` scripts) and bdev's Python API on the same scratch lxcpath, and
checks that each uses what the other wrote: containers, snapshots, restores, copies,
dependency files, LXC 1.0 configs and snapshot layout, and a container started for real.

Facts about LXC 5.0.2 these tests rely on were measured on Debian 12 (see the module's
helpers and the reference ``lxc-storage.md``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.engine.context import default_registry
from bdev.errors import Busy, HasDependents, NotFound
from bdev.records import Rootfs
from bdev.store.config import LxcConfig
from bdev.store.layout import DEPENDENTS, ORIGIN, ContainerRef
from bdev.store.lxcpath import lock_dir
from bdev.store.running import is_running
from bdev.testing.trees import describe_tree, tree_differences

SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
"""Where Debian installs LXC; the virtualenv's own ``lxc-*`` scripts must never be picked."""

if shutil.which("lxc-create", path=SYSTEM_PATH) is None:
    pytest.skip(
        "Debian's real LXC is not installed (no lxc-create on the system path): the interop tests need it",
        allow_module_level=True,
    )

pytestmark = [
    pytest.mark.lxc,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="real LXC containers in a private lxcpath need root"),
    pytest.mark.usefixtures("no_leaks", "drop_lxc_locks"),
]

FIXTURES_10 = Path(__file__).parent / "fixtures" / "lxc-1.0"
TS_PATTERN = re.compile(r"^\d{4}:\d\d:\d\d \d\d:\d\d:\d\d$")
SNAP_LINE = re.compile(r"^(snap\d+) \((.*)\) (\d{4}:\d\d:\d\d \d\d:\d\d:\d\d)$")
HOSTNAME_FILES = ("etc/hostname", "etc/hosts")

# The network LXC's busybox template gets from a default config like Debian's, with a MAC
# pattern that lxc-create fills in (so clones can be checked for a new MAC).
VETH_CONF = (
    "lxc.net.0.type = veth\n"
    "lxc.net.0.link = lxcbr0\n"
    "lxc.net.0.flags = up\n"
    "lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\n"
)
# What a busybox container needs to start under LXC 5 on this kind of machine (no lxcbr0).
STARTABLE = [("lxc.net.0.type", "empty"), ("lxc.apparmor.profile", "unconfined")]


# --------------------------------------------------------------------------- real LXC


def system_tool(name: str) -> str:
    """The absolute path of real LXC's ``name``, found at run time on the system path."""
    found = shutil.which(name, path=SYSTEM_PATH)
    if found is None:
        pytest.skip(f"real LXC's {name} is not installed on the system path")
    venv_bin = Path(sys.executable).parent
    assert Path(found).parent != venv_bin, f"{found} is bdev's own script, not real LXC"
    return found


def lxc(tool: str, *args: object, check: bool = True, timeout: float = 180, log: bool = True) -> subprocess.CompletedProcess:
    """Run real LXC's ``tool`` with ``args``.  ``log`` adds ``-l ERROR -o FILE`` (lxc-copy and
    lxc-snapshot print nothing on failure otherwise) and shows that file when ``check`` fails."""
    argv = [system_tool(tool)]
    logfile = None
    if log:
        fd, logfile = tempfile.mkstemp(prefix=f"{tool}-", suffix=".log")
        os.close(fd)
        argv += ["-l", "ERROR", "-o", logfile]
    argv += [str(a) for a in args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            logged = Path(logfile).read_text(errors="replace") if logfile else ""
            pytest.fail(
                f"{' '.join(argv)} exited with {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}\nlog: {logged}"
            )
        return proc
    finally:
        if logfile:
            os.unlink(logfile)


def real_create(lxcpath: Path, name: str, conf_text: str = VETH_CONF) -> Path:
    """``lxc-create -t busybox`` with a private default config (``-f``), so the host's
    ``/etc/lxc/default.conf`` does not change what the test sees."""
    conf = lxcpath.parent / f"{name}.lxc-create.conf"
    conf.write_text(conf_text)
    lxc("lxc-create", "-t", "busybox", "-n", name, "-P", lxcpath, "-f", conf)
    return lxcpath / name


def real_names(lxcpath: Path) -> list[str]:
    return lxc("lxc-ls", "-1", "-P", lxcpath, log=False).stdout.split()


def real_state(lxcpath: Path, name: str) -> str:
    out = lxc("lxc-info", "-s", "-n", name, "-P", lxcpath, log=False).stdout
    match = re.search(r"State:\s+(\S+)", out)
    assert match, f"lxc-info printed no state: {out!r}"
    return match.group(1)


def parse_snapshot_listing(text: str) -> dict[str, tuple[str, str, str]]:
    """``lxc-snapshot -L -C`` output as ``{snapN: (directory, timestamp, comment)}``.  LXC
    prints the snapshots in directory order, each comment (the file, verbatim) after its line."""
    out: dict[str, list[str]] = {}
    current = None
    if text.strip() == "No snapshots":
        return {}
    for line in text.splitlines():
        match = SNAP_LINE.match(line)
        if match:
            current = match.group(1)
            assert current not in out, f"{current} listed twice: {text!r}"
            out[current] = [match.group(2), match.group(3), ""]
        else:
            assert current is not None, f"unexpected line {line!r} in {text!r}"
            out[current][2] += line + "\n"
    return {name: (d, ts, comment) for name, (d, ts, comment) in out.items()}


def parse_ls_fancy(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """``lxc-ls -f`` output as (column names, {name: {column: value}})."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    rows = {}
    for line in lines[1:]:
        values = line.split()
        assert len(values) == len(header), f"row {line!r} does not match the header {header}"
        rows[values[0]] = dict(zip(header, values))
    return header, rows


def abstract_sockets() -> list[str]:
    """The names of the abstract unix sockets in ``/proc/net/unix`` (``@...``)."""
    names = []
    with open("/proc/net/unix") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if len(fields) >= 8 and fields[7].startswith("@"):
                names.append(fields[7])
    return names


def fnv1a_64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def expected_command_socket(lxcpath: Path, name: str) -> str:
    """The abstract command socket LXC 5 binds for a running container (measured): the
    ``@<lxcpath>/<name>/command`` when that text is at most 105 bytes, else
    ``@lxc/<FNV-1a 64 of "<lxcpath>/<name>", 16 hex digits>/command``."""
    plain = f"{lxcpath}/{name}/command"
    if len(plain.encode()) <= 105:
        return "@" + plain
    return f"@lxc/{fnv1a_64(f'{lxcpath}/{name}'.encode()):016x}/command"


def config_of(directory: Path) -> LxcConfig:
    return LxcConfig.load(directory / "config")


def entries_without(config: LxcConfig, *keys: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in config.items() if k not in keys]


def differences_except_hostname(a: Path, b: Path) -> list[str]:
    return [d for d in tree_differences(a, b) if not d.startswith(tuple(f"{f}:" for f in HOSTNAME_FILES))]


def settle(tree: Path) -> None:
    """Wait until the clock has left the second of the newest mtime in ``tree``.

    Real LXC's copies (``lxc-snapshot``, ``lxc-copy``, ``lxc-snapshot -r``: rsync) keep
    modification times, except that an entry whose mtime lies in the very second the copy
    runs gets the copy's time (measured with LXC 5.0.2 here).  Copying a tree made a moment
    ago would then differ from its source for reasons that are not bdev's."""
    newest = max(os.lstat(os.path.join(root, n)).st_mtime for root, dirs, files in os.walk(tree) for n in [".", *dirs, *files])
    while time.time() < int(newest) + 1.02:
        time.sleep(0.05)


def modes(directory: Path) -> dict[str, str]:
    """Octal modes of the snapshot files LXC writes, by relative path (``.`` the snapN dir)."""
    out = {}
    for rel in (".", "config", "ts", "comment", "rootfs", "..", "fstab"):
        path = directory / rel
        if path.exists():
            out[rel] = oct(path.stat().st_mode & 0o7777)
    return out


@pytest.fixture
def drop_lxc_locks(tmp_path: Path) -> Iterator[None]:
    """Real LXC and bdev leave empty lock files under ``<rundir>/lxc/lock/<lxcpath>``; remove
    the ones made for this test's scratch directory (nobody holds them once the test ends)."""
    yield
    shutil.rmtree(lock_dir(tmp_path), ignore_errors=True)


@contextlib.contextmanager
def started(lxcpath: Path, name: str, logfile: Path) -> Iterator[subprocess.CompletedProcess]:
    """``lxc-start -d`` (logging at DEBUG to ``logfile``); always stopped on the way out."""
    proc = subprocess.run(
        [system_tool("lxc-start"), "-d", "-n", name, "-P", str(lxcpath), "-l", "DEBUG", "-o", str(logfile)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if real_state(lxcpath, name) != "STOPPED":
            lxc("lxc-stop", "-k", "-n", name, "-P", lxcpath, check=False)
            lxc("lxc-wait", "-n", name, "-P", lxcpath, "-s", "STOPPED", "-t", "30", check=False)


def log_errors(logfile: Path) -> str:
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    errors = [line for line in lines if " ERROR " in line]
    return "\n".join(errors[-15:] or lines[-15:])


def start_or_explain(lxcpath: Path, name: str, tmp_path: Path, stack: contextlib.ExitStack) -> None:
    """Start ``name`` for real.  If LXC cannot start it, find out whether this machine can
    start any container (a busybox container LXC creates itself, with the same two settings):
    if not, skip naming LXC's errors; if it can, bdev's container is at fault: fail."""
    logfile = tmp_path / f"{name}.start.log"
    proc = stack.enter_context(started(lxcpath, name, logfile))
    if proc.returncode == 0 and lxc("lxc-wait", "-n", name, "-P", lxcpath, "-s", "RUNNING", "-t", "30", check=False).returncode == 0:
        return
    probe_path = tmp_path / "probe-lxc"
    probe_path.mkdir(exist_ok=True)
    real_create(probe_path, "probe", "".join(f"{k} = {v}\n" for k, v in STARTABLE))
    probe_log = tmp_path / "probe.start.log"
    with started(probe_path, "probe", probe_log) as probe:
        probe_ok = probe.returncode == 0 and real_state(probe_path, "probe") in ("RUNNING", "STARTING")
    lxc("lxc-destroy", "-n", "probe", "-P", probe_path, check=False)
    if not probe_ok:
        pytest.skip(f"this machine cannot start LXC containers at all (lxc-start -l DEBUG says:\n{log_errors(probe_log)})")
    pytest.fail(f"real LXC starts its own busybox container but not bdev's {name}:\n{log_errors(logfile)}")


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def backend_known(name: str) -> bool:
    try:
        default_registry().backend(name)
    except NotFound:
        return False
    return True


# --------------------------------------------------------------------------- 1. LXC -> bdev


def test_bdev_uses_containers_made_by_real_lxc(lxcpath: Path) -> None:
    c1_dir = real_create(lxcpath, "c1")
    c2_dir = real_create(lxcpath, "c2")
    original_text = (c1_dir / "config").read_text()
    original = config_of(c1_dir)
    hwaddr = original.get("lxc.net.0.hwaddr")
    assert hwaddr and "x" not in hwaddr.lower(), f"lxc-create did not fill in the MAC pattern: {hwaddr}"

    # Listed and read.
    assert [c.name for c in list_containers(lxcpath)] == ["c1", "c2"]
    c1 = Container("c1", lxcpath)
    assert c1.defined
    assert c1.rootfs == Rootfs("dir", str(lxcpath / "c1" / "rootfs"))
    assert c1.get_config_item("lxc.uts.name") == ["c1"]  # LXC writes it quoted: "c1"
    assert (lxcpath / "c1/rootfs/bin/busybox").is_file()

    # Cloned: new name, rootfs and MAC; every other line of LXC's config as it was.
    web1 = c1.clone("web1")
    assert web1.rootfs == Rootfs("dir", str(lxcpath / "web1" / "rootfs"))
    clone_config = config_of(lxcpath / "web1")
    assert clone_config.get_all("lxc.uts.name") == ["web1"]
    assert clone_config.get_all("lxc.rootfs.path") == [f"dir:{lxcpath}/web1/rootfs"]
    new_mac = clone_config.get_all("lxc.net.0.hwaddr")
    assert len(new_mac) == 1 and new_mac[0].lower() != hwaddr.lower()
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", new_mac[0].lower()), new_mac
    changed_keys = ("lxc.uts.name", "lxc.rootfs.path", "lxc.net.0.hwaddr")
    old_lines, new_lines = original_text.splitlines(), (lxcpath / "web1/config").read_text().splitlines()
    assert len(old_lines) == len(new_lines)
    for old, new in zip(old_lines, new_lines):
        if old != new:
            assert old.split("=")[0].strip() in changed_keys, f"clone changed {old!r} into {new!r}"
    assert (c1_dir / "config").read_text() == original_text, "cloning changed the origin's config"
    assert differences_except_hostname(lxcpath / "c1/rootfs", lxcpath / "web1/rootfs") == []
    assert "web1" in real_names(lxcpath), "real lxc-ls cannot load bdev's clone"

    # Snapshot by bdev (c1) and by real LXC (c2): same files, same modes, same ts format.
    assert c1.snapshot() == "snap0"
    settle(c2_dir / "rootfs")
    lxc("lxc-snapshot", "-n", "c2", "-P", lxcpath)
    ours, theirs = c1_dir / "snaps/snap0", c2_dir / "snaps/snap0"
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs)) == ["config", "rootfs", "ts"]
    assert modes(ours) == modes(theirs)
    assert modes(ours) == {".": "0o770", "config": "0o640", "ts": "0o644", "rootfs": "0o755", "..": "0o755"}
    for snapdir in (ours, theirs):
        raw = (snapdir / "ts").read_bytes()
        assert len(raw) == 19 and TS_PATTERN.match(raw.decode()), raw
    assert tree_differences(c1_dir / "rootfs", ours / "rootfs") == []
    assert tree_differences(c2_dir / "rootfs", theirs / "rootfs") == []
    # Both snapshot configs keep the container's name and MAC and name their own rootfs.
    for snapdir, name, source in ((ours, "c1", original), (theirs, "c2", config_of(c2_dir))):
        snap_config = config_of(snapdir)
        assert snap_config.get("lxc.rootfs.path") == f"dir:{snapdir}/rootfs"
        assert snap_config.uts_name() == name
        assert entries_without(snap_config, "lxc.rootfs.path") == entries_without(source, "lxc.rootfs.path")
    listing = parse_snapshot_listing(lxc("lxc-snapshot", "-L", "-C", "-n", "c1", "-P", lxcpath, log=False).stdout)
    assert listing == {"snap0": (str(c1_dir / "snaps"), (ours / "ts").read_text(), "")}

    # Restore in place: the live tree becomes the snapshot's again.
    (c1_dir / "rootfs/etc/added-later").write_text("changed after the snapshot\n")
    (c1_dir / "rootfs/etc/passwd").write_text("root:x:0:0:changed:/root:/bin/sh\n")
    shutil.rmtree(c1_dir / "rootfs/etc/init.d")
    c1.snapshot_restore("snap0")
    assert tree_differences(c1_dir / "rootfs", ours / "rootfs") == []
    assert config_of(c1_dir).get("lxc.rootfs.path") == f"dir:{c1_dir}/rootfs"
    assert config_of(c1_dir).uts_name() == "c1"
    assert config_of(c1_dir).get("lxc.net.0.hwaddr") == hwaddr

    # Restore to a new name.
    back = c1.snapshot_restore("snap0", "back")
    assert back.rootfs == Rootfs("dir", str(lxcpath / "back/rootfs"))
    assert config_of(lxcpath / "back").uts_name() == "back"
    assert differences_except_hostname(ours / "rootfs", lxcpath / "back/rootfs") == []
    assert sorted(real_names(lxcpath)) == ["back", "c1", "c2", "web1"]

    for name in ("back", "web1"):
        Container(name, lxcpath).destroy()
    c1.destroy(with_snapshots=True)
    lxc("lxc-destroy", "-s", "-n", "c2", "-P", lxcpath)
    assert os.listdir(lxcpath) == []


# --------------------------------------------------------------------------- 2. bdev -> LXC


def test_real_lxc_uses_containers_and_snapshots_made_by_bdev(lxcpath: Path) -> None:
    b1 = Container("b1", lxcpath)
    b1.create("busybox", "dir")
    assert b1.snapshot() == "snap0"
    (lxcpath / "b1/rootfs/etc/motd").write_text("between snapshots\n")
    assert b1.snapshot(comment="before upgrade\nsecond line\n") == "snap1"
    infos = {s.name: s for s in b1.snapshot_list()}

    # lxc-ls: the name, and sane columns.
    assert real_names(lxcpath) == ["b1"]
    header, rows = parse_ls_fancy(lxc("lxc-ls", "-f", "-P", lxcpath, log=False).stdout)
    assert header == ["NAME", "STATE", "AUTOSTART", "GROUPS", "IPV4", "IPV6", "UNPRIVILEGED"]
    assert rows == {"b1": {"NAME": "b1", "STATE": "STOPPED", "AUTOSTART": "0", "GROUPS": "-",
                           "IPV4": "-", "IPV6": "-", "UNPRIVILEGED": "false"}}
    ours_ls = Path(sys.executable).parent / "lxc-ls"
    if ours_ls.exists():  # bdev's LXC-compatible lxc-ls prints the same table
        mine = subprocess.run([str(ours_ls), "-f", "-P", str(lxcpath)], capture_output=True, text=True, timeout=60)
        assert mine.returncode == 0, mine.stderr
        assert mine.stdout == lxc("lxc-ls", "-f", "-P", lxcpath, log=False).stdout

    # lxc-snapshot -L -C: both snapshots, bdev's timestamps, the comment.
    real_listing = lxc("lxc-snapshot", "-L", "-C", "-n", "b1", "-P", lxcpath, log=False).stdout
    snaps_dir = str(lxcpath / "b1" / "snaps")
    assert parse_snapshot_listing(real_listing) == {
        "snap0": (snaps_dir, infos["snap0"].timestamp, ""),
        "snap1": (snaps_dir, infos["snap1"].timestamp, "before upgrade\nsecond line\n"),
    }
    ours_snapshot = Path(sys.executable).parent / "lxc-snapshot"
    if ours_snapshot.exists():
        mine = subprocess.run([str(ours_snapshot), "-L", "-C", "-n", "b1", "-P", str(lxcpath)], capture_output=True, text=True, timeout=60)
        assert mine.returncode == 0, mine.stderr
        assert parse_snapshot_listing(mine.stdout) == parse_snapshot_listing(real_listing)

    # lxc-snapshot -r: one of bdev's snapshots restored by real LXC, usable by bdev.
    settle(lxcpath / "b1")
    lxc("lxc-snapshot", "-r", "snap0", "-N", "restored", "-n", "b1", "-P", lxcpath)
    restored = Container("restored", lxcpath)
    assert restored.rootfs == Rootfs("dir", str(lxcpath / "restored/rootfs"))
    assert config_of(lxcpath / "restored").uts_name() == "restored"
    assert differences_except_hostname(lxcpath / "b1/snaps/snap0/rootfs", lxcpath / "restored/rootfs") == []
    assert not (lxcpath / "restored/rootfs/etc/motd").exists()
    # LXC 5 rewrites /etc/hostname without a newline and leaves /etc/hosts alone.
    assert (lxcpath / "restored/rootfs/etc/hostname").read_text() == "restored"

    # lxc-copy: a bdev container cloned by real LXC.
    settle(lxcpath / "b1/rootfs")
    lxc("lxc-copy", "-n", "b1", "-N", "copy", "-P", lxcpath)
    copy = Container("copy", lxcpath)
    assert copy.rootfs == Rootfs("dir", str(lxcpath / "copy/rootfs"))
    assert config_of(lxcpath / "copy").uts_name() == "copy"
    assert differences_except_hostname(lxcpath / "b1/rootfs", lxcpath / "copy/rootfs") == []
    assert (lxcpath / "copy/rootfs/etc/hostname").read_text().strip() == "copy"
    assert [c.name for c in list_containers(lxcpath)] == ["b1", "copy", "restored"]

    # lxc-destroy -s: a bdev container and its snapshots destroyed by real LXC.
    lxc("lxc-destroy", "-s", "-n", "b1", "-P", lxcpath)
    assert not (lxcpath / "b1").exists()
    assert [c.name for c in list_containers(lxcpath)] == ["copy", "restored"]

    # And bdev destroys what real LXC made.
    copy.destroy()
    restored.destroy()
    assert os.listdir(lxcpath) == [] and real_names(lxcpath) == []


def test_a_comment_without_newline_stays_on_its_own_line_for_real_lxc(lxcpath: Path) -> None:
    b1 = Container("b1", lxcpath)
    b1.create("busybox", "dir")
    b1.snapshot(comment="before upgrade")
    b1.snapshot()
    assert (lxcpath / "b1/snaps/snap0/comment").read_text().endswith("\n")
    listing = parse_snapshot_listing(lxc("lxc-snapshot", "-L", "-C", "-n", "b1", "-P", lxcpath, log=False).stdout)
    assert sorted(listing) == ["snap0", "snap1"] and listing["snap0"][2] == "before upgrade\n"


# --------------------------------------------------------------------------- 3. started for real


def test_a_bdev_container_runs_under_real_lxc_and_bdev_refuses_to_touch_it(lxcpath: Path, tmp_path: Path) -> None:
    r1 = Container("r1", lxcpath)
    r1.create("busybox", "dir", config=STARTABLE)
    config = config_of(lxcpath / "r1")
    assert config.get("lxc.net.0.type") == "empty" and config.get("lxc.apparmor.profile") == "unconfined"
    with contextlib.ExitStack() as stack:
        start_or_explain(lxcpath, "r1", tmp_path, stack)
        assert real_state(lxcpath, "r1") == "RUNNING"
        attached = lxc("lxc-attach", "-n", "r1", "-P", lxcpath, "--", "/bin/hostname", log=False)
        assert attached.stdout.strip() == "r1"

        # How bdev knows: LXC 5's abstract command socket.
        if expected_command_socket(lxcpath, "r1") != f"@{lxcpath}/r1/command":
            pytest.skip(f"the scratch lxcpath {lxcpath} is too long for LXC's plain socket name (see the long-lxcpath tests)")
        assert expected_command_socket(lxcpath, "r1") in abstract_sockets()
        assert is_running(ContainerRef(lxcpath, "r1"))

        before = (lxcpath / "r1/config").read_bytes(), sorted(os.listdir(lxcpath / "r1"))
        with pytest.raises(Busy, match="is running"):
            r1.destroy()
        with pytest.raises(Busy, match="is running"):
            r1.destroy(with_snapshots=True)
        with pytest.raises(Busy, match="is running"):
            r1.clone("web1")
        assert ((lxcpath / "r1/config").read_bytes(), sorted(os.listdir(lxcpath / "r1"))) == before
        assert sorted(os.listdir(lxcpath)) == ["r1"] and real_state(lxcpath, "r1") == "RUNNING"
        # A snapshot is refused too (it may leave an empty snaps/ behind, as real lxc-snapshot
        # of a running container does).
        with pytest.raises(Busy, match="is running"):
            r1.snapshot()
        assert r1.snapshot_list() == []

        lxc("lxc-stop", "-k", "-n", "r1", "-P", lxcpath)
        lxc("lxc-wait", "-n", "r1", "-P", lxcpath, "-s", "STOPPED", "-t", "30")
    assert real_state(lxcpath, "r1") == "STOPPED"
    assert wait_until(lambda: expected_command_socket(lxcpath, "r1") not in abstract_sockets())
    assert not is_running(ContainerRef(lxcpath, "r1"))
    r1.destroy()
    assert os.listdir(lxcpath) == [] and real_names(lxcpath) == []


def long_lxcpath(tmp_path: Path, name: str) -> Path:
    """An lxcpath long enough that ``<lxcpath>/<name>/command`` exceeds 105 bytes."""
    base = tmp_path / "long"
    pad = 106 - len(f"{base}/{name}/command".encode()) + 8
    path = base / ("p" * max(pad, 1))
    path.mkdir(parents=True)
    assert len(f"{path}/{name}/command".encode()) > 105
    return path


def test_real_lxc_hashes_the_command_socket_of_a_long_lxcpath(tmp_path: Path) -> None:
    """The fact bdev must follow: past 105 bytes LXC 5 names the socket by a hash."""
    lxcpath = long_lxcpath(tmp_path, "r1")
    Container("r1", lxcpath).create("busybox", "dir", config=STARTABLE)
    with contextlib.ExitStack() as stack:
        start_or_explain(lxcpath, "r1", tmp_path, stack)
        expected = expected_command_socket(lxcpath, "r1")
        assert expected.startswith("@lxc/") and expected.endswith("/command")
        sockets = abstract_sockets()
        assert expected in sockets
        assert f"@{lxcpath}/r1/command" not in sockets
    Container("r1", lxcpath).destroy()


def test_bdev_sees_a_running_container_with_a_long_lxcpath(tmp_path: Path) -> None:
    lxcpath = long_lxcpath(tmp_path, "r1")
    r1 = Container("r1", lxcpath)
    r1.create("busybox", "dir", config=STARTABLE)
    with contextlib.ExitStack() as stack:
        start_or_explain(lxcpath, "r1", tmp_path, stack)
        assert expected_command_socket(lxcpath, "r1") in abstract_sockets()
        try:
            assert is_running(ContainerRef(lxcpath, "r1"))
            with pytest.raises(Busy, match="is running"):
                r1.clone("web1")
        finally:
            if (lxcpath / "web1").exists():
                Container("web1", lxcpath).destroy()
    r1.destroy()


# --------------------------------------------------------------------------- 4. LXC 1.0


def install_10(lxcpath: Path, fixture: str) -> Path:
    """Install ``tests/fixtures/lxc-1.0/<fixture>.config`` as a container of ``lxcpath``,
    its ``/var/lib/lxc`` paths pointed at ``lxcpath``, with the storage its rootfs names."""
    name = fixture
    text = (FIXTURES_10 / f"{fixture}.config").read_text().replace("/var/lib/lxc", str(lxcpath))
    directory = lxcpath / name
    directory.mkdir()
    (directory / "config").write_text(text)
    value, _ = LxcConfig.parse(text).rootfs_value()
    for part in value.split(":"):
        if part.startswith(str(lxcpath)):
            path = Path(part)
            if path.name == "rootdev":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
    return directory


EXPECTED_10 = {
    "c1": ("dir", "{P}/c1/rootfs"),
    "c2": ("overlay", "{P}/c1/rootfs:{P}/c2/delta0"),
    "c3": ("loop", "{P}/c3/rootdev"),
}


@pytest.mark.parametrize("fixture", sorted(EXPECTED_10))
def test_bdev_reads_lxc_10_configs(lxcpath: Path, fixture: str) -> None:
    install_10(lxcpath, fixture)
    assert [c.name for c in list_containers(lxcpath)] == [fixture]
    container = Container(fixture, lxcpath)
    assert container.defined
    assert config_of(lxcpath / fixture).uts_name() == fixture
    assert container.get_config_item("lxc.utsname") == [fixture]
    backend, source = EXPECTED_10[fixture]
    if not backend_known(backend):
        pytest.skip(f"no {backend} backend plugin is installed, so bdev cannot interpret {backend} rootfs values yet")
    assert container.rootfs == Rootfs(backend, source.format(P=lxcpath))


def test_a_clone_of_an_lxc_10_container_writes_current_keys(lxcpath: Path) -> None:
    directory = install_10(lxcpath, "c1")
    (directory / "rootfs/etc").mkdir()
    (directory / "rootfs/etc/hostname").write_text("c1\n")
    (directory / "rootfs/etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 c1\n")
    original = (directory / "config").read_text()
    Container("c1", lxcpath).clone("web1")
    config = config_of(lxcpath / "web1")
    keys = config.keys()
    assert "lxc.rootfs" not in keys and "lxc.utsname" not in keys
    assert config.get_all("lxc.rootfs.path") == [f"dir:{lxcpath}/web1/rootfs"]
    assert config.get_all("lxc.uts.name") == ["web1"]
    assert config.get("lxc.network.hwaddr") != "00:16:3e:2b:7c:01"
    assert (lxcpath / "web1/rootfs/etc/hostname").read_text() == "web1\n"
    assert (lxcpath / "web1/rootfs/etc/hosts").read_text() == "127.0.0.1 localhost\n127.0.1.1 web1\n"
    assert (directory / "config").read_text() == original
    assert Container("web1", lxcpath).rootfs == Rootfs("dir", str(lxcpath / "web1/rootfs"))


def make_10_snapshot(lxcpath: Path, name: str, snap: str, content: str) -> Path:
    """An LXC 1.0 snapshot ``<lxcpath>snaps/<name>/<snap>`` with legacy keys."""
    snapdir = Path(f"{lxcpath}snaps") / name / snap
    (snapdir / "rootfs/etc").mkdir(parents=True)
    (snapdir / "rootfs/etc/version").write_text(content)
    (snapdir / "config").write_text(
        f"lxc.rootfs = {snapdir}/rootfs\nlxc.utsname = {name}\nlxc.arch = amd64\n"
    )
    (snapdir / "ts").write_text("2014:04:17 10:20:30")
    return snapdir


def test_lxc_10_snapshot_layout(lxcpath: Path) -> None:
    assert lxcpath.name == "lxc"
    directory = install_10(lxcpath, "c1")
    (directory / "rootfs/etc").mkdir()
    (directory / "rootfs/etc/version").write_text("live\n")
    snapdir = make_10_snapshot(lxcpath, "c1", "snap0", "in snap0\n")
    assert snapdir.parent.parent == lxcpath.parent / "lxcsnaps"

    c1 = Container("c1", lxcpath)
    [info] = c1.snapshot_list()
    assert (info.name, info.lxcpath, info.timestamp) == ("snap0", snapdir.parent, "2014:04:17 10:20:30")
    assert info.rootfs == Rootfs("dir", str(snapdir / "rootfs"))

    c1.snapshot_restore("snap0")
    assert (directory / "rootfs/etc/version").read_text() == "in snap0\n"
    assert tree_differences(snapdir / "rootfs", directory / "rootfs") == []
    config = config_of(directory)
    assert config.get_all("lxc.rootfs.path") == [f"dir:{directory}/rootfs"] and "lxc.rootfs" not in config
    assert config.uts_name() == "c1"

    c1.snapshot_restore("snap0", "back")
    assert (lxcpath / "back/rootfs/etc/version").read_text() == "in snap0\n"

    # New snapshots go where LXC 1.0 put them, as current LXC does when that directory exists.
    assert c1.snapshot() == "snap1"
    assert (snapdir.parent / "snap1/config").is_file() and not (directory / "snaps").exists()
    assert [s.name for s in c1.snapshot_list()] == ["snap0", "snap1"]
    assert config_of(snapdir.parent / "snap1").get("lxc.rootfs.path") == f"dir:{snapdir.parent}/snap1/rootfs"

    c1.destroy(with_snapshots=True)
    Container("back", lxcpath).destroy()
    assert not (lxcpath / "c1").exists() and not snapdir.parent.exists()


def test_real_lxc_and_bdev_share_the_lxc_10_snapshot_directory(lxcpath: Path) -> None:
    """With ``<lxcpath>snaps/<name>`` present, real LXC and bdev list and add snapshots there."""
    real_create(lxcpath, "c1")
    legacy = Path(f"{lxcpath}snaps") / "c1"
    legacy.mkdir(parents=True)
    lxc("lxc-snapshot", "-n", "c1", "-P", lxcpath)
    assert (legacy / "snap0/config").is_file() and not (lxcpath / "c1/snaps").exists()
    c1 = Container("c1", lxcpath)
    assert [s.name for s in c1.snapshot_list()] == ["snap0"]
    assert c1.snapshot() == "snap1"
    assert (legacy / "snap1/config").is_file()
    listing = parse_snapshot_listing(lxc("lxc-snapshot", "-L", "-n", "c1", "-P", lxcpath, log=False).stdout)
    assert {n: d for n, (d, _ts, _c) in listing.items()} == {"snap0": str(legacy), "snap1": str(legacy)}
    # Real lxc-destroy -s fails here ("Container c1 has snapshots;  not removing", keeping
    # them all): LXC 5 cannot destroy snapshots kept in the LXC 1.0 place.  bdev can.
    c1.destroy(with_snapshots=True)
    assert not (lxcpath / "c1").exists() and list(legacy.parent.iterdir()) == []
    assert real_names(lxcpath) == []


def test_bdev_follows_lxc_once_the_lxc_10_snapshot_root_exists(lxcpath: Path) -> None:
    real_create(lxcpath, "c1")
    Path(f"{lxcpath}snaps").mkdir()
    c1 = Container("c1", lxcpath)
    assert c1.snapshot() == "snap0"
    listing = parse_snapshot_listing(lxc("lxc-snapshot", "-L", "-n", "c1", "-P", lxcpath, log=False).stdout)
    try:
        assert sorted(listing) == ["snap0"], "real lxc-snapshot -L does not see bdev's snapshot"
        assert (Path(f"{lxcpath}snaps") / "c1/snap0/config").is_file()
    finally:
        c1.destroy(with_snapshots=True)


# --------------------------------------------------------------------------- 5. dependency files


def test_dependency_files_as_real_lxc_writes_them(lxcpath: Path) -> None:
    real_create(lxcpath, "base")
    base = Container("base", lxcpath)
    assert base.snapshot() == "snap0"
    (lxcpath / "base/rootfs/etc/after-snapshot").write_text("live\n")
    # A real overlay snapshot clone: LXC writes both dependency files.
    lxc("lxc-copy", "-s", "-n", "base", "-N", "ov", "-P", lxcpath)
    lxc_format = f"{lxcpath}\nov\n"
    assert (lxcpath / "base" / DEPENDENTS).read_text() == lxc_format
    assert (lxcpath / "ov" / ORIGIN).read_text() == f"{lxcpath}\nbase\n"
    assert [(str(c.lxcpath), c.name) for c in base.dependents()] == [(str(lxcpath), "ov")]
    origin = Container("ov", lxcpath).origin()
    assert origin is not None and (origin.lxcpath, origin.name) == (lxcpath, "base")

    before = describe_tree(lxcpath / "base")
    with pytest.raises(HasDependents, match="snap0"):
        base.destroy()
    with pytest.raises(HasDependents, match="ov"):
        base.destroy(with_snapshots=True)
    with pytest.raises(HasDependents, match="ov"):
        base.snapshot_restore("snap0")
    assert describe_tree(lxcpath / "base") == before, "a refused operation changed the origin"

    # Real LXC removes its clone's entry (and the emptied file) when it destroys the clone.
    lxc("lxc-destroy", "-n", "ov", "-P", lxcpath)
    assert not (lxcpath / "base" / DEPENDENTS).exists()
    assert base.dependents() == []

    # A clone made by bdev with the same files, in LXC's exact format, destroyed by bdev.
    base.clone("web1")
    (lxcpath / "base" / DEPENDENTS).write_text(f"{lxcpath}\nweb1\n")
    (lxcpath / "web1" / ORIGIN).write_text(f"{lxcpath}\nbase\n")
    with pytest.raises(HasDependents, match="web1"):
        base.destroy(with_snapshots=True)
    assert (lxcpath / "base").exists()
    Container("web1", lxcpath).destroy()
    assert not (lxcpath / "base" / DEPENDENTS).exists(), "destroying the clone left it listed in lxc_snapshots"
    base.destroy(with_snapshots=True)
    assert os.listdir(lxcpath) == []


@pytest.mark.parametrize("count", ["1\n", "2"])
def test_lxc_10_dependent_count_blocks_destroy_and_restore(lxcpath: Path, count: str) -> None:
    base = Container("base", lxcpath)
    base.create("busybox", "dir")
    base.snapshot()
    (lxcpath / "base" / DEPENDENTS).write_text(count)
    before = describe_tree(lxcpath / "base")
    with pytest.raises(HasDependents):
        base.destroy(with_snapshots=True)
    with pytest.raises(HasDependents):
        base.snapshot_restore("snap0")
    assert describe_tree(lxcpath / "base") == before
    # Real LXC 5 refuses too: it refuses whenever the file exists, whatever it holds.
    base.snapshot_destroy("snap0")
    result = lxc("lxc-destroy", "-n", "base", "-P", lxcpath, check=False, log=False)
    assert result.returncode != 0 and "base has clones" in result.stderr
    assert base.defined
    (lxcpath / "base" / DEPENDENTS).unlink()
    base.destroy()
    assert os.listdir(lxcpath) == []


# --------------------------------------------------------------------------- files beside the config


@pytest.mark.parametrize("fstab_key", ["lxc.mount.fstab", "lxc.mount"])
def test_files_in_the_container_directory_follow_a_clone(lxcpath: Path, fstab_key: str) -> None:
    directory = lxcpath / "c1"
    (directory / "rootfs").mkdir(parents=True)
    (directory / "fstab").write_text("proc proc proc defaults 0 0\n")
    (directory / "hook.sh").write_text("#!/bin/sh\nexit 0\n")
    (directory / "hook.sh").chmod(0o755)
    (directory / "config").write_text(
        f"lxc.rootfs.path = dir:{directory}/rootfs\nlxc.uts.name = c1\n"
        f"{fstab_key} = {directory}/fstab\nlxc.hook.pre-start = {directory}/hook.sh\n"
    )
    c1 = Container("c1", lxcpath)
    c1.clone("web1")
    c1.snapshot()
    for new in (lxcpath / "web1", directory / "snaps/snap0"):
        config = config_of(new)
        fstab = config.get("lxc.mount.fstab") or config.get("lxc.mount")
        assert fstab == f"{new}/fstab"
        assert (new / "fstab").read_text() == "proc proc proc defaults 0 0\n"
        assert config.get("lxc.hook.pre-start") == f"{new}/hook.sh"
        assert os.access(new / "hook.sh", os.X_OK)
