"""The host's architecture in Debian's and LXC's image naming."""

from __future__ import annotations

import os

#: ``uname -m`` -> the name images use (as LXC's download template maps them).
_MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "i686": "i386",
    "i586": "i386",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_arch() -> str:
    """``amd64`` on x86_64 and so on; an unknown machine name is returned as it is."""
    machine = os.uname().machine
    return _MACHINE_TO_ARCH.get(machine, machine)
