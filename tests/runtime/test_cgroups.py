"""Resource limits and the container's cgroup, on this machine's real cgroup hierarchies.

Limits are checked by what the kernel does with them: a memory hog is OOM-killed inside its
cgroup, a fork bomb hits EAGAIN at the pids limit, a CPU-bound child is throttled, a cpuset
pins a child's affinity, a device allow-list keeps a child from opening a device node.  The v1
tests run on the host's hierarchies; the v2 tests mount a cgroup2 hierarchy in a private mount
namespace and drive it as a cgroup v2 only host would be driven.  Every test removes its
cgroups and processes, even when it fails.
"""

from __future__ import annotations

import errno
import json
import lzma
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bdev.cli.session import Session
from bdev.errors import Busy, InvalidInput
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime.cgroups import CgroupHost, ContainerCgroup, container_cgroup, edit_config, read_limits
from bdev_runtime.cgroups.cgroupfs import remove_cgroup
from bdev_runtime.cgroups.cli import limits_command
from bdev_runtime.cgroups.hierarchy import format_cpu_list, parse_cpu_list
from bdev_runtime.cgroups.limits import LIMITS, compact_size
from bdev_runtime.cgroups.placement import relative_names

HOST = CgroupHost.discover()
PREFIX = "r2test-"
#: keeps test cgroups of the memory hierarchy below the test's own cgroup (LXC's relative mode)
RELATIVE = "lxc.cgroup.relative = 1\n"
COMMON_CONF = Path("/usr/share/lxc/config/common.conf")


#: allocates 256 MiB page by page, then says it survived
MEMORY_HOG = "chunks = [bytearray(1 << 20) for _ in range(256)]\nprint('survived')\n"
#: forks sleeping children until fork fails; prints how many it made and the errno
FORK_BOMB = """
import os, signal, time
kids, error = [], None
for _ in range(100):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
print(len(kids), error, flush=True)
for pid in kids:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


def needs_v1(*controllers: str) -> pytest.MarkDecorator:
    missing = [c for c in controllers if HOST.version_of(c) != 1]
    return pytest.mark.skipif(bool(missing), reason=f"no cgroup v1 hierarchy for {', '.join(missing)} on this host")


def _leftovers() -> list[Path]:
    found = []
    for hierarchy in HOST.hierarchies:
        for current, dirs, _files in os.walk(hierarchy.mountpoint):
            found.extend(Path(current) / d for d in dirs if d.startswith(f"lxc.payload.{PREFIX}") or d.startswith(PREFIX))
    return found


@pytest.fixture(autouse=True)
def no_cgroup_leaks() -> Iterator[None]:
    """Fail a test that leaves one of its cgroups behind."""
    yield
    left = _leftovers()
    assert not left, f"cgroups left behind: {left}"


@pytest.fixture
def make_cgroup(tmp_path: Path) -> Iterator[Callable[..., ContainerCgroup]]:
    """Build a ContainerCgroup for a fresh container name and config text; every one made is
    killed and removed at the end."""
    made: list[ContainerCgroup] = []

    def make(config_text: str = "", *, relative: bool = True, host: CgroupHost | None = None,
             name: str | None = None) -> ContainerCgroup:
        ref = ContainerRef(tmp_path, name or PREFIX + secrets.token_hex(4))
        config = LxcConfig.parse((RELATIVE if relative else "") + config_text)
        cgroup = container_cgroup(ref, config, host or HOST)
        made.append(cgroup)
        return cgroup

    yield make
    for cgroup in made:
        cgroup.cleanup()


class Child:
    """A Python child that waits for a go before running ``code``, so it can be put in a
    cgroup first; its standard output is returned by :meth:`finish`."""

    def __init__(self, code: str):
        script = "import sys\nsys.stdin.read(1)\n" + textwrap.dedent(code)
        self.proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("x")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not flush it again

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def child() -> Iterator[Callable[[str], Child]]:
    started: list[Child] = []

    def start(code: str) -> Child:
        started.append(Child(code))
        return started[-1]

    yield start
    for one in started:
        one.kill()


def _running(cgroup: ContainerCgroup, start: Callable[[str], Child], code: str) -> Child:
    cgroup.validate()
    cgroup.create()
    cgroup.apply()
    one = start(code)
    cgroup.attach(one.pid)
    return one


# ---------------------------------------------------------------------------- limits the kernel enforces


@pytest.mark.root
@needs_v1("memory")
@pytest.mark.parametrize("swap", ["", "lxc.cgroup.memory.memsw.limit_in_bytes = 32M\n"], ids=["memory", "memory+swap"])
def test_memory_limit_kills_a_hog_inside_its_cgroup(make_cgroup, child, swap):
    cgroup = make_cgroup("lxc.cgroup.memory.limit_in_bytes = 32M\n" + swap)
    hog = _running(cgroup, child, MEMORY_HOG)
    memory = cgroup.placement_for("memory", 1).limit_dir
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(32 << 20)
    hog.go()
    code, out, _err = hog.finish()
    assert code == -signal.SIGKILL and "survived" not in out
    oom = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
    assert int(oom["oom_kill"]) == 1  # the OOM event, counted in the container's cgroup
    assert int((memory / "memory.max_usage_in_bytes").read_text()) == 32 << 20
    if not swap:  # with memory+swap set, this kernel counts failures nowhere (both failcnt stay 0)
        assert int((memory / "memory.failcnt").read_text()) > 0
    assert cgroup.pids() == []
    cgroup.remove()
    assert not cgroup.exists()


@pytest.mark.root
@needs_v1("pids")
def test_pids_limit_stops_a_fork_bomb_with_eagain(make_cgroup, child):
    cgroup = make_cgroup("lxc.cgroup.pids.max = 8\n")
    bomb = _running(cgroup, child, FORK_BOMB)
    bomb.go()
    code, out, err = bomb.finish()
    assert code == 0, err
    forked, error = out.split()
    assert int(error) == errno.EAGAIN
    assert int(forked) == 7  # the limit counts the bomb itself
    events = (cgroup.placement_for("pids", 1).limit_dir / "pids.events").read_text().split()
    assert int(events[events.index("max") + 1]) >= 1


@pytest.mark.root
@needs_v1("cpu")
def test_cpu_quota_is_written_read_back_and_throttles(make_cgroup, child):
    cgroup = make_cgroup("lxc.cgroup.cpu.cfs_quota_us = 20000\nlxc.cgroup.cpu.cfs_period_us = 100000\n")
    assert cgroup.limits.configured["cpu"].value == 0.2
    busy = _running(cgroup, child, """
        import time
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            pass
    """)
    cpu = cgroup.placement_for("cpu", 1).limit_dir
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "20000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert cgroup.live_values()["cpu"] == 0.2
    busy.go()
    assert busy.finish()[0] == 0
    stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > 0


@pytest.mark.root
@needs_v1("cpuset")
def test_cpuset_pins_the_processes(make_cgroup, child):
    last = max(HOST.online_cpus)
    cgroup = make_cgroup(f"lxc.cgroup.cpuset.cpus = {last}\n")
    one = _running(cgroup, child, "import os; print(sorted(os.sched_getaffinity(0)))")
    assert os.sched_getaffinity(one.pid) == {last}
    one.go()
    assert one.finish()[1].strip() == f"[{last}]"
    assert cgroup.live_values()["cpuset"] == str(last)


@pytest.mark.root
@needs_v1("devices")
def test_device_allow_list_denies_other_nodes(make_cgroup, child, tmp_path):
    null, zero = tmp_path / "null", tmp_path / "zero"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(zero, 0o666 | 0o020000, os.makedev(1, 5))
    cgroup = make_cgroup("lxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c 1:3 rwm\n")
    one = _running(cgroup, child, f"""
        import os
        for path in ({str(null)!r}, {str(zero)!r}):
            try:
                os.close(os.open(path, os.O_RDWR))
                print(path, "ok")
            except OSError as exc:
                print(path, exc.errno)
    """)
    one.go()
    code, out, err = one.finish()
    assert code == 0, err
    assert out.splitlines() == [f"{null} ok", f"{zero} {errno.EPERM}"]
    assert cgroup.live_values()["devices"] == (LIMITS["devices"].parse("c 1:3 rwm"))


# ---------------------------------------------------------------------------- lifecycle


@pytest.mark.root
@needs_v1("freezer", "pids")
def test_lifecycle_create_attach_kill_remove(make_cgroup, child):
    cgroup = make_cgroup("lxc.cgroup.pids.max = 50\n")
    cgroup.create()
    cgroup.create()  # idempotent
    one = _running(cgroup, child, "import os, time\nfor _ in range(3):\n    os.fork()\ntime.sleep(60)\n")
    one.go()
    deadline = time.monotonic() + 10
    while len(cgroup.pids()) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(cgroup.pids()) == 8
    with pytest.raises(Busy, match="already holds processes"):
        cgroup.create()
    with pytest.raises(Busy, match="still holds processes"):
        cgroup.remove()
    cgroup.kill_all(signal.SIGKILL)
    assert cgroup.pids() == []
    one.kill()
    cgroup.remove()
    cgroup.remove()  # idempotent
    assert not cgroup.exists()


@pytest.mark.root
@needs_v1("freezer")
def test_kill_all_delivers_another_signal_to_every_process(make_cgroup, child):
    cgroup = make_cgroup()
    one = _running(cgroup, child, """
        import os, signal, time
        signal.signal(signal.SIGUSR1, lambda *_: os._exit(7))
        print("ready", flush=True)
        time.sleep(60)
    """)
    one.go()
    assert one.proc.stdout.readline().strip() == "ready"
    cgroup.kill_all(signal.SIGUSR1)
    assert one.proc.wait(timeout=10) == 7


@pytest.mark.root
@needs_v1("blkio")
def test_lxc_1_0_blkio_weight_lands_in_the_file_this_kernel_has(make_cgroup):
    """LXC 1.0 configs say blkio.weight (CFQ, gone since Linux 5.0); bdev applies the weight
    through the file the kernel offers (BFQ's blkio.bfq.weight here)."""
    cgroup = make_cgroup("lxc.cgroup.blkio.weight = 500\n")
    assert cgroup.limits.configured["io-weight"].value == 500
    cgroup.create()
    cgroup.apply()
    weight_file = cgroup.writes()[0].path
    assert weight_file.name in ("blkio.bfq.weight", "blkio.weight")
    assert weight_file.read_text().split()[-1] == "500"
    assert cgroup.live_values()["io-weight"] == 500


@pytest.mark.root
def test_cleanup_after_a_crashed_monitor(make_cgroup, child):
    """A new ContainerCgroup for the same container (the next command) finds the cgroup a
    dead monitor left, kills what still runs there and removes it."""
    name = PREFIX + secrets.token_hex(4)
    first = make_cgroup(name=name)
    orphan = _running(first, child, "import time; time.sleep(60)")
    orphan.go()
    later = make_cgroup(name=name)
    assert later.pids() == [orphan.pid]
    assert later.cleanup() is True
    assert orphan.proc.wait(timeout=10) == -signal.SIGKILL
    assert not later.exists() and later.cleanup() is False


@pytest.mark.root
def test_default_placement_is_lxc_payload_under_init_cgroup(make_cgroup):
    cgroup = make_cgroup(relative=False)
    init = open("/proc/1/cgroup").read()
    for placement in cgroup.placements:
        assert placement.limit.endswith(f"/lxc.payload.{cgroup.ref.name}")
        if placement.hierarchy.version == 1:
            controller = sorted(placement.hierarchy.controllers)[0]
            line = next(l for l in init.splitlines() if controller in l.split(":")[1].split(","))
            assert placement.base == line.split(":", 2)[2]
    cgroup.create()
    assert all(p.limit_dir.is_dir() for p in cgroup.placements)
    cgroup.remove()
    assert not cgroup.exists()


@pytest.mark.root
def test_cgroup_dir_keys_place_it_as_lxc_does(make_cgroup):
    config = LxcConfig.parse("lxc.cgroup.dir = r2test-parent/sub\n")
    assert relative_names("c1", config) == ("r2test-parent/sub/lxc.payload.c1",) * 2
    config = LxcConfig.parse("lxc.cgroup.dir.container = lim\nlxc.cgroup.dir.monitor = mon\n"
                             "lxc.cgroup.dir.container.inner = ns\n")
    assert relative_names("c1", config) == ("lim", "lim/ns")
    for bad in ("lxc.cgroup.dir = /abs", "lxc.cgroup.dir = a/../..", "lxc.cgroup.dir.container = x",
                "lxc.cgroup.dir = a\nlxc.cgroup.dir.container = b\nlxc.cgroup.dir.monitor = c"):
        with pytest.raises(InvalidInput):
            relative_names("c1", LxcConfig.parse(bad + "\n"))
    nested = make_cgroup(f"lxc.cgroup.dir = {PREFIX}parent/sub\n")
    nested.create()
    assert all(p.limit_dir.is_dir() for p in nested.placements)
    nested.remove()
    assert not any(p.limit_dir.parent.parent.exists() for p in nested.placements)


# ---------------------------------------------------------------------------- values and config


@pytest.mark.parametrize("name, text, message", [
    ("memory", "lots", "memory limit 'lots' is not a size (examples: 512M, 2G)"),
    ("memory", "-5M", "memory limit '-5M' is not a size"),
    ("memory", "0", "memory limit '0' must be more than zero (or max for no limit)"),
    ("cpu", "-1", "cpu limit '-1' is not a number of cores"),
    ("swap", "some", "swap limit 'some' is not a size"),
    ("cpu", "abc", "cpu limit 'abc' is not a number of cores (examples: 0.5, 1.5, 2)"),
    ("cpu", "0.001", "below the smallest share the kernel allows (0.01 of a core)"),
    ("cpu", "64", "more than the"),
    ("cpuset", "0-1023", "names CPUs"),
    ("cpuset", "1-0", "is not a list of CPUs"),
    ("pids", "0", "pids limit '0' must be at least 1 (or max for no limit)"),
    ("pids", "many", "is not a number of processes"),
    ("io-weight", "5000", "io-weight '5000' is not a weight from 1 to 1000 (default 100)"),
    ("devices", "x 1:3 rwm", "does not start with a device type"),
    ("devices", "c 1:3 rwx", "is not 'TYPE MAJOR:MINOR ACCESS'"),
    ("devices", "c 1:3 rwm,,c 1:5 r", "has an empty rule"),
])
@pytest.mark.root
def test_bad_values_are_one_sentence_and_write_nothing(lxcpath, name, text, message):
    config = _container(lxcpath, "c1", "lxc.uts.name = c1\n")
    before = config.read_bytes()
    other = "pids=10" if name != "pids" else "memory=1G"
    result = _cli(lxcpath, "limits", "c1", other, f"{name}={text}")
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.startswith("bdev: container 'c1': ") and result.output.count("\n") == 1
    assert config.read_bytes() == before


@pytest.mark.root
def test_a_bad_value_in_the_config_is_named_and_can_be_fixed(lxcpath):
    config = _container(lxcpath, "c1", "lxc.cgroup.memory.limit_in_bytes = lots\nlxc.cgroup.swap = x\n")
    shown = _cli(lxcpath, "limits", "c1")
    assert shown.exit_code == 2
    assert shown.output == ("bdev: container 'c1': lxc.cgroup.memory.limit_in_bytes: memory limit 'lots' is not "
                            "a size (examples: 512M, 2G).\n")
    fixed = _cli(lxcpath, "limits", "c1", "memory=256M", "swap=0M")
    assert fixed.exit_code == 0, fixed.output
    assert config.read_text() == ("lxc.cgroup.memory.limit_in_bytes = 256M\nlxc.cgroup.swap = x\n"
                                  "lxc.cgroup.memory.memsw.limit_in_bytes = 256M\n")


@pytest.mark.root
def test_bad_config_values_fail_validate_naming_the_key(make_cgroup):
    cgroup = make_cgroup("lxc.cgroup.memory.limit_in_bytes = lots\n")
    with pytest.raises(InvalidInput) as info:
        cgroup.validate()
    assert str(info.value) == (f"container {cgroup.ref.name!r}: lxc.cgroup.memory.limit_in_bytes: "
                               "memory limit 'lots' is not a size (examples: 512M, 2G).")
    missing = make_cgroup("lxc.cgroup.nosuchctl.value = 1\n")
    with pytest.raises(InvalidInput, match="no cgroup hierarchy with the nosuchctl controller|kernel has no nosuchctl"):
        missing.validate()
    assert not cgroup.exists() and not missing.exists()


@pytest.mark.unprivileged
def test_lxc_common_conf_reads_in_friendly_terms():
    limits = read_limits(LxcConfig.load(COMMON_CONF), HOST)
    devices = limits.configured["devices"]
    assert "c 1:3 rwm" in LIMITS["devices"].show(devices.value)
    assert {c.limit.name for c in limits.shadowed} == {"devices"}  # the other version's copy
    assert limits.raw == []


@pytest.mark.unprivileged
def test_config_round_trip_with_lxc_key_names():
    text = ("# a hand-written config\nlxc.uts.name = c1\n"
            "lxc.cgroup.memory.limit_in_bytes = 536870912\n"
            "lxc.cgroup.cpu.shares = 512   # not a friendly limit\n"
            "lxc.cgroup2.pids.max = 100\n")
    config = LxcConfig.parse(text)
    limits = read_limits(config, HOST)
    assert limits.configured["memory"].shown == "512M"
    assert limits.configured["pids"].value == 100 and limits.configured["pids"].version == 2
    assert [r.key for r in limits.raw] == ["lxc.cgroup.cpu.shares"]
    edit_config(config, {"memory": 1 << 30, "swap": 0, "cpu": 1.5}, HOST, version=1)
    rendered = config.render()
    assert rendered.startswith("# a hand-written config\nlxc.uts.name = c1\nlxc.cgroup.memory.limit_in_bytes = 1G\n")
    assert "lxc.cgroup.memory.memsw.limit_in_bytes = 1G\n" in rendered
    assert "lxc.cgroup.cpu.cfs_period_us = 100000\nlxc.cgroup.cpu.cfs_quota_us = 150000\n" in rendered
    edit_config(config, {"memory": 2 << 30}, HOST, version=1)  # v1 swap follows its memory
    assert "lxc.cgroup.memory.memsw.limit_in_bytes = 2G\n" in config.render()
    edit_config(config, {"pids": 300}, HOST, version=1)  # kept in step in the v2 line too
    assert "lxc.cgroup2.pids.max = 300\n" in config.render() and "lxc.cgroup.pids.max = 300\n" in config.render()
    v2 = LxcConfig.parse("")
    edit_config(v2, {"memory": 512 << 20, "swap": 1 << 30, "cpu": 0.5, "devices": LIMITS["devices"].parse("c 1:3 rwm")},
                HOST, version=2)
    assert v2.render() == ("lxc.cgroup2.memory.max = 512M\nlxc.cgroup2.memory.swap.max = 1G\n"
                           "lxc.cgroup2.cpu.max = 50000 100000\n"
                           "lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:3 rwm\n")
    assert {n: c.shown for n, c in read_limits(v2, HOST).configured.items()} == {
        "memory": "512M", "swap": "1G", "cpu": "0.5", "devices": "c 1:3 rwm"}
    edit_config(config, {"memory": None, "swap": None, "pids": None}, HOST)
    assert "memory" not in config.render() and "pids" not in config.render()
    assert "lxc.cgroup.cpu.shares = 512   # not a friendly limit\n" in config.render()


@pytest.mark.root
@pytest.mark.lxc
def test_real_lxc_reads_the_written_keys(lxcpath):
    lxc = pytest.importorskip("lxc", reason="python3-lxc (Debian's LXC binding) is not installed")
    _container(lxcpath, "c1", "lxc.uts.name = c1\nlxc.rootfs.path = dir:/nonexistent\n")
    result = _cli(lxcpath, "limits", "c1", "memory=256M", "cpu=0.5", "pids=64", "devices=c 1:3 rwm, c 1:5 rwm",
                  "--cgroup-version", "1")
    assert result.exit_code == 0, result.output
    real = lxc.Container("c1", str(lxcpath))
    assert real.get_config_item("lxc.cgroup.memory.limit_in_bytes") == ["256M"]
    assert real.get_config_item("lxc.cgroup.cpu.cfs_quota_us") == ["50000"]
    assert real.get_config_item("lxc.cgroup.pids.max") == ["64"]


@pytest.mark.root
@pytest.mark.lxc
@needs_v1("memory", "pids", "cpu", "devices")
def test_real_lxc_start_applies_the_limits_and_bdev_changes_them_live(lxcpath):
    """Limits set with `bdev limits` are applied by real lxc-start; `bdev limits` finds the
    cgroup LXC made (lxc.payload.<name>), shows it live and changes it while it runs."""
    for tool in ("lxc-create", "lxc-start", "lxc-stop", "lxc-destroy"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (Debian's lxc) is not installed")
    name = PREFIX + secrets.token_hex(3)
    subprocess.run(["lxc-create", "-P", str(lxcpath), "-n", name, "-t", "busybox"], check=True, capture_output=True,
                   timeout=300)
    try:
        config = lxcpath / name / "config"
        kept = [line for line in config.read_text().splitlines(keepends=True) if not line.startswith("lxc.net.")]
        config.write_text("".join(kept) + "lxc.net.0.type = empty\n")
        result = _cli(lxcpath, "limits", name, "memory=64M", "pids=30", "cpu=0.5", "devices=c 1:3 rwm, c 5:2 rwm")
        assert result.exit_code == 0, result.output
        subprocess.run(["lxc-start", "-P", str(lxcpath), "-n", name, "-d"], check=True, capture_output=True, timeout=60)
        ours = ContainerCgroup(ContainerRef(lxcpath, name), LxcConfig.load(config), HOST)  # where bdev looks
        memory, devices = (ours.placement_for(c, 1).limit_dir for c in ("memory", "devices"))
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (devices / "devices.list").read_text().splitlines() == ["c 1:3 rwm", "c 5:2 rwm"]
        document = json.loads(_cli(lxcpath, "limits", name, "--format", "json").output)
        live = {r["name"]: r["live"] for r in document["limits"]}
        assert document["running"] is True
        assert (live["memory"], live["pids"], live["cpu"]) == ("64M", "30", "0.5")
        changed = _cli(lxcpath, "limits", name, "pids=20")
        assert changed.exit_code == 0 and "(config and running container)" in changed.output, changed.output
        assert (ours.placement_for("pids", 1).limit_dir / "pids.max").read_text().strip() == "20"
    finally:
        subprocess.run(["lxc-stop", "-P", str(lxcpath), "-n", name, "-k"], capture_output=True, timeout=60)
        subprocess.run(["lxc-destroy", "-P", str(lxcpath), "-n", name], capture_output=True, timeout=60)


@pytest.mark.unprivileged
def test_sizes_and_cpu_lists_in_kernel_form():
    assert [compact_size(v) for v in (512 << 20, 1 << 30, 1536 << 20, 1000, 4096)] == ["512M", "1G", "1536M", "1000", "4K"]
    assert LIMITS["memory"].parse("1.5G") == 1536 << 20
    assert LIMITS["memory"].read_value("9223372036854771712", 1) == "max"
    assert parse_cpu_list("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


# ---------------------------------------------------------------------------- the command


def _container(lxcpath: Path, name: str, text: str) -> Path:
    directory = lxcpath / name
    directory.mkdir()
    (directory / "config").write_text(text)
    return directory / "config"


def _cli(lxcpath: Path, *args: str):
    assert args[0] == "limits"
    return CliRunner().invoke(limits_command, list(args[1:]), obj=Session("bdev", lxcpath=str(lxcpath)),
                              prog_name="bdev")


@pytest.mark.root
def test_limits_command_sets_shows_and_unsets(lxcpath):
    config = _container(lxcpath, "web1", "lxc.uts.name = web1\nlxc.cgroup.cpu.shares = 256\n")
    os.chmod(config, 0o644)
    result = _cli(lxcpath, "limits", "web1", "memory=512M", "cpu=1.5", "pids=200")
    assert result.exit_code == 0, result.output
    assert "updated lxc.cgroup.memory.limit_in_bytes" in result.output
    assert (config.stat().st_mode & 0o777) == 0o644
    text = config.read_text()
    assert "lxc.cgroup.memory.limit_in_bytes = 512M\n" in text and "lxc.cgroup.pids.max = 200\n" in text
    shown = _cli(lxcpath, "limits", "web1")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split() == ["LIMIT", "CONFIGURED", "LIVE", "CONFIG", "KEY", "CGROUP", "FILE"]
    memory = next(line for line in lines if line.startswith("memory "))
    assert memory.split()[:4] == ["memory", "512M", "(stopped)", "lxc.cgroup.memory.limit_in_bytes"]
    assert "/lxc.payload.web1/memory.limit_in_bytes" in memory
    assert "  lxc.cgroup.cpu.shares = 256" in lines
    document = json.loads(_cli(lxcpath, "limits", "web1", "--format", "json").output)
    records = {r["name"]: r for r in document["limits"]}
    assert records["cpu"]["configured"] == "1.5" and records["cpu"]["live"] is None
    assert records["cpu"]["config_keys"] == ["lxc.cgroup.cpu.cfs_period_us", "lxc.cgroup.cpu.cfs_quota_us"]
    assert records["swap"]["configured"] is None
    assert document["raw"] == [{"key": "lxc.cgroup.cpu.shares", "value": "256", "applied": True}]
    assert document["running"] is False and document["cgroup_layout"] == HOST.layout
    assert {c["hierarchy"] for c in document["cgroup"]} == {h.label for h in HOST.hierarchies}
    assert not any(c["exists"] for c in document["cgroup"])
    unset = _cli(lxcpath, "limits", "web1", "--unset", "memory", "--unset", "cpu")
    assert unset.exit_code == 0, unset.output
    assert config.read_text() == "lxc.uts.name = web1\nlxc.cgroup.cpu.shares = 256\nlxc.cgroup.pids.max = 200\n"


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "bdev: container 'nosuch': no such container in"),
    (["web1", "bogus=1"], "'bogus' is not a limit bdev knows (known: memory, swap, cpu, cpuset, pids, io-weight, devices)"),
    (["web1", "memory"], "'memory' is not KEY=VALUE (example: memory=512M)"),
    (["web1", "pids=5", "--unset", "pids"], "pids is both set and unset"),
    (["web1", "swap=1G", "--cgroup-version", "1"], "a swap limit needs a memory limit on cgroup v1"),
    (["../x"], "contains '/'"),
])
@pytest.mark.root
def test_limits_command_refusals(lxcpath, args, message):
    config = _container(lxcpath, "web1", "lxc.uts.name = web1\n")
    result = _cli(lxcpath, "limits", *args)
    assert result.exit_code != 0
    assert message in result.output and result.output.count("\n") == 1
    assert config.read_text() == "lxc.uts.name = web1\n"


@pytest.mark.root
@needs_v1("pids", "memory")
def test_limits_command_applies_live_to_a_running_container(lxcpath, child):
    _container(lxcpath, "live1", RELATIVE + "lxc.cgroup.pids.max = 50\n")
    ref = ContainerRef(lxcpath, "live1")
    cgroup = ContainerCgroup(ref, LxcConfig.load(ref.config_path), HOST)
    try:
        one = _running(cgroup, child, "import time; time.sleep(60)")
        result = _cli(lxcpath, "limits", "live1", "pids=20", "memory=256M")
        assert result.exit_code == 0, result.output
        assert "(config and running container)" in result.output
        assert (cgroup.placement_for("pids", 1).limit_dir / "pids.max").read_text().strip() == "20"
        document = json.loads(_cli(lxcpath, "limits", "live1", "--format", "json").output)
        records = {r["name"]: r for r in document["limits"]}
        assert document["running"] is True and all(c["exists"] for c in document["cgroup"])
        assert records["pids"]["live"] == "20" and records["memory"]["live"] == "256M"
        lowered = _cli(lxcpath, "limits", "live1", "--unset", "memory")
        assert lowered.exit_code == 0, lowered.output
        limit = cgroup.placement_for("memory", 1).limit_dir / "memory.limit_in_bytes"
        assert int(limit.read_text()) >= 1 << 62
        one.kill()
    finally:
        cgroup.cleanup()


@pytest.mark.root
@needs_v1("memory")
def test_a_live_change_the_kernel_refuses_keeps_the_config_and_says_so(lxcpath, child):
    config = _container(lxcpath, "busy1", RELATIVE + "lxc.cgroup.memory.limit_in_bytes = 256M\n")
    ref = ContainerRef(lxcpath, "busy1")
    cgroup = ContainerCgroup(ref, LxcConfig.load(ref.config_path), HOST)
    try:
        holder = _running(cgroup, child, "import time\nx = b'1' * (16 << 20)\nprint('ready', flush=True)\ntime.sleep(60)")
        holder.go()
        assert holder.proc.stdout.readline().strip() == "ready"
        result = _cli(lxcpath, "limits", "busy1", "memory=8M")  # 16 MiB in use, no swap to push it to
        assert result.exit_code == 1
        assert result.output.splitlines()[-1].startswith(
            "bdev: container 'busy1': the config is saved, but the running container did not take it: cannot set "
            "memory (memory.limit_in_bytes = 8M in ")
        assert "lxc.cgroup.memory.limit_in_bytes = 8M\n" in config.read_text()
        limit = cgroup.placement_for("memory", 1).limit_dir / "memory.limit_in_bytes"
        assert int(limit.read_text()) == 256 << 20
        holder.kill()
    finally:
        cgroup.cleanup()


# ---------------------------------------------------------------------------- cgroup v2


V2_SCRIPT = r"""
import json, os, signal, subprocess, sys, time
from pathlib import Path
from bdev.mounts import mount_entries
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev.errors import BdevError
from bdev_runtime.cgroups.cgroupfs import remove_cgroup
from bdev_runtime.cgroups import CgroupHost, container_cgroup

mountpoint, name, config_text = sys.argv[1], sys.argv[2], sys.argv[3]
host = CgroupHost.discover([e for e in mount_entries() if e.mountpoint == mountpoint])
out = {"layout": host.layout, "controllers": sorted(host.unified.controllers)}
cgroup = container_cgroup(ContainerRef(Path("/nonexistent"), name), LxcConfig.parse(config_text), host)
try:
    cgroup.validate()
except BdevError as err:
    out["error"] = str(err)
    print(json.dumps(out))
    sys.exit(0)
cgroup.create()
cgroup.apply()
directory = cgroup.placements[0].limit_dir
out["dir"] = str(directory)
out["subtree_control"] = (directory.parent / "cgroup.subtree_control").read_text().split()
out["files"] = {f: (directory / f).read_text().strip() for f in sys.argv[4:]}
def run_probe(code):
    child = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.read(1)\n" + code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cgroup.attach(child.pid)
    return child.communicate("x", timeout=30)[0].splitlines()

probe, changed = os.environ.get("R2_PROBE"), os.environ.get("R2_CHANGED_CONFIG")
if probe:
    out["probe"] = run_probe(probe)
if changed:  # what `bdev limits` does to a running container
    changed_cgroup = container_cgroup(cgroup.ref, LxcConfig.parse(changed), host)
    changed_cgroup.apply_live(list(changed_cgroup.limits.configured))
    out["probe_after_change"] = run_probe(probe)
    fd = os.open(directory, os.O_RDONLY)
    from bdev_runtime.cgroups import bpf
    out["programs_after_change"] = len(bpf.attached(fd))
    os.close(fd)
sleeper = subprocess.Popen(["sleep", "60"])
cgroup.attach(sleeper.pid)
out["pids"] = cgroup.pids() == [sleeper.pid]
out["proc_cgroup"] = open(f"/proc/{sleeper.pid}/cgroup").read().splitlines()[-1]
cgroup.kill_all(signal.SIGTERM)  # frozen with cgroup.freeze, signalled, thawed
out["term"] = sleeper.wait(timeout=10)
second = subprocess.Popen(["sleep", "60"])
cgroup.attach(second.pid)
cgroup.kill_all(signal.SIGKILL)  # cgroup.kill
out["kill"] = second.wait(timeout=10)
cgroup.remove()
out["removed"] = not directory.exists()
print(json.dumps(out))
"""


@pytest.fixture
def private_cgroup2(tmp_path: Path) -> Iterator[Callable[..., dict]]:
    """Run the v2 script in a private mount namespace with a fresh cgroup2 mount (the host's
    one unified hierarchy, seen as a cgroup v2 only host would see it); restores the root's
    ``cgroup.subtree_control`` and removes the test's cgroups afterwards."""
    if HOST.unified is None:
        pytest.skip("this kernel has no cgroup2 hierarchy mounted to compare with")
    root_control = HOST.unified.mountpoint / "cgroup.subtree_control"
    enabled_before = set(root_control.read_text().split())
    names: list[str] = []

    def run(config_text: str, *files: str, probe: str = "", changed: str = "") -> dict:
        name = PREFIX + secrets.token_hex(4)
        names.append(name)
        mountpoint = tmp_path / "cg2"
        mountpoint.mkdir(exist_ok=True)
        shell = f'mount -t cgroup2 none "$1" && exec "{sys.executable}" -c "$0" "$@"'
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell, V2_SCRIPT,
                               str(mountpoint), name, config_text, *files],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "R2_PROBE": probe, "R2_CHANGED_CONFIG": changed})
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    yield run
    for name in names:
        leftover = HOST.unified.mountpoint / f"lxc.payload.{name}"
        if leftover.exists():
            for pid in (leftover / "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.2)
            leftover.rmdir()
    for added in set(root_control.read_text().split()) - enabled_before:
        root_control.write_text(f"-{added}")


@pytest.mark.root
def test_v2_cgroup_with_the_free_controller(private_cgroup2):
    free = sorted(HOST.unified.controllers) if HOST.unified else []
    if "hugetlb" not in free:
        pytest.skip(f"the hugetlb controller is not free for cgroup v2 here (free: {free or 'none'})")
    size = "2MB"
    out = private_cgroup2(f"lxc.cgroup2.hugetlb.{size}.max = 4194304\nlxc.cgroup2.cgroup.max.descendants = 3\n",
                          f"hugetlb.{size}.max", "cgroup.max.descendants")
    assert out["layout"] == "unified" and "hugetlb" in out["controllers"]
    assert "hugetlb" in out["subtree_control"]  # enabled on the way down
    assert out["files"] == {f"hugetlb.{size}.max": "4194304", "cgroup.max.descendants": "3"}
    assert out["pids"] is True and out["proc_cgroup"].endswith(f"::/{Path(out['dir']).name}")
    assert out["term"] == -signal.SIGTERM and out["kill"] == -signal.SIGKILL
    assert out["removed"] is True


@pytest.mark.root
def test_v2_refuses_a_controller_bound_to_v1(private_cgroup2):
    if HOST.version_of("pids") != 1:
        pytest.skip("pids is not bound to cgroup v1 on this host, so v2 could use it")
    out = private_cgroup2("lxc.cgroup2.pids.max = 100\n")
    assert out["error"].endswith("pids limit 100 cannot be applied: the pids controller is bound "
                                 "to a cgroup v1 hierarchy on this host, not to cgroup v2.")
    out = private_cgroup2("lxc.cgroup2.memory.high = 64M\n")  # a raw setting
    assert out["error"].endswith("lxc.cgroup2.memory.high = 64M cannot be applied: the memory controller is bound "
                                 "to a cgroup v1 hierarchy on this host, not to cgroup v2.")
    out = private_cgroup2("lxc.cgroup.memory.limit_in_bytes = 64M\n")  # a v1 friendly limit on a v2-only host
    assert "memory limit 64M cannot be applied: the memory controller is bound to a cgroup v1 hierarchy" in out["error"]


@pytest.mark.root
def test_v2_device_allow_list_is_a_bpf_program_the_kernel_enforces(private_cgroup2, tmp_path):
    null, zero = tmp_path / "null", tmp_path / "zero"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(zero, 0o666 | 0o020000, os.makedev(1, 5))
    probe = textwrap.dedent(f"""
        import os
        for path in ({str(null)!r}, {str(zero)!r}):
            for flags in (os.O_RDONLY, os.O_WRONLY):
                try:
                    os.close(os.open(path, flags))
                    print(os.path.basename(path), flags, "ok")
                except OSError as exc:
                    print(os.path.basename(path), flags, exc.errno)
    """)
    out = private_cgroup2("lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:3 rwm\n"
                          "lxc.cgroup2.devices.allow = c 1:5 r\n", probe=probe,
                          changed="lxc.cgroup2.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:5 rw\n")
    assert "error" not in out, out
    assert out["probe"] == [f"null {os.O_RDONLY} ok", f"null {os.O_WRONLY} ok",
                            f"zero {os.O_RDONLY} ok", f"zero {os.O_WRONLY} {errno.EPERM}"]
    assert out["probe_after_change"] == [f"null {os.O_RDONLY} {errno.EPERM}", f"null {os.O_WRONLY} {errno.EPERM}",
                                         f"zero {os.O_RDONLY} ok", f"zero {os.O_WRONLY} ok"]
    assert out["programs_after_change"] == 1  # the new program replaced the old one
    out = private_cgroup2("lxc.cgroup2.devices.deny = a\n", probe=probe)  # nothing allowed
    assert all(line.endswith(str(errno.EPERM)) for line in out["probe"]), out["probe"]
    assert out["removed"] is True


# ---------------------------------------------------------------------------- discovery and concurrency


@pytest.mark.unprivileged
def test_discovery_of_co_mounted_named_and_bind_mounted_hierarchies(tmp_path):
    from bdev.mounts import MountEntry

    entries = [
        MountEntry("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "cgroup", ("rw", "nosuid", "cpu", "cpuacct")),
        MountEntry("/sys/fs/cgroup/cpu", "cgroup", "cgroup", ("rw", "cpu", "cpuacct")),  # the same one again
        MountEntry("/sys/fs/cgroup/systemd", "cgroup", "cgroup", ("rw", "xattr", "name=systemd")),
        MountEntry("/sys/fs/cgroup/memory", "cgroup", "cgroup", ("rw", "memory"), "/lxc.payload.outer"),
        MountEntry(str(tmp_path), "cgroup2", "cgroup2", ("rw", "nsdelegate")),
    ]
    host = CgroupHost.discover(entries)
    assert [h.label for h in host.hierarchies] == ["cpu,cpuacct", "name=systemd", "memory", "unified"]
    assert host.layout == "hybrid" and host.version_of("cpuacct") == 1 and host.v1("name=systemd") is not None
    memory = host.v1("memory")
    assert memory.directory("/lxc.payload.outer/lxc.payload.c1") == Path("/sys/fs/cgroup/memory/lxc.payload.c1")
    with pytest.raises(Exception, match="outside the memory hierarchy"):
        memory.directory("/elsewhere")
    assert CgroupHost.discover(entries[-1:]).layout == "unified"


@pytest.mark.root
def test_concurrent_limit_changes_both_land(lxcpath):
    """Two `bdev limits` at once: the container's lock serialises them, neither is lost."""
    config = _container(lxcpath, "c1", "lxc.uts.name = c1\n")
    script = textwrap.dedent(f"""
        import sys, click
        from bdev.cli.errors import run
        from bdev.cli.session import Session
        from bdev_runtime.cgroups.cli import limits_command

        @click.group()
        @click.pass_context
        def group(ctx):
            ctx.obj = Session("bdev", lxcpath={str(lxcpath)!r})

        group.add_command(limits_command)
        run(group, "bdev", ["limits", "c1", *sys.argv[1:]])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for args in (["memory=1G"], ["pids=100"], ["cpu=1"], ["cpuset=0"])]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    limits = read_limits(LxcConfig.load(config), HOST).configured
    assert {n: c.shown for n, c in limits.items()} == {"memory": "1G", "pids": "100", "cpu": "1", "cpuset": "0"}


UNPRIVILEGED_SCRIPT = r"""
import json, subprocess, sys
from pathlib import Path
from bdev.errors import BdevError
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime.cgroups import container_cgroup

name = sys.argv[1]
out = {}
try:
    config = LxcConfig.parse("lxc.cgroup.memory.limit_in_bytes = 1G\n")
    container_cgroup(ContainerRef(Path("/nonexistent"), name), config).validate()
except BdevError as err:
    out["memory_error"] = str(err)
cgroup = container_cgroup(ContainerRef(Path("/nonexistent"), name), LxcConfig.parse("lxc.cgroup.pids.max = 5\n"))
cgroup.validate()
out["hierarchies"] = [p.hierarchy.label for p in cgroup.placements]
cgroup.create()
cgroup.apply()
sleeper = subprocess.Popen(["sleep", "60"])
cgroup.attach(sleeper.pid)
out["pids_max"] = (cgroup.placements[0].limit_dir / "pids.max").read_text().strip()
out["inside"] = cgroup.pids() == [sleeper.pid]
cgroup.kill_all(9)
sleeper.wait()
cgroup.remove()
out["removed"] = not cgroup.exists()
print(json.dumps(out))
"""


@pytest.mark.root
@needs_v1("pids")
def test_unprivileged_user_uses_only_the_hierarchies_delegated_to_it(tmp_path):
    """As LXC does for users: a hierarchy is used when the user's own cgroup there is theirs
    (here the pids one, delegated by chown as libpam-cgfs would); a limit on another one is
    refused in one sentence."""
    uid = 65534
    delegated = HOST.v1("pids").mountpoint / (PREFIX + "user-" + secrets.token_hex(3))
    delegated.mkdir()
    try:
        for path in (delegated, delegated / "cgroup.procs", delegated / "tasks"):
            os.chown(path, uid, uid)
        shell = f'echo $$ > {delegated}/cgroup.procs && exec "{sys.executable}" -c "$0" "$@"'
        proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", shell,
                               UNPRIVILEGED_SCRIPT, PREFIX + secrets.token_hex(4)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["memory_error"].endswith("memory limit 1G cannot be applied: the cgroup hierarchy of the memory "
                                            f"controller is not writable by uid {uid} (it is not delegated to this user).")
        assert out["hierarchies"] == ["pids"]
        assert out["pids_max"] == "5" and out["inside"] is True and out["removed"] is True
    finally:
        for pid in (delegated / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        remove_cgroup(delegated)


# ---------------------------------------------------------------------------- a cgroup v2 only host, in a VM
#
# This machine binds memory, pids, cpu, cpuset, io and devices to cgroup v1, so cgroup v2
# cannot offer them here.  To run the limits on a host where cgroup v2 has every controller,
# a qemu guest (TCG: KVM fails with nested CPUs like this machine's) boots a Debian kernel
# (BDEV_TEST_KERNEL: a directory where a linux-image .deb was unpacked with dpkg-deb -x;
# default .cache/test-kernel in the repository) with a
# busybox initramfs that mounts this machine's root read-only over 9p, mounts cgroup2 on
# /sys/fs/cgroup and runs GUEST_SCRIPT with this interpreter.  Only /run gets a tmpfs (the
# guest's scratch space): the checkout and its venv may live anywhere else, /tmp included.

REPO = Path(__file__).resolve().parents[2]
VM_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "netfs",
              "fscache", "9pnet", "9pnet_virtio", "9p")
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
for m in {modules}; do insmod /modules/$m.ko || echo "R2-INIT insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /host || echo "R2-INIT no 9p"
mount -t proc proc /host/proc && mount -t sysfs sys /host/sys && mount -t devtmpfs dev /host/dev
mount -t cgroup2 none /host/sys/fs/cgroup
mount -t tmpfs run /host/run
cp /guest.py /host/run/guest.py
chroot /host /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/run TMPDIR=/run PYTHONDONTWRITEBYTECODE=1 \\
    BDEV_LXC_CONF=/dev/null BDEV_LOCK_DIR=/run/lock {python} /run/guest.py > /dev/ttyS0 2>&1
echo "R2-EXIT $?" > /dev/ttyS0
poweroff -f
"""

GUEST_SCRIPT = r'''
import errno, json, os, signal, subprocess, sys, time
from pathlib import Path
from click.testing import CliRunner
from bdev.cli.session import Session
from bdev.errors import BdevError
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime.cgroups import CgroupHost, container_cgroup
from bdev_runtime.cgroups.cli import limits_command

MEMORY_HOG, FORK_BOMB = @PROGRAMS@
out = {}
host = CgroupHost.discover()
out["layout"], out["controllers"] = host.layout, sorted(host.unified.controllers)
lxcpath = Path("/run/lxc")
lxcpath.mkdir()

def bdev_limits(name, *args):
    result = CliRunner().invoke(limits_command, [name, *args], obj=Session("bdev", lxcpath=str(lxcpath)))
    return result.exit_code, result.output

def container(name, *limits):
    (lxcpath / name).mkdir()
    (lxcpath / name / "config").write_text(f"lxc.uts.name = {name}\n")
    code, output = bdev_limits(name, *limits)
    assert code == 0, output
    ref = ContainerRef(lxcpath, name)
    cgroup = container_cgroup(ref, LxcConfig.load(ref.config_path))
    cgroup.validate(); cgroup.create(); cgroup.apply()
    return ref, cgroup

def run_in(cgroup, code):
    child = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.read(1)\n" + code],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cgroup.attach(child.pid)
    stdout, stderr = child.communicate("x", timeout=120)
    return child.returncode, stdout, stderr

def files(cgroup, *names):
    return {n: (cgroup.placements[0].limit_dir / n).read_text().strip() for n in names}

def events(cgroup, name):
    return dict(line.split() for line in (cgroup.placements[0].limit_dir / name).read_text().splitlines())

def finish(cgroup):
    cgroup.kill_all(signal.SIGKILL); cgroup.remove()
    return not cgroup.exists()

ref, cg = container("mem", "memory=32M", "swap=0")
out["memory_config"] = (ref.config_path).read_text()
out["memory_files"] = files(cg, "memory.max", "memory.swap.max")
out["memory_hog"] = run_in(cg, MEMORY_HOG)[0]
out["memory_events"] = events(cg, "memory.events")
out["memory_removed"] = finish(cg)

ref, cg = container("pids", "pids=8")
out["pids_bomb"] = run_in(cg, FORK_BOMB)[1].split()
out["pids_events"] = events(cg, "pids.events")
out["pids_removed"] = finish(cg)

ref, cg = container("cpu", "cpu=0.2", "cpuset=1", "io-weight=300")
out["cpu_files"] = files(cg, "cpu.max", "cpuset.cpus", "io.weight")
out["cpu_run"] = run_in(cg, "import os, time\nend = time.monotonic() + 1\nwhile time.monotonic() < end: pass\n"
                            "print(sorted(os.sched_getaffinity(0)))")[1].strip()
out["cpu_stat"] = events(cg, "cpu.stat")
sleeper = subprocess.Popen(["sleep", "60"]); cg.attach(sleeper.pid)
out["live_change"] = bdev_limits("cpu", "cpu=0.5", "pids=50")
out["live_json"] = json.loads(bdev_limits("cpu", "--format", "json")[1])
out["cpu_files_after"] = files(cg, "cpu.max", "pids.max")
out["cpu_removed"] = finish(cg); sleeper.wait()

os.mknod("/run/zero", 0o666 | 0o020000, os.makedev(1, 5))
ref, cg = container("dev", "devices=c 1:3 rwm")
OPEN_ZERO = "import os\ntry:\n    os.open('/run/zero', os.O_RDONLY); print('ok')\nexcept OSError as e:\n    print(e.errno)"
out["devices"] = run_in(cg, OPEN_ZERO)[1].strip()
out["devices_removed"] = finish(cg)
out["root_subtree_control"] = Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split()
print("R2-RESULT " + json.dumps(out), flush=True)
'''


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive (the initramfs format) of ``(name, mode, data)`` entries."""
    blob = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        blob += b"070701" + "".join(f"{value:08x}" for value in fields).encode() + raw
        blob += b"\0" * (-len(blob) % 4) + data + b"\0" * (-len(data) % 4)
    return bytes(blob)


def _test_kernel() -> tuple[Path, Path] | str:
    """``(vmlinuz, module directory)`` of the unpacked test kernel, or why there is none."""
    root = Path(os.environ.get("BDEV_TEST_KERNEL", REPO / ".cache" / "test-kernel"))
    kernels = sorted(root.glob("boot/vmlinuz-*"))
    if not kernels:
        return f"no unpacked kernel in {root} (set BDEV_TEST_KERNEL to a dpkg-deb -x of Debian's linux-image)"
    modules = root / "lib" / "modules" / kernels[-1].name.removeprefix("vmlinuz-") / "kernel"
    if not modules.is_dir():
        return f"the kernel in {root} has no modules directory {modules}"
    for tool in ("qemu-system-x86_64", "busybox"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return kernels[-1], modules


@pytest.fixture(scope="module")
def cgroup2_vm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Boot the guest once and return what GUEST_SCRIPT reported."""
    found = _test_kernel()
    if isinstance(found, str):
        pytest.skip(f"no cgroup v2 test VM: {found}")
    vmlinuz, modules = found
    entries: list[tuple[str, int, bytes]] = [(d, 0o40755, b"") for d in ("bin", "modules", "proc", "sys", "dev", "host")]
    entries.append(("bin/busybox", 0o100755, Path(shutil.which("busybox")).read_bytes()))  # type: ignore[arg-type]
    for name in VM_MODULES:
        module = next(modules.rglob(f"{name}.ko*"))
        data = module.read_bytes()
        entries.append((f"modules/{name}.ko", 0o100644, lzma.decompress(data) if module.suffix == ".xz" else data))
    init = GUEST_INIT.format(modules=" ".join(VM_MODULES), python=sys.executable)
    guest = GUEST_SCRIPT.replace("@PROGRAMS@", repr((MEMORY_HOG, FORK_BOMB)))
    entries += [("init", 0o100755, init.encode()), ("guest.py", 0o100644, guest.encode())]
    initrd = tmp_path_factory.mktemp("vm") / "initrd.cpio"
    initrd.write_bytes(_newc(entries))
    proc = subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1024", "-smp", "2", "-no-reboot",
         "-display", "none", "-monitor", "none", "-serial", "stdio", "-kernel", str(vmlinuz), "-initrd", str(initrd),
         "-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
         "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"],
        capture_output=True, text=True, errors="replace", timeout=600)
    lines = proc.stdout.splitlines()
    result = next((line for line in lines if line.startswith("R2-RESULT ")), None)
    tail = "\n".join(lines[-40:]) + proc.stderr
    assert result is not None, f"the guest reported nothing (qemu exit {proc.returncode}):\n{tail}"
    return json.loads(result.removeprefix("R2-RESULT "))


@pytest.mark.root
@pytest.mark.timeout(900)
def test_v2_host_memory_limit_kills_a_hog(cgroup2_vm):
    assert cgroup2_vm["layout"] == "unified"
    assert {"memory", "pids", "cpu", "cpuset", "io"} <= set(cgroup2_vm["controllers"])
    assert "lxc.cgroup2.memory.max = 32M\nlxc.cgroup2.memory.swap.max = 0\n" in cgroup2_vm["memory_config"]
    assert cgroup2_vm["memory_files"] == {"memory.max": str(32 << 20), "memory.swap.max": "0"}
    assert cgroup2_vm["memory_hog"] == -signal.SIGKILL
    assert int(cgroup2_vm["memory_events"]["oom_kill"]) == 1 and int(cgroup2_vm["memory_events"]["max"]) > 0
    assert cgroup2_vm["memory_removed"] is True


@pytest.mark.root
@pytest.mark.timeout(900)
def test_v2_host_pids_limit_stops_a_fork_bomb(cgroup2_vm):
    assert cgroup2_vm["pids_bomb"] == ["7", str(errno.EAGAIN)]
    assert int(cgroup2_vm["pids_events"]["max"]) >= 1
    assert cgroup2_vm["pids_removed"] is True


@pytest.mark.root
@pytest.mark.timeout(900)
def test_v2_host_cpu_cpuset_io_weight_and_live_changes(cgroup2_vm):
    assert cgroup2_vm["cpu_files"] == {"cpu.max": "20000 100000", "cpuset.cpus": "1", "io.weight": "default 300"}
    assert cgroup2_vm["cpu_run"] == "[1]"
    assert int(cgroup2_vm["cpu_stat"]["nr_throttled"]) > 0
    code, output = cgroup2_vm["live_change"]
    assert code == 0 and "(config and running container)" in output, output
    assert cgroup2_vm["cpu_files_after"] == {"cpu.max": "50000 100000", "pids.max": "50"}
    records = {r["name"]: r for r in cgroup2_vm["live_json"]["limits"]}
    assert cgroup2_vm["live_json"]["running"] is True and cgroup2_vm["live_json"]["cgroup_layout"] == "unified"
    assert records["cpu"]["live"] == "0.5" and records["pids"]["live"] == "50"
    assert records["cpu"]["config_keys"] == ["lxc.cgroup2.cpu.max"]
    assert records["cpu"]["cgroup_files"] == ["/sys/fs/cgroup/lxc.payload.cpu/cpu.max"]
    assert cgroup2_vm["cpu_removed"] is True


@pytest.mark.root
@pytest.mark.timeout(900)
def test_v2_host_device_allow_list(cgroup2_vm):
    assert cgroup2_vm["devices"] == str(errno.EPERM)
    assert cgroup2_vm["devices_removed"] is True
    assert {"memory", "pids", "cpu", "cpuset", "io"} <= set(cgroup2_vm["root_subtree_control"])
