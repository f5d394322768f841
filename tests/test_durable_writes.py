"""How many durable writes (an fsync'd file renamed into place, then its directory fsync'd) an
operation makes: each costs two fsyncs, most of what bdev spends beyond liblxc on a snapshot
clone.  These pin the folded counts; the crash tests (test_crash_safety.py, test_overlay.py's
killed clones, the kit's crash steps) pin that folding them lost no safety."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.engine.context import default_registry
from bdev.store.layout import DEPENDENTS, JOURNAL, ORIGIN
from bdev.testing.samples import make_sample_rootfs

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


class Writes:
    """The renames into place (by file name) and the fsyncs made while counting."""

    def __init__(self) -> None:
        self.renamed: collections.Counter[str] = collections.Counter()
        self.fsyncs = 0


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    """Count ``os.replace`` targets and ``os.fsync`` calls (both still done)."""
    seen = Writes()
    replace, fsync = os.replace, os.fsync

    def counting_replace(src: object, dst: object, *args: object, **kwargs: object) -> None:
        seen.renamed[os.path.basename(os.fspath(dst))] += 1  # type: ignore[arg-type]
        replace(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    def counting_fsync(fd: int) -> None:
        seen.fsyncs += 1
        fsync(fd)

    monkeypatch.setattr(os, "replace", counting_replace)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    yield seen


@pytest.fixture
def base(lxcpath: Path, tmp_path: Path) -> Container:
    """A dir container ``base``; skips, saying why, where overlay cannot work."""
    reasons = default_registry().backend("overlay").unavailable_reasons()
    if reasons:
        pytest.skip(f"overlay is not usable here: {'; '.join(reasons)}")
    container = Container("base", lxcpath)
    container.create(backend="dir", source=make_sample_rootfs(tmp_path / "sample"))
    return container


def _reset(writes: Writes) -> None:
    writes.renamed.clear()
    writes.fsyncs = 0


def test_overlay_clone_of_a_dir_container_writes_each_file_once(base: Container, lxcpath: Path,
                                                                 writes: Writes) -> None:
    """LXC's classic ``lxc-copy -s`` of a dir container: the layer record once (dir cannot
    freeze, so there is no attempt to record and forget), the journal once (the origin is
    named in its first write), the config and both dependency files once: 10 fsyncs."""
    _reset(writes)
    base.clone("ov", snapshot=True)
    assert writes.renamed == {"lowers.json": 1, JOURNAL: 1, "config": 1, DEPENDENTS: 1, ORIGIN: 1}, writes.renamed
    assert writes.fsyncs == 10
    assert (lxcpath / "base" / DEPENDENTS).read_text() == f"{lxcpath}\nov\n"


def test_overlay_snapshot_records_all_its_borrowed_lowers_at_once(base: Container, lxcpath: Path,
                                                                   writes: Writes) -> None:
    clone = base.clone("ov", snapshot=True)
    (lxcpath / "ov" / "overlay" / "delta" / "changed").write_text("in ov's upper\n")
    again = clone.clone("ov2", snapshot=True)  # a copy of ov's upper over base's live rootfs
    _reset(writes)
    snap = again.snapshot()
    lowers = json.loads((lxcpath / "ov2" / "snaps" / snap / "overlay" / "lowers.json").read_text())["lowers"]
    assert len(lowers) == 2, lowers
    assert writes.renamed["lowers.json"] == 1, writes.renamed
    assert writes.renamed[JOURNAL] == 1, writes.renamed
