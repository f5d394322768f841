"""Where each backend's containers live during the run: a fresh loop filesystem (or a zfs-fuse
pool, or a throwaway Ceph) with an lxcpath on it, and a container ``base`` made there from the
payload with bdev.  Everything is undone on the way out, on errors too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bdev.command import run
from bdev.store.lxcpath import CONF_ENV, global_config_path
from bdev.testing.kit.storage import environment
from bdev.testing.storage import loop_filesystem, loop_filesystem_problem

BASE = "base"
ZFS_DAEMON_TIMEOUT = 90.0  # zfs-fuse starts slowly on a loaded machine with a cold page cache


@dataclass(frozen=True)
class Setup:
    """How to make a backend's place: the host filesystem, ``bdev create`` arguments, and
    whether ``base`` is an overlay clone of a dir container (the overlay row)."""

    label: str
    fstype: str | None
    create_args: tuple[str, ...]
    overlay_over_dir: bool = False
    pool: str | None = None  # zfs, rbd


SETUPS: dict[str, Setup] = {
    "dir (ext4)": Setup("dir (ext4)", "ext4", ("-B", "dir")),
    "dir (xfs)": Setup("dir (xfs)", "xfs", ("-B", "dir")),
    "dir (btrfs)": Setup("dir (btrfs)", "btrfs", ("-B", "dir")),
    "btrfs": Setup("btrfs", "btrfs", ("-B", "btrfs")),
    "overlay": Setup("overlay", "ext4", ("-B", "dir"), overlay_over_dir=True),
    "loop": Setup("loop", "ext4", ("-B", "loop")),
    "zfs": Setup("zfs", None, ("-B", "zfs"), pool="zfs"),
    "rbd": Setup("rbd", None, ("-B", "rbd"), pool="rbd"),
}


@dataclass
class Place:
    """A backend's lxcpath holding ``base``."""

    setup: Setup
    lxcpath: Path
    scratch: Path  # same filesystem as the lxcpath where there is one; anchors copy there
    create_args: list[str] = field(default_factory=list)
    zfs_root: str | None = None  # the dataset holding the containers' datasets

    def remove_leftover_storage(self, name: str) -> None:
        """Remove storage a failed tool left behind without a container directory (a failed
        ``lxc-copy`` on zfs-fuse leaves its cloned dataset)."""
        if self.zfs_root:
            run(["zfs", "destroy", "-r", f"{self.zfs_root}/{name}"], check=False)

    def rootfs_source(self) -> Path | None:
        """What the raw copy anchors copy: ``base``'s rootfs directory, or its loop image; None
        when the rootfs is not a plain path (a dataset, an overlay, an RBD image)."""
        directory = self.lxcpath / BASE
        if self.setup.label == "loop":
            return directory / "rootdev"
        if self.setup.overlay_over_dir or self.setup.pool:
            return None
        return directory / "rootfs"


def place_problem(setup: Setup) -> str | None:
    """Why this backend's place cannot be made here, or None."""
    from bdev.engine.context import default_registry
    from bdev.errors import BdevError

    backend = setup.create_args[1]
    try:
        reasons = default_registry().backend(backend).unavailable_reasons()
    except BdevError as exc:
        return f"no {backend} backend here: {exc}"
    if reasons and setup.pool != "zfs":  # zfs answers once the daemon started below runs
        return f"the {backend} backend is unavailable: {'; '.join(reasons)}"
    if setup.fstype:
        return loop_filesystem_problem(setup.fstype)
    if setup.pool == "zfs":
        from bdev.command import which

        return None if which("zfs-fuse") or which("zfs") else "neither zfs-fuse nor kernel ZFS tools are installed"
    try:
        from bdev.testing.ceph import ceph_unavailable_reason
    except ImportError:
        return "bdev.testing.ceph (the throwaway Ceph cluster helper) is not in this checkout"
    return ceph_unavailable_reason()


@contextlib.contextmanager
def make_place(setup: Setup, workdir: Path, image_size: int, bdev: Callable[..., str],
               payload: Path, fssize: str) -> Iterator[Place]:
    """Make ``setup``'s storage in ``workdir``, create ``base`` from ``payload`` with the CLI
    ``bdev(lxcpath, *args)`` and yield the place; everything is removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"{slug(setup.label)}-", dir=workdir))
    with contextlib.ExitStack() as stack:
        if setup.fstype:
            mnt = stack.enter_context(loop_filesystem(setup.fstype, directory, str(image_size)))
            place = Place(setup, mnt / "lxc", mnt)
        elif setup.pool == "zfs":
            from bdev_zfs.testing import zfs_daemon, zfs_pool

            stack.enter_context(zfs_daemon(directory, timeout=ZFS_DAEMON_TIMEOUT))
            # zfs-fuse keeps every pool it ever imported in its cache: the pid keeps a pool left
            # (faulted, its image gone) by a run that was killed from blocking this one's name
            root = stack.enter_context(zfs_pool(f"bdevbench{os.getpid()}", directory / "pool.img", str(image_size)))
            stack.enter_context(environment(CONF_ENV, str(lxc_conf_with(directory, {"lxc.bdev.zfs.root": root}))))
            place = Place(setup, directory / "lxc", directory, ["--zfsroot", root], zfs_root=root)
        else:
            from bdev.testing.ceph import throwaway_cluster

            cluster = stack.enter_context(throwaway_cluster(directory))
            settings = {"lxc.bdev.rbd.conf": str(cluster.conf), "lxc.bdev.rbd.keyring": str(cluster.keyring),
                        "lxc.bdev.rbd.rbdpool": cluster.pool}
            stack.enter_context(environment(CONF_ENV, str(lxc_conf_with(directory, settings))))
            stack.enter_context(environment("CEPH_CONF", str(cluster.conf)))  # for real LXC's rbd CLI
            place = Place(setup, directory / "lxc", directory)
        place.lxcpath.mkdir(parents=True, exist_ok=True)
        args = [*setup.create_args, *place.create_args]
        if setup.label in ("loop", "rbd"):
            args += ["--fssize", fssize]
        if setup.overlay_over_dir:
            bdev(place.lxcpath, "create", "lower", *args, "--source", str(payload))
            bdev(place.lxcpath, "clone", "-s", "-B", "overlay", "lower", BASE)
        else:
            bdev(place.lxcpath, "create", BASE, *args, "--source", str(payload))
        yield place


def lxc_conf_with(directory: Path, settings: dict[str, str]) -> Path:
    """A copy of the ``lxc.conf`` bdev reads now with ``settings`` first (the first line of a
    key wins), written in ``directory``."""
    current = global_config_path()
    text = current.read_text() if current.is_file() else ""
    conf = directory / "lxc.conf"
    conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()) + text)
    return conf


def slug(label: str) -> str:
    """A file name for a backend label: ``dir (ext4)`` -> ``dir-ext4``."""
    return "".join(c if c.isalnum() else "-" for c in label).strip("-").replace("--", "-")
