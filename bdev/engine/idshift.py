"""Shifting a rootfs's ownership into a container's id map (``lxc.idmap``).

An unprivileged container's root is a host id like 100000: its files must be owned by the
mapped ids, or the container sees them as ``nobody``.  :func:`shift_tree` changes the owner of
every entry of a tree (each inode once, never crossing into another filesystem) while keeping
what ``chown`` would lose: set-user-ID and set-group-ID bits, file capabilities
(``security.capability``), and the ids named in POSIX ACLs are shifted too.

Root shifts directly.  Another user cannot give files away, so :func:`as_mapped_owner` runs
the work in a child process inside a user namespace that maps the container's ids (from the
user's ``/etc/subuid`` range) and the user's own id: there the user keeps their uid (files
they create stay theirs) and may change owners between mapped ids.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .. import idmap as maps
from ..errors import BdevError
from ..i18n import _
from ..idmap import IdMap, IdRange

if TYPE_CHECKING:
    from ..store.config import LxcConfig

IdTranslation = Callable[[int], int]
T = TypeVar("T")
CAPS_XATTR = "security.capability"
ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
ACL_HEADER = struct.Struct("<I")
ACL_ENTRY = struct.Struct("<HHI")
ACL_USER, ACL_GROUP = 0x02, 0x08
NO_XATTR = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


class UnmappedId(ValueError):
    """A file's id has no place in the map (the message says which)."""


def into_map(idmap: IdMap, *, owner: tuple[int, int] | None = None) -> tuple[IdTranslation, IdTranslation]:
    """Translations of a tree's ids (container ids, as a template writes them) to ``idmap``'s
    host ids; with ``owner`` (uid, gid), ids equal to it mean the container's root instead
    (a tree an ordinary user wrote: everything is theirs).

    :raises UnmappedId: (when called) an id the map leaves unmapped.
    """

    def translation(host: Callable[[int], int | None], own: int | None, kind: str) -> IdTranslation:
        def shift(value: int) -> int:
            target = host(0 if value == own else value)
            if target is None:
                raise UnmappedId(_(
                    "is owned by {kind} {value}, which lxc.idmap does not map"
                ).format(kind=kind, value=value))
            return target

        return shift

    return (translation(idmap.host_uid, owner[0] if owner else None, "uid"),
            translation(idmap.host_gid, owner[1] if owner else None, "gid"))


def shift_tree(root: Path, uid_of: IdTranslation, gid_of: IdTranslation) -> int:
    """Give every entry below ``root`` (``root`` included) the owner ``uid_of``/``gid_of``
    say, keeping set-ID bits and file capabilities and shifting ACL ids; returns how many
    inodes changed.  Mount points below ``root`` are left alone.

    :raises BdevError: an entry could not be changed (the sentence names it).
    """
    device = os.lstat(root).st_dev
    seen: set[tuple[int, int]] = set()
    changed = 0
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = [d for d in dirnames if os.lstat(here / d).st_dev == device]
        names = [here] if here == Path(root) else []
        for path in names + [here / n for n in dirnames + filenames]:
            st = os.lstat(path)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            try:
                changed += _shift_entry(path, st, uid_of, gid_of)
            except UnmappedId as exc:
                raise BdevError(f"{path} {exc}") from None
            except OSError as exc:
                raise BdevError(_(
                    "changing the owner of {path} failed: {strerror}"
                ).format(path=path, strerror=exc.strerror)) from None
    return changed


def _shift_entry(path: Path, st: os.stat_result, uid_of: IdTranslation, gid_of: IdTranslation) -> int:
    uid, gid = uid_of(st.st_uid), gid_of(st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.chown(path, uid, gid, follow_symlinks=False)
        return int((uid, gid) != (st.st_uid, st.st_gid))
    caps = _xattr(path, CAPS_XATTR) if stat.S_ISREG(st.st_mode) else None
    if (uid, gid) != (st.st_uid, st.st_gid):
        os.chown(path, uid, gid, follow_symlinks=False)
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):  # chown cleared them
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if caps is not None:  # chown removed them too
            os.setxattr(path, CAPS_XATTR, caps, follow_symlinks=False)
    for name in ACL_XATTRS if not stat.S_ISLNK(st.st_mode) else ():
        acl = _xattr(path, name)
        if acl is not None:
            shifted = shift_acl(acl, uid_of, gid_of)
            if shifted != acl:
                os.setxattr(path, name, shifted, follow_symlinks=False)
    return int((uid, gid) != (st.st_uid, st.st_gid))


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in NO_XATTR:
            return None
        raise


def shift_acl(raw: bytes, uid_of: IdTranslation, gid_of: IdTranslation) -> bytes:
    """A POSIX ACL extended attribute (version 2: a header, then tag, permissions and id per
    entry) with the ids of its named-user and named-group entries translated."""
    out = bytearray(raw[:ACL_HEADER.size])
    for offset in range(ACL_HEADER.size, len(raw) - ACL_ENTRY.size + 1, ACL_ENTRY.size):
        tag, perm, ident = ACL_ENTRY.unpack_from(raw, offset)
        if tag == ACL_USER:
            ident = uid_of(ident)
        elif tag == ACL_GROUP:
            ident = gid_of(ident)
        out += ACL_ENTRY.pack(tag, perm, ident)
    return bytes(out)


# ---------------------------------------------------------------------------- ordinary users


def owner_inside(idmap: IdMap) -> tuple[int, int]:
    """Where :func:`as_mapped_owner` maps the caller's own uid and gid: just past the map."""
    return max(r.inside + r.count for r in idmap.uids), max(r.inside + r.count for r in idmap.gids)


def helper_map(idmap: IdMap, uid: int, gid: int) -> IdMap:
    """``idmap`` plus the caller's own uid and gid (at :func:`owner_inside`)."""
    own_uid, own_gid = owner_inside(idmap)
    return IdMap(idmap.uids + (IdRange(own_uid, uid, 1),), idmap.gids + (IdRange(own_gid, gid, 1),))


def as_mapped_owner(idmap: IdMap | None, work: Callable[[], T], *, container: str | None = None) -> T:
    """Run ``work`` in a child process inside a new user namespace mapping ``idmap`` and the
    caller's own ids (:func:`helper_map`) and return its (picklable) result; root, or no map,
    runs it directly.  In the child, ids read and written are the namespace's: the caller's
    own are :func:`owner_inside`, and the caller has every right over the mapped ids' files.

    :raises BdevError: the namespace could not be made, or ``work`` failed (its sentence).
    """
    if idmap is None or os.geteuid() == 0:
        return work()
    maps.check_allowed(idmap)
    mapped = helper_map(idmap, os.geteuid(), os.getegid())
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(ready_r)
        os.close(go_w)
        os.close(out_r)
        os._exit(_helper_child(work, ready_w, go_r, out_w))
    os.close(ready_w)
    os.close(go_r)
    os.close(out_w)
    try:
        if os.read(ready_r, 1) == b"r":
            try:
                maps.write_maps(child, mapped, container=container)
            except BdevError:
                os.close(go_w)
                go_w = -1
                raise
            os.write(go_w, b"g")
    finally:
        for fd in (ready_r, go_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        output = _read_all(out_r)
        os.close(out_r)
        os.waitpid(child, 0)
    if output[:1] == b"R":
        return pickle.loads(output[1:])  # noqa: S301 - our own child's result
    raise BdevError(output[1:].decode(errors="replace") or "the user-namespace helper process died",
                    container=container)


def _helper_child(work: Callable[[], object], ready_w: int, go_r: int, out_w: int) -> int:
    """The helper: enter a user namespace, wait for its maps, run ``work``, write ``R`` and
    the pickled result or ``E`` and a sentence; its exit status."""
    try:
        try:
            maps.unshare_user_namespace()
        except OSError as exc:
            raise BdevError(_("cannot create a user namespace: {strerror}").format(strerror=exc.strerror)) from None
        os.write(ready_w, b"r")
        os.close(ready_w)
        if os.read(go_r, 1) != b"g":
            return 1
        os.write(out_w, b"R" + pickle.dumps(work()))
        return 0
    except BdevError as exc:
        os.write(out_w, b"E" + exc.cause.encode())
    except OSError as exc:
        os.write(out_w, b"E" + f"{exc.strerror}: {exc.filename}".encode())
    except BaseException as exc:  # noqa: BLE001 - the parent must hear about it
        os.write(out_w, b"E" + f"internal error: {type(exc).__name__}: {exc}".encode())
    return 1


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def shift_rootfs(path: Path, idmap: IdMap, *, container: str | None = None) -> None:
    """Give a rootfs just written by the caller (a template, a copy) ``idmap``'s ownership:
    root's tree holds container ids; an ordinary user's tree is all theirs and means the
    container's root.

    :raises BdevError: the map is not the caller's to use, or a change failed.
    """
    if os.geteuid() == 0:
        shift_tree(path, *into_map(idmap))
        return
    as_mapped_owner(idmap, lambda: adopt_own_files(path, idmap), container=container)


def adopt_own_files(path: Path, idmap: IdMap) -> None:
    """In :func:`as_mapped_owner`'s namespace: give the container's root what the caller
    wrote below ``path`` (a template's output, a copy an ordinary user made)."""
    inside = IdMap(tuple(IdRange(r.inside, r.inside, r.count) for r in idmap.uids),
                   tuple(IdRange(r.inside, r.inside, r.count) for r in idmap.gids))
    shift_tree(path, *into_map(inside, owner=owner_inside(idmap)))


def helper_idmap(config: "LxcConfig") -> IdMap | None:
    """The map to run storage work on ``config``'s container through :func:`as_mapped_owner`:
    its ``lxc.idmap`` when an ordinary user owns a mapped container, else None (direct)."""
    return maps.config_idmap(config) if os.geteuid() != 0 else None


def give_to_container_root(paths: list[str], idmap: IdMap, *, container: str | None = None) -> None:
    """Make the container's root (``idmap``'s id 0) own ``paths`` (the console and terminals
    a mapped container opens), through the helper namespace for an ordinary user.

    :raises BdevError: a change failed.
    """
    if os.geteuid() == 0:
        uid, gid = idmap.root
        for path in paths:
            os.chown(path, uid, gid)
        return

    def work() -> None:
        for path in paths:
            os.chown(path, 0, 0)

    as_mapped_owner(idmap, work, container=container)
