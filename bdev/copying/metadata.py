"""Giving a copied entry its source's metadata: owner, extended attributes (POSIX ACLs and
file capabilities included), mode, times.

The order matters and is the same everywhere: owner first (``chown`` clears set-user-ID bits
and ``security.capability``), then extended attributes, then the mode (so set-user-ID and
set-group-ID survive), then the times (any change before would move ``mtime``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat

log = logging.getLogger("bdev.copying")

# Extended attributes an unprivileged process may read and set on its own files; rsync
# copies the same subset when not run as root.
_UNPRIVILEGED_PREFIXES = ("user.", "system.posix_acl_")
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
# The namespaces every Linux filesystem with extended attributes knows.  Others are
# filesystem properties (``btrfs.compression``) that another filesystem cannot take.
_STANDARD_NAMESPACES = ("user.", "trusted.", "security.", "system.")
DEFAULT_ACL = "system.posix_acl_default"

XattrRef = int | str
"""An open file descriptor, or a path whose last component is never followed."""


class MetadataCopier:
    """Applies metadata from ``os.stat_result`` and source extended attributes.

    :param privileged: running as root: ownership and every extended attribute namespace
        are copied and any refusal is an error.  Otherwise, like rsync for an ordinary user,
        ownership is kept where allowed (the group, if the user belongs to it) and only
        ``user.*`` attributes and ACLs are copied.
    """

    def __init__(self, *, privileged: bool):
        self.privileged = privileged
        self._dropped: set[str] = set()

    # -------------------------------------------------------------- open entries

    def apply_fd(self, src_fd: int, dst_fd: int, st: os.stat_result, *, exact_xattrs: bool = False) -> None:
        """Give the open ``dst_fd`` the metadata of ``st`` and ``src_fd``'s extended attributes.

        :param exact_xattrs: also remove attributes ``dst_fd`` has that the source lacks
            (for directories that existed before the copy).
        """
        self._chown(dst_fd, st, None, True)
        self.copy_xattrs(src_fd, dst_fd, exact=exact_xattrs)
        os.chmod(dst_fd, stat.S_IMODE(st.st_mode))
        os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    # -------------------------------------------------------------- entries by name

    def apply_at(self, src_ref: str, dst_dir_fd: int, name: str, dst_ref: str, st: os.stat_result) -> None:
        """Give the entry ``name`` of ``dst_dir_fd`` (a symlink, device, fifo or socket this
        copy just created) the metadata of ``st``; ``src_ref``/``dst_ref`` are paths to the
        source entry and to ``name`` used for extended attributes."""
        self._chown(name, st, dst_dir_fd, False)
        self.copy_xattrs(src_ref, dst_ref, follow=False)
        if not stat.S_ISLNK(st.st_mode):  # a symlink's mode is fixed; it is ours, not a link
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_dir_fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir_fd, follow_symlinks=False)

    # -------------------------------------------------------------- pieces

    def _chown(self, ref: int | str, st: os.stat_result, dir_fd: int | None, follow: bool) -> None:
        if self.privileged:
            os.chown(ref, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=follow)
            return
        try:
            os.chown(ref, -1, st.st_gid, dir_fd=dir_fd, follow_symlinks=follow)
        except PermissionError:
            pass

    def wanted(self, name: str) -> bool:
        """Whether this copier copies the extended attribute ``name``."""
        return self.privileged or name.startswith(_UNPRIVILEGED_PREFIXES)

    def copy_xattrs(self, src: XattrRef, dst: XattrRef, *, follow: bool = True, exact: bool = False) -> None:
        """Copy the extended attributes of ``src`` to ``dst`` (descriptors, or paths when
        ``follow`` is False: a final symlink is then never followed).

        :param exact: remove the attributes of ``dst`` that ``src`` does not have.
        :raises OSError: an attribute cannot be set; the message names it.
        """
        names = list_xattrs(src, follow=follow)
        for name in names:
            if not self.wanted(name):
                continue
            try:
                value = os.getxattr(src, name, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno == errno.ENODATA:  # removed meanwhile
                    continue
                raise
            try:
                os.setxattr(dst, name, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno in _NO_XATTRS and not name.startswith(_STANDARD_NAMESPACES):
                    self._drop(name)
                    continue
                raise OSError(exc.errno, f"cannot set extended attribute {name}: {exc.strerror}") from exc
        if exact:
            self._remove_extra(dst, set(names), follow)

    def _drop(self, name: str) -> None:
        if name not in self._dropped:
            self._dropped.add(name)
            log.warning("the target filesystem has no %s property; it is not copied", name)

    def _remove_extra(self, dst: XattrRef, keep: set[str], follow: bool) -> None:
        for name in list_xattrs(dst, follow=follow):
            if name in keep or not self.wanted(name):
                continue
            try:
                os.removexattr(dst, name, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno == errno.ENODATA or name.startswith("security."):
                    continue  # an LSM label the system insists on is not ours to drop
                raise OSError(exc.errno, f"cannot remove extended attribute {name}: {exc.strerror}") from exc


def list_xattrs(ref: XattrRef, *, follow: bool = True) -> list[str]:
    """Names of the extended attributes of ``ref``; empty where the filesystem has none."""
    try:
        return os.listxattr(ref, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return []
        raise


def drop_default_acl(fd: int) -> None:
    """Remove the default ACL of the directory ``fd`` (if any), so entries created in it do
    not inherit ACLs the source does not have.  The copy sets the source's at the end."""
    try:
        os.removexattr(fd, DEFAULT_ACL)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, *_NO_XATTRS, errno.EPERM, errno.EACCES):
            raise
