"""A failed create, clone or snapshot is undone; when the undo fails too, the user hears the
first failure and then the undo's, and the next command finishes the undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from bdev.api import Container, list_containers
from bdev.command import run
from bdev.errors import BdevError

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.root]


def test_failed_undo_does_not_hide_the_failure(lxcpath: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clone's copy fails after a (real) tmpfs got mounted inside the new rootfs, so the
    undo's removal is refused (it never deletes through a mount): the clone's own failure is
    what the sentence starts with, the undo's follows, and once the mount is gone the next
    command removes the half-made clone from its journal."""
    base = Container("base", lxcpath)
    base.create("busybox", "dir")
    dir_backend = type(base._ctx.registry.backend("dir"))
    real_copy = dir_backend.copy_from
    mounted: list[Path] = []

    def copy_then_fail(self, source_path, placement, options, *args, **kwargs):
        outcome = real_copy(self, source_path, placement, options, *args, **kwargs)
        inside = Path(outcome.rootfs.source) / "mnt"
        inside.mkdir(exist_ok=True)
        run(["mount", "-t", "tmpfs", "tmpfs", str(inside)])
        mounted.append(inside)
        raise BdevError("the copy was interrupted", backend="dir")

    monkeypatch.setattr(dir_backend, "copy_from", copy_then_fail)
    try:
        with pytest.raises(BdevError) as failed:
            base.clone("web1")
        message = str(failed.value)
        assert message.index("the copy was interrupted") < message.index("undoing it failed too"), message
        assert "is mounted" in message or "mount" in message.split("undoing it failed too")[1], message
    finally:
        for inside in mounted:
            run(["umount", str(inside)])
    monkeypatch.undo()
    assert [c.name for c in list_containers(lxcpath)] == ["base"]
    assert not (lxcpath / "web1").exists(), "the next command did not finish the undo"
