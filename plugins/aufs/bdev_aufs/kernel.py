"""Whether this kernel can mount aufs, and the error an aufs container gets when it cannot.

aufs was never merged into Linux: it needs an out-of-tree module (Debian dropped
``aufs-dkms`` after Debian 10).  On a kernel without it nothing of an aufs container can be
mounted, but its branches are plain directories, so ``bdev convert`` can still turn it into
an overlayfs container (which every current kernel has) without mounting aufs.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from bdev.command import run, which
from bdev.errors import BackendUnavailable
from ._i18n import _

NAME = "aufs"
CONVERT_TARGET = "overlay"


def _kernel_lists_aufs() -> bool:
    try:
        lines = Path("/proc/filesystems").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[-1] == NAME for line in lines if line.strip())


@functools.cache
def kernel_problem() -> str | None:
    """Why this kernel cannot mount aufs, or None.  As root, tries ``modprobe aufs`` once per
    process when ``/proc/filesystems`` does not list it (what ``mount -t aufs`` would ask the
    kernel to do anyway)."""
    if _kernel_lists_aufs():
        return None
    if os.geteuid() != 0:
        return _("the kernel has no aufs filesystem (not in /proc/filesystems)")
    if not which("modprobe"):
        return _("the kernel has no aufs filesystem (not in /proc/filesystems, and modprobe is not installed to "
                 "load it)")
    result = run(["modprobe", "-q", NAME], check=False, backend=NAME)
    if result.returncode == 0 and _kernel_lists_aufs():
        return None
    return _("the kernel has no aufs filesystem (not in /proc/filesystems and modprobe aufs failed)")


def convert_hint(container: str | None) -> str:
    """What to run to move a container off aufs."""
    return _("convert it to overlayfs with: bdev convert {container} -B {convert_target}").format(
        container=container or 'NAME', convert_target=CONVERT_TARGET)


class AufsUnavailable(BackendUnavailable):
    """An aufs container met a kernel that cannot mount aufs; the sentence names the
    container and offers the conversion to overlayfs."""

    def __init__(self, problem: str, *, container: str | None = None):
        super().__init__(f"{problem}; {convert_hint(container)}", reasons=[problem], container=container, backend=NAME)
        self.problem = problem

    def about(self, *, container: str | None = None, backend: str | None = None) -> "AufsUnavailable":
        """Fill in the container (and so the command offered) if it was not known."""
        super().about(container=container, backend=backend)
        self.cause = f"{self.problem}; {convert_hint(self.container)}"
        return self
