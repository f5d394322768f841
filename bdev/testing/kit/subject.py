"""The backend under test: its registry entry, scratch lxcpath and the helpers the contract's
tests share (container handles, tree checks, capability claims and skips)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from ...api import Container
from ...backend import Backend
from ...records import CreateOptions, Placement
from ...store.layout import JOURNAL, PARTIAL
from ..trees import tree_differences

if TYPE_CHECKING:
    from ...registry import Registry

REWRITTEN = ("etc/hostname:", "etc/hosts:")
_REGISTRIES: dict[tuple, "Registry"] = {}


def contract_registry(extra_plugins: Sequence[tuple[str, object]]) -> "Registry":
    """The installed plugins' registry, plus ``extra_plugins`` when given (loaded once per
    set of extra plugins and settings)."""
    from ...engine.context import default_registry
    from ...registry import load_registry
    from ...store.lxcpath import global_settings

    settings = global_settings()
    if not extra_plugins:
        return default_registry(settings)
    key = (tuple((n, id(p)) for n, p in extra_plugins), tuple(sorted(settings.items())), os.environ.get("BDEV_DISABLE_PLUGINS", ""))
    if key not in _REGISTRIES:
        _REGISTRIES[key] = load_registry(settings, extra_plugins=list(extra_plugins))
    return _REGISTRIES[key]


@dataclass
class Subject:
    """One backend under test at one scratch lxcpath.

    :param name: the backend's canonical name.
    :param plugin: the plugin (entry-point or extra-plugin name) that registered it.
    :param backend: the backend instance from ``registry``.
    :param registry: the registry every container of the test is opened with.
    :param lxcpath: an empty scratch lxcpath.
    :param storage: the storage kind under it (``tmpdir``, ``btrfs``, ``xfs``).
    :param scratch: a private directory for expected trees and samples.
    :param extra_plugins: the contract class's extra plugins (for crash-test children).
    """

    name: str
    plugin: str
    backend: Backend
    registry: "Registry"
    lxcpath: Path
    storage: str
    scratch: Path
    extra_plugins: Sequence[tuple[str, object]] = ()

    # ---------------------------------------------------------------- claims and skips

    @property
    def label(self) -> str:
        """``plugin P (backend B)``, the start of every capability complaint."""
        return f"plugin {self.plugin} (backend {self.name})"

    def declares(self, capability: str) -> bool:
        """Whether the backend declares ``capability`` (a :class:`Capabilities` field)."""
        return bool(getattr(self.backend.capabilities, capability))

    def require(self, capability: str, why: str = "") -> None:
        """Skip the test, naming the capability, unless the backend declares it."""
        if not self.declares(capability):
            pytest.skip(f"backend {self.name} does not declare {capability}" + (f": {why}" if why else ""))

    def refuse_if(self, capability: str, why: str) -> None:
        """Skip the test, naming the capability, when the backend declares it (``read_only``
        backends skip tests that write into their rootfs)."""
        if self.declares(capability):
            pytest.skip(f"backend {self.name} declares {capability}: {why}")

    def lie(self, capability: str, what: str) -> NoReturn:
        """Fail: the backend declares ``capability`` but ``what`` shows it cannot."""
        pytest.fail(f"{self.label} claims {capability} but {what}", pytrace=False)

    @contextlib.contextmanager
    def claims(self, capability: str, doing: str) -> Iterator[None]:
        """Turn any failure of the body (an assertion, a bdev error, an OS error) into a
        complaint that the backend claims ``capability`` but fails at ``doing``."""
        try:
            yield
        except (pytest.skip.Exception, pytest.fail.Exception):
            raise
        except Exception as exc:
            self.lie(capability, f"{doing} failed: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- containers and trees

    def container(self, name: str) -> Container:
        """A handle on container ``name`` in the scratch lxcpath, opened with the test's registry."""
        return Container(name, self.lxcpath, registry=self.registry)

    def placement(self, name: str) -> Placement:
        """Where a container ``name`` would live in the scratch lxcpath."""
        return Placement(self.lxcpath, name)

    def rootfs_tree(self, container: Container, *, readonly: bool = True) -> contextlib.AbstractContextManager[Path]:
        """Context manager giving the container's files (mounted if its backend needs it)."""
        rootfs = container.rootfs
        return self.registry.backend_for(rootfs).accessed(rootfs, readonly=readonly)

    def _granularity(self, container: Container) -> int:
        """The coarsest modification-time step among the backend under test and the
        container's (a tree copied through squashfs and back keeps whole seconds)."""
        return max(self.backend.time_granularity_ns, self.registry.backend_for(container.rootfs).time_granularity_ns)

    def differences(self, container: Container, expected: Path) -> list[str]:
        """How the container's files differ from ``expected`` (hostname files aside)."""
        with self.rootfs_tree(container) as path:
            found = tree_differences(expected, path, time_granularity_ns=self._granularity(container))
            return [p for p in found if not p.startswith(REWRITTEN)]

    def assert_matches(self, container: Container, expected: Path, *, hostname: str | None = None) -> None:
        """The container's files equal the tree ``expected`` (with ``hostname`` written, if given)."""
        with self.rootfs_tree(container) as path:
            rewritten = REWRITTEN if hostname else ()
            found = tree_differences(expected, path, time_granularity_ns=self._granularity(container))
            problems = [p for p in found if not p.startswith(rewritten)]
            assert problems == [], f"{container.name} differs from {expected}:\n" + "\n".join(problems[:20])
            if hostname:
                assert (path / "etc/hostname").read_text() == f"{hostname}\n", f"{container.name}: hostname not rewritten"

    def copy_of(self, container: Container, name: str) -> Path:
        """A plain copy of the container's files in the scratch directory, for later comparison."""
        from ...copying import copytree

        target = self.scratch / name
        target.mkdir()
        with self.rootfs_tree(container) as path:
            copytree(path, target)
        return target

    @staticmethod
    def assert_clean(container: Container) -> None:
        """No staging, journal or partial marker left in the container directory."""
        leftovers = [p.name for p in container.directory.iterdir() if p.name.startswith(".") or p.name == PARTIAL]
        assert leftovers == [], f"left behind in {container.directory}: {leftovers}"

    def default_rootfs_exists(self, name: str) -> bool:
        """Whether storage exists where this backend would put container ``name``'s rootfs."""
        rootfs = self.backend.parse(self.backend.default_source(self.placement(name), CreateOptions()))
        return self.backend.exists(rootfs)


def hidden_leftovers(directory: Path) -> list[str]:
    """Staged rootfs (``.<leaf>.bdev-<stage>``), journals and partial markers under ``directory``
    (not descending into rootfs trees)."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if (name.startswith(".") and ".bdev-" in name) or name in (JOURNAL, PARTIAL):
                found.append(os.path.relpath(os.path.join(root, name), directory))
        dirs[:] = [d for d in dirs if d != "rootfs" and not d.startswith(".")]
    return found


def build_subject(
    request: pytest.FixtureRequest,
    name: str,
    storage: str,
    lxcpath: Path,
    scratch: Path,
    extra_plugins: Sequence[tuple[str, object]],
    *,
    refused: bool,
) -> Subject:
    """The subject for one test, skipping (with the reason) where the backend cannot work.

    :param refused: the test wants a lxcpath the backend refuses (skip where it accepts it);
        otherwise skip where it refuses it.
    """
    from ...errors import NotFound

    registry = contract_registry(extra_plugins)
    try:
        canonical = registry.canonical(name)
    except NotFound as exc:
        problems = "; ".join(str(p) for p in registry.problems) or "no plugin problems reported"
        pytest.fail(f"backend {name} is not registered ({exc}); {problems}", pytrace=False)
    entry = next(e for e in registry.backend_entries() if e.name == canonical)
    backend = entry.backend
    reasons = backend.unavailable_reasons()
    if reasons:
        pytest.skip(f"backend {canonical} is not usable here: {'; '.join(reasons)}")
    if os.geteuid() != 0 and not backend.capabilities.unprivileged:
        pytest.skip(f"backend {canonical} does not declare unprivileged and this run is not root")
    subject = Subject(canonical, entry.plugin, backend, registry, lxcpath, storage, scratch, tuple(extra_plugins))
    refusal = backend.refusal_at(subject.placement("probe"), CreateOptions())
    if refusal and not refused:
        pytest.skip(f"backend {canonical} cannot live at this lxcpath ({storage}): {refusal}")
    if refused and not refusal:
        pytest.skip(f"backend {canonical} accepts a {storage} lxcpath: refusal_at has nothing to refuse here")
    return subject
