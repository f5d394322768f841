"""Whether real LXC (or bdev's runtime) is running a container.

A running LXC container's monitor listens on the abstract unix socket
``@<lxcpath>/<name>/command``; ``/proc/net/unix`` lists it.  LXC hashes names that would
overflow a socket address; those are not recognised here.
"""

from __future__ import annotations

from pathlib import Path

from .layout import ContainerRef


def is_running(ref: ContainerRef, *, proc_net_unix: Path = Path("/proc/net/unix")) -> bool:
    """Whether ``ref`` has a live LXC command socket."""
    wanted = f"@{ref.lxcpath}/{ref.name}/command"
    try:
        with open(proc_net_unix) as fh:
            return any(line.rstrip("\n").endswith(" " + wanted) for line in fh)
    except OSError:
        return False
