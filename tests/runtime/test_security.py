"""bdev_runtime.security on the real kernel: a forked child applies a plan and execs a probe.

Each probe runs in a child this module forks itself (the container runtime is not
involved): the child applies the plan exactly as a container's init does, optionally
reports its own ``/proc/self/status`` right after (before exec), then execs busybox or
Python, whose output and exit status the test reads.  Nothing outlives a test: a child that
does not finish in time is killed and reaped.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bdev.errors import BdevError, InvalidInput
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime import linux
from bdev_runtime.security import SecurityPlan, security_plan
from bdev_runtime.security.capabilities import capability_names
from bdev_runtime.security.lsm import HostLsms, probe_host
from bdev_runtime.security.seccomp_filter import build_filter, host_sections
from bdev_runtime.security.seccomp_profile import DEFAULT_PROFILE_TEXT, default_profile, parse_profile

seccomp = pytest.importorskip("seccomp", reason="python3-seccomp (libseccomp's binding) is not installed")
pytest.importorskip("prctl", reason="python3-prctl is not installed")

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox")
LXC_COMMON_SECCOMP = Path("/usr/share/lxc/config/common.seccomp")
PROBE_TIMEOUT = 60.0
MNT_FORCE = 1
TIOCSTI = 0x5412
NO_LSM = HostLsms(apparmor="not on this test's host", selinux="not on this test's host")


def nr(name: str) -> int:
    """The native number of syscall ``name``."""
    return seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)


# ---------------------------------------------------------------------------- the harness


def _children() -> set[int]:
    """The pids of this process's children, reaped or not yet (from every /proc/PID/stat)."""
    me = str(os.getpid())
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[1] == me:  # the fields after "(comm)": state, ppid, ...
            pids.add(int(entry.name))
    return pids


@pytest.fixture(autouse=True)
def no_stray_children():
    """Every probe child is gone (reaped) when its test ends, whatever the outcome."""
    before = _children()
    yield
    stray = _children() - before
    for pid in stray:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not stray, f"the test left child processes behind: {sorted(stray)}"


@dataclass
class Probe:
    """What a child printed (before and after exec) and how it ended."""

    output: str
    status: int

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    def section(self, name: str) -> str:
        """The text between ``== name ==`` and the next section marker."""
        marker = f"== {name} ==\n"
        assert marker in self.output, f"no {name} section in the probe's output:\n{self.output}"
        return self.output.split(marker, 1)[1].split("== ", 1)[0]

    def status_field(self, section: str, field: str) -> str:
        for line in self.section(section).splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no {field} in the {section} section:\n{self.output}")


def run_child(plan: SecurityPlan | None, argv: list[str], *, before=None, dump_status: bool = False) -> Probe:
    """Fork; in the child run ``before()``, apply ``plan``, optionally print its own status
    (section ``applied``), then exec ``argv`` (section ``probe``).  A failure before exec is
    printed as ``child failed: ...`` and exits 127.  The child is always reaped."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            if before:
                before()
            if plan:
                plan.apply_in_child()
            if dump_status:
                os.write(1, b"== applied ==\n" + Path("/proc/self/status").read_bytes())
            os.write(1, b"== probe ==\n")
            os.execv(argv[0], argv)
        except BaseException as exc:  # noqa: BLE001 - reported to the test through the pipe
            os.write(2, f"child failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(127)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + PROBE_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_end, 65536) if ready else b""
            if ready and not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        status = _reap(pid, deadline)
    return Probe(b"".join(chunks).decode(errors="replace"), status)


def _reap(pid: int, deadline: float) -> int:
    """Wait for ``pid`` until ``deadline``, then kill it; always reaps it."""
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.01)


def python_probe(code: str) -> list[str]:
    """argv running ``code`` in an isolated Python with ``syscall(name, *args)`` at hand,
    which prints ``name=ok`` or ``name=ERRNONAME``."""
    prelude = (
        "import ctypes, errno, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def syscall(label, number, *args):\n"
        "    result = libc.syscall(number, *args)\n"
        "    print(f'{label}=' + ('ok' if result >= 0 else errno.errorcode[ctypes.get_errno()]), flush=True)\n"
    )
    return [sys.executable, "-I", "-S", "-c", prelude + code]


def status_probe() -> list[str]:
    if not BUSYBOX:
        pytest.skip("busybox (busybox-static) is not installed: it is the probe that reads /proc/self/status")
    return [BUSYBOX, "cat", "/proc/self/status"]


def plan_for(tmp_path: Path, text: str, *, name: str = "c1", host: HostLsms = NO_LSM) -> SecurityPlan:
    """The plan for a config holding ``text`` (saved under tmp_path, so errors name a file)."""
    config_path = tmp_path / name / "config"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text)
    return security_plan(ContainerRef(tmp_path, name), LxcConfig.load(config_path), host=host)


def profile_file(tmp_path: Path, text: str, name: str = "test.seccomp") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mask(*names: str) -> int:
    known = capability_names()
    return sum(1 << known[name] for name in names)


def host_bounding_set() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


# ---------------------------------------------------------------------------- capabilities


def test_cap_drop_leaves_bounding_inheritable_and_ambient_sets(tmp_path):
    plan = plan_for(tmp_path, "lxc.cap.drop = sys_module mac_admin\nlxc.cap.drop = sys_time\n")
    libc = ctypes.CDLL(None, use_errno=True)

    def raise_ambient():  # give the child inheritable + ambient caps for the drop to remove
        import prctl

        prctl.cap_inheritable.sys_time = True
        prctl.cap_inheritable.sys_nice = True
        for name in ("sys_time", "sys_nice"):
            assert libc.prctl(47, 2, capability_names()[name], 0, 0) == 0  # PR_CAP_AMBIENT_RAISE

    probe = run_child(plan, status_probe(), before=raise_ambient, dump_status=True)
    assert probe.exit_code == 0, probe.output
    dropped = mask("sys_module", "mac_admin", "sys_time")
    expected = host_bounding_set() & ~dropped
    for section in ("applied", "probe"):
        assert int(probe.status_field(section, "CapBnd"), 16) == expected
    assert int(probe.status_field("applied", "CapInh"), 16) == mask("sys_nice")
    assert int(probe.status_field("applied", "CapAmb"), 16) == mask("sys_nice")
    # exec recomputes the effective set from the bounding set: root lost what was dropped
    assert int(probe.status_field("probe", "CapEff"), 16) & dropped == 0
    assert plan.report()[0] == "capabilities: dropping sys_module mac_admin sys_time (lxc.cap.drop)"


def test_cap_keep_keeps_only_the_listed_capabilities(tmp_path):
    plan = plan_for(tmp_path, "lxc.cap.keep = chown\nlxc.cap.keep = net_raw 21\n")
    probe = run_child(plan, status_probe())
    assert probe.exit_code == 0, probe.output
    kept = mask("chown", "net_raw", "sys_admin") & host_bounding_set()
    assert int(probe.status_field("probe", "CapBnd"), 16) == kept
    assert int(probe.status_field("probe", "CapEff"), 16) == kept


def test_cap_keep_none_drops_everything_and_empty_drop_clears(tmp_path):
    plan = plan_for(tmp_path, "lxc.cap.keep = sys_admin\nlxc.cap.keep = none\n")
    probe = run_child(plan, status_probe())
    assert int(probe.status_field("probe", "CapBnd"), 16) == 0
    assert int(probe.status_field("probe", "CapEff"), 16) == 0
    assert plan.report()[0].startswith("capabilities: keeping none (lxc.cap.keep)")
    cleared = plan_for(tmp_path, "lxc.cap.drop = sys_module\nlxc.cap.drop =\n", name="c2")
    assert cleared.capabilities.dropped == ()
    probe = run_child(cleared, status_probe())
    assert int(probe.status_field("probe", "CapBnd"), 16) == host_bounding_set()


def test_caps_drop_inside_a_new_user_namespace(tmp_path):
    """The unprivileged-container path: the child is root of its own user namespace."""
    if not linux.has_namespace("user"):
        pytest.skip("the kernel has no user namespaces")
    plan = plan_for(tmp_path, "lxc.cap.drop = sys_admin net_admin\nlxc.no_new_privs = 1\n")

    def enter_user_namespace():
        uid, gid = os.geteuid(), os.getegid()
        linux.unshare(linux.CLONE_NEWUSER)
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")

    probe = run_child(plan, status_probe(), before=enter_user_namespace)
    assert probe.exit_code == 0, probe.output
    full = (1 << (int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1)) - 1
    assert int(probe.status_field("probe", "CapBnd"), 16) == full & ~mask("sys_admin", "net_admin")
    assert probe.status_field("probe", "NoNewPrivs") == "1"
    assert probe.status_field("probe", "Seccomp") == "2"  # the default policy, loaded as userns root


# ---------------------------------------------------------------------------- no_new_privs


@pytest.mark.parametrize("value, expected", [("1", "1"), ("0", "0")])
def test_no_new_privs(tmp_path, value, expected):
    plan = plan_for(tmp_path, f"lxc.no_new_privs = {value}\n")
    probe = run_child(plan, status_probe())
    assert probe.status_field("probe", "NoNewPrivs") == expected
    assert f"no_new_privs: {'on' if value == '1' else 'off'} (lxc.no_new_privs)" in plan.report()


# ---------------------------------------------------------------------------- seccomp


def test_denylist_errno_and_argument_filters(tmp_path):
    profile = profile_file(
        tmp_path,
        "2\n"
        "denylist\n"
        "# errno values no unfiltered call here returns, so only the filter can give them\n"
        "kexec_load errno 93\n"
        "[all]\n"
        "mknodat errno 77 [2,0x2000,SCMP_CMP_MASKED_EQ,0xf000]   # character devices only\n"
        "mknod errno 77 [1,8192,&=,61440]\n"
        f"ioctl errno 94 [1,{TIOCSTI:#x},SCMP_CMP_EQ]\n"
        "[x86]\n"
        "getppid errno 93   # i386's getppid only: the native call is untouched\n"
        "[arm64]\n"
        "getppid kill\n",
    )
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    code = (
        f"syscall('kexec_load', {nr('kexec_load')}, 0, 0, None, 0)\n"
        f"for kind, mode in (('chr', 0o20600), ('blk', 0o60600), ('fifo', 0o10600)):\n"
        f"    try:\n"
        f"        os.mknod({str(tmp_path)!r} + '/node-' + kind, mode, os.makedev(1, 3))\n"
        f"        print(kind + '=ok')\n"
        f"    except OSError as exc:\n"
        f"        print(kind + '=' + errno.errorcode[exc.errno])\n"
        "import fcntl, termios\n"
        "leader, follower = os.openpty()\n"
        "fcntl.ioctl(follower, termios.TCGETS, bytes(64))\n"
        "print('tcgets=ok')\n"
        "try:\n"
        "    fcntl.ioctl(follower, termios.TIOCSTI, b'x')\n"
        "    print('tiocsti=ok')\n"
        "except OSError as exc:\n"
        "    print('tiocsti=' + errno.errorcode[exc.errno])\n"
        "print('ppid', os.getppid() > 0)\n"
    )
    probe = run_child(plan, python_probe(code))
    assert probe.exit_code == 0, probe.output
    out = probe.section("probe")
    assert "kexec_load=EPROTONOSUPPORT" in out
    # S_IFBLK (0x6000) has S_IFCHR's bit but not its type: the mask must apply to the mode
    assert "chr=EBADFD" in out and "blk=ok" in out and "fifo=ok" in out
    assert "tcgets=ok" in out and "tiocsti=ESOCKTNOSUPPORT" in out
    assert "ppid True" in out  # neither the x86 nor the arm64 section reaches x86_64's getppid
    control = run_child(None, python_probe(code))
    assert "kexec_load=EPROTONOSUPPORT" not in control.output and "tiocsti=ESOCKTNOSUPPORT" not in control.output
    assert "chr=EBADFD" not in control.output
    assert "seccomp: skipped 1 rules written for other architectures" in plan.report()


@pytest.mark.parametrize(
    "rule, action", [("getppid kill", "kill"), ("getppid", "denylist default"), ("getppid trap", "trap")]
)
def test_kill_and_trap_end_the_process_with_sigsys(tmp_path, rule, action):
    profile = profile_file(tmp_path, f"2\ndenylist\n{rule}\n")
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    probe = run_child(plan, python_probe("print('alive', flush=True)\nos.getppid()\nprint('survived')"))
    assert probe.signal == signal.SIGSYS, f"{action}: {probe.output} status {probe.status:#x}"
    assert "alive" in probe.output and "survived" not in probe.output


def _all_native_names() -> list[str]:
    names = []
    for number in range(1024):
        try:
            names.append(seccomp.resolve_syscall(seccomp.Arch.NATIVE, number).decode())
        except (ValueError, RuntimeError):
            continue
    return names


def test_version1_allowlist_kills_what_it_does_not_list(tmp_path):
    numbers = sorted({nr(name) for name in _all_native_names()} - {nr("getppid")})
    profile = profile_file(tmp_path, "1\nallowlist\n" + "".join(f"{n}\n" for n in numbers))
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    assert len(plan.seccomp.built.sections) == 1  # numbers are native numbers: other ABIs are killed
    probe = run_child(plan, python_probe("print('alive', flush=True)\nos.getppid()\nprint('survived')"))
    assert probe.signal == signal.SIGSYS, probe.output
    assert "alive" in probe.output and "survived" not in probe.output


def test_version2_allowlist_with_a_default_errno(tmp_path):
    names = [name for name in _all_native_names() if name != "uname"]
    profile = profile_file(tmp_path, "2\nallowlist errno 93\n[all]\n" + "".join(f"{n}\n" for n in names))
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    probe = run_child(
        plan,
        python_probe(
            f"syscall('uname', {nr('uname')}, ctypes.create_string_buffer(512))\n"
            f"syscall('getpid', {nr('getpid')})\n"
        ),
    )
    assert probe.exit_code == 0, probe.output
    assert "uname=EPROTONOSUPPORT" in probe.output and "getpid=ok" in probe.output


def test_lxc_shipped_common_seccomp_parses_and_loads(tmp_path):
    if not LXC_COMMON_SECCOMP.exists():
        pytest.skip(f"LXC's {LXC_COMMON_SECCOMP} is not installed (package lxc)")
    shipped = parse_profile(LXC_COMMON_SECCOMP.read_text(), str(LXC_COMMON_SECCOMP))
    assert shipped.rules == default_profile().rules and shipped.default == default_profile().default
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {LXC_COMMON_SECCOMP}\n")
    code = (
        f"syscall('umount_force', {nr('umount2')}, b'/nonexistent-bdev', {MNT_FORCE})\n"
        f"syscall('umount', {nr('umount2')}, b'/nonexistent-bdev', 0)\n"
        f"syscall('open_by_handle_at', {nr('open_by_handle_at')}, -1, None, 0)\n"
        f"syscall('kexec_load', {nr('kexec_load')}, 0, 0, None, 0)\n"
        f"syscall('delete_module', {nr('delete_module')}, b'bdev_no_such_module', 0)\n"
        "print(open('/proc/self/status').read())\n"
    )
    probe = run_child(plan, python_probe(code))
    control = run_child(None, python_probe(code))
    out = probe.section("probe")
    assert "umount_force=EACCES" in out and "umount=ENOENT" in out
    assert "open_by_handle_at=EPERM" in out and "kexec_load=EPERM" in out and "delete_module=EPERM" in out
    assert "Seccomp:\t2" in out
    assert "umount_force=ENOENT" in control.output and "open_by_handle_at=EPERM" not in control.output


# The profile Incus and LXD generate (LXC's default rules with errno 38 (ENOSYS), and their
# seccomp(2) argument rules), plus the "keyctl errno 38" line users add for systemd.
INCUS_STYLE_PROFILE = DEFAULT_PROFILE_TEXT.replace("errno 1\n", "errno 38\n") + (
    "seccomp errno 22 [1,2146435072,SCMP_CMP_MASKED_EQ,2146435072]\n"
    "seccomp errno 22 [1,8,SCMP_CMP_MASKED_EQ,8]\n"
    "keyctl errno 38\n"
)


def test_incus_style_profile_parses_and_loads(tmp_path):
    profile = profile_file(tmp_path, INCUS_STYLE_PROFILE)
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    assert plan.seccomp.profile.describe() == "denylist, 9 rules, otherwise allow"
    code = (
        f"syscall('keyctl', {nr('keyctl')}, 0, -3, 0)\n"  # KEYCTL_GET_KEYRING_ID of the session keyring
        f"syscall('open_by_handle_at', {nr('open_by_handle_at')}, -1, None, 0)\n"
    )
    probe = run_child(plan, python_probe(code))
    assert "keyctl=ENOSYS" in probe.output and "open_by_handle_at=ENOSYS" in probe.output, probe.output
    control = run_child(None, python_probe(code))
    assert "keyctl=ENOSYS" not in control.output and "open_by_handle_at=ENOSYS" not in control.output


def test_default_policy_when_no_profile_and_none_when_empty(tmp_path):
    plan = plan_for(tmp_path, "lxc.uts.name = c1\n")
    assert plan.seccomp.profile.rules == parse_profile(DEFAULT_PROFILE_TEXT, "x").rules
    probe = run_child(
        plan, python_probe(f"syscall('umount_force', {nr('umount2')}, b'/nonexistent-bdev', {MNT_FORCE})\n")
    )
    assert "umount_force=EACCES" in probe.output
    empty = plan_for(tmp_path, "lxc.seccomp.profile =\n", name="c2")
    assert empty.seccomp is None
    assert any(line.startswith("seccomp: no filter (lxc.seccomp.profile is empty") for line in empty.report())
    assert run_child(empty, status_probe()).status_field("probe", "Seccomp") == "0"


def test_default_policy_covers_the_compat_abis(tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("the compat ABIs checked here are x86_64's (i386 and x32)")
    built = build_filter(default_profile())
    assert built.sections == ("x86_64", "x86", "x32")
    pfc = tmp_path / "filter.pfc"
    built.export_pfc(str(pfc))
    text = pfc.read_text()
    assert "filter for arch x86 (" in text and "filter for arch x32 (" in text
    assert 'syscall "kexec_load" (283)' in text  # i386's number for kexec_load


def _become_nobody():
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)


def test_unprivileged_loading_needs_no_new_privs(tmp_path):
    """The kernel's own refusal: without CAP_SYS_ADMIN a filter loads only under
    no_new_privs, which the plan sets before it loads the filter."""
    refused = run_child(plan_for(tmp_path, "lxc.no_new_privs = 0\n"), status_probe(), before=_become_nobody)
    assert refused.exit_code == 127
    assert (
        "child failed: BdevError: container 'c1': cannot load the seccomp filter from "
        "bdev's default policy (LXC's common.seccomp): Permission denied." in refused.output
    ), refused.output
    loaded = run_child(plan_for(tmp_path, "lxc.no_new_privs = 1\n", name="c2"), status_probe(), before=_become_nobody)
    assert loaded.exit_code == 0, loaded.output
    assert loaded.status_field("probe", "Seccomp") == "2" and loaded.status_field("probe", "NoNewPrivs") == "1"


def test_an_already_filtered_process_stacks_only_with_allow_nesting(tmp_path):
    config = tmp_path / "c1" / "config"
    config.parent.mkdir()
    ref = ContainerRef(tmp_path, "c1")

    def report_plans():
        build_filter(default_profile()).load()  # as if bdev itself ran in a container
        for text in ("lxc.uts.name = c1\n", "lxc.seccomp.allow_nesting = 1\n"):
            config.write_text(text)
            plan = security_plan(ref, LxcConfig.load(config), host=NO_LSM)
            notes = [line for line in plan.report() if "already" in line]
            os.write(1, f"nested: {plan.seccomp is not None} {notes}\n".encode())  # fd 1: pytest captures sys.stdout
        plan.apply_in_child()  # the allow_nesting one: a second filter on top of the first

    probe = run_child(None, status_probe(), before=report_plans)
    lines = probe.output.splitlines()
    assert any(
        line.startswith("nested: False")
        and "seccomp: not loaded: this process already runs under a seccomp filter" in line
        for line in lines
    ), probe.output
    assert "nested: True []" in lines
    assert probe.status_field("probe", "Seccomp_filters") == "2"


# ---------------------------------------------------------------------------- refusals


def expect_refusal(tmp_path: Path, text: str, *parts: str) -> str:
    with pytest.raises(InvalidInput) as info:
        plan_for(tmp_path, text, name="web1")
    message = str(info.value)
    assert message.startswith("container 'web1': "), message
    assert message.count("\n") == 0 and message.endswith("."), message
    for part in parts:
        assert part in message, message
    return message


def test_refusals_name_the_container_key_and_file(tmp_path):
    config = str(tmp_path / "web1" / "config")
    expect_refusal(
        tmp_path, "lxc.cap.drop = sys_module sys_foo\n", "lxc.cap.drop", config, "unknown capability 'sys_foo'"
    )
    expect_refusal(tmp_path, "lxc.cap.keep = CAP_NET_RAW\n", "lxc.cap.keep", "'CAP_NET_RAW'", "LXC writes it net_raw")
    expect_refusal(tmp_path, "lxc.cap.drop = 99\n", "lxc.cap.drop", "capability 99 is above this kernel's last")
    expect_refusal(
        tmp_path,
        "lxc.cap.drop = sys_module\nlxc.cap.keep = chown\n",
        "lxc.cap.drop and lxc.cap.keep are both set",
        config,
    )
    expect_refusal(tmp_path, "lxc.no_new_privs = yes\n", "lxc.no_new_privs", config, "must be 0 or 1")
    expect_refusal(tmp_path, "lxc.seccomp.allow_nesting = 2\n", "lxc.seccomp.allow_nesting", "must be 0 or 1")


def test_refusals_for_unreadable_profiles(tmp_path):
    missing = tmp_path / "missing.seccomp"
    expect_refusal(tmp_path, f"lxc.seccomp.profile = {missing}\n", "lxc.seccomp.profile", str(missing), "No such file")
    expect_refusal(tmp_path, f"lxc.seccomp.profile = {tmp_path}\n", "lxc.seccomp.profile", "Is a directory")
    binary = tmp_path / "binary.seccomp"
    binary.write_bytes(b"2\ndenylist\n\xff\n")
    expect_refusal(tmp_path, f"lxc.seccomp.profile = {binary}\n", str(binary), "is not text")
    # LXC 1.0's key name is read too
    expect_refusal(tmp_path, f"lxc.seccomp = {missing}\n", "lxc.seccomp ", str(missing))


@pytest.mark.parametrize(
    "text, line, cause",
    [
        ("3\ndenylist\n", 1, "the first line must be the format version, 1 or 2"),
        ("2\ngreylist\n", 2, "the policy must be allowlist or denylist"),
        ("2\ndenylist debug\n", 2, "'debug' is not implemented"),
        ("1\nallowlist\n0\nread\n", 4, "a version 1 profile lists syscall numbers, not 'read'"),
        ("1\ndenylist\n", 2, "a version 1 profile is an allowlist"),
        ("2\ndenylist\n\nmknod deny\n", 4, "unknown action 'deny'"),
        ("2\ndenylist\nmknod errno\n", 3, "'errno' needs one number from 0 to 4095"),
        ("2\ndenylist\nmknod errno 5000\n", 3, "'errno' needs one number"),
        ("2\ndenylist\nmknod notify\n", 3, "the notify action needs a seccomp notification listener"),
        ("2\ndenylist\n[sparc]\nmknod\n", 3, "unsupported architecture section '[sparc]'"),
        ("2\ndenylist\nioctl errno 1 [1,0x5412]\n", 3, "an argument filter has 3 or 4 fields"),
        ("2\ndenylist\nioctl errno 1 [7,1,==]\n", 3, "argument index 7 is out of range"),
        ("2\ndenylist\nioctl errno 1 [1,0x5412,SCMP_CMP_ABOUT]\n", 3, "unknown comparison 'SCMP_CMP_ABOUT'"),
        ("2\ndenylist\nioctl errno 1 [1,banana,==]\n", 3, "argument value 'banana' is not a number"),
        ("2\ndenylist\nioctl [1,2,==]\n", 3, "an argument filter must follow an action"),
        ("2\ndenylist\nmk-nod\n", 3, "'mk-nod' is not a system call name"),
        (
            "2\ndenylist\n# allow what is allowed anyway\nmknod allow\n",
            4,
            f"libseccomp refused the rule for mknod (allow) on {host_sections()[0][0]}: "
            "its action is the profile's default action",
        ),
    ],
)
def test_malformed_profiles_name_file_and_line(tmp_path, text, line, cause):
    profile = profile_file(tmp_path, text)
    config = tmp_path / "web1" / "config"
    prefix = f"lxc.seccomp.profile in {config}: seccomp profile {profile} line {line}: "
    expect_refusal(tmp_path, f"lxc.seccomp.profile = {profile}\n", prefix + cause)


def test_every_config_lxc_ships_is_accepted(tmp_path):
    """The capability lists, profiles and LSM lines of LXC's own distribution configs."""
    shipped = sorted(LXC_COMMON_SECCOMP.parent.glob("*.conf"))
    if not shipped:
        pytest.skip(f"LXC's configs are not installed in {LXC_COMMON_SECCOMP.parent} (package lxc)")
    dropped = set()
    for path in shipped:
        plan = security_plan(ContainerRef(tmp_path, path.stem), LxcConfig.load(path), host=NO_LSM)
        dropped.update(plan.capabilities.dropped)
        assert plan.report(), path
    assert mask("sys_module") & sum(1 << n for n in dropped)  # common.conf drops it


def test_unknown_syscalls_are_skipped_and_reported(tmp_path):
    profile = profile_file(tmp_path, "2\ndenylist\nno_such_call errno 1\nsocketcall errno 1\nmknod errno 1\n")
    plan = plan_for(tmp_path, f"lxc.seccomp.profile = {profile}\n")
    report = plan.report()
    assert "seccomp: skipped rules for system calls this machine does not have: no_such_call (line 3)" in report
    assert not any("socketcall" in line for line in report)  # i386 has it: not skipped


def test_missing_python_binding_is_one_sentence(tmp_path, monkeypatch):
    """python3-seccomp is installed here, so its absence is simulated: the requirement check
    is what speaks, naming the Debian package."""
    from bdev.requirements import PythonModule
    from bdev_runtime.security import plan as plan_module

    monkeypatch.setattr(plan_module, "SECCOMP", PythonModule("bdev_no_such_seccomp_binding", package="python3-seccomp"))
    with pytest.raises(BdevError) as info:
        plan_for(tmp_path, "")
    assert str(info.value) == (
        "container 'c1': cannot apply seccomp filters: Python module bdev_no_such_seccomp_binding is missing "
        "(install python3-seccomp)."
    )


# ---------------------------------------------------------------------------- LSMs


def test_this_host_reports_apparmor_and_selinux_as_unavailable(tmp_path):
    host = probe_host()
    if host.apparmor is None or host.selinux is None:
        pytest.skip("this host runs AppArmor or SELinux; the fake-host tests below cover applying labels")
    plan = security_plan(
        ContainerRef(tmp_path, "c1"),
        LxcConfig.parse(
            "lxc.apparmor.profile = lxc-container-default\nlxc.selinux.context = system_u:system_r:lxc_t:s0\n"
        ),
    )
    report = plan.report()
    assert any(
        line.startswith(
            "apparmor: profile 'lxc-container-default' (lxc.apparmor.profile) not applied: unavailable on this host ("
        )
        for line in report
    ), report
    assert any(
        line.startswith("selinux: context 'system_u:system_r:lxc_t:s0' (lxc.selinux.context) not applied: unavailable")
        for line in report
    )
    assert all(label.writes == () for label in plan.labels)
    # unconfined is fine everywhere, and still reported
    plain = security_plan(ContainerRef(tmp_path, "c2"), LxcConfig.parse("lxc.aa_profile = unconfined\n"))
    assert any(
        line.startswith("apparmor: unavailable on this host (") and line.endswith("; unconfined (lxc.aa_profile)")
        for line in plain.report()
    )
    probe = run_child(plain, status_probe())  # applying it writes nothing, so it succeeds
    assert probe.exit_code == 0, probe.output


def fake_host(
    tmp_path: Path, *, apparmor_profiles: tuple[str, ...] = (), selinux: bool = False, securityfs: bool = True
) -> HostLsms:
    """A sysfs tree of a host running AppArmor (with these profiles loaded; securityfs
    mounted or not) and maybe SELinux, for the label logic this kernel cannot show (it runs
    neither)."""
    root = tmp_path / f"host{len(list(tmp_path.glob('host*')))}"
    enabled = root / "sys/module/apparmor/parameters/enabled"
    enabled.parent.mkdir(parents=True)
    enabled.write_text("Y\n")
    if securityfs:
        profiles = root / "sys/kernel/security/apparmor/profiles"
        profiles.parent.mkdir(parents=True)
        profiles.write_text("".join(f"{name} (enforce)\n" for name in apparmor_profiles))
        (root / "sys/kernel/security/lsm").write_text("lockdown,capability,apparmor" + (",selinux" if selinux else ""))
    if selinux:
        (root / "sys/fs/selinux").mkdir(parents=True)
        (root / "sys/fs/selinux/enforce").write_text("1")
    return probe_host(root)


def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    attr = proc / "thread-self" / "attr"
    (attr / "apparmor").mkdir(parents=True)
    for name in ("exec", "keycreate", "apparmor/exec"):
        (attr / name).write_text("")
    return proc


def test_apparmor_profile_is_written_for_exec(tmp_path):
    host = fake_host(tmp_path, apparmor_profiles=("lxc-container-default", "lxc-container-default-cgns"))
    assert host.apparmor is None and host.selinux is not None
    plan = plan_for(tmp_path, "lxc.apparmor.profile = lxc-container-default\n", host=host)
    assert "apparmor: profile 'lxc-container-default' (lxc.apparmor.profile)" in plan.report()
    plan.proc = fake_proc(tmp_path)
    plan.labels[0].apply(plan.proc)
    assert (plan.proc / "thread-self/attr/apparmor/exec").read_text() == "exec lxc-container-default"
    default = plan_for(tmp_path, "", name="c2", host=host)
    assert default.labels[0].writes == (("exec", "exec lxc-container-default-cgns"),)
    unchanged = plan_for(tmp_path, "lxc.apparmor.profile = unchanged\n", name="c3", host=host)
    assert unchanged.labels[0].writes == ()


def test_apparmor_refusals(tmp_path):
    host = fake_host(tmp_path, apparmor_profiles=("lxc-container-default",))
    with pytest.raises(
        InvalidInput, match=r"^container 'c1': lxc.apparmor.profile in .*/c1/config: AppArmor profile 'lxc-custom' is"
    ):
        plan_for(tmp_path, "lxc.apparmor.profile = lxc-custom\n", host=host)
    with pytest.raises(InvalidInput, match=r"lxc.apparmor.profile = generated in .*/c1/config asks for a generated"):
        plan_for(tmp_path, "lxc.apparmor.profile = generated\n", host=host)
    no_default = plan_for(tmp_path, "", host=host)
    assert any("LXC's default lxc-container-default-cgns is not loaded" in line for line in no_default.report())
    # without securityfs the loaded profiles are unknown: a named one is passed to the kernel
    blind = fake_host(tmp_path, securityfs=False)
    assert blind.apparmor is None and blind.apparmor_profiles is None
    passed = plan_for(tmp_path, "lxc.apparmor.profile = lxc-custom\n", name="c2", host=blind)
    assert passed.labels[0].writes == (("exec", "exec lxc-custom"),)
    unknown_default = plan_for(tmp_path, "", name="c3", host=blind)
    assert unknown_default.labels[0].writes == ()
    assert any("may not be loaded" in line for line in unknown_default.report())


def test_selinux_context_and_keyring(tmp_path):
    host = fake_host(tmp_path, selinux=True)
    context = "system_u:system_r:lxc_t:s0:c22"
    plan = plan_for(tmp_path, f"lxc.selinux.context = {context}\n", host=host)
    assert plan.labels[1].writes == (("exec", context), ("keycreate", context))
    proc = fake_proc(tmp_path)
    plan.labels[1].apply(proc)
    assert (proc / "thread-self/attr/exec").read_text() == context
    keyring = plan_for(
        tmp_path,
        f"lxc.se_context = {context}\nlxc.selinux.context.keyring = system_u:system_r:key_t:s0\n",
        name="c2",
        host=host,
    )
    assert keyring.labels[1].writes == (("exec", context), ("keycreate", "system_u:system_r:key_t:s0"))
    assert plan_for(tmp_path, "lxc.selinux.context = unconfined_t\n", name="c3", host=host).labels[1].writes == ()
    with pytest.raises(InvalidInput, match=r"lxc.selinux.context in .*/c4/config: 'lxc_t' is not an SELinux context"):
        plan_for(tmp_path, "lxc.selinux.context = lxc_t\n", name="c4", host=host)


def test_the_kernel_refuses_a_label_it_has_no_lsm_for(tmp_path):
    """The real kernel's error path: a plan made for an AppArmor host, applied here."""
    if probe_host().apparmor is None:
        pytest.skip("this host runs AppArmor, so it would accept the label")
    plan = plan_for(
        tmp_path,
        "lxc.apparmor.profile = lxc-container-default\n",
        host=fake_host(tmp_path, apparmor_profiles=("lxc-container-default",)),
    )
    probe = run_child(plan, status_probe())
    assert probe.exit_code == 127
    assert (
        "child failed: BdevError: container 'c1': cannot set the apparmor label (/proc/thread-self/attr/"
        in probe.output
    )
    assert "Invalid argument." in probe.output
