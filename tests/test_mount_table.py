"""bdev.mounts serves the mount table from memory between changes, and never a stale one.

Each case runs in a private mount namespace of its own (``unshare -m``): mounts made by other
processes of the machine cannot reach it, and its own mounts vanish with it, even when it fails.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bdev.command import run, which
from bdev.mounts import mount_entries

pytestmark = pytest.mark.root

PRELUDE = """
import ctypes, os, subprocess, sys
import bdev.mounts as mounts

table = mounts._TABLE
where = sys.argv[1]


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def reads_during(function):
    before = table.reads
    result = function()
    return table.reads - before, result
"""


def in_private_namespace(tmp_path: Path, body: str) -> None:
    """Run ``body`` (after :data:`PRELUDE`) in a new private mount namespace, with ``where``
    an empty directory; it fails the test by failing an assert."""
    if which("unshare") is None:
        pytest.fail("unshare (util-linux) is not installed")
    where = tmp_path / "mnt"
    where.mkdir()
    script = PRELUDE + textwrap.dedent(body) + "\nprint('ok')\n"
    proc = run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", script, str(where)], check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr or proc.stdout


def test_asking_again_reads_nothing_until_the_table_changes(tmp_path: Path) -> None:
    in_private_namespace(tmp_path, """
        mounts.mount_entries()
        assert reads_during(lambda: (mounts.mount_entries(), mounts.mount_points(), mounts.mount_at("/"),
                                     mounts.mount_holding(where), mounts.mountpoints_of("none"),
                                     mounts.mount_points_below("/")))[0] == 0
        entries = mounts.mount_entries()
        entries.clear()  # a caller's list is its own
        assert mounts.mount_entries()
    """)


def test_a_mount_a_remount_and_an_unmount_by_another_process_are_seen_at_once(tmp_path: Path) -> None:
    in_private_namespace(tmp_path, """
        assert mounts.mount_at(where) is None
        mount("-t", "tmpfs", "-o", "size=1m", "bdevtest", where)
        reads, entry = reads_during(lambda: mounts.mount_at(where))
        assert reads == 1 and entry.fstype == "tmpfs" and not entry.has_option("ro"), (reads, entry)
        mount("-o", "remount,ro", where)
        assert mounts.mount_at(where).has_option("ro")
        subprocess.run(["umount", where], check=True)
        assert mounts.mount_at(where) is None
        assert where not in mounts.mount_points()
    """)


def test_a_forked_child_and_its_parent_each_see_the_others_changes(tmp_path: Path) -> None:
    in_private_namespace(tmp_path, """
        mounts.mount_entries()
        pid = os.fork()
        if pid == 0:  # the child shares the parent's namespace but not its view of the table
            ok = mounts.mount_at(where) is None
            mount("-t", "tmpfs", "-o", "size=1m", "bdevtest", where)
            ok = ok and mounts.mount_at(where) is not None
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert mounts.mount_at(where).fstype == "tmpfs"
    """)


def test_a_new_mount_namespace_is_read_afresh(tmp_path: Path) -> None:
    """The open mountinfo file shows the namespace it was opened in: after ``unshare`` the
    table must come from the new one."""
    in_private_namespace(tmp_path, """
        assert mounts.mount_at(where) is None
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x00020000) == 0, os.strerror(ctypes.get_errno())  # CLONE_NEWNS
        mount("--make-rprivate", "/")
        mount("-t", "tmpfs", "-o", "size=1m", "bdevtest", where)
        assert mounts.mount_at(where).fstype == "tmpfs"
    """)


def test_another_mountinfo_file_is_read_as_given(tmp_path: Path) -> None:
    sample = tmp_path / "mountinfo"
    sample.write_text("36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n")
    assert [e.mountpoint for e in mount_entries(str(sample))] == ["/mnt/with space"]
