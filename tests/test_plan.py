"""The core's decisions: which backend ``-B spec`` means (:func:`choose_backend`) and how a
clone is made (:func:`plan_clone`: native snapshot, layer, or full copy).

The registries here hold pure-Python fake backends registered through ``extra_plugins``: these
tests exercise the decision logic, not storage, and nothing is ever created.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bdev import Backend, Capabilities, CreateOptions, Placement, Rootfs, hookimpl
from bdev.engine.plan import ClonePlan, choose_backend, plan_clone
from bdev.errors import BackendUnavailable, InvalidInput, NotFound, NotSupported
from bdev.registry import Registry, load_registry

pytestmark = pytest.mark.unprivileged

OPTIONS = CreateOptions()


class Fake(Backend):
    """A backend whose availability and refusal are class attributes; it records being asked."""

    reasons: tuple[str, ...] = ()
    refusal: str | None = None

    def __init__(self, settings=None):
        super().__init__(settings)
        self.asked: list[str] = []

    def unavailable_reasons(self) -> list[str]:
        self.asked.append("unavailable_reasons")
        return list(self.reasons)

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        self.asked.append("refusal_at")
        return self.refusal


def fake(
    name: str,
    *,
    aliases: Sequence[str] = (),
    reasons: Sequence[str] = (),
    refusal: str | None = None,
    best: int | None = None,
    **capabilities: object,
) -> type[Fake]:
    """A Fake subclass called ``name``; keyword arguments beyond these are Capabilities."""
    return type(
        f"Fake_{name}",
        (Fake,),
        {
            "name": name,
            "aliases": tuple(aliases),
            "reasons": tuple(reasons),
            "refusal": refusal,
            "best_priority": best,
            "capabilities": Capabilities(**capabilities),
        },
    )


class FakesPlugin:
    def __init__(self, classes: Sequence[type[Backend]]):
        self.classes = list(classes)

    @hookimpl
    def bdev_backends(self):
        return self.classes


def registry_of(*classes: type[Backend]) -> Registry:
    registry = load_registry(extra_plugins=[("fakes", FakesPlugin(classes))], use_entry_points=False, disabled=())
    assert registry.problems == []
    return registry


@pytest.fixture
def placement(tmp_path: Path) -> Placement:
    return Placement(tmp_path / "lxc", "c2")


def choose(registry: Registry, spec: str, placement: Placement) -> Backend:
    return choose_backend(registry, spec, placement, OPTIONS)


# ============================================================================ choose_backend


def test_choose_single_usable_name(placement: Placement) -> None:
    registry = registry_of(fake("alpha", aliases=("alphafs",)), fake("beta"))
    assert choose(registry, "alpha", placement) is registry.backend("alpha")
    assert choose(registry, " ALPHAFS ", placement) is registry.backend("alpha")
    assert registry.backend("beta").asked == [], "only the named backend is consulted"


def test_choose_best_picks_lowest_best_priority_that_works(placement: Placement) -> None:
    registry = registry_of(
        fake("slow", best=30),
        fake("missing", best=5, reasons=("missing-tool is not installed",)),
        fake("refuses", best=8, refusal="/var/lib/lxc is on ext4, not refuses"),
        fake("mid", best=20),
        fake("never"),  # best_priority None: best never picks it
    )
    assert choose(registry, "best", placement).name == "mid"
    assert registry.backend("slow").asked == []
    assert registry.backend("never").asked == []
    assert "refusal_at" not in registry.backend("missing").asked, "an unavailable backend is not asked further"


def test_choose_best_with_nothing_usable_is_unavailable(placement: Placement) -> None:
    registry = registry_of(fake("missing", best=5, reasons=("missing-tool is not installed",)), fake("never"))
    with pytest.raises(BackendUnavailable, match="missing-tool is not installed"):
        choose(registry, "best", placement)


def test_choose_list_falls_through_an_unavailable_backend(placement: Placement) -> None:
    registry = registry_of(fake("a", reasons=("a-tool is not installed",)), fake("b"))
    assert registry.backend("a").unavailable_reasons() != []
    assert choose(registry, "a,b", placement).name == "b"
    assert choose(registry, " a , b ", placement).name == "b"


def test_choose_list_falls_through_a_refusing_backend(placement: Placement) -> None:
    registry = registry_of(fake("a", refusal="the lxcpath is not on an a filesystem"), fake("b"))
    assert choose(registry, "a,b", placement).name == "b"
    assert registry.backend("a").asked == ["unavailable_reasons", "refusal_at"]


def test_choose_list_first_usable_wins(placement: Placement) -> None:
    registry = registry_of(fake("a"), fake("b"))
    assert choose(registry, "a,b", placement).name == "a"
    assert registry.backend("b").asked == []


def test_choose_list_all_refusing_lists_every_reason(placement: Placement) -> None:
    registry = registry_of(
        fake("a", reasons=("a-tool is not installed",)),
        fake("b", refusal="the lxcpath is on ext4, not b"),
    )
    with pytest.raises(BackendUnavailable) as caught:
        choose(registry, "a,b", placement)
    message = str(caught.value)
    assert "a: a-tool is not installed" in message
    assert "b: the lxcpath is on ext4, not b" in message


def test_choose_unknown_name_is_not_found_before_anything_is_asked(placement: Placement) -> None:
    registry = registry_of(fake("a"), fake("b"))
    with pytest.raises(NotFound) as caught:
        choose(registry, "a,bogus,b", placement)
    assert "bogus" in str(caught.value)
    assert "known: a, b" in str(caught.value)
    assert registry.backend("a").asked == []
    assert registry.backend("b").asked == []


def test_choose_single_unusable_name_gives_its_reason_and_backend(placement: Placement) -> None:
    registry = registry_of(fake("a", reasons=("a-tool is not installed (install a-utils)",)), fake("b"))
    with pytest.raises(BackendUnavailable) as caught:
        choose(registry, "a", placement)
    assert caught.value.backend == "a"
    assert "a-tool is not installed (install a-utils)" in str(caught.value)
    assert caught.value.reasons
    assert registry.backend("b").asked == [], "a single name never falls back to another backend"


def test_choose_single_refusing_name_gives_the_refusal(placement: Placement) -> None:
    registry = registry_of(fake("a", refusal="the lxcpath is on ext4, not a"), fake("b"))
    with pytest.raises(BackendUnavailable) as caught:
        choose(registry, "a", placement)
    assert caught.value.backend == "a"
    assert "the lxcpath is on ext4, not a" in str(caught.value)


@pytest.mark.parametrize("spec", ["", " ", ",", " , "])
def test_choose_empty_spec_is_invalid(placement: Placement, spec: str) -> None:
    with pytest.raises(InvalidInput):
        choose(registry_of(fake("a")), spec, placement)


# ============================================================================ plan_clone


def plan(
    registry: Registry,
    source_name: str,
    target_spec: str | None,
    placement: Placement,
    *,
    snapshot: bool,
    maybe_snapshot: bool = False,
    keep_backend: bool = False,
) -> ClonePlan:
    source_backend = registry.backend(source_name)
    source = Rootfs(source_backend.name, f"/var/lib/lxc/c1/{source_name}")
    return plan_clone(
        registry,
        source,
        source_backend,
        target_spec,
        placement,
        OPTIONS,
        snapshot=snapshot,
        maybe_snapshot=maybe_snapshot,
        keep_backend=keep_backend,
    )


def test_snapshot_with_native_snapshot_stays_on_the_source_backend(placement: Placement) -> None:
    registry = registry_of(fake("snapfs", native_snapshot=True), fake("layer", layers_over=("snapfs",)))
    result = plan(registry, "snapfs", None, placement, snapshot=True)
    assert (result.method, result.target.name) == ("snapshot", "snapfs")


def test_snapshot_without_native_snapshot_layers_over_the_source(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("layer", layers_over=("plain",), snapshot_depends_on_origin=True))
    result = plan(registry, "plain", None, placement, snapshot=True)
    assert (result.method, result.target.name) == ("layer", "layer")
    assert result.target is registry.backend("layer")


def test_layering_needs_a_usable_backend_that_layers_over_this_source(placement: Placement) -> None:
    registry = registry_of(
        fake("plain"),
        fake("broken-layer", layers_over=("plain",), reasons=("the kernel has no overlay filesystem",)),
        fake("other-layer", layers_over=("elsewhere",)),
    )
    with pytest.raises(NotSupported):
        plan(registry, "plain", None, placement, snapshot=True)
    result = plan(registry, "plain", None, placement, snapshot=True, maybe_snapshot=True)
    assert (result.method, result.target.name) == ("copy", "plain")


def test_keep_backend_does_not_layer(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("layer", layers_over=("plain",)))
    result = plan(registry, "plain", None, placement, snapshot=True, maybe_snapshot=True, keep_backend=True)
    assert (result.method, result.target.name) == ("copy", "plain")
    with pytest.raises(NotSupported) as caught:
        plan(registry, "plain", None, placement, snapshot=True, keep_backend=True)
    assert caught.value.backend == "plain"
    assert registry.backend("layer").asked == []


def test_impossible_snapshot_with_maybe_snapshot_is_a_copy_with_a_note(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("snapfs", native_snapshot=True))
    result = plan(registry, "plain", None, placement, snapshot=True, maybe_snapshot=True)
    assert (result.method, result.target.name) == ("copy", "plain")
    assert "no native snapshot" in result.note
    assert "plain" in result.note


def test_impossible_snapshot_without_maybe_snapshot_is_not_supported(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("snapfs", native_snapshot=True))
    with pytest.raises(NotSupported) as caught:
        plan(registry, "plain", None, placement, snapshot=True)
    assert caught.value.backend == "plain"
    assert "no native snapshot" in str(caught.value)


def test_snapshot_to_another_backend_without_layering_is_refused(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("snapfs", native_snapshot=True))
    with pytest.raises(NotSupported) as caught:
        plan(registry, "plain", "snapfs", placement, snapshot=True)
    assert "cannot snapshot a plain rootfs" in str(caught.value)
    result = plan(registry, "plain", "snapfs", placement, snapshot=True, maybe_snapshot=True)
    assert (result.method, result.target.name) == ("copy", "snapfs")


def test_explicit_target_that_layers_over_the_source(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("layer", aliases=("layerfs",), layers_over=("plain",)))
    result = plan(registry, "plain", "layerfs", placement, snapshot=True)
    assert (result.method, result.target.name) == ("layer", "layer")


def test_copy_by_snapshot_backend_snapshots_a_plain_copy(placement: Placement) -> None:
    registry = registry_of(fake("btrfsish", native_snapshot=True, copy_by_snapshot=True))
    result = plan(registry, "btrfsish", None, placement, snapshot=False)
    assert (result.method, result.target.name) == ("snapshot", "btrfsish")
    result = plan(registry, "btrfsish", "btrfsish", placement, snapshot=False)
    assert (result.method, result.target.name) == ("snapshot", "btrfsish")


def test_copy_by_snapshot_needs_the_same_backend(placement: Placement) -> None:
    registry = registry_of(
        fake("btrfsish", native_snapshot=True, copy_by_snapshot=True, layers_over=("plain",)), fake("plain")
    )
    result = plan(registry, "plain", "btrfsish", placement, snapshot=False)
    assert (result.method, result.target.name) == ("copy", "btrfsish")


def test_copy_by_snapshot_honours_the_snapshot_refusal(placement: Placement) -> None:
    class OtherFilesystem(fake("btrfsish", native_snapshot=True, copy_by_snapshot=True)):
        def snapshot_refusal(self, source, source_backend, placement):
            return "source and target are on different filesystems"

    registry = registry_of(OtherFilesystem)
    result = plan(registry, "btrfsish", None, placement, snapshot=False)
    assert (result.method, result.target.name) == ("copy", "btrfsish")


def test_native_snapshot_without_copy_by_snapshot_copies_when_no_snapshot_asked(placement: Placement) -> None:
    registry = registry_of(fake("snapfs", native_snapshot=True))
    result = plan(registry, "snapfs", None, placement, snapshot=False)
    assert (result.method, result.target.name) == ("copy", "snapfs")


def test_no_snapshot_asked_is_a_copy(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("layer", layers_over=("plain",)), fake("other"))
    result = plan(registry, "plain", None, placement, snapshot=False)
    assert (result.method, result.target.name, result.note) == ("copy", "plain", "")
    result = plan(registry, "plain", "other", placement, snapshot=False)
    assert (result.method, result.target.name) == ("copy", "other")


def test_explicit_target_that_refuses_is_unavailable(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("picky", refusal="the lxcpath is on ext4, not picky"))
    with pytest.raises(BackendUnavailable) as caught:
        plan(registry, "plain", "picky", placement, snapshot=False)
    assert caught.value.backend == "picky"
    assert "the lxcpath is on ext4, not picky" in str(caught.value)


def test_explicit_target_list_falls_through_to_a_usable_one(placement: Placement) -> None:
    registry = registry_of(fake("plain"), fake("picky", refusal="no room"), fake("other"))
    result = plan(registry, "plain", "picky,other", placement, snapshot=False)
    assert (result.method, result.target.name) == ("copy", "other")


def test_explicit_unknown_target_is_not_found(placement: Placement) -> None:
    registry = registry_of(fake("plain"))
    with pytest.raises(NotFound):
        plan(registry, "plain", "bogus", placement, snapshot=False)


def test_source_backend_refusing_the_new_placement_is_unavailable(placement: Placement) -> None:
    registry = registry_of(fake("picky", refusal="the lxcpath is on ext4, not picky"))
    with pytest.raises(BackendUnavailable) as caught:
        plan(registry, "picky", None, placement, snapshot=False)
    assert caught.value.backend == "picky"
    assert "not picky" in str(caught.value)


def test_source_backend_unusable_here_is_unavailable(placement: Placement) -> None:
    registry = registry_of(fake("gone", reasons=("gone-tool is not installed",)))
    with pytest.raises(BackendUnavailable) as caught:
        plan(registry, "gone", None, placement, snapshot=False)
    assert caught.value.backend == "gone"
    assert "gone-tool is not installed" in str(caught.value)
