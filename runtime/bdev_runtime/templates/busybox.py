"""The ``busybox`` template: a minimal system made of the host's statically linked busybox.

It follows what LXC 5's ``lxc-busybox`` template produces, with three deliberate differences:

* the busybox binary must be statically linked (checked by reading its ELF program headers
  for a ``PT_INTERP`` segment), so the container never depends on the host's libraries;
* applets are linked where ``busybox --list-full`` says they live (``sbin/init``,
  ``usr/bin/awk``...), as relative symlinks to ``/bin/busybox``, instead of all into ``/bin``;
  ``bin/passwd`` is not made setuid (through the symlink that would make busybox itself
  setuid);
* ``/dev`` is left empty: the config asks LXC for ``lxc.autodev = 1``, exactly as LXC's
  template does, so no device node is ever created in the rootfs.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import struct
from pathlib import Path

import click

from bdev.command import run, which
from bdev.errors import BdevError, CommandError, InvalidInput
from bdev.templates import Template, TemplateContext

from .._i18n import _, N_
from ._args import TemplateArgs
from ._files import hosts_text, write_file

log = logging.getLogger("bdev.templates.busybox")

ARGS = TemplateArgs(
    "busybox",
    [
        click.Option(
            ["--busybox-path"],
            metavar="PATH",
            default=None,
            help=_("busybox binary to copy into the rootfs (default: busybox on PATH); it must be statically linked"),
        ),
    ],
)

#: Directories of the skeleton and their modes (as LXC's template, plus ``root`` private).
SKELETON: tuple[tuple[str, int], ...] = (
    ("bin", 0o755),
    ("sbin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("etc/init.d", 0o755),
    ("proc", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("home", 0o755),
    ("var", 0o755),
    ("var/run", 0o755),
    ("var/log", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("lib", 0o755),
    ("mnt", 0o755),
)

#: Where upstream busybox's udhcpc looks for its script when ``udhcpc --help`` does not say.
DEFAULT_UDHCPC_SCRIPT = "/usr/share/udhcpc/default.script"

#: Library directories LXC's template bind-mounts read-only when both host and rootfs have them.
LIB_DIRS = ("lib", "usr/lib", "lib64", "usr/lib64")

PT_INTERP = 3
PN_XNUM = 0xFFFF


# ---------------------------------------------------------------------------- ELF


def elf_interpreter(path: Path) -> str | None:
    """The program interpreter (``PT_INTERP``) an ELF executable asks for, or None if static.

    Only the ELF header and program headers are read; 32/64-bit and either byte order work.

    :raises BdevError: ``path`` cannot be read or is not an ELF file.
    """
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF":
                raise BdevError(_("{path} is not an ELF executable").format(path=path))
            elf_class, data = ident[4], ident[5]
            if elf_class not in (1, 2) or data not in (1, 2):
                raise BdevError(_("{path} has an ELF header of an unknown class or byte order").format(path=path))
            order = "<" if data == 1 else ">"
            if elf_class == 2:
                header = struct.Struct(order + "HHIQQQIHHHHHH")
                phdr_offset_fmt = struct.Struct(order + "IIQQQQ")  # type, flags, offset, vaddr, paddr, filesz
            else:
                header = struct.Struct(order + "HHIIIIIHHHHHH")
                phdr_offset_fmt = struct.Struct(order + "IIIIIII")  # type, offset, vaddr, paddr, filesz, ...
            raw = f.read(header.size)
            if len(raw) < header.size:
                raise BdevError(_("{path} has a truncated ELF header").format(path=path))
            fields = header.unpack(raw)
            phoff, phentsize, phnum = fields[4], fields[8], fields[9]
            if phnum == PN_XNUM:
                raise BdevError(_("{path} has more program headers than this check understands").format(path=path))
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                entry = f.read(phdr_offset_fmt.size)
                if len(entry) < phdr_offset_fmt.size:
                    raise BdevError(_("{path} has truncated ELF program headers").format(path=path))
                values = phdr_offset_fmt.unpack(entry)
                if values[0] != PT_INTERP:
                    continue
                if elf_class == 2:
                    offset, size = values[2], values[5]
                else:
                    offset, size = values[1], values[4]
                f.seek(offset)
                return f.read(min(size, 4096)).split(b"\0", 1)[0].decode("utf-8", "replace") or "?"
    except OSError as exc:
        raise BdevError(_("cannot read {path}: {error}").format(path=path, error=exc.strerror or exc)) from None
    return None


# ---------------------------------------------------------------------------- pieces


def find_busybox(requested: str | None) -> Path:
    """The busybox binary to use: ``--busybox-path`` or busybox on ``PATH``, checked static.

    :raises BdevError: it is missing, not executable, not ELF or dynamically linked.
    """
    if requested is not None:
        path = Path(requested)
        if not path.is_file():
            raise InvalidInput(_("template 'busybox': --busybox-path {requested} is not an existing file").format(
                requested=requested))
    else:
        found = which("busybox")
        if found is None:
            raise BdevError(
                _("template 'busybox' needs a statically linked busybox on PATH (Debian: busybox-static)")
            )
        path = Path(found)
    path = path.resolve()
    if not os.access(path, os.X_OK):
        raise BdevError(_("template 'busybox': {path} is not executable").format(path=path))
    interpreter = elf_interpreter(path)
    if interpreter is not None:
        raise BdevError(
            _("template 'busybox': {path} is dynamically linked (interpreter {interpreter}); it needs a statically "
              "linked busybox (Debian: busybox-static)").format(
                path=path, interpreter=interpreter)
        )
    return path


def _safe_relative(entry: str) -> str | None:
    """``entry`` from ``--list-full`` as a clean relative path, or None if it is unusable."""
    clean = posixpath.normpath(entry.strip().lstrip("/"))
    if not clean or clean == "." or clean.startswith("..") or "\0" in clean:
        return None
    return clean


def list_applets(busybox: Path) -> list[str]:
    """Where each applet belongs, relative to ``/`` (``bin/sh``, ``sbin/init``...).

    Uses ``busybox --list-full``; a busybox too old for it gets every applet in ``bin``.
    """
    try:
        listing = run([busybox, "--list-full"]).stdout
    except CommandError:
        listing = "\n".join(f"bin/{name}" for name in run([busybox, "--list"]).stdout.split())
    applets = []
    for line in listing.splitlines():
        clean = _safe_relative(line)
        if clean is not None and posixpath.basename(clean) != "busybox":
            applets.append(clean)
    return applets


def link_applets(rootfs: Path, applets: list[str]) -> dict[str, str]:
    """Symlink each applet to ``/bin/busybox`` (relatively), never replacing what exists.

    :return: applet name -> absolute path inside the container, for the ones linked or
        already there.
    """
    where: dict[str, str] = {}
    for rel in applets:
        name = posixpath.basename(rel)
        link = rootfs / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() and not link.exists():
            target = posixpath.relpath("bin/busybox", posixpath.dirname(rel) or ".")
            link.symlink_to(target)
        where.setdefault(name, "/" + rel)
    return where


def udhcpc_script_path(busybox: Path) -> str:
    """Where this busybox's ``udhcpc`` runs its script by default (as LXC's template finds it).

    Debian patches it to ``/etc/udhcpc/default.script``; upstream uses
    :data:`DEFAULT_UDHCPC_SCRIPT`.
    """
    proc = run([busybox, "udhcpc", "--help"], check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip().startswith("-s ") and "default " in line:
            start = line.find("default ")
            if start >= 0:
                candidate = line[start + len("default ") :].split(")")[0].strip()
                if candidate.startswith("/") and _safe_relative(candidate):
                    return candidate
    return DEFAULT_UDHCPC_SCRIPT


UDHCPC_SCRIPT = """\
#!/bin/sh
# udhcpc event script written by bdev's busybox template.
RESOLV_CONF=/etc/resolv.conf

case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set dev "$interface" up
        ;;
    renew|bound)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        if [ -n "$router" ]; then
            while ip route del default dev "$interface" 2>/dev/null; do :; done
            for r in $router; do
                ip route add default via "$r" dev "$interface"
                break
            done
        fi
        if [ -n "$dns" ] || [ -n "$domain" ]; then
            : > "$RESOLV_CONF.tmp"
            [ -n "$domain" ] && echo "search $domain" >> "$RESOLV_CONF.tmp"
            for s in $dns; do
                echo "nameserver $s" >> "$RESOLV_CONF.tmp"
            done
            mv "$RESOLV_CONF.tmp" "$RESOLV_CONF"
        fi
        ;;
esac
exit 0
"""


def config_lines(name: str, rootfs: Path) -> list[tuple[str, str]]:
    """The config lines LXC 5's ``lxc-busybox`` appends, in its order.

    ``lxc.rootfs.path`` is left to the engine.  LXC writes ``lxc.uts.name = "NAME"``; the
    quotes are dropped here (LXC strips them when reading, and container names need none).
    The read-only library bind mounts are kept as LXC writes them: one per library directory
    that exists both on the host and in the rootfs.
    """
    lines: list[tuple[str, str]] = [
        ("lxc.signal.halt", "SIGUSR1"),  # busybox init halts on SIGUSR1
        ("lxc.signal.reboot", "SIGTERM"),  # and reboots on SIGTERM
        ("lxc.uts.name", name),
        ("lxc.autodev", "1"),  # LXC fills a tmpfs /dev; the rootfs has no device nodes
        ("lxc.tty.max", "5"),
        ("lxc.pty.max", "1"),
        ("lxc.cap.drop", "sys_module mac_admin mac_override sys_time"),
        ("lxc.mount.auto", "cgroup:mixed proc:mixed sys:ro"),
        ("lxc.mount.entry", "shm dev/shm tmpfs defaults,create=dir 0 0"),
        ("lxc.mount.entry", "mqueue dev/mqueue mqueue defaults,optional,create=dir 0 0"),
    ]
    for d in LIB_DIRS:
        if os.path.isdir(os.path.join(os.sep, d)) and (rootfs / d).is_dir():
            lines.append(("lxc.mount.entry", f"/{d} {d} none ro,bind 0 0"))
    lines.append(("lxc.mount.entry", "/sys/kernel/security sys/kernel/security none ro,bind,optional 0 0"))
    return lines


# ---------------------------------------------------------------------------- build


def build(ctx: TemplateContext) -> None:
    """Fill ``ctx.rootfs`` with a busybox system and append LXC's busybox config lines.

    :raises BdevError: bad template arguments, or no usable static busybox.
    """
    options = ARGS.parse(ctx.args)
    source = find_busybox(options["busybox_path"])
    rootfs = ctx.rootfs

    for rel, mode in SKELETON:
        d = rootfs / rel
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(mode)

    busybox = rootfs / "bin" / "busybox"
    shutil.copyfile(source, busybox)
    busybox.chmod(0o755)

    applets = list_applets(busybox)
    where = link_applets(rootfs, applets)
    for needed in ("sh", "init"):
        if needed not in where:
            raise BdevError(_("template 'busybox': {source} has no {needed!r} applet").format(
                source=source, needed=needed))
    if not (rootfs / "sbin" / "init").exists():
        (rootfs / "sbin" / "init").symlink_to("../bin/busybox")

    def applet(name: str) -> str:
        return where.get(name, f"/bin/busybox {name}")

    # init: LXC's rcS and inittab, plus explicit ctrlaltdel/shutdown actions.  busybox init
    # halts on SIGUSR1 (lxc.signal.halt) and reboots on SIGTERM (lxc.signal.reboot), running
    # the ::shutdown actions first.  Nothing is unmounted or remounted on shutdown: with a
    # bind-mounted rootfs a remount would reach the host's filesystem.
    rcs = ["#!/bin/sh"]
    if "syslogd" in where:
        rcs.append(applet("syslogd"))
    rcs.append(f"{applet('mount')} -a")
    udhcpc_script = None
    if "udhcpc" in where:
        udhcpc_script = udhcpc_script_path(busybox)
        rcs.append(f"{applet('udhcpc')} -b -s {udhcpc_script}")
    write_file(rootfs / "etc/init.d/rcS", "\n".join(rcs) + "\n", 0o744)

    inittab = ["::sysinit:/etc/init.d/rcS"]
    if "getty" in where:
        inittab.append(f"tty1::respawn:{applet('getty')} -L tty1 115200 vt100")
    inittab += [
        "console::askfirst:-/bin/sh",
        f"::ctrlaltdel:{applet('reboot')}" if "reboot" in where else "::ctrlaltdel:/bin/busybox reboot",
        f"::shutdown:{applet('sync')}" if "sync" in where else "::shutdown:/bin/busybox sync",
    ]
    write_file(rootfs / "etc/inittab", "\n".join(inittab) + "\n")

    if udhcpc_script is not None:
        write_file(rootfs / udhcpc_script.lstrip("/"), UDHCPC_SCRIPT, 0o744)

    # accounts: root only, password locked (set one with ``passwd`` inside the container)
    write_file(rootfs / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    write_file(rootfs / "etc/group", "root:x:0:root\n")
    write_file(rootfs / "etc/shadow", "root:*::0:99999:7:::\n", 0o600)

    write_file(rootfs / "etc/hostname", f"{ctx.name}\n")
    write_file(rootfs / "etc/hosts", hosts_text(ctx.name))
    write_file(rootfs / "etc/fstab", "")  # "mount -a" in rcS needs it to exist
    write_file(
        rootfs / "etc/profile",
        "export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n"
        "export HOME=${HOME:-/root}\n"
        "PS1='\\u@\\h:\\w\\$ '\n",
    )

    ctx.config.extend(config_lines(ctx.name, rootfs))
    log.debug("busybox rootfs for %s built from %s (%d applets)", ctx.name, source, len(where))


BUSYBOX = Template(
    "busybox",
    N_("a minimal system made of the host's statically linked busybox"),
    build=build,
    usage=ARGS.usage(),
)
