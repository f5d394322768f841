"""Which cgroup name a container got, remembered until its cgroup is removed.

LXC names a container's cgroup ``lxc.payload.<name>``; when that cgroup exists already (the
same name in another lxcpath runs, or a leftover), it tries ``lxc.payload.<name>-1``, ``-2``
... (``cgroup_tree_create`` in LXC 5's ``cgfsng.c``).  The suffix chosen is not derivable from
the container, so the runtime writes it down in ``<run>/bdev/cgroups/<hash>.json`` (beside
the monitors' records, gone with a reboot like the cgroups themselves) once it has made the
cgroup, before any process goes in: every later command (stop, ``bdev limits``' live values, attach, the cleanup after a
crashed monitor) reads it and finds the right cgroup.  The claim is dropped once the cgroup
has been removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bdev.fsops import write_atomic
from bdev.mounts import mounts_root
from bdev.store.layout import ContainerRef
from bdev.store.running import fnv1a_64

#: LXC gives up after ``lxc.payload.<name>-1000``.
MAX_INDEX = 1000


@dataclass(frozen=True)
class Claim:
    """The cgroup name container ``name`` of ``lxcpath`` uses.

    :param index: 0 for the plain name, N for the ``-N`` suffix.
    :param limit: the chosen cgroup (relative to the base), for people reading the file.
    """

    lxcpath: str
    name: str
    index: int
    limit: str


def suffix(index: int) -> str:
    """The suffix LXC adds for ``index`` (none for 0)."""
    return f"-{index}" if index else ""


def claims_dir() -> Path:
    """Where claims live: beside bdev's temporary mounts and the monitors' records."""
    return mounts_root().parent / "cgroups"


def claim_path(ref: ContainerRef) -> Path:
    """``ref``'s claim file, named by the hash LXC uses for long socket names."""
    return claims_dir() / f"{fnv1a_64(f'{ref.lxcpath}/{ref.name}'.encode()):016x}.json"


def read_claim(ref: ContainerRef) -> Claim | None:
    """``ref``'s claim, or None (none, unreadable, or another container's after a hash clash)."""
    try:
        claim = Claim(**json.loads(claim_path(ref).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if (claim.lxcpath, claim.name) != (str(ref.lxcpath), ref.name):
        return None
    return claim


def write_claim(claim: Claim) -> None:
    """Write (or replace) ``claim`` atomically."""
    path = claim_path(ContainerRef(Path(claim.lxcpath), claim.name))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(asdict(claim), indent=1) + "\n", mode=0o600)


def drop_claim(ref: ContainerRef) -> None:
    """Forget ``ref``'s claim (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(claim_path(ref))
