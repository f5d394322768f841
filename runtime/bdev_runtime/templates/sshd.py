"""The ``sshd`` template: an application container running the host's OpenSSH server.

As LXC's ``lxc-sshd``: the rootfs holds only configuration (accounts, ``sshd_config``, host
keys generated for this container, root's ``authorized_keys`` from ``--auth-key``); the
programs come from the host, whose ``/usr`` is bind-mounted read-only.  On a merged-``/usr``
host (Debian 12) ``/bin``, ``/sbin`` and ``/lib*`` are symlinks into ``/usr`` and the rootfs
gets the same symlinks; a host where they are real directories gets read-only bind mounts of
each, as LXC writes them.  ``sshd -D -e`` is the container's init; it stops on SIGTERM.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from bdev.command import run, which
from bdev.errors import BdevError, CommandError, InvalidInput
from bdev.templates import Template, TemplateContext

from .._i18n import _, N_
from ._args import TemplateArgs
from ._files import hosts_text, write_file

log = logging.getLogger("bdev.templates.sshd")

ARGS = TemplateArgs(
    "sshd",
    [
        click.Option(["-S", "--auth-key"], metavar="FILE", default=None,
                     help=_("public key(s) allowed to log in as root (copied to root's .ssh/authorized_keys in the "
                            "container)")),
        click.Option(["--port"], metavar="PORT", type=click.IntRange(1, 65535), default=22, show_default=True,
                     help=_("port sshd listens on")),
        click.Option(["--listen"], metavar="ADDRESS", default=None,
                     help=_("address sshd listens on (default: every address of the container)")),
    ],
)

#: Top-level directories taken from the host: symlinked as on the host, or bind-mounted.
HOST_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

#: The rootfs skeleton and modes (LXC's tree, less the Red Hat directories).
SKELETON: tuple[tuple[str, int], ...] = (
    ("dev", 0o755), ("proc", 0o755), ("sys", 0o755), ("usr", 0o755), ("tmp", 0o1777),
    ("home", 0o755), ("root", 0o700), ("run", 0o755), ("run/sshd", 0o755), ("var", 0o755),
    ("var/empty/sshd", 0o755), ("var/log", 0o755), ("etc", 0o755), ("etc/ssh", 0o755),
)

HOST_KEY_TYPES = (("ed25519", []), ("rsa", ["-b", "3072"]))


def sshd_binary() -> str:
    """The host's ``sshd``.

    :raises BdevError: OpenSSH's server is not installed.
    """
    found = which("sshd")
    if found is None:
        raise BdevError(_("template 'sshd' needs the host's OpenSSH server, and sshd is not installed (Debian: "
                          "openssh-server)"))
    path = os.path.realpath(found)
    if not path.startswith("/usr/"):
        raise BdevError(_("template 'sshd' needs sshd under /usr (it bind-mounts the host's /usr), not {path}").format(
            path=path))
    return path


def read_auth_keys(path: str) -> str:
    """The public keys in ``path``, checked with ``ssh-keygen -l``.

    :raises InvalidInput: the file is missing, unreadable or holds no public key.
    """
    source = Path(path).expanduser()
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise InvalidInput(_("template 'sshd': --auth-key {path} does not exist").format(path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(_("template 'sshd': --auth-key {path} cannot be read: {getattr}").format(
            path=path, getattr=getattr(exc, 'strerror', None) or exc)) from None
    try:
        run(["ssh-keygen", "-l", "-f", str(source)])
    except CommandError:
        raise InvalidInput(_("template 'sshd': --auth-key {path} holds no SSH public key").format(path=path)) from None
    return text if text.endswith("\n") else text + "\n"


def sshd_config(port: int, listen: str | None) -> str:
    """The container's ``sshd_config``: keys only, root may log in with a key, no PAM."""
    lines = [
        "# written by bdev's sshd template",
        f"Port {port}",
        *([f"ListenAddress {listen}"] if listen else []),
        *(f"HostKey /etc/ssh/ssh_host_{kind}_key" for kind, _ in HOST_KEY_TYPES),
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes yes",
        "PidFile none",
        "Subsystem sftp internal-sftp",
    ]
    return "\n".join(lines) + "\n"


def generate_host_keys(etc_ssh: Path, name: str) -> None:
    """Fresh host keys for this container (ed25519 and rsa), never the host's."""
    for kind, extra in HOST_KEY_TYPES:
        key = etc_ssh / f"ssh_host_{kind}_key"
        run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"root@{name}", "-f", str(key)])


def link_host_dirs(rootfs: Path) -> list[tuple[str, str]]:
    """Mirror the host's ``/bin``, ``/sbin``, ``/lib*``: a symlink as on the host (merged
    ``/usr``), else a directory to bind-mount; returns the mount entries needed."""
    entries = []
    for name in HOST_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            target = os.readlink(host)
            if not os.path.realpath(host).startswith("/usr/"):
                raise BdevError(_("template 'sshd': the host's /{name} points to {target}, outside /usr").format(
                    name=name, target=target))
            (rootfs / name).symlink_to(target)
        elif host.is_dir():
            (rootfs / name).mkdir(mode=0o755, exist_ok=True)
            entries.append(("lxc.mount.entry", f"/{name} {name} none ro,bind 0 0"))
    return entries


def build(ctx: TemplateContext) -> None:
    """Fill ``ctx.rootfs`` with sshd's configuration and append its config lines.

    :raises BdevError: bad options, an unusable ``--auth-key``, no sshd on the host.
    """
    options = ARGS.parse(ctx.args)
    sshd = sshd_binary()
    keys = read_auth_keys(options["auth_key"]) if options["auth_key"] else None
    rootfs = ctx.rootfs
    for rel, mode in SKELETON:
        path = rootfs / rel
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    (rootfs / "var/run").symlink_to("/run")
    mounts = link_host_dirs(rootfs)

    write_file(rootfs / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:74:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n")
    write_file(rootfs / "etc/group", "root:x:0:\nnogroup:x:65534:\n")
    write_file(rootfs / "etc/shadow", "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n", 0o640)
    write_file(rootfs / "etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    write_file(rootfs / "etc/hostname", f"{ctx.name}\n")
    write_file(rootfs / "etc/hosts", hosts_text(ctx.name))
    write_file(rootfs / "etc/ssh/sshd_config", sshd_config(options["port"], options["listen"]))
    generate_host_keys(rootfs / "etc/ssh", ctx.name)
    if keys is not None:
        ssh_dir = rootfs / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        write_file(ssh_dir / "authorized_keys", keys, 0o600)
        if os.geteuid() == 0:
            for path in (ssh_dir, ssh_dir / "authorized_keys"):
                os.chown(path, 0, 0)

    ctx.config.extend([
        ("lxc.pty.max", "1024"),
        ("lxc.cap.drop", "sys_module mac_admin mac_override sys_time"),
        ("lxc.autodev", "1"),
        ("lxc.signal.halt", "SIGTERM"),  # sshd, as init, ends on SIGTERM
        ("lxc.mount.auto", "cgroup:mixed proc:mixed sys:mixed"),
        ("lxc.mount.entry", "/usr usr none ro,bind 0 0"),
        *mounts,
        ("lxc.mount.entry", "tmpfs run/sshd tmpfs mode=0755 0 0"),
        ("lxc.init.cmd", f"{sshd} -D -e"),
    ])
    log.debug("sshd container %s: %s on port %d", ctx.name, sshd, options["port"])


SSHD = Template(
    "sshd",
    N_("an application container running the host's OpenSSH server (host /usr read-only)"),
    build=build,
    usage=ARGS.usage(),
)
