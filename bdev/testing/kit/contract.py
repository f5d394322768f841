"""The backend contract: the tests every storage backend passes, on every kind of real
filesystem this machine can make.

Subclass :class:`BackendContract` and set ``backend_name``; pytest collects the inherited tests,
each parametrized over the storage kinds (ids like ``[myfs-btrfs]``).  Every test also checks
that no mount or loop device leaks.  Capabilities the backend does not declare are skipped with
a reason naming them; a declared capability it fails is a failure starting with
``plugin <plugin> (backend <name>) claims <capability> but``.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from ...api import list_containers
from ...errors import AlreadyExists, BdevError, HasDependents, NotSupported
from ...records import CreateOptions, Rootfs
from ...store.layout import JOURNAL, PARTIAL
from ..samples import make_sample_rootfs
from .crash import CRASH_STEPS, killed, run_killed, transferable
from .storage import STORAGE_KINDS, scratch_lxcpath, storage_problem
from .subject import Subject, build_subject, hidden_leftovers

__all__ = ["BackendContract", "CRASH_STEPS"]

CLONE_NEWNS = 0x00020000


def _writes_allowed(subject: Subject) -> None:
    subject.refuse_if("read_only", "its rootfs cannot be written, so this test is skipped")


def _has_swap(subject: Subject) -> bool:
    from ...backend import Backend

    return type(subject.backend).swap is not Backend.swap


@pytest.mark.unprivileged
class BackendContract:
    """The contract, for the backend named ``backend_name``.

    Class attributes an author may set:

    * ``backend_name``: the registered backend to test (required unless
      :meth:`contract_backends` is overridden).
    * ``extra_plugins``: ``(name, plugin)`` pairs registered besides the installed entry points
      (a plugin module not installed yet); crash tests re-import module plugins in a child.
    * ``storage_kinds``: where scratch lxcpaths are made (default: tmpdir, btrfs, xfs).
    * ``crash_steps``: the marked steps the crash tests kill a child at.
    """

    backend_name: ClassVar[str | None] = None
    extra_plugins: ClassVar[Sequence[tuple[str, object]]] = ()
    storage_kinds: ClassVar[Sequence[str]] = STORAGE_KINDS
    crash_steps: ClassVar[Sequence[str]] = CRASH_STEPS

    @classmethod
    def contract_backends(cls, config: pytest.Config) -> list[str]:
        """The backends this class runs the contract against (default: ``[backend_name]``)."""
        if not cls.backend_name:
            raise pytest.UsageError(f"{cls.__name__}: set backend_name to the backend the contract should test")
        return [cls.backend_name]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize every contract test over backends, storage kinds and crash steps."""
        if "kit_backend_name" in metafunc.fixturenames:
            names = type(self).contract_backends(metafunc.config)
            metafunc.parametrize("kit_backend_name", names, ids=names)
        if "kit_storage_kind" in metafunc.fixturenames:
            metafunc.parametrize("kit_storage_kind", list(self.storage_kinds), ids=list(self.storage_kinds))
        if "kit_crash_step" in metafunc.fixturenames:
            metafunc.parametrize("kit_crash_step", list(self.crash_steps), ids=list(self.crash_steps))

    # ---------------------------------------------------------------- fixtures

    @pytest.fixture
    def kit_lxcpath(self, kit_storage_kind: str, tmp_path: Path, hermetic_lxc_conf: Path, no_leaks: None) -> Iterator[Path]:
        """A scratch lxcpath on this test's storage kind (after the leak check's baseline)."""
        problem = storage_problem(kit_storage_kind)
        if problem:
            pytest.skip(f"no {kit_storage_kind} lxcpath: {problem}")
        with scratch_lxcpath(kit_storage_kind, tmp_path) as path:
            yield path

    @pytest.fixture
    def kit(self, request: pytest.FixtureRequest, kit_backend_name: str, kit_storage_kind: str, kit_lxcpath: Path, tmp_path: Path) -> Subject:
        """The backend under test at a lxcpath where it can live."""
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        return build_subject(request, kit_backend_name, kit_storage_kind, kit_lxcpath, scratch, self.extra_plugins, refused=False)

    @pytest.fixture
    def kit_refusing(self, request: pytest.FixtureRequest, kit_backend_name: str, kit_storage_kind: str, kit_lxcpath: Path, tmp_path: Path) -> Subject:
        """The backend under test at a lxcpath it refuses (skipped where it refuses none)."""
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        return build_subject(request, kit_backend_name, kit_storage_kind, kit_lxcpath, scratch, self.extra_plugins, refused=True)

    @pytest.fixture
    def sample(self, tmp_path: Path) -> Path:
        """A small container-like tree with every kind of entry (see ``make_sample_rootfs``)."""
        return make_sample_rootfs(tmp_path / "sample")

    # ---------------------------------------------------------------- lifecycle

    def test_create_then_destroy(self, kit: Subject, sample: Path) -> None:
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        assert c.defined and c.rootfs.backend == kit.name
        assert c.get_config_item("lxc.rootfs.path") == [c.rootfs.config_value]
        kit.assert_matches(c, sample, hostname="c1")
        rootfs = c.rootfs
        if kit.declares("needs_mount") and kit.backend.data_path(rootfs) is not None:
            kit.lie("needs_mount", f"data_path() gives {kit.backend.data_path(rootfs)} for {rootfs}")
        c.destroy()
        assert not c.defined and not c.directory.exists()
        assert not kit.registry.backend_for(rootfs).exists(rootfs)

    def test_full_copy_both_ways_against_dir(self, kit: Subject, sample: Path) -> None:
        origin = kit.container("origin")
        origin.create(backend="dir", source=sample)
        into = origin.clone("into", backend=kit.name)
        assert into.rootfs.backend == kit.name
        kit.assert_matches(into, sample, hostname="into")
        back = into.clone("back", backend="dir")
        kit.assert_matches(back, sample, hostname="back")
        for c in (back, into, origin):
            c.destroy()

    def test_snapshot_clone(self, kit: Subject, sample: Path) -> None:
        origin = kit.container("origin")
        origin.create(backend=kit.name, source=sample)
        refusal = kit.backend.snapshot_refusal(origin.rootfs, kit.backend, kit.placement("snapclone"))
        if refusal is not None:
            if kit.declares("native_snapshot"):
                kit.lie("native_snapshot", f"snapshot_refusal() refuses a snapshot of its own rootfs: {refusal}")
            with pytest.raises(NotSupported):
                origin.clone("snapclone", snapshot=True, backend=kit.name)
            assert not (kit.lxcpath / "snapclone").exists()
            clone = origin.clone("snapclone", snapshot=True, maybe_snapshot=True, backend=kit.name)
        else:
            with kit.claims("native_snapshot", "a snapshot clone"):
                clone = origin.clone("snapclone", snapshot=True)
                assert clone.outcome is not None and clone.outcome.method in ("snapshot", "layer"), (
                    f"the clone was made by {clone.outcome.method if clone.outcome else 'nothing'}, not a snapshot"
                )
        kit.assert_matches(clone, sample, hostname="snapclone")
        if not kit.registry.backend_for(clone.rootfs).capabilities.read_only:
            with kit.rootfs_tree(clone, readonly=False) as path:
                (path / "etc/motd").write_text("changed in the clone\n")
        kit.assert_matches(origin, sample, hostname="origin")
        clone.destroy()
        origin.destroy()

    # ---------------------------------------------------------------- container snapshots

    def test_container_snapshots_restore_in_place_and_to_new_name(self, kit: Subject, sample: Path) -> None:
        _writes_allowed(kit)
        kit.require("can_backup", "container snapshots (lxc-snapshot) need it")
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        expected = kit.copy_of(c, "expected")
        with kit.claims("can_backup", "a container snapshot"):
            assert c.snapshot(comment="before the change\n") == "snap0"
            assert c.snapshot() == "snap1"
        listed = c.snapshot_list()
        assert [s.name for s in listed] == ["snap0", "snap1"]
        assert listed[0].comment == "before the change\n" and listed[1].comment is None
        assert len(listed[0].timestamp) == 19
        with kit.rootfs_tree(c, readonly=False) as path:
            (path / "etc/motd").write_text("upgraded\n")
            (path / "var/log/new.log").write_text("new\n")
            os.unlink(path / "bin/tool")
        if not _has_swap(kit):
            changed = kit.copy_of(c, "changed")
            with pytest.raises(NotSupported):
                c.snapshot_restore("snap0")
            kit.assert_matches(c, changed)
            kit.assert_clean(c)
            c.destroy(with_snapshots=True)
            pytest.skip(f"backend {kit.name} has no atomic swap (Backend.swap): restore in place is refused, as checked")
        c.snapshot_restore("snap0")
        kit.assert_matches(c, expected)
        kit.assert_clean(c)
        assert c.get_config_item("lxc.uts.name") == ["c1"]
        restored = c.snapshot_restore("snap1", "c2")
        assert restored.rootfs.backend == kit.name
        kit.assert_matches(restored, sample, hostname="c2")
        with pytest.raises(AlreadyExists):
            c.snapshot_restore("snap0", "c2")
        with pytest.raises(HasDependents):
            c.destroy()
        assert c.defined and len(c.snapshot_list()) == 2
        c.snapshot_destroy("snap1")
        assert [s.name for s in c.snapshot_list()] == ["snap0"]
        c.destroy(with_snapshots=True)
        restored.destroy()
        assert sorted(os.listdir(kit.lxcpath)) == []

    def test_snapshot_restore_to_new_name_and_destroy_with_snapshots(self, kit: Subject, sample: Path) -> None:
        kit.require("can_backup", "container snapshots (lxc-snapshot) need it")
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        with kit.claims("can_backup", "a container snapshot"):
            assert c.snapshot() == "snap0"
        restored = c.snapshot_restore("snap0", "c2")
        assert restored.rootfs.backend == kit.name
        kit.assert_matches(restored, sample, hostname="c2")
        kit.assert_clean(restored)
        with pytest.raises(AlreadyExists):
            c.snapshot_restore("snap0", "c2")
        with pytest.raises(HasDependents):
            c.destroy()
        assert c.defined and [s.name for s in c.snapshot_list()] == ["snap0"]
        kit.assert_matches(c, sample, hostname="c1")
        c.destroy(with_snapshots=True)
        assert not c.directory.exists()
        restored.destroy()
        assert sorted(os.listdir(kit.lxcpath)) == []

    def test_snapshot_refused_without_can_backup(self, kit: Subject, sample: Path) -> None:
        if kit.declares("can_backup"):
            pytest.skip(f"backend {kit.name} declares can_backup: container snapshots are tested elsewhere")
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        with pytest.raises(NotSupported):
            c.snapshot()
        assert c.snapshot_list() == []
        c.destroy()

    # ---------------------------------------------------------------- dependents

    def test_destroy_with_recorded_dependents_refused(self, kit: Subject, sample: Path) -> None:
        """A dependent recorded the way LXC records it (``lxc_snapshots`` in the origin,
        ``lxc_rdepends`` in the clone) blocks destroying the origin until it is gone."""
        origin = kit.container("origin")
        origin.create(backend=kit.name, source=sample)
        dependent = origin.clone("dependent", backend="dir")
        (origin.directory / "lxc_snapshots").write_text(f"{kit.lxcpath}\ndependent\n")
        (dependent.directory / "lxc_rdepends").write_text(f"{kit.lxcpath}\norigin\n")
        with pytest.raises(HasDependents) as refused:
            origin.destroy()
        assert "dependent" in str(refused.value)
        assert origin.defined
        kit.assert_matches(origin, sample, hostname="origin")
        dependent.destroy()
        assert not (origin.directory / "lxc_snapshots").exists() or "dependent" not in (origin.directory / "lxc_snapshots").read_text()
        origin.destroy()
        assert sorted(os.listdir(kit.lxcpath)) == []

    def test_destroy_with_dependent_clone_refused(self, kit: Subject, sample: Path) -> None:
        kit.require("snapshot_depends_on_origin", "no snapshot clone of it needs its origin")
        origin = kit.container("origin")
        origin.create(backend=kit.name, source=sample)
        with kit.claims("snapshot_depends_on_origin", "a snapshot clone"):
            clone = origin.clone("dependent", snapshot=True, backend=kit.name)
        if clone.outcome is None or not clone.outcome.depends_on_origin:
            clone.destroy()
            origin.destroy()
            pytest.skip(f"backend {kit.name}: a snapshot clone of a {kit.name} origin here does not depend on it")
        if [d.name for d in origin.dependents()] != ["dependent"]:
            kit.lie("snapshot_depends_on_origin", f"the dependency was not recorded: {origin.dependents()}")
        with pytest.raises(HasDependents):
            origin.destroy()
        assert origin.defined
        kit.assert_matches(clone, sample, hostname="dependent")
        clone.destroy()
        assert origin.dependents() == []
        origin.destroy()

    # ---------------------------------------------------------------- refusals

    def test_clone_refuses_existing_target(self, kit: Subject, sample: Path) -> None:
        a = kit.container("a")
        a.create(backend=kit.name, source=sample)
        b = a.clone("b")
        before = b.directory.joinpath("config").read_text()
        with pytest.raises(AlreadyExists):
            a.clone("b")
        with pytest.raises(AlreadyExists):
            a.clone("b", snapshot=True, maybe_snapshot=True)
        assert b.directory.joinpath("config").read_text() == before
        kit.assert_matches(b, sample, hostname="b")
        b.destroy()
        a.destroy()

    def test_refusal_at_honoured_before_anything_is_created(self, kit_refusing: Subject, sample: Path) -> None:
        kit = kit_refusing
        c = kit.container("c1")
        with pytest.raises(BdevError):
            c.create(backend=kit.name, source=sample)
        assert not c.defined
        assert sorted(os.listdir(kit.lxcpath)) == [], "a refused create left something in the lxcpath"
        origin = kit.container("origin")
        origin.create(backend="dir", source=sample)
        with pytest.raises(BdevError):
            origin.clone("into", backend=kit.name)
        assert sorted(os.listdir(kit.lxcpath)) == ["origin"], "a refused clone left something in the lxcpath"
        origin.destroy()

    def test_container_life_through_running(self, kit: Subject, sample: Path, tmp_path: Path) -> None:
        """What a runtime does (``Backend.running``): hold the rootfs from the host's
        namespaces, mount it in a forked child's own mount namespace, write there without
        syncing, let the child end (the kernel unmounts), leave ``running``.  The write is
        kept and nothing stays mounted, attached or locked (the leak check)."""
        _writes_allowed(kit)
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        if kit.backend.data_path(c.rootfs) is not None:
            c.destroy()
            pytest.skip(f"backend {kit.name} gives its files without a mount: a runtime binds them")
        if os.geteuid() != 0:
            c.destroy()
            pytest.skip("mounting in a new mount namespace needs root here")
        written = os.urandom(1 << 20)
        mountpoint = tmp_path / "inside"
        mountpoint.mkdir()
        with kit.backend.running(c.rootfs, container=c.name):
            failure = _in_own_mount_namespace(
                lambda: (kit.backend.mount(c.rootfs, mountpoint), (mountpoint / "etc/written").write_bytes(written)))
        assert failure is None, f"mounting and writing in a child's own mount namespace failed: {failure}"
        with kit.rootfs_tree(c, readonly=True) as path:
            if (path / "etc/written").read_bytes() != written:
                pytest.fail(f"backend {kit.name}: a file written in a container's mount namespace was lost once it ended")
        c.destroy()

    # ---------------------------------------------------------------- capabilities

    def test_read_only_rootfs_refuses_writes(self, kit: Subject, sample: Path, tmp_path: Path) -> None:
        """An immutable image: a read-write mount is refused, a write through a read-only mount
        fails, and the core's own edits (a template, a hostname: ``accessed(readonly=False)``)
        never reach a snapshot taken before them."""
        kit.require("read_only")
        c = kit.container("c1")
        c.create(backend=kit.name, source=sample)
        rootfs = c.rootfs
        mountpoint = tmp_path / "rw"
        mountpoint.mkdir()
        try:
            kit.backend.mount(rootfs, mountpoint, readonly=False)
        except BdevError:
            pass
        else:
            kit.backend.umount(rootfs, mountpoint)
            c.destroy()
            kit.lie("read_only", "it mounted its rootfs read-write")
        with kit.rootfs_tree(c, readonly=True) as path:
            try:
                (path / "etc/motd").write_text("written\n")
            except OSError:
                pass
            else:
                kit.lie("read_only", "a file could be written through a read-only mount")
        snap = c.snapshot()
        with kit.rootfs_tree(c, readonly=False) as path:  # the core's edit path (rebuilds the image)
            (path / "etc/motd").write_text("edited\n")
        restored = c.snapshot_restore(snap, "from-snapshot")
        kit.assert_matches(restored, sample, hostname="from-snapshot")
        restored.destroy()
        c.destroy(with_snapshots=True)

    def test_layers_over_dir(self, kit: Subject, sample: Path) -> None:
        kit.require("layers_over")
        dir_backend = kit.registry.backend("dir")
        if not kit.backend.layers_over(dir_backend):
            pytest.skip(f"backend {kit.name} layers over {', '.join(kit.backend.capabilities.layers_over)}, not dir")
        origin = kit.container("origin")
        origin.create(backend="dir", source=sample)
        with kit.claims("layers_over", "a layer over a dir origin"):
            clone = origin.clone("layer", snapshot=True, backend=kit.name)
            assert clone.outcome is not None and clone.outcome.method == "layer", (
                f"the clone was made by {clone.outcome.method if clone.outcome else 'nothing'}"
            )
        kit.assert_matches(clone, sample, hostname="layer")
        clone.destroy()
        origin.destroy()

    def test_copy_by_snapshot(self, kit: Subject, sample: Path) -> None:
        kit.require("copy_by_snapshot")
        origin = kit.container("origin")
        origin.create(backend=kit.name, source=sample)
        with kit.claims("copy_by_snapshot", "a plain clone"):
            clone = origin.clone("copy")
            assert clone.outcome is not None and clone.outcome.method == "snapshot", (
                f"a plain clone was made by {clone.outcome.method if clone.outcome else 'nothing'}, not a snapshot"
            )
        kit.assert_matches(clone, sample, hostname="copy")
        clone.destroy()
        origin.destroy()

    # ---------------------------------------------------------------- crash safety

    def test_crash_at_marked_step(self, kit: Subject, sample: Path, kit_crash_step: str) -> None:
        """A child SIGKILLed at the step leaves every container whole, and the next command
        cleans up: no partial marker, no journal, no staged rootfs."""
        specs, why_not = transferable(kit.extra_plugins)
        if why_not:
            pytest.skip(why_not)
        op = kit_crash_step.split(":", 1)[0]
        scenario = {"create": _crash_create, "clone": _crash_clone, "snapshot": _crash_snapshot,
                    "restore": _crash_restore, "destroy": _crash_destroy}[op]
        scenario(kit, sample, kit_crash_step, specs)


def _in_own_mount_namespace(work: Callable[[], object]) -> str | None:
    """Run ``work`` in a forked child in a new mount namespace (mounts there are slaves of the
    host's, as in a container) that ends with the child; None, or how the child failed."""
    from ...command import run
    from ...fsops import _libc

    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        try:
            if _libc().unshare(CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
            run(["mount", "--make-rslave", "/"])
            work()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(writer, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        failure = pipe.read().decode(errors="replace")
    os.waitpid(child, 0)
    return failure or None


def _killed(kit: Subject, code: str, step: str, specs: list[tuple[str, str]]) -> None:
    result = run_killed(kit.lxcpath, code, step, specs)
    assert killed(result), f"expected the child to die by SIGKILL at {step}, got {result.returncode}: {result.stderr[-2000:]}"


def _names(kit: Subject) -> list[str]:
    return [c.name for c in list_containers(kit.lxcpath, registry=kit.registry)]


def _crash_create(kit: Subject, sample: Path, step: str, specs: list[tuple[str, str]]) -> None:
    _killed(kit, f"Container('c1', P, registry=R).create(backend={kit.name!r}, source={str(sample)!r})", step, specs)
    assert (kit.lxcpath / "c1" / PARTIAL).exists()
    assert _names(kit) == []
    assert not (kit.lxcpath / "c1").exists()
    assert not kit.default_rootfs_exists("c1")
    c = kit.container("c1")
    c.create(backend=kit.name, source=sample)
    kit.assert_matches(c, sample, hostname="c1")
    c.destroy()


def _base(kit: Subject, sample: Path) -> "object":
    base = kit.container("base")
    base.create(backend=kit.name, source=sample)
    return base


def _crash_clone(kit: Subject, sample: Path, step: str, specs: list[tuple[str, str]]) -> None:
    base = _base(kit, sample)
    config = base.config_file_name.read_text()
    _killed(kit, "Container('base', P, registry=R).clone('web1')", step, specs)
    assert (kit.lxcpath / "web1" / PARTIAL).exists()
    assert _names(kit) == ["base"]
    assert not (kit.lxcpath / "web1").exists()
    assert base.config_file_name.read_text() == config
    web1 = base.clone("web1")
    kit.assert_matches(web1, sample, hostname="web1")
    web1.destroy()
    base.destroy()


def _crash_snapshot(kit: Subject, sample: Path, step: str, specs: list[tuple[str, str]]) -> None:
    kit.require("can_backup", "container snapshots (lxc-snapshot) need it")
    base = _base(kit, sample)
    _killed(kit, "Container('base', P, registry=R).snapshot()", step, specs)
    assert (base.directory / "snaps/snap0" / PARTIAL).exists()
    assert base.snapshot_list() == []
    assert not (base.directory / "snaps/snap0").exists()
    assert base.snapshot() == "snap0"
    assert hidden_leftovers(base.directory) == []
    base.destroy(with_snapshots=True)


def _crash_restore(kit: Subject, sample: Path, step: str, specs: list[tuple[str, str]]) -> None:
    _writes_allowed(kit)
    kit.require("can_backup", "container snapshots (lxc-snapshot) need it")
    if not _has_swap(kit):
        pytest.skip(f"backend {kit.name} has no atomic swap (Backend.swap): no restore in place to interrupt")
    base = _base(kit, sample)
    base.snapshot(comment="pristine")
    snap_tree = kit.copy_of(kit.container("base"), "snap-tree")  # unchanged yet: the snapshot's tree
    with kit.rootfs_tree(base, readonly=False) as path:
        (path / "etc/motd").write_text("changed after the snapshot\n")
        (path / "var/log/added.log").write_text("added\n")
    live_before = kit.copy_of(base, "live-before")
    config_before = base.config_file_name.read_text()
    _killed(kit, "Container('base', P, registry=R).snapshot_restore('snap0')", step, specs)
    journal = json.loads((base.directory / JOURNAL).read_text())
    assert journal["op"] == "restore"
    staged = Rootfs(kit.name, journal["staged"])
    restored = step != "restore:after-stage"
    expected = snap_tree if restored else live_before
    assert _names(kit) == ["base"]  # the next command repairs
    assert hidden_leftovers(base.directory) == []
    assert not kit.backend.exists(staged), f"the staged rootfs {staged} is still there"
    assert kit.differences(base, expected) == []
    if not restored:
        assert base.config_file_name.read_text() == config_before
    base.snapshot_restore("snap0")
    assert kit.differences(base, snap_tree) == []
    base.destroy(with_snapshots=True)


def _crash_destroy(kit: Subject, sample: Path, step: str, specs: list[tuple[str, str]]) -> None:
    base = _base(kit, sample)
    doomed = base.clone("doomed")
    rootfs = doomed.rootfs
    _killed(kit, "Container('doomed', P, registry=R).destroy()", step, specs)
    assert (doomed.directory / JOURNAL).exists()
    assert _names(kit) == ["base"]
    assert not doomed.directory.exists()
    assert not kit.registry.backend_for(rootfs).exists(rootfs)
    base.destroy()
