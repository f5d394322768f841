"""Whole subvolume trees: a subvolume with every subvolume nested inside it (docker's or
snapper's subvolumes inside a container), snapshotted and deleted as one.

LXC snapshots only the top subvolume (nested ones become empty directories) and then fails to
delete the container (lxc/lxc#210); here each nested subvolume is snapshotted into its place
in the new tree, parents first, keeping its read-only flag, and deleted children first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ._fs import PLACEHOLDER_INODE, SUBVOLUME_INODE, is_host_root, is_permission_error
from ._ops import SubvolumeOps


class DeleteNeedsPrivilege(OSError):
    """The kernel refused to delete a subvolume (root or ``user_subvol_rm_allowed`` needed)
    and emptying it file by file failed too.

    :param subvolume: the subvolume that could not be deleted.
    :param cause: the error of the file-by-file attempt.
    """

    def __init__(self, subvolume: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror, cause.filename)
        self.subvolume = subvolume
        self.cause = cause


def snapshot_tree(ops: SubvolumeOps, source: Path, target: Path, *, readonly: bool) -> int:
    """Snapshot the subvolume ``source`` and every subvolume nested in it to ``target``.

    Nested snapshots keep their source's read-only flag (all are read-only if ``readonly``);
    the directories holding them keep their modification times.  On failure whatever was made
    is deleted again and the error is raised.

    :returns: the number of nested subvolumes snapshotted.
    :raises OSError: from the kernel (``ENOSPC``, ``EPERM`` for someone else's subvolume ...).
    """
    nested = ops.nested(source)
    ops.snapshot(source, target, readonly=readonly and not nested)
    try:
        for rel, _ro in nested:
            place = target / rel
            _remove_placeholder(place)
            ops.snapshot(source / rel, place, readonly=False)
        _keep_parent_times(source, target, [rel for rel, _ in nested])
        for rel, ro in reversed(nested):
            if ro or readonly:
                ops.set_readonly(target / rel, True)
        if readonly and nested:
            ops.set_readonly(target, True)
    except BaseException:
        with contextlib.suppress(OSError):
            delete_tree(ops, target)
        raise
    return len(nested)


def _remove_placeholder(place: Path) -> None:
    """Remove the empty directory a snapshot shows where a nested subvolume was."""
    st = os.lstat(place)
    if not stat.S_ISDIR(st.st_mode) or st.st_ino != PLACEHOLDER_INODE:
        raise OSError(errno.EEXIST, "expected the empty placeholder of a nested subvolume", str(place))
    os.rmdir(place)


def _keep_parent_times(source: Path, target: Path, nested: list[str]) -> None:
    """Give each directory that received a nested snapshot its source's times back."""
    for parent in sorted({os.path.dirname(rel) for rel in nested}):
        src = source / parent if parent else source
        st = os.lstat(src)
        with contextlib.suppress(PermissionError):  # someone else's directory: times move on
            os.utime(target / parent if parent else target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def delete_tree(ops: SubvolumeOps, top: Path) -> None:
    """Delete the subvolume ``top`` and every subvolume nested in it, children first,
    clearing read-only flags on the way.  Where the kernel refuses (an unprivileged user on a
    filesystem mounted without ``user_subvol_rm_allowed``) each subvolume is emptied file by
    file and removed with ``rmdir``, which Linux allows for an empty subvolume.

    :raises DeleteNeedsPrivilege: neither way worked.
    :raises OSError: anything else.
    """
    nested = ops.nested(top)
    # Nothing inside a read-only subvolume can be unlinked, nested subvolumes included: every
    # flag is cleared first, parents before children.
    with contextlib.suppress(FileNotFoundError):
        if ops.is_readonly(top):
            ops.set_readonly(top, False)
        for rel, ro in nested:
            if ro:
                ops.set_readonly(top / rel, False)
    for rel, _ro in reversed(nested):
        _delete_one(ops, top / rel)
    _delete_one(ops, top)


def _delete_one(ops: SubvolumeOps, subvolume: Path) -> None:
    try:
        ops.delete(subvolume)
    except FileNotFoundError:
        return
    except OSError as exc:
        if not is_permission_error(exc) or is_host_root():
            raise
        try:
            _empty(ops, subvolume)
            os.rmdir(subvolume)
        except FileNotFoundError:
            return
        except OSError as cause:
            raise DeleteNeedsPrivilege(subvolume, cause) from None


def _empty(ops: SubvolumeOps, directory: Path) -> None:
    """Remove everything inside ``directory`` (nested subvolumes and placeholders included),
    making owned read-only directories writable where needed."""
    try:
        entries = list(os.scandir(directory))
    except PermissionError:
        os.chmod(directory, 0o700)
        entries = list(os.scandir(directory))
    dev = os.lstat(directory).st_dev
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        path = Path(entry.path)
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev:
                if st.st_ino not in (SUBVOLUME_INODE, PLACEHOLDER_INODE):
                    raise OSError(errno.EBUSY, "something is mounted there", str(path))
                if st.st_ino == SUBVOLUME_INODE and ops.is_readonly(path):
                    ops.set_readonly(path, False)
            _empty(ops, path)
            _retry_writable(directory, os.rmdir, path)
        else:
            _retry_writable(directory, os.unlink, path)


def _retry_writable(directory: Path, action, path: Path) -> None:
    try:
        action(path)
    except PermissionError as denied:
        try:
            os.chmod(directory, os.lstat(directory).st_mode | 0o700)
        except PermissionError:
            raise denied from None
        action(path)
