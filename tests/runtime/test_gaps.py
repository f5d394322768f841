"""The runtime seen from the core and from LXC's commands: live states, init pids and
addresses in ``bdev info``, ``lxc-ls -f`` and ``lxc-info`` (for bdev's runtime and real LXC);
``lxc-destroy -f``; same-named containers of two lxcpaths running at once in their own
cgroups; ``lxc-attach`` on a terminal, as another user, with its environment options."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import Busy, NotFound
from bdev.store.running import is_running
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions
from bdev_runtime.cgroups import container_cgroup
from bdev_runtime.cgroups.claim import claim_path, read_claim
from bdev_runtime.spec import load_config
from bdev_runtime.state import State, read_record

from runtime_helpers import Runtime, processes_in_container_dir, wait_until
from test_runtime_cli import VENV_BIN, real, real_start

pytestmark = [pytest.mark.root]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def ours(prog: str, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run bdev's own ``prog`` (the virtualenv's script), standard input not a terminal."""
    return subprocess.run([str(VENV_BIN / prog), *map(str, args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env)


def payload_cgroups(name: str) -> list[str]:
    """Every cgroup directory named ``lxc.payload.<name>`` or ``lxc.payload.<name>-N``."""
    found = [*CGROUP_ROOT.glob(f"**/lxc.payload.{name}"), *CGROUP_ROOT.glob(f"**/lxc.payload.{name}-[0-9]*")]
    return sorted(str(p) for p in found)


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended meanwhile
        return b""


def add_addresses(rt: Runtime, name: str) -> None:
    """Give the container an IPv4 and an IPv6 address (on its own loopback device: the test
    stays inside the namespaces the container made)."""
    status = lifecycle.attach(rt.ctx, rt.ref(name), ["/bin/sh", "-c",
                                                     "ip addr add 192.0.2.7/32 dev lo && "
                                                     "ip -6 addr add 2001:db8::7/128 dev lo"],
                              AttachOptions(clear_env=True, pty=False))
    assert status == 0


# ---------------------------------------------------------------------------- states


def test_info_ls_and_lxc_info_show_the_live_state_pid_and_addresses(runtime: Runtime) -> None:
    # A halt signal busybox's init ignores keeps the container in STOPPING until it is killed.
    ref = runtime.create("c1", config=[("lxc.signal.halt", "SIGURG")])
    lp = runtime.lxcpath
    container = Container("c1", lp)
    assert (container.state, container.init_pid, container.get_ips()) == ("STOPPED", -1, ())
    lifecycle.start(runtime.ctx, ref)
    add_addresses(runtime, "c1")
    pid = lifecycle.info(runtime.ctx, ref).init_pid
    assert pid and container.state == "RUNNING" and container.init_pid == pid
    assert container.get_ips() == ("192.0.2.7", "2001:db8::7")
    assert container.get_ips("inet6") == ("2001:db8::7",)

    document = json.loads(ours("bdev", "-P", lp, "info", "c1", "--format", "json").stdout)
    assert (document["state"], document["init_pid"], document["ips"]) == ("RUNNING", pid, ["192.0.2.7", "2001:db8::7"])
    text = ours("bdev", "-P", lp, "info", "c1").stdout
    assert f"pid:        {pid}\n" in text and "ips:        192.0.2.7, 2001:db8::7\n" in text
    listed = ours("lxc-ls", "-P", lp, "-F", "NAME,STATE,PID,IPV4,IPV6")
    assert listed.stdout.splitlines()[1].split() == ["c1", "RUNNING", str(pid), "192.0.2.7", "2001:db8::7"]
    shown = ours("lxc-info", "-n", "c1", "-P", lp).stdout.splitlines()
    assert shown[:5] == ["Name:           c1", "State:          RUNNING", f"PID:            {pid}",
                         "IP:             192.0.2.7", "IP:             2001:db8::7"]
    assert [line.split(":")[0] for line in shown[5:]] == ["CPU use", "BlkIO use", "Memory use", "KMem use"], shown
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-i").stdout.count("IP:") == 2

    lifecycle.stop(runtime.ctx, ref, timeout=60, wait=False)
    assert wait_until(lambda: container.state == "STOPPING", 10)
    assert ours("lxc-ls", "-P", lp, "-F", "NAME,STATE").stdout.splitlines()[1].split() == ["c1", "STOPPING"]
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-s").stdout == "State:          STOPPING\n"
    assert ours("lxc-ls", "-P", lp, "--running").stdout.split() == ["c1"]  # as LXC: anything not STOPPED
    assert ours("lxc-ls", "-P", lp, "--stopped").stdout.split() == []
    lifecycle.stop(runtime.ctx, ref, kill=True)
    assert (container.state, container.init_pid) == ("STOPPED", -1)
    stopped = ours("lxc-ls", "-P", lp, "-F", "NAME,STATE,PID,IPV4").stdout.splitlines()[1]
    assert stopped.split() == ["c1", "STOPPED", "-", "-"]


def test_lxc_info_stats_show_the_cgroup_and_each_host_link_as_lxc_prints_them(runtime: Runtime) -> None:
    """``lxc-info -S``: CPU, block I/O, memory and kernel memory from the container's cgroup,
    then each veth's host end (the generated one, then one ``veth.pair`` names) with the bytes
    it carried, humanized as LXC writes them, or raw with ``-H``."""
    ref = runtime.create("c1", config=[("lxc.net.0.type", "veth"), ("lxc.net.0.flags", "up"),
                                       ("lxc.net.1.type", "veth"), ("lxc.net.1.veth.pair", "bdevstat1")])
    lp = runtime.lxcpath
    lifecycle.start(runtime.ctx, ref)
    shown = ours("lxc-info", "-n", "c1", "-P", lp, "-S").stdout.splitlines()
    labels = [line.split(":")[0] for line in shown]
    assert labels == ["CPU use", "BlkIO use", "Memory use", "KMem use",
                      "Link", " TX bytes", " RX bytes", " Total bytes", "Link", " TX bytes", " RX bytes", " Total bytes"], shown
    links = [line.split()[-1] for line in shown if line.startswith("Link:")]
    assert links[1] == "bdevstat1" and Path("/sys/class/net", links[0]).is_dir(), links
    assert shown[0].endswith(" seconds") and re.fullmatch(r"Memory use: +\d+\.\d\d (KiB|MiB|GiB)", shown[2]), shown
    raw = ours("lxc-info", "-n", "c1", "-P", lp, "-S", "-H").stdout.splitlines()
    values = {line.split(":")[0]: line.split()[-1] for line in raw if not line.startswith("Link:")}
    assert all(value.isdigit() for value in values.values()) and int(values["Memory use"]) > 0, raw
    lifecycle.stop(runtime.ctx, ref, kill=True)
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-S").stdout == ""  # as LXC: stats only while it runs


@pytest.mark.parametrize("size, shown", [(0, "0 bytes"), (1024, "1024 bytes"), (1208, "1.18 KiB"),
                                         (675840, "660.00 KiB"), (8577024, "8.18 MiB"), (3 << 30, "3.00 GiB")])
def test_sizes_are_humanized_as_lxc_info_writes_them(size: int, shown: str) -> None:
    from bdev_runtime.usage import humanized

    assert humanized(size) == shown


def test_without_the_runtime_the_core_sees_running_or_stopped_and_refuses_to_force(runtime: Runtime) -> None:
    ref = runtime.create("c1")
    lifecycle.start(runtime.ctx, ref)
    script = f"""
import sys
sys.modules["bdev_runtime"] = None  # as if bdev-runtime were not installed
from bdev.api import Container
from bdev.errors import BdevError
c = Container("c1", {str(runtime.lxcpath)!r})
print(c.state, c.init_pid, c.get_ips())
for action in (lambda: c.destroy(force=True), c.stop):
    try:
        action()
    except BdevError as exc:
        print(exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == [
        "RUNNING -1 ()",
        "container 'c1': is running and bdev-runtime, which stops containers, is not installed: stop it with "
        "lxc-stop first.",
        "container 'c1': stopping a container needs bdev-runtime, which is not installed.",
    ]
    assert is_running(ref)


def test_the_python_api_starts_stops_and_attaches_as_python3_lxc_names_them(runtime: Runtime,
                                                                            capfd: pytest.CaptureFixture[str]) -> None:
    runtime.create("c1")
    container = Container("c1", runtime.lxcpath)
    container.start(cmd=["/sbin/init"])
    assert container.state == "RUNNING" and container.running and container.init_pid > 0
    with pytest.raises(Busy, match="already running"):
        container.start()
    capfd.readouterr()
    assert container.attach_wait(["/bin/sh", "-c", "echo $container-$(hostname); exit 3"]) == 3
    assert capfd.readouterr().out == "lxc-c1\n"
    assert container.wait("RUNNING", 0) and not container.wait("STOPPED", 0.2)
    container.stop()
    assert (container.state, container.running, container.init_pid) == ("STOPPED", False, -1)
    assert container.wait("stopped", 1)
    with pytest.raises(lifecycle.NotRunning, match="is not running"):
        container.stop()
    with pytest.raises(lifecycle.NotRunning, match="is not running"):
        container.attach_wait(["true"])
    with pytest.raises(NotFound, match="no such container"):
        Container("nope", runtime.lxcpath).stop()


@pytest.mark.lxc
def test_a_container_real_lxc_runs_shows_its_state_pid_and_addresses_and_destroy_f_stops_it(runtime: Runtime) -> None:
    runtime.create("r1", config=[("lxc.apparmor.profile", "unconfined")])
    lp = runtime.lxcpath
    try:
        real_pid = real_start(lp, "r1")
        added = real("lxc-attach", "-n", "r1", "-P", lp, "--", "/bin/sh", "-c", "ip addr add 192.0.2.9/32 dev lo")
        assert added.returncode == 0, added.stderr
        container = Container("r1", lp)
        assert (container.state, container.init_pid, container.get_ips()) == ("RUNNING", real_pid, ("192.0.2.9",))
        shown = ours("lxc-info", "-n", "r1", "-P", lp).stdout.splitlines()
        assert shown[:4] == [
            "Name:           r1", "State:          RUNNING", f"PID:            {real_pid}", "IP:             192.0.2.9"]
        theirs = real("lxc-info", "-n", "r1", "-P", lp).stdout.splitlines()
        assert [line.split(":")[0] for line in shown if not line.startswith("IP:")] == [  # real lxc-info's lines
            line.split(":")[0] for line in theirs if not line.startswith("IP:")], (shown, theirs)
        assert ours("lxc-ls", "-P", lp, "-F", "NAME,STATE,PID,IPV4").stdout.splitlines()[1].split() == [
            "r1", "RUNNING", str(real_pid), "192.0.2.9"]
        refused = ours("lxc-destroy", "-n", "r1", "-P", lp)
        assert refused.returncode != 0
        assert refused.stderr == ("lxc-destroy: container 'r1': is running; stop it first (or destroy it with "
                                  "-f / --force).\n")
        destroyed = ours("lxc-destroy", "-n", "r1", "-P", lp, "-f")
        assert destroyed.returncode == 0, destroyed.stderr
        assert not is_running(runtime.ref("r1")) and not (lp / "r1").exists()
        assert not Path(f"/proc/{real_pid}").exists() or wait_until(lambda: not Path(f"/proc/{real_pid}").exists())
    finally:
        real("lxc-stop", "-k", "-n", "r1", "-P", lp)


# ---------------------------------------------------------------------------- destroy -f


def test_destroy_refuses_a_running_container_and_force_stops_it_first(runtime: Runtime) -> None:
    lp = runtime.lxcpath
    for name in ("d1", "d2", "d3"):
        lifecycle.start(runtime.ctx, runtime.create(name))
    refused = ours("bdev", "-P", lp, "destroy", "d1")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == ["bdev: container 'd1': is running; stop it first (or destroy it "
                                                   "with -f / --force)."]
    assert is_running(runtime.ref("d1"))
    with pytest.raises(Busy, match="is running"):
        Container("d2", lp).destroy()
    forced = ours("bdev", "-P", lp, "destroy", "--force", "d1")
    assert forced.returncode == 0, forced.stderr
    Container("d2", lp).destroy(force=True)
    lxc_forced = ours("lxc-destroy", "-n", "d3", "-P", lp, "-f")
    assert lxc_forced.returncode == 0, lxc_forced.stderr
    for name in ("d1", "d2", "d3"):
        ref = runtime.ref(name)
        assert not is_running(ref) and read_record(ref) is None and not ref.directory.exists()
        assert payload_cgroups(name) == []


def test_destroy_force_of_an_ephemeral_container_leaves_nothing(runtime: Runtime) -> None:
    origin = runtime.create("base")
    clone, _ = lifecycle.start_ephemeral(runtime.ctx, origin, name="eph1")
    runtime.ref("eph1")
    assert is_running(clone)
    Container("eph1", runtime.lxcpath).destroy(force=True)
    assert not clone.directory.exists() and read_record(clone) is None and not is_running(clone)
    assert origin.directory.exists()


# ---------------------------------------------------------------------------- cgroup names


def test_cgroup_names_take_lxcs_suffixes_and_are_remembered(tmp_path: Path) -> None:
    """Without containers: three same-named cgroups (two lxcpaths and a leftover directory)
    get ``-1`` and ``-3``; the unclaimed name is never killed or removed by another."""
    import secrets

    from bdev.store.config import LxcConfig
    from bdev.store.layout import ContainerRef
    from bdev_runtime.cgroups.placement import relative_names

    config = LxcConfig.parse("lxc.cgroup.relative = 1\n")
    assert relative_names("c1", config, 2) == ("lxc.payload.c1-2", "lxc.payload.c1-2")
    fixed = LxcConfig.parse("lxc.cgroup.dir.container = mine\nlxc.cgroup.dir.monitor = mon\n")
    assert relative_names("c1", fixed, 2) == ("mine", "mine")
    name = "gap-" + secrets.token_hex(3)
    refs = [ContainerRef(tmp_path / where, name) for where in ("a", "b", "c")]
    cgroups = [container_cgroup(ref, config) for ref in refs]
    leftover = [p.base_dir / f"lxc.payload.{name}-2" for p in cgroups[0].placements]
    try:
        cgroups[0].create()
        cgroups[1].create()
        for directory in leftover:
            directory.mkdir()
        cgroups[2].create()
        assert [read_claim(ref).index for ref in refs] == [0, 1, 3]  # type: ignore[union-attr]
        assert all(p.limit_dir.is_dir() for cgroup in cgroups for p in cgroup.placements)
        cgroups[1].create()  # again: the same claim, idempotent
        assert read_claim(refs[1]).index == 1  # type: ignore[union-attr]
        stranger = container_cgroup(ContainerRef(tmp_path / "d", name), config)
        assert not stranger.owned and stranger.placements[0].limit_dir == cgroups[0].placements[0].limit_dir
        stranger.remove()
        assert not stranger.cleanup()
        assert cgroups[0].exists()  # another lxcpath's cgroup of that name is not its to remove
        for cgroup, ref in zip(cgroups, refs):
            cgroup.remove()
            assert not cgroup.exists() and not claim_path(ref).exists()
    finally:
        for cgroup in cgroups:
            cgroup.cleanup()
        for directory in leftover:
            if directory.is_dir():
                directory.rmdir()


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Runtime]:
    """A second lxcpath; afterwards (even after a failure) nothing of it runs."""
    (tmp_path / "second").mkdir()
    rt = Runtime(tmp_path / "second")
    yield rt
    rt.close()
    assert wait_until(lambda: not processes_in_container_dir(rt.lxcpath), 10), processes_in_container_dir(rt.lxcpath)


def test_same_named_containers_of_two_lxcpaths_run_in_their_own_cgroups(runtime: Runtime, second: Runtime) -> None:
    one = runtime.create("c1", config=[("lxc.cgroup.pids.max", "50")])
    two = second.create("c1", config=[("lxc.cgroup.pids.max", "60")])
    lifecycle.start(runtime.ctx, one)
    lifecycle.start(second.ctx, two)
    claims = read_claim(one), read_claim(two)
    assert claims[0] is not None and claims[1] is not None
    assert (claims[0].index, claims[1].index) == (0, 1)
    assert claims[1].limit.endswith("lxc.payload.c1-1")
    for rt, ref, expected in ((runtime, one, "lxc.payload.c1"), (second, two, "lxc.payload.c1-1")):
        init = lifecycle.info(rt.ctx, ref).init_pid
        assert all(line.endswith(expected) for line in Path(f"/proc/{init}/cgroup").read_text().splitlines()
                   if ":pids:" in line or ":memory:" in line)
        # An attached process goes to the same cgroup (seen from the host).
        status = lifecycle.attach(rt.ctx, ref, ["/bin/sh", "-c", "sleep 1000 >/dev/null 2>&1 &"],
                                  AttachOptions(pty=False))
        assert status == 0
        pids = container_cgroup(ref, load_config(ref)).placement_for("pids", 1).limit_dir
        assert pids.name == expected
        assert wait_until(lambda: any(b"sleep\x001000" in _cmdline(pid)  # noqa: B023 - used at once
                                      for pid in (pids / "cgroup.procs").read_text().split()), 10)
    # Every later command finds the claimed cgroup: the live limits of each.
    assert container_cgroup(one, load_config(one)).live_values()["pids"] == 50
    assert container_cgroup(two, load_config(two)).live_values()["pids"] == 60
    limits = json.loads(ours("bdev", "-P", second.lxcpath, "limits", "c1", "--format", "json").stdout)
    assert {r["name"]: r["live"] for r in limits["limits"]}["pids"] == "60"

    # The monitor of the second one killed: the next command cleans up its cgroup, not the first's.
    monitor = read_record(two)
    assert monitor is not None
    os.kill(monitor.monitor_pid, signal.SIGKILL)
    assert wait_until(lambda: not is_running(two), 10)
    assert lifecycle.info(second.ctx, two).state is State.STOPPED
    assert not claim_path(two).exists()
    left = payload_cgroups("c1")
    assert left and all(path.endswith("lxc.payload.c1") for path in left)
    assert lifecycle.info(runtime.ctx, one).state is State.RUNNING
    lifecycle.stop(runtime.ctx, one, kill=True)
    assert payload_cgroups("c1") == [] and not claim_path(one).exists()


# ---------------------------------------------------------------------------- attach


class Terminal:
    """A program running on a new pseudo-terminal, read as it writes."""

    def __init__(self, argv: list[str], rows: int = 33, columns: int = 111):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.execv(argv[0], argv)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while marker not in self.seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.fd, 4096)
                except OSError:
                    break
        return marker in self.seen

    def finish(self, timeout: float = 30) -> int:
        """The program's exit status (read to the end first)."""
        self.read_until(b"\0never\0", timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"the program did not end; it wrote {self.seen!r}")


def test_attach_on_a_terminal_gets_a_terminal_of_the_container(runtime: Runtime) -> None:
    runtime.create("c1")
    lifecycle.start(runtime.ctx, runtime.ref("c1"))
    lxc_attach = str(VENV_BIN / "lxc-attach")
    # --clear-env: busybox's stty prefers $LINES and $COLUMNS (test runners set them) to the terminal.
    term = Terminal([lxc_attach, "-n", "c1", "-P", str(runtime.lxcpath), "--clear-env", "--", "/bin/sh", "-c",
                     "t=$(tty); echo tty=$t; [ -c $t ] && echo exists-inside; test -t 0 && echo stdin-is-a-tty; "
                     "stty size; echo fds $(ls /proc/self/fd); exit 5"])
    assert term.finish() == 5, term.seen
    out = term.seen.decode(errors="replace")
    assert "tty=/dev/pts/" in out and "exists-inside" in out and "stdin-is-a-tty" in out, out
    assert "33 111" in out, out  # the caller's terminal size, passed on
    assert "fds 0 1 2 3\r\n" in out, out  # the caller's other descriptors (pytest's) stay out; 3 is ls's
    # Interactive: keys go to the shell through the pty; its exit status comes back.
    shell = Terminal([lxc_attach, "-n", "c1", "-P", str(runtime.lxcpath)])
    os.write(shell.fd, b"echo hi-$((6*7))\n")
    assert shell.read_until(b"hi-42"), shell.seen
    os.write(shell.fd, b"exit 3\n")
    assert shell.finish() == 3
    # Not on a terminal: no pty, as with LXC.
    plain = ours("lxc-attach", "-n", "c1", "-P", runtime.lxcpath, "--", "/bin/sh", "-c", "tty; exit 4")
    assert plain.returncode == 4 and plain.stdout == "not a tty\n"


def test_attach_as_another_user_with_environment_options(runtime: Runtime) -> None:
    runtime.create("c1", config=[("lxc.cap.drop", "sys_module")])
    lp = runtime.lxcpath
    lifecycle.start(runtime.ctx, runtime.ref("c1"))
    as_user = ours("lxc-attach", "-n", "c1", "-P", lp, "-u", "1000", "-g", "1001", "--", "/bin/sh", "-c",
                   "id -u; id -g; id -G; grep -E '^CapBnd' /proc/self/status; cut -d: -f2,3 /proc/self/cgroup "
                   "| grep '^pids:'")
    assert as_user.returncode == 0, as_user.stderr
    lines = as_user.stdout.splitlines()
    assert lines[:3] == ["1000", "1001", "1001"]
    assert not int(lines[3].split()[1], 16) & (1 << 16)  # CAP_SYS_MODULE stays dropped
    assert lines[4] == "pids:/"  # the root of the container's cgroup namespace: its cgroup
    environment = dict(os.environ, BDEV_CALLER="from-caller")
    kept = ours("lxc-attach", "-n", "c1", "-P", lp, "--keep-env", "--set-var", "A=1", "--", "/bin/sh", "-c",
                "echo $BDEV_CALLER $A $container", env=environment)
    assert kept.stdout == "from-caller 1 lxc\n", kept.stderr
    cleared = ours("lxc-attach", "-n", "c1", "-P", lp, "--clear-env", "--keep-var", "BDEV_CALLER", "-v", "B=2",
                   "--", "/bin/sh", "-c", "env | sort", env=dict(environment, OTHER="x"))
    assert [line.split("=")[0] for line in cleared.stdout.splitlines()] == ["B", "BDEV_CALLER", "PATH", "PWD",
                                                                          "SHLVL", "container"], cleared.stdout
    both = ours("lxc-attach", "-n", "c1", "-P", lp, "--clear-env", "--keep-env", "--", "true")
    assert both.returncode != 0 and "cannot be used together" in both.stderr
    bad = ours("bdev", "-P", lp, "attach", "-u", "-5", "c1", "--", "true")
    assert bad.returncode != 0 and "-u" in bad.stderr
    status = Container("c1", lp).attach_wait(["/bin/sh", "-c", "[ $(id -u) = 7 ] && [ $X = y ] && exit 6"],
                                              env_policy="clear", extra_env_vars=["X=y"], uid=7, gid=7)
    assert status == 6
