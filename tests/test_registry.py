"""The plugin registry: entry-point discovery, failure isolation, name conflicts, disabling,
``lxc.rootfs.path`` parsing, and what the Backend base class answers for what it lacks.

Entry-point loading is tested without installing anything: each test writes a hand-made
``*.dist-info`` (``METADATA`` + ``entry_points.txt``) and the plugin module into ``tmp_path``
and puts that directory on ``sys.path`` for the test only.  Everything here runs unprivileged.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import bdev_dir
from bdev import Backend, Capabilities, CreateOptions, Placement, Rootfs, Usage, hookimpl
from bdev.errors import BackendUnavailable, ConfigError, NotFound, NotSupported
from bdev.registry import DISABLE_ENV, PluginInfo, Registry, disabled_plugins, load_registry
from bdev.requirements import Tool

pytestmark = pytest.mark.unprivileged

MISSING_TOOL = "definitely-not-installed-xyz"

GOOD_MODULE = f'''
from bdev import Backend, Capabilities, hookimpl
from bdev.requirements import Tool


class GoodBackend(Backend):
    name = "good"
    aliases = ("goodfs",)
    description = "a test backend from a hand-made dist-info"
    capabilities = Capabilities(native_snapshot=True, unprivileged=True)
    requires = (Tool("{MISSING_TOOL}"),)


class AardvarkBackend(Backend):
    name = "aardvark"
    description = "offered after good, listed before it"


@hookimpl
def bdev_backends():
    return [GoodBackend, AardvarkBackend]
'''


def backend_module(name: str, description: str, aliases: tuple[str, ...] = ()) -> str:
    """Source of a plugin module offering one bare backend."""
    return f'''
from bdev import Backend, hookimpl


class TestBackend(Backend):
    name = {name!r}
    aliases = {aliases!r}
    description = {description!r}


@hookimpl
def bdev_backends():
    return [TestBackend]
'''


# ============================================================================ fixtures


@pytest.fixture(autouse=True)
def no_disabled_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's BDEV_DISABLE_PLUGINS must not change what these tests see."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)


MakeDist = Callable[..., Path]


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Factory writing a hand-made distribution into its own directory on ``sys.path``.

    ``make_dist("bdevtest-good", {"good": "bdevtest_good"}, {"bdevtest_good": SOURCE})``
    writes ``bdevtest_good-0.1.dist-info/{METADATA,entry_points.txt}`` and
    ``bdevtest_good.py``.  Later calls are put *before* earlier ones on ``sys.path`` (so
    are discovered first).  The modules are dropped from ``sys.modules`` afterwards.
    """
    modules: set[str] = set()

    def make(dist: str, entry_points: dict[str, str], sources: dict[str, str]) -> Path:
        root = tmp_path / f"site-{dist}"
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text("[bdev.plugins]\n" + lines)
        for module, source in sources.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            modules.add(module)
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return root

    yield make
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def info_of(registry: Registry, plugin: str) -> list[PluginInfo]:
    return [p for p in registry.plugins if p.name == plugin]


def problems_of(registry: Registry, plugin: str) -> list[str]:
    return [p.message for p in registry.problems if p.plugin == plugin]


class HookPlugin:
    """A pluggy plugin object offering the given backend classes (or anything else)."""

    def __init__(self, *offered: object):
        self.offered = list(offered)

    @hookimpl
    def bdev_backends(self):
        return self.offered


def bare_backend(name: str, *, aliases: tuple[str, ...] = (), **attrs: object) -> type[Backend]:
    return type(f"Bare_{name}", (Backend,), {"name": name, "aliases": aliases, **attrs})


# ============================================================================ built-in plugins


def test_builtin_dir_backend_is_discovered_through_its_entry_point() -> None:
    registry = load_registry()
    [info] = info_of(registry, "dir")
    assert info.distribution == "bdev-dir"
    assert info.status == "loaded"
    assert info.version
    entry = {e.name: e for e in registry.backend_entries()}["dir"]
    assert entry.plugin == "dir"
    assert registry.backend("directory") is entry.backend
    assert problems_of(registry, "dir") == []


def test_builtin_busybox_template_is_discovered_through_runtime_templates() -> None:
    registry = load_registry()
    [info] = info_of(registry, "runtime-templates")
    assert info.distribution == "bdev-runtime"
    assert info.status == "loaded"
    offered = {template.name: plugin for template, plugin in registry.templates()}
    assert offered.get("busybox") == "runtime-templates"
    assert registry.template("busybox").name == "busybox"


def test_without_entry_points_nothing_is_loaded() -> None:
    registry = load_registry(use_entry_points=False)
    assert registry.plugins == []
    assert registry.backend_entries() == []
    with pytest.raises(NotFound, match="none"):
        registry.backend("dir")


# ============================================================================ hand-made dist-info


def test_plugin_from_hand_made_dist_info(make_dist: MakeDist) -> None:
    make_dist("bdevtest-good", {"good": "bdevtest_good"}, {"bdevtest_good": GOOD_MODULE})
    registry = load_registry()

    [info] = info_of(registry, "good")
    assert (info.distribution, info.version, info.status) == ("bdevtest-good", "0.1", "loaded")
    assert problems_of(registry, "good") == []

    good = registry.backend("goodfs")
    assert good.name == "good"
    assert registry.backend("GOOD") is good
    assert registry.canonical("goodfs") == "good"
    assert good.capabilities.native_snapshot
    assert good.requires == (Tool(MISSING_TOOL),)
    assert {e.name: e.plugin for e in registry.backend_entries()}["good"] == "good"

    with pytest.raises(BackendUnavailable) as caught:
        registry.usable_backend("good")
    assert MISSING_TOOL in str(caught.value)
    assert caught.value.backend == "good"
    assert any(MISSING_TOOL in r for r in caught.value.reasons)

    names = [e.name for e in registry.backend_entries()]
    assert names == sorted(names)
    assert {"aardvark", "dir", "good"} <= set(names)


def test_plugin_failing_to_import_is_reported_and_others_load(make_dist: MakeDist) -> None:
    make_dist(
        "bdevtest-broken",
        {"broken": "bdevtest_broken"},
        {"bdevtest_broken": 'raise ImportError("bdevtest needs libfrobnicate")\n'},
    )
    registry = load_registry()

    [message] = problems_of(registry, "broken")
    assert "libfrobnicate" in message
    assert "ImportError" in message
    assert "plugin broken" in str(next(p for p in registry.problems if p.plugin == "broken"))
    [info] = info_of(registry, "broken")
    assert (info.distribution, info.status) == ("bdevtest-broken", "failed")

    assert registry.backend("dir").name == "dir"
    assert [i.status for i in info_of(registry, "dir")] == ["loaded"]
    assert problems_of(registry, "dir") == []


def test_plugin_whose_hook_raises_is_named_and_others_are_fine(make_dist: MakeDist) -> None:
    make_dist(
        "bdevtest-raiser",
        {"raiser": "bdevtest_raiser"},
        {
            "bdevtest_raiser": """
                from bdev import hookimpl

                @hookimpl
                def bdev_backends():
                    raise RuntimeError("raiser went boom")
            """
        },
    )
    registry = load_registry(extra_plugins=[("fine", HookPlugin(bare_backend("finefs")))])

    [message] = problems_of(registry, "raiser")
    assert "bdev_backends" in message
    assert "raiser went boom" in message
    assert [p.plugin for p in registry.problems] == ["raiser"]
    assert registry.backend("dir").name == "dir"
    assert registry.backend("finefs").name == "finefs"
    assert registry.template("busybox").name == "busybox"


def test_template_hook_raising_does_not_lose_the_plugins_backends() -> None:
    class Both:
        @hookimpl
        def bdev_backends(self):
            return [bare_backend("bothfs")]

        @hookimpl
        def bdev_templates(self):
            raise ValueError("no templates today")

    registry = load_registry(extra_plugins=[("both", Both())], use_entry_points=False)
    [message] = problems_of(registry, "both")
    assert "bdev_templates" in message and "no templates today" in message
    assert registry.backend("bothfs").name == "bothfs"


# ============================================================================ conflicts




def _conflict(registry: Registry, a: str, b: str) -> tuple[str, str]:
    """(loser, message) of the single problem a name conflict between ``a`` and ``b`` gave."""
    problems = [p for p in registry.problems if p.plugin in (a, b)]
    assert len(problems) == 1, problems
    [problem] = problems
    other = b if problem.plugin == a else a
    assert other in problem.message, f"the problem must name both plugins: {problem}"
    return problem.plugin, problem.message


def test_same_backend_name_from_two_plugins_names_both_and_keeps_one(make_dist: MakeDist) -> None:
    make_dist("bdevtest-alpha", {"alpha": "bdevtest_alpha"}, {"bdevtest_alpha": backend_module("twin", "from alpha")})
    make_dist("bdevtest-beta", {"beta": "bdevtest_beta"}, {"bdevtest_beta": backend_module("twin", "from beta")})
    registry = load_registry()

    loser, message = _conflict(registry, "alpha", "beta")
    assert "twin" in message
    winner = "beta" if loser == "alpha" else "alpha"
    kept = {e.name: e for e in registry.backend_entries()}["twin"]
    assert kept.plugin == winner
    assert kept.backend.description == f"from {winner}"
    # both plugins themselves loaded; only the duplicate backend was refused
    assert [i.status for i in info_of(registry, "alpha") + info_of(registry, "beta")] == ["loaded", "loaded"]


def test_same_backend_name_keeps_the_first_plugin_in_entry_point_name_order(make_dist: MakeDist) -> None:
    # beta is *discovered* first (its directory is earlier on sys.path); alpha sorts first.
    make_dist("bdevtest-alpha", {"alpha": "bdevtest_alpha"}, {"bdevtest_alpha": backend_module("twin", "from alpha")})
    make_dist("bdevtest-beta", {"beta": "bdevtest_beta"}, {"bdevtest_beta": backend_module("twin", "from beta")})
    registry = load_registry()

    assert [p.name for p in registry.plugins if p.name in ("alpha", "beta")] == ["alpha", "beta"]
    assert registry.backend("twin").description == "from alpha"
    assert problems_of(registry, "beta") and "alpha" in problems_of(registry, "beta")[0]
    assert problems_of(registry, "alpha") == []


def test_a_later_plugin_cannot_take_the_builtin_dir_name(make_dist: MakeDist) -> None:
    make_dist("bdevtest-zdir", {"zdir": "bdevtest_zdir"}, {"bdevtest_zdir": backend_module("dir", "an impostor")})
    registry = load_registry()

    assert {e.name: e.plugin for e in registry.backend_entries()}["dir"] == "dir"
    assert registry.backend("dir").description != "an impostor"
    [message] = problems_of(registry, "zdir")
    assert "'dir'" in message and "plugin dir" in message


def test_alias_colliding_with_another_plugins_name_names_both() -> None:
    first = HookPlugin(bare_backend("overlay", aliases=("overlayfs",)))
    second = HookPlugin(bare_backend("ovl", aliases=("ovlfs", "overlayfs")))
    registry = load_registry(extra_plugins=[("first", first), ("second", second)], use_entry_points=False)

    loser, message = _conflict(registry, "first", "second")
    assert "overlayfs" in message
    # the refused backend is refused whole: none of its names is registered
    refused = ("ovl", "ovlfs") if loser == "second" else ("overlay",)
    for name in refused:
        with pytest.raises(NotFound):
            registry.backend(name)
    assert registry.canonical("overlayfs") == ("overlay" if loser == "second" else "ovl")


def test_alias_collision_keeps_the_first_registered_extra_plugin() -> None:
    first = HookPlugin(bare_backend("overlay", aliases=("overlayfs",)))
    second = HookPlugin(bare_backend("ovl", aliases=("overlayfs",)))
    registry = load_registry(extra_plugins=[("first", first), ("second", second)], use_entry_points=False)

    assert registry.canonical("overlayfs") == "overlay"
    assert problems_of(registry, "first") == []
    [message] = problems_of(registry, "second")
    assert "first" in message


def test_non_backend_offerings_are_problems_and_do_not_stop_the_plugin() -> None:
    class NotABackend:
        name = "imposter"

    nameless = bare_backend("")
    plugin = HookPlugin("a string", NotABackend, nameless, bare_backend("realfs"))
    registry = load_registry(extra_plugins=[("messy", plugin)], use_entry_points=False)

    messages = problems_of(registry, "messy")
    assert len(messages) == 3, messages
    assert all("not a named Backend subclass" in m for m in messages)
    assert any("NotABackend" in m for m in messages)
    assert registry.backend("realfs").name == "realfs"
    with pytest.raises(NotFound):
        registry.backend("imposter")


def test_backend_failing_to_initialise_is_a_problem() -> None:
    class Fragile(Backend):
        name = "fragile"

        def __init__(self, settings=None):
            raise RuntimeError("needs lxc.bdev.fragile.root")

    registry = load_registry(
        extra_plugins=[("fragile-plugin", HookPlugin(Fragile, bare_backend("sturdy")))], use_entry_points=False
    )
    [message] = problems_of(registry, "fragile-plugin")
    assert "fragile" in message and "lxc.bdev.fragile.root" in message
    assert registry.backend("sturdy").name == "sturdy"
    with pytest.raises(NotFound):
        registry.backend("fragile")


def test_same_plugin_name_from_two_distributions_reports_the_second(make_dist: MakeDist) -> None:
    make_dist("bdevtest-two", {"dup": "bdevtest_two"}, {"bdevtest_two": backend_module("twofs", "from two")})
    make_dist("bdevtest-one", {"dup": "bdevtest_one"}, {"bdevtest_one": backend_module("onefs", "from one")})
    # bdevtest-one was prepended last, so it is first on sys.path and found first
    registry = load_registry()

    [info] = info_of(registry, "dup")
    assert (info.distribution, info.status) == ("bdevtest-one", "loaded")
    [message] = problems_of(registry, "dup")
    assert "bdevtest-two" in message
    assert registry.backend("onefs").description == "from one"
    with pytest.raises(NotFound):
        registry.backend("twofs")
    assert "bdevtest_two" not in sys.modules


# ============================================================================ disabling


def test_disable_env_keeps_plugins_from_loading(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("bdevtest-good", {"good": "bdevtest_good"}, {"bdevtest_good": GOOD_MODULE})
    monkeypatch.setenv(DISABLE_ENV, "good, dir")
    assert disabled_plugins() == {"good", "dir"}
    registry = load_registry()

    for name, dist in (("good", "bdevtest-good"), ("dir", "bdev-dir")):
        [info] = info_of(registry, name)
        assert (info.distribution, info.status) == (dist, "disabled")
        assert problems_of(registry, name) == []
    for name in ("good", "goodfs", "dir", "directory"):
        with pytest.raises(NotFound):
            registry.backend(name)
    assert "bdevtest_good" not in sys.modules, "a disabled plugin must not even be imported"
    assert [i.status for i in info_of(registry, "runtime-templates")] == ["loaded"]


def test_disable_env_accepts_spaces_and_commas() -> None:
    assert disabled_plugins({DISABLE_ENV: " zfs  lvm,,dir ,"}) == {"zfs", "lvm", "dir"}
    assert disabled_plugins({DISABLE_ENV: ""}) == set()
    assert disabled_plugins({}) == set()


def test_disabled_argument_replaces_the_environment(make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist("bdevtest-good", {"good": "bdevtest_good"}, {"bdevtest_good": GOOD_MODULE})
    monkeypatch.setenv(DISABLE_ENV, "dir")
    extra = HookPlugin(bare_backend("extrafs"))
    registry = load_registry(disabled=["good", "extra"], extra_plugins=[("extra", extra)])

    assert [i.status for i in info_of(registry, "good")] == ["disabled"]
    assert [i.status for i in info_of(registry, "dir")] == ["loaded"]
    assert registry.backend("dir").name == "dir"
    for name in ("good", "extrafs"):
        with pytest.raises(NotFound):
            registry.backend(name)


# ============================================================================ extra plugins


def test_extra_plugins_objects_and_modules_register() -> None:
    module = types.ModuleType("bdevtest_extra_module")

    @hookimpl
    def bdev_backends():
        return [bare_backend("modfs")]

    module.bdev_backends = bdev_backends
    registry = load_registry(
        extra_plugins=[("obj", HookPlugin(bare_backend("objfs", aliases=("objectfs",)))), ("mod", module)],
        use_entry_points=False,
    )
    assert registry.problems == []
    assert [(i.name, i.distribution, i.status) for i in registry.plugins] == [
        ("obj", None, "loaded"),
        ("mod", None, "loaded"),
    ]
    assert {e.name: e.plugin for e in registry.backend_entries()} == {"modfs": "mod", "objfs": "obj"}
    assert registry.backend("objectfs").name == "objfs"


def test_extra_plugins_sit_beside_entry_points() -> None:
    registry = load_registry(extra_plugins=[("obj", HookPlugin(bare_backend("objfs")))])
    assert {"dir", "objfs"} <= {e.name for e in registry.backend_entries()}


def test_settings_reach_each_backend() -> None:
    registry = load_registry(
        {"lxc.bdev.zfs.root": "tank/lxc"}, extra_plugins=[("obj", HookPlugin(bare_backend("objfs")))]
    )
    assert registry.backend("objfs").settings["lxc.bdev.zfs.root"] == "tank/lxc"
    assert registry.backend("dir").settings["lxc.bdev.zfs.root"] == "tank/lxc"


# ============================================================================ parse_rootfs


MARKER = ".markfs-volume"


class OverlayLike(Backend):
    """Claims every path it is asked about, but has no detect_priority: never probed."""

    name = "overlay"
    aliases = ("overlayfs",)

    def detect(self, source: str) -> bool:
        return True


class MarkFs(Backend):
    """A specific backend recognising its directories by a marker file, probed before dir."""

    name = "markfs"
    detect_priority = 10

    def detect(self, source: str) -> bool:
        return (Path(source) / MARKER).exists()


class Flaky(Backend):
    """Probed first and fails with OSError: detection must go on."""

    name = "flaky"
    detect_priority = 1

    def detect(self, source: str) -> bool:
        raise PermissionError(13, "Permission denied", source)


@pytest.fixture
def parsing_registry() -> Registry:
    registry = load_registry(
        extra_plugins=[("dir", bdev_dir), ("test-backends", HookPlugin(OverlayLike, MarkFs, Flaky))],
        use_entry_points=False,
        disabled=(),
    )
    assert registry.problems == []
    return registry


def test_parse_prefixed_value(parsing_registry: Registry) -> None:
    assert parsing_registry.parse_rootfs("dir:/x") == Rootfs("dir", "/x")
    assert parsing_registry.parse_rootfs("  dir:/var/lib/lxc/c1/rootfs \n") == Rootfs("dir", "/var/lib/lxc/c1/rootfs")
    assert parsing_registry.parse_rootfs("directory:/x") == Rootfs("dir", "/x")


def test_parse_alias_prefix_gives_canonical_name_and_keeps_colons(parsing_registry: Registry) -> None:
    rootfs = parsing_registry.parse_rootfs("overlayfs:/a:/b")
    assert rootfs == Rootfs("overlay", "/a:/b")
    assert rootfs.config_value == "overlay:/a:/b"


def test_parse_bare_path_specific_backend_beats_dir(parsing_registry: Registry, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    assert parsing_registry.parse_rootfs(str(volume)) == Rootfs("dir", str(volume))
    (volume / MARKER).touch()
    assert parsing_registry.parse_rootfs(str(volume)) == Rootfs("markfs", str(volume))


def test_parse_bare_nonexistent_path_is_config_error(parsing_registry: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rootfs"
    with pytest.raises(ConfigError, match="no-such-rootfs"):
        parsing_registry.parse_rootfs(str(missing))


def test_parse_unknown_prefix_lists_known_names(parsing_registry: Registry) -> None:
    with pytest.raises(NotFound) as caught:
        parsing_registry.parse_rootfs("bogus:/x")
    message = str(caught.value)
    assert "bogus" in message
    for known in ("dir", "markfs", "overlay", "overlayfs"):
        assert known in message


def test_parse_backend_hint_is_honoured(parsing_registry: Registry, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert parsing_registry.parse_rootfs(str(plain), backend_hint="overlayfs") == Rootfs("overlay", str(plain))
    assert parsing_registry.parse_rootfs("/not/there", backend_hint="markfs") == Rootfs("markfs", "/not/there")
    with pytest.raises(NotFound):
        parsing_registry.parse_rootfs(str(plain), backend_hint="bogus")


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_parse_empty_value_is_config_error(parsing_registry: Registry, value: str) -> None:
    with pytest.raises(ConfigError):
        parsing_registry.parse_rootfs(value)


def test_backend_for_a_rootfs(parsing_registry: Registry) -> None:
    assert parsing_registry.backend_for(Rootfs("overlay", "/a:/b")).name == "overlay"


# ============================================================================ base class


class Nothing(Backend):
    name = "nothing"


@pytest.fixture
def nothing() -> Nothing:
    return Nothing()


@pytest.mark.parametrize(
    ("operation", "word"),
    [
        ("create", "create"),
        ("destroy", "destroy"),
        ("mount", "mount"),
        ("snapshot", "snapshot"),
        ("swap", "swap"),
    ],
)
def test_base_class_operations_are_not_supported(nothing: Nothing, tmp_path: Path, operation: str, word: str) -> None:
    placement = Placement(tmp_path, "c1")
    rootfs = Rootfs("nothing", str(tmp_path / "c1" / "rootfs"))
    calls = {
        "create": lambda: nothing.create(placement, CreateOptions()),
        "destroy": lambda: nothing.destroy(rootfs),
        "mount": lambda: nothing.mount(rootfs, tmp_path),
        "snapshot": lambda: nothing.snapshot(rootfs, nothing, placement, CreateOptions()),
        "swap": lambda: nothing.swap(rootfs, Rootfs("nothing", str(tmp_path / "staged"))),
    }
    with pytest.raises(NotSupported) as caught:
        calls[operation]()
    message = str(caught.value)
    assert "nothing" in message
    assert word in message
    assert caught.value.backend == "nothing"
    assert list(tmp_path.iterdir()) == [], "an unsupported operation must leave nothing behind"


def test_base_class_usage_is_unknown_with_a_note(nothing: Nothing) -> None:
    usage = nothing.usage(Rootfs("nothing", "/x"))
    assert isinstance(usage, Usage)
    assert usage.used_bytes is None
    assert usage.limit_bytes is None
    assert "nothing" in usage.note


def test_base_class_refuses_snapshots(nothing: Nothing, tmp_path: Path) -> None:
    refusal = nothing.snapshot_refusal(Rootfs("nothing", "/x"), nothing, Placement(tmp_path, "c2"))
    assert refusal is not None
    assert "nothing" in refusal and "no native snapshot" in refusal


def test_base_class_defaults(nothing: Nothing, tmp_path: Path) -> None:
    assert nothing.unavailable_reasons() == []
    assert nothing.refusal_at(Placement(tmp_path, "c1"), CreateOptions()) is None
    assert nothing.detect(str(tmp_path)) is False
    assert nothing.parse("/some/where") == Rootfs("nothing", "/some/where")
    assert nothing.data_path(Rootfs("nothing", "/x")) is None
    assert nothing.capabilities == Capabilities()
    with pytest.raises(NotSupported, match="nothing"):
        with nothing.accessed(Rootfs("nothing", "/x")):
            pass


# ============================================================================ lazy loading


def test_a_backend_looked_up_by_name_imports_only_its_plugin(make_dist: MakeDist) -> None:
    make_dist("bdevtest-alpha", {"alphafs": "bdevtest_lazy_alpha"}, {"bdevtest_lazy_alpha": backend_module("alphafs", "a")})
    make_dist("bdevtest-beta", {"betafs": "bdevtest_lazy_beta"}, {"bdevtest_lazy_beta": backend_module("betafs", "b")})
    registry = load_registry()
    assert "bdevtest_lazy_alpha" not in sys.modules and "bdevtest_lazy_beta" not in sys.modules

    assert registry.backend("alphafs").description == "a"
    assert "bdevtest_lazy_alpha" in sys.modules and "bdevtest_lazy_beta" not in sys.modules

    # a question about every plugin loads the rest, in order, each once
    assert [p.name for p in registry.plugins if p.name in ("alphafs", "betafs")] == ["alphafs", "betafs"]
    assert {e.name for e in registry.backend_entries()} >= {"alphafs", "betafs"}
    assert problems_of(registry, "alphafs") == [] and problems_of(registry, "betafs") == []


def test_a_name_that_is_no_entry_point_loads_every_plugin(make_dist: MakeDist) -> None:
    make_dist("bdevtest-gamma", {"gamma": "bdevtest_lazy_gamma"},
              {"bdevtest_lazy_gamma": backend_module("gammafs", "g", aliases=("gfs",))})
    registry = load_registry()
    assert registry.backend("gfs").name == "gammafs"
    with pytest.raises(NotFound, match="gammafs"):
        registry.backend("nosuchfs")


@pytest.mark.parametrize(("module", "argv", "unwanted"), [
    ("bdev.cli.lxc.ls", ["lxc-ls", "-P", "{empty}"], ("pluggy", "importlib.metadata", "bdev.api")),
    ("bdev.cli.lxc.ls", ["lxc-ls", "-P", "{empty}", "-1"], ("pluggy", "importlib.metadata", "bdev.api")),
    ("bdev.cli.main", ["bdev", "-P", "{empty}", "ls"], ("pluggy", "importlib.metadata", "bdev.api")),
    # --version reads bdev's own version through importlib.metadata, by name: no entry-point scan
    ("bdev.cli.main", ["bdev", "--version"], ("pluggy",)),
], ids=["lxc-ls", "lxc-ls-1", "bdev-ls", "bdev-version"])
def test_start_up_imports_no_plugin(tmp_path: Path, module: str, argv: list[str], unwanted: tuple[str, ...]) -> None:
    """Commands that need no backend neither import a plugin (nor pluggy, which loads them) nor
    scan entry points (importlib.metadata); listing an empty lxcpath does not import the API."""
    argv = [arg.format(empty=tmp_path) for arg in argv]
    probe = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        f"try:\n    runpy.run_module({module!r}, run_name='__main__')\nexcept SystemExit as exc:\n"
        "    print('exit', exc.code, file=sys.stderr)\n"
        f"print(sorted(m for m in sys.modules if m.startswith('bdev_') or m in {unwanted!r}))\n"
    )
    from bdev.command import run

    proc = run([sys.executable, "-c", probe])
    assert proc.stderr.strip() == "exit 0", proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
