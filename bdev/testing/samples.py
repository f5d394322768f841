"""Sample root filesystems for tests: small trees with every kind of entry a container has."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_sample_rootfs(path: Path, *, privileged: bool | None = None) -> Path:
    """Fill ``path`` with a small container-like tree: nested directories, regular and empty
    files, a setuid binary, hard links, relative, absolute and dangling symlinks, a fifo, a
    sparse file, a user xattr; as root also foreign ownership and device nodes."""
    privileged = os.geteuid() == 0 if privileged is None else privileged
    for d in ("bin", "etc", "usr/lib/deep/er", "var/log", "tmp", "dev", "home/user"):
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "etc/hostname").write_text("sample\n")
    (path / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 sample\n")
    (path / "etc/motd").write_text("hello from the sample rootfs\n")
    (path / "bin/tool").write_bytes(b"\x7fELF" + os.urandom(3000))
    os.chmod(path / "bin/tool", 0o4755)
    (path / "usr/lib/deep/er/data.bin").write_bytes(os.urandom(70_000))
    (path / "var/log/empty.log").write_bytes(b"")
    os.link(path / "usr/lib/deep/er/data.bin", path / "home/user/hardlink.bin")
    os.symlink("../usr/lib/deep/er/data.bin", path / "bin/relative-link")
    os.symlink("/etc/passwd", path / "bin/absolute-link")
    os.symlink("/nonexistent/target", path / "bin/dangling-link")
    os.mkfifo(path / "tmp/fifo")
    os.chmod(path / "tmp", 0o1777)
    with open(path / "var/sparse.img", "wb") as fh:
        fh.seek(32 * 1024 * 1024)
        fh.write(b"end")
    os.setxattr(path / "etc/motd", "user.bdev.sample", b"yes")
    if privileged:
        os.chown(path / "home/user", 100_000, 100_000)
        os.lchown(path / "bin/relative-link", 100_001, 100_001)
        os.mknod(path / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(path / "dev/loopish", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    return path
