"""Private helpers: privilege and namespace checks, filesystem types, overlay xattrs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from bdev.mounts import mount_holding
from ._i18n import N_


OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
"""Where overlayfs keeps its own attributes: ``trusted.`` normally, ``user.`` with ``userxattr``
(mounts in a user namespace)."""

UNSUITABLE_UPPER_FS = {
    "overlay": N_("overlayfs cannot be the upper layer of another overlay"),
    "nfs": N_("NFS cannot hold an overlay upper layer (no trusted xattrs, unreliable d_type)"),
    "nfs4": N_("NFS cannot hold an overlay upper layer (no trusted xattrs, unreliable d_type)"),
    "cifs": N_("CIFS cannot hold an overlay upper layer"),
    "smb3": N_("SMB cannot hold an overlay upper layer"),
    "vfat": N_("FAT has no extended attributes for an overlay upper layer"),
    "exfat": N_("exFAT has no extended attributes for an overlay upper layer"),
    "squashfs": N_("squashfs is read-only"),
    "erofs": N_("erofs is read-only"),
    "iso9660": N_("iso9660 is read-only"),
}


def in_initial_user_namespace() -> bool:
    """Whether this process runs in the machine's initial user namespace."""
    try:
        text = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return True
    return text[:3] == ["0", "0", "4294967295"]


_CAP_SYS_ADMIN = 21
_NS_GET_USERNS = 0xB701  # ioctl: the user namespace owning a namespace


def privileged_in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the machine's and holds
    ``CAP_SYS_ADMIN`` there (a container's first process, or a helper of
    :func:`bdev.engine.idshift.as_mapped_owner`): it may mount in a mount namespace that
    namespace owns."""
    if in_initial_user_namespace():
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    effective = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return bool(int(effective, 16) >> _CAP_SYS_ADMIN & 1)


def owns_mount_namespace() -> bool:
    """Whether this process's user namespace owns its mount namespace."""
    try:
        fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        owner = fcntl.ioctl(fd, _NS_GET_USERNS)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino == os.stat("/proc/self/ns/user").st_ino
    finally:
        os.close(owner)


def can_mount_here() -> bool:
    """Whether this process may mount in its own mount namespace: root, or a process holding
    ``CAP_SYS_ADMIN`` in a user namespace that owns its mount namespace."""
    return os.geteuid() == 0 or (privileged_in_user_namespace() and owns_mount_namespace())


def needs_userxattr() -> bool:
    """Overlay mounts made from a user namespace keep their attributes under ``user.overlay.``."""
    return not in_initial_user_namespace()


def user_namespaces_problem() -> str | None:
    """Why an unprivileged process cannot create a user namespace here, or None."""
    checks = [
        ("/proc/sys/user/max_user_namespaces", "user namespaces are disabled (user.max_user_namespaces is 0)"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone is 0)"),
    ]
    for path, reason in checks:
        try:
            if Path(path).read_text().strip() == "0":
                return reason
        except OSError:
            continue
    return None


def filesystem_type(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (the nearest existing ancestor)."""
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    entry = mount_holding(probe)
    return entry.fstype if entry else None


def is_mount_point(path: Path) -> bool:
    """Whether ``path`` is a mount point in this mount namespace."""
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def get_xattr(path: str | Path, suffix: str) -> bytes | None:
    """The overlay attribute ``overlay.<suffix>`` of ``path`` (``trusted.`` or ``user.``),
    never following a symlink; None when absent or unreadable."""
    for prefix in OVERLAY_XATTR_PREFIXES:
        try:
            return os.getxattr(path, prefix + suffix, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                continue
            raise
    return None


def plain_xattrs(path: str | Path) -> dict[str, bytes]:
    """Extended attributes of ``path`` other than overlayfs's own, never following a symlink."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def is_whiteout(path: str | Path, st: os.stat_result) -> bool:
    """An overlay whiteout: a character device 0/0, or a zero-size regular file carrying
    ``overlay.whiteout`` (an xattr whiteout)."""
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return get_xattr(path, "whiteout") is not None
    return False


def is_opaque(path: str | Path) -> bool:
    """A directory that hides every lower directory of the same name (``overlay.opaque=y``;
    ``x`` only marks a directory holding xattr whiteouts)."""
    return get_xattr(path, "opaque") == b"y"


def copy_root_metadata(source: Path, target: Path) -> None:
    """Give the directory ``target`` the owner, mode, plain xattrs and times of ``source``:
    the merged root of an overlay shows its upper root's metadata, so a new upper must carry
    its origin's."""
    st = os.lstat(source)
    with contextlib.suppress(PermissionError):  # an ordinary user outside a user namespace keeps theirs
        os.lchown(target, st.st_uid, st.st_gid)
    for name, value in plain_xattrs(source).items():
        if os.geteuid() != 0 and not name.startswith(("user.", "system.posix_acl_")):
            continue
        try:
            os.setxattr(target, name, value, follow_symlinks=False)
        except OSError:
            continue
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
