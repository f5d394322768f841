"""Starting with LXC's per-start options and hooks: ``lxc-start -s KEY=VAL`` and ``-c FILE``,
``lxc.hook.pre-start`` (and the STARTING state another process sees while it runs)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bdev_runtime import lifecycle
from bdev_runtime.state import State, read_record

from runtime_helpers import Runtime, wait_until
from test_runtime_cli import VENV_BIN, ours

pytestmark = [pytest.mark.root]


def attached_output(runtime: Runtime, name: str, script: str) -> str:
    """What ``script`` prints inside the running container ``name`` (through lxc-attach)."""
    done = ours("lxc-attach", "-n", name, "-P", runtime.lxcpath, "--clear-env", "--", "/bin/sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---------------------------------------------------------------------------- -s KEY=VAL


def test_start_s_sets_keys_for_this_start_only(runtime: Runtime) -> None:
    runtime.create("c1", config=[("lxc.environment", "KEPT=1")])
    lp = runtime.lxcpath
    config_before = (lp / "c1" / "config").read_text()
    started = ours("lxc-start", "-n", "c1", "-P", lp, "-s", "lxc.uts.name=other", "-s", "lxc.environment=ADDED=2",
                   "-s", "lxc.cap.drop = sys_module")
    assert started.returncode == 0, started.stderr
    out = attached_output(runtime, "c1", "hostname; tr '\\0' '\\n' < /proc/1/environ | sort | grep -E '^(KEPT|ADDED)=';"
                                         " grep ^CapBnd /proc/1/status")
    lines = out.splitlines()
    assert lines[:3] == ["other", "ADDED=2", "KEPT=1"], out  # a single key replaced, a list key added to
    assert not int(lines[3].split()[1], 16) & (1 << 16), out  # CAP_SYS_MODULE dropped
    assert (lp / "c1" / "config").read_text() == config_before  # only this start
    assert ours("lxc-stop", "-n", "c1", "-P", lp, "-k").returncode == 0

    cleared = ours("lxc-start", "-n", "c1", "-P", lp, "-s", "lxc.environment=")  # empty: the list cleared
    assert cleared.returncode == 0, cleared.stderr
    assert "KEPT" not in attached_output(runtime, "c1", "tr '\\0' '\\n' < /proc/1/environ")
    assert ours("lxc-stop", "-n", "c1", "-P", lp, "-k").returncode == 0


def test_start_s_refuses_bad_assignments_before_starting(runtime: Runtime) -> None:
    runtime.create("c1")
    lp = runtime.lxcpath
    for args, message in (
        (("-s", "lxc.uts.name"), "lxc-start: -s 'lxc.uts.name': expected KEY=VALUE with an lxc. configuration key.\n"),
        (("-s", "hostname=x"), "lxc-start: -s 'hostname=x': expected KEY=VALUE with an lxc. configuration key.\n"),
        (("-s", "lxc.signal.halt=SIGNOPE"), None),
    ):
        refused = ours("lxc-start", "-n", "c1", "-P", lp, *args)
        assert refused.returncode != 0, args
        if message is not None:
            assert refused.stderr == message, refused.stderr
        else:
            assert refused.stderr.startswith("lxc-start: container 'c1': ") and "SIGNOPE" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert lifecycle.info(runtime.ctx, runtime.ref("c1")).state is State.STOPPED


# ---------------------------------------------------------------------------- -c FILE


def test_start_c_writes_the_console_to_a_file(runtime: Runtime, tmp_path: Path) -> None:
    runtime.create("c1")
    lp = runtime.lxcpath
    console = tmp_path / "console.out"
    missing = ours("lxc-start", "-n", "c1", "-P", lp, "-c", console)
    assert missing.returncode == 1
    assert missing.stderr == (f"lxc-start: container 'c1': cannot open its console file {console}: "
                              "No such file or directory.\n")
    assert lifecycle.info(runtime.ctx, runtime.ref("c1")).state is State.STOPPED
    console.write_text("before\n")
    started = ours("lxc-start", "-n", "c1", "-P", lp, "-c", console, "--", "/bin/sh", "-c",
                   "echo on-the-console; echo from-$(hostname); exec sleep 1000")
    assert started.returncode == 0, started.stderr
    assert wait_until(lambda: "from-c1" in console.read_text(), 20), console.read_text()
    assert console.read_text().replace("\r\n", "\n") == "before\non-the-console\nfrom-c1\n"  # appended
    attached_output(runtime, "c1", "echo later > /dev/console")
    assert wait_until(lambda: "later" in console.read_text(), 20), console.read_text()
    assert ours("lxc-stop", "-n", "c1", "-P", lp, "-k").returncode == 0


# ---------------------------------------------------------------------------- pre-start hook, STARTING


def _hook(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "pre-start"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_another_process_sees_starting_while_the_pre_start_hook_runs(runtime: Runtime, tmp_path: Path) -> None:
    release = tmp_path / "release"
    seen = tmp_path / "seen"
    hook = _hook(tmp_path, f'echo "$1 $2 $3 $LXC_NAME $LXC_HOOK_TYPE $LXC_HOOK_SECTION $LXC_CONFIG_FILE" > {seen}\n'
                           f"while [ ! -e {release} ]; do sleep 0.1; done")
    ref = runtime.create("c1", config=[("lxc.hook.pre-start", str(hook))])
    lp = runtime.lxcpath
    starting = subprocess.Popen([str(VENV_BIN / "lxc-start"), "-n", "c1", "-P", str(lp)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(seen.exists, 30), "the pre-start hook never ran"
        assert seen.read_text().split() == ["c1", "lxc", "pre-start", "c1", "pre-start", "lxc", str(ref.config_path)]
        began = time.monotonic()
        assert lifecycle.info(runtime.ctx, ref).state is State.STARTING
        assert ours("lxc-info", "-n", "c1", "-P", lp, "-s").stdout == "State:          STARTING\n"
        assert ours("lxc-ls", "-P", lp, "-F", "NAME,STATE").stdout.splitlines()[1].split() == ["c1", "STARTING"]
        assert time.monotonic() - began < 10  # answered at once, not after the start
        refused = ours("lxc-attach", "-n", "c1", "-P", lp, "--", "true")
        assert refused.returncode != 0 and refused.stderr == "lxc-attach: container 'c1': is starting, not running yet.\n"
        record = read_record(ref)
        assert record is not None and record.state == "STARTING"
    finally:
        release.touch()
        out, err = starting.communicate(timeout=120)
    assert starting.returncode == 0, err
    assert lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    assert ours("lxc-info", "-n", "c1", "-P", lp, "-s").stdout == "State:          RUNNING\n"
    lifecycle.stop(runtime.ctx, ref, kill=True)


def test_a_failing_pre_start_hook_stops_the_start(runtime: Runtime, tmp_path: Path) -> None:
    hook = _hook(tmp_path, "echo 'the disk is not ready' >&2; exit 3")
    ref = runtime.create("c1", config=[("lxc.hook.pre-start", str(hook))])
    refused = ours("lxc-start", "-n", "c1", "-P", runtime.lxcpath)
    assert refused.returncode == 1
    assert refused.stderr == (f"lxc-start: container 'c1': its lxc.hook.pre-start hook '{hook}' failed with status 3: "
                              "the disk is not ready.\n")
    assert lifecycle.info(runtime.ctx, ref).state is State.STOPPED and read_record(ref) is None


# ---------------------------------------------------------------------------- lxc-copy -e -m


def test_copy_e_m_adds_bind_and_overlay_mounts_to_the_ephemeral_copy(runtime: Runtime, tmp_path: Path) -> None:
    runtime.create("base")
    lp = runtime.lxcpath
    shared, layered = tmp_path / "shared", tmp_path / "layered"
    for directory, text in ((shared, "host data\n"), (layered, "lower data\n")):
        directory.mkdir()
        (directory / "file").write_text(text)
    started = ours("lxc-copy", "-n", "base", "-N", "eph", "-P", lp, "-e", "-m", f"bind={shared}:/mnt/shared:ro",
                   "-m", f"overlay={layered}:/srv/layered,bind={shared}")
    assert started.returncode == 0, started.stderr
    runtime.ref("eph")
    entries = [line for line in (lp / "eph" / "config").read_text().splitlines()
               if line.startswith("lxc.mount.entry") and line not in (lp / "base" / "config").read_text()]
    assert entries[0] == f"lxc.mount.entry = {shared} mnt/shared none bind,optional,ro,create=dir 0 0"
    assert entries[1].startswith(f"lxc.mount.entry = {layered} srv/layered overlay lowerdir={layered},upperdir={lp}/eph/")
    assert entries[2] == f"lxc.mount.entry = {shared} {str(shared).lstrip('/')} none bind,optional,rw,create=dir 0 0"
    out = attached_output(runtime, "eph", "cat /mnt/shared/file; touch /mnt/shared/x 2>/dev/null || echo read-only; "
                                          f"cat {shared}/file; cat /srv/layered/file; echo mine > /srv/layered/new; "
                                          "cat /srv/layered/new")
    assert out.splitlines() == ["host data", "read-only", "host data", "lower data", "mine"], out
    assert sorted(p.name for p in layered.iterdir()) == ["file"]  # the overlay's changes stay in the copy
    assert ours("lxc-stop", "-n", "eph", "-P", lp, "-k").returncode == 0
    assert wait_until(lambda: not (lp / "eph").exists(), 20)  # gone, its overlay directories with it
    assert sorted(p.name for p in lp.iterdir()) == ["base"]


def test_copy_e_m_refuses_bad_mounts_before_cloning(runtime: Runtime) -> None:
    runtime.create("base")
    lp = runtime.lxcpath
    for spec, message in (("tmpfs=/x", "-m 'tmpfs=/x': expected bind=SRC[:DEST][:ro|rw] or overlay=SRC[:DEST]"),
                          ("bind=relative", "-m 'bind=relative': the source must be an absolute host path"),
                          ("bind=/a:/b:ro:x", "-m 'bind=/a:/b:ro:x': too many fields"),
                          ("overlay=/a:/", "-m 'overlay=/a:/': cannot mount over the container's /")):
        refused = ours("lxc-copy", "-n", "base", "-N", "eph", "-P", lp, "-e", "-m", spec)
        assert refused.returncode != 0 and refused.stderr == f"lxc-copy: {message}.\n", refused.stderr
    assert sorted(p.name for p in lp.iterdir()) == ["base"]


# ---------------------------------------------------------------------------- lxc-ls -f RAM, SWAP


def test_ls_fancy_shows_the_memory_and_swap_a_running_container_uses(runtime: Runtime) -> None:
    from bdev_runtime.cgroups import container_cgroup
    from bdev_runtime.spec import load_config

    ref = runtime.create("c1")
    runtime.create("idle")
    lp = runtime.lxcpath
    lifecycle.start(runtime.ctx, ref)
    attached_output(runtime, "c1", "dd if=/dev/zero of=/dev/shm/ballast bs=1M count=40 2>/dev/null; echo")
    listed = ours("lxc-ls", "-P", lp, "-f", "-F", "NAME,STATE,RAM,SWAP").stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATE", "RAM", "SWAP"], listed
    name, state, ram, swap = listed[1].split()
    assert (name, state) == ("c1", "RUNNING") and ram.endswith("MB") and swap.endswith("MB"), listed
    memory, swapped = container_cgroup(ref, load_config(ref)).memory_usage()
    assert memory is not None and swapped is not None  # this host's cgroup shows both (memsw or memory.stat)
    assert 40 <= float(ram[:-2]) <= memory / 1048576 + 8, (ram, memory)  # the 40 MiB of tmpfs are charged to it
    assert float(swap[:-2]) >= 0
    assert listed[2].split() == ["idle", "STOPPED", "-", "-"]  # as LXC: nothing for a stopped container
    lifecycle.stop(runtime.ctx, ref, kill=True)


# ---------------------------------------------------------------------------- attach under real LXC


@pytest.mark.lxc
def test_attach_to_a_container_real_lxc_runs(runtime: Runtime) -> None:
    from bdev.api import Container

    from test_runtime_cli import real, real_start

    runtime.create("r1", config=[("lxc.apparmor.profile", "unconfined"), ("lxc.cap.drop", "sys_module")])
    lp = runtime.lxcpath
    try:
        real_pid = real_start(lp, "r1")
        inside = ours("lxc-attach", "-n", "r1", "-P", lp, "--clear-env", "-v", "X=7", "--", "/bin/sh", "-c",
                      "echo $X $(hostname); readlink /proc/1/ns/pid; grep ^CapBnd /proc/self/status; "
                      "cut -d: -f2,3 /proc/self/cgroup | grep ^pids:; exit 5")
        assert inside.returncode == 5, inside.stderr
        lines = inside.stdout.splitlines()
        assert lines[0] == "7 r1"
        assert lines[1] == Path(f"/proc/{real_pid}/ns/pid").readlink().name  # the init real LXC started
        assert not int(lines[2].split()[1], 16) & (1 << 16)  # the config's lxc.cap.drop applies
        assert lines[3] == "pids:/"  # in the container's cgroup (its cgroup namespace's root)
        assert ours("bdev", "-P", lp, "attach", "r1", "--", "/bin/hostname").stdout == "r1\n"
        assert Container("r1", lp).attach_wait(["/bin/sh", "-c", "exit 6"]) == 6
        with_lxc = real("lxc-attach", "-n", "r1", "-P", lp, "--", "/bin/true")  # real LXC's own attach still works
        assert with_lxc.returncode == 0, with_lxc.stderr
    finally:
        real("lxc-stop", "-k", "-n", "r1", "-P", lp)
    refused = ours("lxc-attach", "-n", "r1", "-P", lp, "--", "true")
    assert (refused.returncode, refused.stderr) == (2, "lxc-attach: container 'r1': is not running.\n"), refused


# ---------------------------------------------------------------------------- lxc-copy -e -t


def test_copy_e_t_keeps_the_ephemeral_copys_changes_in_memory(runtime: Runtime) -> None:
    from bdev.mounts import mount_entries

    runtime.create("base")
    lp = runtime.lxcpath
    started = ours("lxc-copy", "-n", "base", "-N", "eph", "-P", lp, "-e", "-t")
    assert started.returncode == 0, started.stderr
    ref = runtime.ref("eph")
    config = (lp / "eph" / "config").read_text()
    assert f"lxc.rootfs.path = overlay:{lp}/base/rootfs:{lp}/eph/overlay/delta" in config
    assert f"lxc.hook.pre-mount = {lp}/eph/tmpfs-pre-mount" in config
    out = attached_output(runtime, "eph", "hostname; echo in-ram > /etc/made; cat /etc/made; grep ' / ' /proc/mounts")
    lines = out.splitlines()
    assert lines[:2] == ["eph", "in-ram"], out  # the hostname the clone wrote was carried onto the tmpfs
    assert f"upperdir={lp}/eph/overlay/delta" in lines[2], out
    upper = lp / "eph" / "overlay" / "delta"
    assert not (upper / "etc" / "made").exists()  # on the tmpfs, in the container's mount namespace only
    assert (upper / "etc" / "hostname").read_text() == "eph\n"
    assert lifecycle.info(runtime.ctx, ref).state is State.RUNNING
    assert not [m for m in mount_entries() if m.mountpoint.startswith(f"{lp}/")]  # nothing on the host
    assert ours("lxc-stop", "-n", "eph", "-P", lp, "-k").returncode == 0
    assert wait_until(lambda: not (lp / "eph").exists(), 20)
    assert not (lp / "base" / "rootfs" / "etc" / "made").exists()


def test_copy_e_t_refuses_what_cannot_be_kept_in_memory(runtime: Runtime) -> None:
    runtime.create("base")
    lp = runtime.lxcpath
    for args, message in ((("-D",), "a copy on a tmpfs (-t) keeps nothing, so it cannot be kept (-D)"),
                          (("-B", "dir"), "only an overlay copy can be placed on a tmpfs (-t), not dir")):
        refused = ours("lxc-copy", "-n", "base", "-N", "eph", "-P", lp, "-e", "-t", *args)
        assert refused.returncode != 0
        assert refused.stderr == f"lxc-copy: container 'eph': {message}.\n", refused.stderr
    assert sorted(p.name for p in lp.iterdir()) == ["base"]
