"""The ``debian`` template: a real Debian system made by ``debootstrap``, with a cache.

The first container of a given release, architecture, variant, package set and mirror runs
``debootstrap`` (its ``.deb`` files kept in the cache's ``debs`` directory for later package
sets) and keeps the finished tree as a zstd (or xz) tarball in the cache
(``<cache>/debian/``, see :func:`bdev_runtime.images.cache.cache_root`).  Every container,
the first included, is unpacked from that tarball with the strict unpacker, so the next one
takes seconds.  Then the container fixes, as LXC's ``lxc-debian`` applies them: hostname and
``/etc/hosts``; hardware services (udev, module loading, kernel filesystems, hardware clock)
masked; a getty on the console and on ``lxc.tty.max`` ttys (systemd units, or inittab lines
for sysvinit); root's password locked; an empty ``/etc/fstab``; ``eth0`` by DHCP with
ifupdown; a fresh ``machine-id`` and fresh SSH host keys per container.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
from pathlib import Path

import click

from bdev.command import run, which
from bdev.copying import terminal_progress
from bdev.errors import BdevError, CommandError, InvalidInput
from bdev.mounts import mount_points_below
from bdev.templates import Template, TemplateContext

from .._i18n import _, N_
from ..images import cache, unpack
from ..images.arch import host_arch
from ..images.build import pack_rootfs
from ..images.fetch import check_server
from ..images.index import check_field
from ._args import TemplateArgs
from ._files import hosts_text, write_file

log = logging.getLogger("bdev.templates.debian")

DEFAULT_RELEASE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Installed in every container (an init system and networking, as LXC's template); --packages adds.
BASE_PACKAGES = ("init", "ifupdown", "iproute2", "isc-dhcp-client", "netbase")
VARIANTS = ("minbase", "buildd", "fakechroot", "-")
TTYS = 4
#: Architectures the host can run in a chroot without emulation.
_NATIVE = {"amd64": {"amd64", "i386"}, "arm64": {"arm64", "armhf", "armel"}}
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")

#: Units a container must not run: they touch hardware or the host's kernel.
MASKED_UNITS = (
    "udev.service", "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-modules-load.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount",
    "systemd-remount-fs.service", "systemd-hwdb-update.service", "hwclock.service", "getty-static.service",
    "systemd-journald-audit.socket",
)

ARGS = TemplateArgs(
    "debian",
    [
        click.Option(["-r", "--release"], metavar="RELEASE", default=DEFAULT_RELEASE, show_default=True,
                     help=_("Debian release (suite or codename)")),
        click.Option(["-a", "--arch"], metavar="ARCH", default=None, help=_("architecture (default: the host's)")),
        click.Option(["--variant"], metavar="VARIANT", type=click.Choice(VARIANTS), default="minbase", show_default=True,
                     help=_("debootstrap variant ('-': debootstrap's default, required packages plus important)")),
        click.Option(["--packages"], metavar="PKG,...", default="",
                     help=_("more packages, comma separated (always installed: {packages})").format(
                         packages=",".join(BASE_PACKAGES))),
        click.Option(["--mirror"], metavar="URL", default=DEFAULT_MIRROR, show_default=True, help=_("Debian mirror")),
        click.Option(["--flush-cache"], is_flag=True, default=False, help=_("bootstrap again instead of using the "
                                                                            "cached tree")),
    ],
)


def parse_packages(text: str) -> list[str]:
    """Base packages plus ``text``'s, sorted and without repeats.

    :raises InvalidInput: a name is not a Debian package name.
    """
    extra = [p.strip() for p in text.split(",") if p.strip()]
    for name in extra:
        if not _PACKAGE.match(name):
            raise InvalidInput(_("template 'debian': {name!r} is not a Debian package name").format(name=name))
    return sorted({*BASE_PACKAGES, *extra})


def cache_file(release: str, arch: str, variant: str, packages: list[str], mirror: str) -> Path:
    """The cached tarball for this combination: readable names, then a hash of all of it."""
    key = json.dumps([release, arch, variant, packages, mirror])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    suffix = "tar.zst" if _zstd_usable() else "tar.xz"
    return cache.cache_root() / "debian" / f"{release}_{arch}_{variant.replace('-', 'default')}_{digest}.{suffix}"


def _zstd_usable() -> bool:
    """zstd packs (GNU tar runs the zstd program) and unpacks (the zstandard module)."""
    return importlib.util.find_spec("zstandard") is not None and which("zstd") is not None


def _unmount_below(tree: Path) -> None:
    """Unmount what debootstrap may have left mounted in ``tree`` (``proc``, ``sys``) after a failure."""
    for rel in sorted(mount_points_below(tree) or (), key=len, reverse=True):
        run(["umount", "-l", str(tree / rel)], check=False)


def bootstrap(target: Path, release: str, arch: str, variant: str, packages: list[str], mirror: str) -> None:
    """Run ``debootstrap`` into ``target``.

    :raises BdevError: debootstrap is missing or failed (its last error line is quoted).
    """
    if which("debootstrap") is None:
        raise BdevError(_("template 'debian' needs debootstrap, and it is not installed (Debian: debootstrap)"))
    debs = cache.cache_root() / "debian" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", f"--arch={arch}", f"--include={','.join(packages)}", f"--cache-dir={debs}"]
    if variant != "-":
        argv.append(f"--variant={variant}")
    argv += [release, str(target), mirror]
    log.info("bootstrapping Debian %s/%s (%s) from %s", release, arch, variant, mirror)
    try:
        run(argv)
    except CommandError as exc:
        lines = [ln.strip() for ln in (exc.stderr or "").splitlines() if ln.strip().startswith(("E:", "W: Failure"))]
        detail = lines[-1] if lines else ((exc.stderr or "").strip().splitlines() or ["debootstrap failed"])[-1]
        raise BdevError(_("template 'debian': debootstrap of {release}/{arch} from {mirror} failed: {detail}").format(
            release=release, arch=arch, mirror=mirror, detail=detail)) from None
    finally:
        _unmount_below(target)
    for deb in (target / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def cached_tree(release: str, arch: str, variant: str, packages: list[str], mirror: str, flush: bool) -> Path:
    """The cached tarball for the combination, bootstrapped and packed first if needed."""
    archive = cache_file(release, arch, variant, packages, mirror)
    with cache.entry_lock(archive, _("the Debian cache entry {name}").format(name=archive.name)):
        if flush:
            archive.unlink(missing_ok=True)
        if archive.is_file():
            log.info("using the cached Debian tree %s", archive)
            return archive
        with cache.staging_dir(archive) as staging:
            try:
                rootfs = staging / "rootfs"
                bootstrap(rootfs, release, arch, variant, packages, mirror)
                packed = staging / archive.name
                pack_rootfs(rootfs, packed, "zstd" if archive.name.endswith(".zst") else "xz")
                os.rename(packed, archive)
            finally:
                _unmount_below(staging)
    return archive


# ---------------------------------------------------------------------------- container fixes


def _mask(rootfs: Path, unit: str) -> None:
    link = rootfs / "etc/systemd/system" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to("/dev/null")


def _wants(rootfs: Path, target: str, unit: str, source: str) -> None:
    link = rootfs / "etc/systemd/system" / f"{target}.wants" / unit
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source)


def configure_systemd(rootfs: Path, ttys: int) -> None:
    """Mask hardware units, boot to multi-user, gettys on the console and on tty1..``ttys``
    (a copy of ``getty@.service`` without its ``/dev/tty0`` condition, as LXC's template)."""
    for unit in MASKED_UNITS:
        _mask(rootfs, unit)
    system = rootfs / "etc/systemd/system"
    default = system / "default.target"
    if default.is_symlink() or default.exists():
        default.unlink()
    default.symlink_to("/lib/systemd/system/multi-user.target")
    getty = rootfs / "lib/systemd/system/getty@.service"
    if getty.is_file():
        text = getty.read_text()
        text = re.sub(r"^ConditionPathExists=/dev/tty0$", "# ConditionPathExists=/dev/tty0 (a container has no tty0)", text, flags=re.M)
        text = text.replace("After=dev-%i.device", "After=")
        write_file(system / "getty@.service", text)
        for n in range(1, ttys + 1):
            _wants(rootfs, "getty.target", f"getty@tty{n}.service", "../getty@.service")
    if (rootfs / "lib/systemd/system/console-getty.service").is_file():
        _wants(rootfs, "getty.target", "console-getty.service", "/lib/systemd/system/console-getty.service")


def configure_sysvinit(rootfs: Path, ttys: int) -> None:
    """inittab: a getty on the console and on tty1..``ttys``, no power-fail hooks."""
    inittab = rootfs / "etc/inittab"
    kept = [ln for ln in inittab.read_text().splitlines()
            if not re.match(r"^\s*[0-9a-z]{1,4}:[0-9]*:respawn:.*getty", ln) and ":powerwait:" not in ln]
    kept.append("c0:2345:respawn:/sbin/getty 38400 console")
    kept += [f"c{n}:2345:respawn:/sbin/getty 38400 tty{n} linux" for n in range(1, ttys + 1)]
    write_file(inittab, "\n".join(kept) + "\n")


def lock_root_password(rootfs: Path) -> None:
    """Prefix root's password field in ``/etc/shadow`` with ``!`` (``passwd -l``)."""
    shadow = rootfs / "etc/shadow"
    lines = shadow.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1 and not fields[1].startswith("!"):
            fields[1] = "!" + fields[1]
            lines[i] = ":".join(fields)
    mode = shadow.stat().st_mode & 0o7777
    write_file(shadow, "\n".join(lines) + "\n", mode)


def configure(rootfs: Path, name: str, ttys: int = TTYS) -> None:
    """Apply the container fixes to a Debian tree (see the module's description)."""
    etc = rootfs / "etc"
    if etc.is_symlink() or not etc.is_dir():
        raise BdevError(_("template 'debian': {etc} is not a directory").format(etc=etc))
    write_file(etc / "hostname", f"{name}\n")
    write_file(etc / "hosts", hosts_text(name))
    write_file(etc / "fstab", "# a container's mounts are in its LXC config (lxc.mount.entry)\n")
    if (etc / "network").is_dir():
        write_file(etc / "network/interfaces",
                   "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n")
    write_file(etc / "machine-id", "", 0o444)  # systemd makes a new one at first boot
    lock_root_password(rootfs)
    if (rootfs / "lib/systemd/systemd").exists():
        configure_systemd(rootfs, ttys)
    if (etc / "inittab").is_file():
        configure_sysvinit(rootfs, ttys)
    if (etc / "ssh/sshd_config").is_file() and which("ssh-keygen"):
        for old in (etc / "ssh").glob("ssh_host_*"):
            old.unlink()
        run(["ssh-keygen", "-A", "-f", str(rootfs)])


def config_lines(arch: str) -> list[tuple[str, str]]:
    """The LXC config of a Debian container (what LXC's common config and template give)."""
    return [
        ("lxc.arch", arch),
        ("lxc.tty.max", str(TTYS)),
        ("lxc.pty.max", "1024"),
        ("lxc.cap.drop", "mac_admin mac_override sys_module sys_rawio sys_time"),
        ("lxc.mount.auto", "cgroup:mixed proc:mixed sys:mixed"),
        ("lxc.autodev", "1"),
        ("lxc.signal.halt", "SIGRTMIN+3"),  # systemd's halt
        ("lxc.mount.entry", "mqueue dev/mqueue mqueue rw,relatime,create=dir,optional 0 0"),
    ]


def build(ctx: TemplateContext) -> None:
    """Fill ``ctx.rootfs`` with Debian (from the cache when it has this combination).

    :raises BdevError: bad options, debootstrap failed, an unpack failed.
    """
    options = ARGS.parse(ctx.args)
    release = check_field(options["release"], "release")
    arch = check_field(options["arch"] or host_arch(), "architecture")
    native = _NATIVE.get(host_arch(), {host_arch()})
    if arch not in native:
        raise InvalidInput(_("template 'debian' cannot bootstrap {arch} on this {host_arch} host (it can: {native})").format(
            arch=arch, host_arch=host_arch(), native=', '.join(sorted(native))))
    mirror = check_server(options["mirror"])
    packages = parse_packages(options["packages"])
    archive = cached_tree(release, arch, options["variant"], packages, mirror, bool(options["flush_cache"]))
    unpack.extract(archive, ctx.rootfs, terminal_progress(f"unpacking Debian {release}"))
    configure(ctx.rootfs, ctx.name)
    ctx.config.extend(config_lines(arch))


DEBIAN = Template(
    "debian",
    N_("a Debian system made by debootstrap (cached: the next container takes seconds)"),
    build=build,
    usage=ARGS.usage(),
)
