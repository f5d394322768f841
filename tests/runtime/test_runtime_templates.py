"""The runtime's templates for real: options passed through ``lxc-create -t NAME -- ...`` to
every template (``--help`` included), ``bdev templates`` listing them; an sshd container that
a client logs into with its key; Debian containers made by debootstrap, the second from the
cache, booted with systemd."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import BdevError
from bdev.engine.context import default_registry
from bdev_runtime import lifecycle
from bdev_runtime.attach import AttachOptions
from bdev_runtime.templates import debian

from runtime_helpers import Runtime, wait_until

TEMPLATES = ("busybox", "debian", "download", "local", "sshd")
LXC_CREATE = [sys.executable, "-m", "bdev.cli.lxc.create"]
BDEV = [sys.executable, "-m", "bdev.cli.main"]


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed command: exactly one line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


# ---------------------------------------------------------------------------- options and help


def test_every_template_is_listed_with_its_options() -> None:
    listed = subprocess.run([*BDEV, "templates"], capture_output=True, text=True, check=True).stdout
    for name in TEMPLATES:
        assert f"\n{name} options:\n" in listed
    assert "--auth-key FILE" in listed and "--packages PKG,..." in listed and "--flush-cache" in listed
    records = json.loads(subprocess.run([*BDEV, "templates", "--format", "json"], capture_output=True, text=True,
                                        check=True).stdout)["templates"]
    usage = {r["name"]: r["usage"] for r in records}
    assert set(TEMPLATES) <= set(usage)
    assert "--release RELEASE" in usage["debian"] and "--server URL" in usage["download"]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_template_help_through_lxc_create(template: str, flag: str, lxcpath: Path) -> None:
    """``lxc-create -t NAME -- --help`` prints the template's options and creates nothing."""
    proc = subprocess.run([*LXC_CREATE, "-P", str(lxcpath), "-n", "c1", "-t", template, "--", flag],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Template {template}: ")
    assert default_registry().template(template).usage in proc.stdout
    assert list(lxcpath.iterdir()) == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_unknown_template_option_is_one_sentence(template: str, lxcpath: Path) -> None:
    proc = subprocess.run([*LXC_CREATE, "-P", str(lxcpath), "-n", "c1", "-t", template, "--", "--bogus", "1"],
                          capture_output=True, text=True)
    text = one_line_error(proc)
    assert f"template {template!r}: no such option '--bogus' (it takes: " in text
    assert proc.returncode == 2
    assert list(lxcpath.iterdir()) == []


def test_unknown_template_is_one_sentence(lxcpath: Path) -> None:
    proc = subprocess.run([*LXC_CREATE, "-P", str(lxcpath), "-n", "c1", "-t", "nosuch"], capture_output=True, text=True)
    assert "Unknown template 'nosuch' (known: busybox, debian, download, local, sshd)" in one_line_error(proc)
    assert list(lxcpath.iterdir()) == []


@pytest.mark.root
def test_options_reach_the_template(lxcpath: Path, tmp_path: Path) -> None:
    """What follows ``--`` is the template's: busybox's --busybox-path, local's --path,
    sshd's --port and --listen."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is part of the test machine"
    run = [*LXC_CREATE, "-P", str(lxcpath)]
    subprocess.run([*run, "-n", "b", "-t", "busybox", "--", "--busybox-path", busybox], check=True, capture_output=True)
    assert (lxcpath / "b/rootfs/bin/busybox").read_bytes() == Path(busybox).read_bytes()
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/motd").write_text("from local\n")
    subprocess.run([*run, "-n", "l", "-t", "local", "--", "--path", str(tmp_path / "tree")], check=True, capture_output=True)
    assert (lxcpath / "l/rootfs/etc/motd").read_text() == "from local\n"
    subprocess.run([*run, "-n", "s", "-t", "sshd", "--", "--port", "2222", "--listen", "127.0.0.1"], check=True,
                   capture_output=True)
    config = (lxcpath / "s/rootfs/etc/ssh/sshd_config").read_text()
    assert "Port 2222\n" in config and "ListenAddress 127.0.0.1\n" in config


@pytest.mark.parametrize(("args", "fragment"), [
    (["--packages", "ok,Bad!"], "'Bad!' is not a Debian package name"),
    (["--arch", "s390x"], "cannot bootstrap s390x on this"),
    (["--mirror", "ftp://mirror/debian"], "is not an http://, https:// or file:// URL"),
    (["--variant", "tiny"], "invalid value for '--variant'"),
])
def test_debian_bad_options_before_any_bootstrap(args: list[str], fragment: str, lxcpath: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BDEV_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(BdevError) as caught:
        Container("c1", lxcpath).create("debian", "dir", args=args)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (lxcpath / "c1").exists()
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------- sshd


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.root
def test_sshd_rootfs(lxcpath: Path, tmp_path: Path) -> None:
    """The tree LXC's sshd template makes: host programs by symlink or read-only bind, fresh
    host keys (not the host's), root's key with strict modes."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    Container("s1", lxcpath).create("sshd", "dir", args=["--auth-key", str(tmp_path / "key.pub")])
    rootfs = lxcpath / "s1/rootfs"
    for name in ("bin", "sbin", "lib", "lib64"):
        host = Path("/") / name
        if host.is_symlink():
            assert os.readlink(rootfs / name) == os.readlink(host)
    config = (lxcpath / "s1/config").read_text()
    assert "lxc.mount.entry = /usr usr none ro,bind 0 0" in config
    assert "lxc.init.cmd = /usr/sbin/sshd -D -e" in config
    key = (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    host_key = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    assert not host_key.exists() or host_key.read_text().split()[1] != key.split()[1]
    assert (rootfs / "etc/ssh/ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    auth = rootfs / "root/.ssh/authorized_keys"
    assert auth.read_text() == (tmp_path / "key.pub").read_text()
    assert auth.stat().st_mode & 0o777 == 0o600 and auth.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(("content", "fragment"), [(None, "does not exist"), ("not a key\n", "holds no SSH public key")])
def test_sshd_bad_auth_key(content: str | None, fragment: str, lxcpath: Path, tmp_path: Path) -> None:
    path = tmp_path / "key.pub"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BdevError) as caught:
        Container("s1", lxcpath).create("sshd", "dir", args=["--auth-key", str(path)])
    assert fragment in str(caught.value)
    assert not (lxcpath / "s1").exists()


@pytest.mark.root
def test_sshd_container_accepts_a_key_login(runtime: Runtime, tmp_path: Path) -> None:
    """Start the sshd container sharing the host's network (``lxc.net.0.type = none``) on a
    free loopback port; a client that trusts only the container's generated host key logs in
    with its key, finds the container's host name and a read-only /usr; then stop it."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    Container("ssh1", runtime.lxcpath).create(
        "sshd", "dir", args=["--auth-key", f"{key}.pub", "--port", str(port), "--listen", "127.0.0.1"],
        config=[("lxc.net.0.type", "none")])
    ref = runtime.ref("ssh1")
    host_key = (runtime.lxcpath / "ssh1/rootfs/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    lifecycle.start(runtime.ctx, ref)

    def listening() -> bool:
        with contextlib.closing(socket.socket()) as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert wait_until(listening, 20), "sshd did not listen"
    proc = subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "HostKeyAlgorithms=ssh-ed25519", "root@127.0.0.1",
         "cat /etc/hostname; touch /usr/bdev-test 2>/dev/null && echo usr-writable || echo usr-read-only"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ssh1", "usr-read-only"]
    assert not Path("/usr/bdev-test").exists()
    wrong = subprocess.run(["ssh", "-i", str(tmp_path / "nokey"), "-p", str(port), "-o", "BatchMode=yes",
                            "-o", f"UserKnownHostsFile={known}", "root@127.0.0.1", "true"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 255 and "Permission denied" in wrong.stderr
    lifecycle.stop(runtime.ctx, ref, timeout=20)
    assert wait_until(lambda: not listening(), 20)


# ---------------------------------------------------------------------------- debian


def attached(rt: Runtime, name: str, argv: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    capfd.readouterr()
    status = lifecycle.attach(rt.ctx, rt.ref(name), argv, AttachOptions(clear_env=True))
    out = capfd.readouterr().out
    assert status == 0, out
    return out


@pytest.mark.root
@pytest.mark.timeout(1800)
def test_debian_second_container_comes_from_the_cache(runtime: Runtime, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """debootstrap from the Debian archive for the first container, the cached tree for the
    second (timed: seconds); the container fixes are in both trees; the second boots with
    systemd to its gettys, udev masked, and halts on lxc.signal.halt."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BDEV_CACHE_DIR", str(cache))
    try:
        times = []
        for name in ("deb1", "deb2"):
            started = time.monotonic()
            Container(name, runtime.lxcpath).create("debian", "dir", args=["--packages", "procps"],
                                                    config=[("lxc.net.0.type", "empty")])
            times.append(time.monotonic() - started)
            runtime.ref(name)
        with capfd.disabled():
            print(f"\ndebian: first container {times[0]:.1f} s (debootstrap), second {times[1]:.1f} s (cache)")
        assert times[1] < 60 and times[1] < times[0] / 2, times
        assert len(list((cache / "debian").glob("bookworm_*_minbase_*.tar.*"))) == 1
        for name in ("deb1", "deb2"):
            rootfs = runtime.lxcpath / name / "rootfs"
            assert (rootfs / "etc/hostname").read_text() == f"{name}\n"
            assert f"127.0.1.1\t{name}\n" in (rootfs / "etc/hosts").read_text()
            assert [ln.split(":")[1] for ln in (rootfs / "etc/shadow").read_text().splitlines()
                    if ln.startswith("root:")][0].startswith("!")
            for unit in ("systemd-udevd.service", "udev.service", "systemd-modules-load.service"):
                assert os.readlink(rootfs / "etc/systemd/system" / unit) == "/dev/null"
            assert (rootfs / "etc/systemd/system/getty.target.wants/console-getty.service").exists()
            assert (rootfs / "etc/machine-id").read_text() == ""
            assert (rootfs / "usr/bin/ps").is_file()  # --packages reached debootstrap
            assert "# ConditionPathExists=/dev/tty0" in (rootfs / "etc/systemd/system/getty@.service").read_text()
        config = (runtime.lxcpath / "deb2/config").read_text()
        assert "lxc.signal.halt = SIGRTMIN+3" in config and "lxc.tty.max = 4" in config

        ref = runtime.ref("deb2")
        lifecycle.start(runtime.ctx, ref)

        def booted() -> bool:
            capfd.readouterr()
            lifecycle.attach(runtime.ctx, ref, ["systemctl", "is-system-running"], AttachOptions(clear_env=True))
            return capfd.readouterr().out.strip() in ("running", "degraded")

        assert wait_until(booted, 90), "systemd did not finish booting"
        units = attached(runtime, "deb2", ["systemctl", "list-units", "--no-legend", "--plain", "--state=active"], capfd)
        assert "console-getty.service" in units and "getty@tty1.service" in units
        assert "systemd-udevd" not in units
        assert attached(runtime, "deb2", ["hostname"], capfd).strip() == "deb2"
        lifecycle.stop(runtime.ctx, ref, timeout=60)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_debian_configure_sysvinit_inittab(tmp_path: Path) -> None:
    """A sysvinit tree gets its gettys on the console and the ttys, power-fail lines gone."""
    rootfs = tmp_path
    (rootfs / "etc").mkdir()
    (rootfs / "etc/inittab").write_text("id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\npf::powerwait:/etc/init.d/powerfail start\n")
    (rootfs / "etc/shadow").write_text("root:$6$x:1::::::\n")
    debian.configure(rootfs, "sysv")
    inittab = (rootfs / "etc/inittab").read_text().splitlines()
    assert inittab[0] == "id:2:initdefault:"
    assert "c0:2345:respawn:/sbin/getty 38400 console" in inittab
    assert "c4:2345:respawn:/sbin/getty 38400 tty4 linux" in inittab
    assert not any("powerwait" in ln or ln.startswith("1:") for ln in inittab)
    assert (rootfs / "etc/shadow").read_text() == "root:!$6$x:1::::::\n"
