"""LXC's dependency files.

``lxc_snapshots`` in an origin container lists the clones that depend on its rootfs, as
pairs of lines ``<lxcpath>\\n<name>\\n`` (LXC 1.0 wrote a single integer count instead);
``lxc_rdepends`` in a clone names its origin in the same two-line form.  The core writes
them when a clone needs its origin to stay (overlay, thick LVM snapshots) and refuses to
destroy an origin while a live dependent is listed.
"""

from __future__ import annotations

from pathlib import Path

from ..fsops import write_atomic

Pair = tuple[Path, str]


def read_pairs(path: Path) -> tuple[list[Pair], int]:
    """The ``(lxcpath, name)`` pairs in ``path`` and, for LXC 1.0's format, the bare count.

    A missing file is empty.  Returns ``(pairs, legacy_count)``.
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return [], 0
    lines = [line for line in lines if line.strip()]
    if len(lines) == 1 and lines[0].strip().isdigit():
        return [], int(lines[0].strip())
    pairs = [(Path(lines[i]), lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
    return pairs, 0


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    """Write ``pairs`` atomically; remove the file when there are none."""
    if not pairs:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    write_atomic(path, "".join(f"{lxcpath}\n{name}\n" for lxcpath, name in pairs), mode=0o644)


def add_pair(path: Path, pair: Pair) -> None:
    """Add ``pair`` to the file unless present."""
    pairs, _ = read_pairs(path)
    if pair not in pairs:
        write_pairs(path, [*pairs, pair])


def remove_pair(path: Path, pair: Pair) -> None:
    """Remove ``pair`` from the file if present."""
    pairs, _ = read_pairs(path)
    if pair in pairs:
        write_pairs(path, [p for p in pairs if p != pair])
