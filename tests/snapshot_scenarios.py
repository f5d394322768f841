"""Files and a snapshot scenario shared by the tests of backends whose storage is not a host
directory (zfs, rbd): their files are reached through the backend's own mount."""

from __future__ import annotations

from bdev.api import Container
from bdev.engine.context import default_registry


def write(container: Container, rel: str, text: str) -> None:
    """Write ``text`` to ``rel`` in the container's rootfs, mounted through its backend."""
    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs) as path:
        (path / rel).write_text(text)


def read(container: Container, rel: str) -> str:
    """The text of ``rel`` in the container's rootfs, mounted read-only through its backend."""
    rootfs = container.rootfs
    with default_registry().backend_for(rootfs).accessed(rootfs, readonly=True) as path:
        return (path / rel).read_text()


def three_versions(container: Container) -> None:
    """``etc/motd`` says ``version N`` in snapshot ``snapN`` (N = 0, 1, 2) and ``live`` now."""
    for i in range(3):
        write(container, "etc/motd", f"version {i}\n")
        assert container.snapshot() == f"snap{i}"
    write(container, "etc/motd", "live\n")


def every_snapshot_still_restores(container: Container) -> None:
    """After :func:`three_versions` and an in-place restore of ``snap0``: the container holds
    version 0, all three snapshots stay, each restores to a new name and, the newest, in place;
    then the container goes with its snapshots."""
    assert read(container, "etc/motd") == "version 0\n"
    assert [s.name for s in container.snapshot_list()] == ["snap0", "snap1", "snap2"]
    for i in range(3):
        restored = container.snapshot_restore(f"snap{i}", f"r{i}")
        assert read(restored, "etc/motd") == f"version {i}\n"
        restored.destroy()
    container.snapshot_restore("snap2")
    assert read(container, "etc/motd") == "version 2\n"
    container.destroy(with_snapshots=True)
