"""The plugin registry: loads plugins through the ``bdev.plugins`` entry-point group and
offers typed look-ups of backends and templates.

Loading never fails as a whole: a plugin that cannot be imported, raises in a hook, or offers
a name another plugin already took is recorded as a :class:`PluginProblem` naming it, and the
rest load.  Loading is lazy: :func:`load_registry` neither scans the entry points nor imports
a plugin.  Looking a backend up by name scans them and imports only the plugin whose
entry-point name is that name (``btrfs``, ``zfs``); any other question (every backend, the
templates, ``-B best``, detecting a bare path, the plugin list, the problems) loads them all, in
entry-point name order.  So a command that touches one btrfs container never imports the
others, and ``lxc-ls`` on an empty lxcpath imports none.  ``BDEV_DISABLE_PLUGINS=zfs,lvm`` (entry-point names, comma or space separated)
keeps named plugins from loading at all.  ``BDEV_TRACE=1`` (or ``BDEV_TRACE=hooks``) traces
every hook call on standard error through pluggy's tracing: which plugin's hook is called and
what it returned.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .backend import Backend
from .errors import ConfigError, NotFound
from .i18n import _
from .records import Rootfs
from .templates import Template

log = logging.getLogger("bdev.registry")

DISABLE_ENV = "BDEV_DISABLE_PLUGINS"
TRACE_ENV = "BDEV_TRACE"
TRACE_PREFIX = "bdev trace: "


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or refused) plugin: its entry-point name, distribution and version."""

    name: str
    distribution: str | None
    version: str | None
    status: str = "loaded"  # loaded | disabled | failed


@dataclass(frozen=True)
class PluginProblem:
    """Something wrong with one plugin, reported by ``bdev backends`` and not fatal."""

    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin}: {self.message}"


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend with where it came from."""

    backend: Backend
    plugin: str

    @property
    def name(self) -> str:
        return self.backend.name


@dataclass
class Registry:
    """Backends and templates offered by the loaded plugins."""

    settings: Mapping[str, str] = field(default_factory=dict)
    _plugins: list[PluginInfo] = field(default_factory=list)
    _problems: list[PluginProblem] = field(default_factory=list)
    _pending: "_PendingPlugins | None" = None
    _backends: dict[str, BackendEntry] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _templates: dict[str, tuple[Template, str]] = field(default_factory=dict)
    _commands: dict[str, tuple[Any, str]] = field(default_factory=dict)

    # ---------------------------------------------------------------- loading

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin found (loaded, disabled or failed), in loading order; loads them all."""
        self._load_all()
        return self._plugins

    @property
    def problems(self) -> list[PluginProblem]:
        """What went wrong with plugins (appendable); loads them all."""
        self._load_all()
        return self._problems

    def _load_all(self) -> None:
        """Load every plugin not loaded yet, in order."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.load(self, None)

    def _load_named(self, name: str) -> None:
        """Load the plugin whose entry-point name is ``name``, if there is one not loaded yet."""
        if self._pending is not None:
            self._pending.load(self, name)

    # ---------------------------------------------------------------- backends

    def backend_entries(self) -> list[BackendEntry]:
        """Every registered backend, sorted by name."""
        self._load_all()
        return sorted(self._backends.values(), key=lambda e: e.name)

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases.

        :raises NotFound: no plugin offers that name; the message lists what exists.
        """
        key = name.strip().lower()
        if key not in self._aliases:
            self._load_named(key)
        if key not in self._aliases:
            self._load_all()
        if key in self._aliases:
            return self._aliases[key]
        known = ", ".join(sorted(self._aliases)) or "none"
        raise NotFound(_("unknown backend {name!r} (known: {known})").format(name=name, known=known))

    def backend(self, name: str) -> Backend:
        """The backend called ``name`` (or an alias of it), usable or not."""
        return self._backends[self.canonical(name)].backend

    def usable_backend(self, name: str) -> Backend:
        """The backend called ``name``, refusing one that cannot work on this machine.

        :raises BackendUnavailable: with every reason it is unusable.
        """
        backend = self.backend(name)
        reasons = backend.unavailable_reasons()
        if reasons:
            raise backend.unavailable_error(reasons)
        return backend

    def best_candidates(self) -> list[Backend]:
        """Backends ``-B best`` tries, in order (lower ``best_priority`` first)."""
        self._load_all()
        ranked = [e.backend for e in self._backends.values() if e.backend.best_priority is not None]
        return sorted(ranked, key=lambda b: (b.best_priority, b.name))

    # ---------------------------------------------------------------- rootfs values

    def parse_rootfs(self, value: str, *, backend_hint: str | None = None) -> Rootfs:
        """Turn an ``lxc.rootfs.path`` (or LXC 1.0 ``lxc.rootfs``) value into a :class:`Rootfs`.

        ``<type>:<source>`` uses the named backend (aliases accepted, ``overlayfs:`` reads as
        ``overlay``); a bare path is probed with each backend's ``detect`` in
        ``detect_priority`` order, unless ``backend_hint`` (LXC 2.0's ``lxc.rootfs.backend``)
        names the type.

        :raises ConfigError: the value is empty or no backend claims it.
        :raises NotFound: the prefix names a backend no plugin offers.
        """
        value = value.strip()
        if not value:
            raise ConfigError(_("lxc.rootfs.path is empty"))
        match = re.match(r"^([A-Za-z][A-Za-z0-9_.-]*):(.*)$", value)
        if match and not value.startswith("/"):
            prefix, source = match.groups()
            backend = self.backend(prefix)
            return backend.parse(source)
        if backend_hint:
            return self.backend(backend_hint).parse(value)
        for backend in self._detection_order():
            try:
                if backend.detect(value):
                    return backend.parse(value)
            except OSError as exc:
                log.debug("detect %s on %s: %s", backend.name, value, exc)
        raise ConfigError(_("no backend recognises the rootfs {value!r}").format(value=value))

    def backend_for(self, rootfs: Rootfs) -> Backend:
        """The backend that owns ``rootfs``."""
        return self.backend(rootfs.backend)

    def _detection_order(self) -> list[Backend]:
        self._load_all()
        ranked = [e.backend for e in self._backends.values() if e.backend.detect_priority is not None]
        return sorted(ranked, key=lambda b: (b.detect_priority, b.name))

    # ---------------------------------------------------------------- templates

    def templates(self) -> list[tuple[Template, str]]:
        """Every registered template with the plugin that offers it, sorted by name."""
        self._load_all()
        return [self._templates[k] for k in sorted(self._templates)]

    def template(self, name: str) -> Template:
        """The template called ``name``.

        :raises NotFound: listing the templates that exist.
        """
        self._load_all()
        try:
            return self._templates[name][0]
        except KeyError:
            known = ", ".join(sorted(self._templates)) or "none"
            raise NotFound(_("unknown template {name!r} (known: {known})").format(name=name, known=known)) from None

    # ---------------------------------------------------------------- registration

    def _add_backend(self, cls: Any, plugin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Backend)) or not cls.name:
            self._problems.append(PluginProblem(plugin, f"offered {cls!r}, which is not a named Backend subclass"))
            return
        names = [cls.name.lower(), *(a.lower() for a in cls.aliases)]
        for taken in names:
            if taken in self._aliases:
                owner = self._backends[self._aliases[taken]].plugin
                self._problems.append(
                    PluginProblem(plugin, f"backend name {taken!r} is already provided by plugin {owner}; ignored")
                )
                return
        try:
            instance = cls(self.settings)
        except Exception as exc:  # a plugin's bug must not take the others down
            self._problems.append(PluginProblem(plugin, f"backend {cls.name} failed to initialise: {exc}"))
            return
        instance.registry = self
        self._backends[cls.name.lower()] = BackendEntry(instance, plugin)
        for taken in names:
            self._aliases[taken] = cls.name.lower()

    def _add_template(self, template: Any, plugin: str) -> None:
        if not isinstance(template, Template):
            self._problems.append(PluginProblem(plugin, f"offered {template!r}, which is not a Template"))
            return
        if template.name in self._templates:
            owner = self._templates[template.name][1]
            self._problems.append(
                PluginProblem(plugin, f"template name {template.name!r} is already provided by plugin {owner}; ignored")
            )
            return
        self._templates[template.name] = (template, plugin)

    def commands(self) -> list[tuple[Any, str]]:
        """Every plugin subcommand of ``bdev`` (a click command) with its plugin, by name."""
        self._load_all()
        return [self._commands[k] for k in sorted(self._commands)]

    def _add_command(self, command: Any, plugin: str) -> None:
        import click

        if not isinstance(command, click.Command) or not command.name:
            self._problems.append(PluginProblem(plugin, f"offered {command!r}, which is not a named click command"))
            return
        if command.name in self._commands:
            owner = self._commands[command.name][1]
            self._problems.append(
                PluginProblem(plugin, f"command {command.name!r} is already provided by plugin {owner}; ignored")
            )
            return
        self._commands[command.name] = (command, plugin)


def disabled_plugins(environ: Mapping[str, str] | None = None) -> set[str]:
    """The plugin names listed in ``BDEV_DISABLE_PLUGINS``."""
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return {n for n in re.split(r"[,\s]+", raw) if n}


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``BDEV_TRACE`` asks for hook calls to be traced (``1``, ``hooks``, ``all``, or
    a comma list holding ``hooks``)."""
    raw = (environ if environ is not None else os.environ).get(TRACE_ENV, "")
    words = {w.lower() for w in re.split(r"[,\s]+", raw) if w}
    return bool(words & {"1", "yes", "true", "all", "hooks"})


def _trace_writer(text: str) -> None:
    """Write one pluggy trace message to standard error, each line marked as bdev's."""
    for line in text.splitlines():
        sys.stderr.write(f"{TRACE_PREFIX}{line}\n")
    sys.stderr.flush()


def make_plugin_manager(*, trace: bool | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with bdev's hook specifications; ``trace`` (default: from
    ``BDEV_TRACE``) sends pluggy's hook-call tracing to standard error."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if trace if trace is not None else tracing_requested():
        pm.trace.root.setwriter(_trace_writer)
        pm.enable_tracing()
    return pm


def load_registry(
    settings: Mapping[str, str] | None = None,
    *,
    extra_plugins: Sequence[tuple[str, object]] = (),
    use_entry_points: bool = True,
    disabled: Iterable[str] | None = None,
) -> Registry:
    """A registry of the plugins, loaded lazily (see the module's docstring): nothing is
    scanned or imported until a question needs it.

    :param settings: global ``lxc.conf`` values handed to each backend.
    :param extra_plugins: ``(name, plugin)`` pairs registered besides the entry points (tests,
        embedding applications).
    :param use_entry_points: load the ``bdev.plugins`` entry-point group.
    :param disabled: plugin names not to load; defaults to ``BDEV_DISABLE_PLUGINS``.
    """
    registry = Registry(settings=dict(settings or {}))
    skip = set(disabled) if disabled is not None else disabled_plugins()
    registry._pending = _PendingPlugins(make_plugin_manager(), list(extra_plugins), use_entry_points, skip)
    return registry


class _PendingPlugins:
    """The plugins a registry has not loaded yet; the entry points are scanned on first use."""

    def __init__(self, pm: pluggy.PluginManager, extra: list[tuple[str, object]], use_entry_points: bool,
                 skip: set[str]) -> None:
        self.pm = pm
        self.extra = extra
        self.use_entry_points = use_entry_points
        self.skip = skip
        self.candidates: list[tuple[str, Any, str | None, str | None]] | None = None
        self.done: set[int] = set()  # indexes into candidates already loaded

    def _scan(self, registry: Registry) -> list[tuple[str, Any, str | None, str | None]]:
        """Every candidate in loading order (entry points by name, then the extra plugins);
        disabled and duplicate ones are recorded at once."""
        if self.candidates is not None:
            return self.candidates
        candidates: list[tuple[str, Any, str | None, str | None]] = []
        if self.use_entry_points:
            seen: set[str] = set()
            for ep in sorted(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist else None
                version = ep.dist.version if ep.dist else None
                if ep.name in seen:
                    registry._problems.append(PluginProblem(ep.name, f"a second plugin with this name ({dist}) was ignored"))
                    continue
                seen.add(ep.name)
                if ep.name in self.skip:
                    registry._plugins.append(PluginInfo(ep.name, dist, version, "disabled"))
                    continue
                candidates.append((ep.name, ep, dist, version))
        for name, plugin in self.extra:
            if name in self.skip:
                registry._plugins.append(PluginInfo(name, None, None, "disabled"))
            else:
                candidates.append((name, plugin, None, None))
        self.candidates = candidates
        return candidates

    def load(self, registry: Registry, name: str | None) -> None:
        """Load the candidate called ``name`` (None: every one left), collecting what it offers."""
        candidates = self._scan(registry)
        for i, (plugin_name, source, dist, version) in enumerate(candidates):
            if i in self.done or (name is not None and plugin_name != name):
                continue
            self.done.add(i)
            try:
                plugin = source.load() if isinstance(source, md.EntryPoint) else source
                self.pm.register(plugin, name=plugin_name)
            except Exception as exc:  # ImportError, SyntaxError, a bad hookimpl: report, go on
                registry._problems.append(PluginProblem(plugin_name, f"failed to load: {type(exc).__name__}: {exc}"))
                registry._plugins.append(PluginInfo(plugin_name, dist, version, "failed"))
                continue
            registry._plugins.append(PluginInfo(plugin_name, dist, version, "loaded"))
            _collect(self.pm, plugin_name, "bdev_backends", registry, registry._add_backend)
            _collect(self.pm, plugin_name, "bdev_templates", registry, registry._add_template)
            _collect(self.pm, plugin_name, "bdev_commands", registry, registry._add_command)


def _collect(pm: pluggy.PluginManager, plugin_name: str, hook_name: str, registry: Registry, add: Any) -> None:
    """Call ``hook_name`` of one plugin alone, so a failing plugin is named and skipped.

    The call goes through pluggy (a caller restricted to that plugin), so ``BDEV_TRACE`` sees it.
    """
    caller = getattr(pm.hook, hook_name)
    impls = [impl for impl in caller.get_hookimpls() if impl.plugin_name == plugin_name]
    if not impls:
        return
    others = [other.plugin for other in caller.get_hookimpls() if other.plugin_name != plugin_name]
    hooktrace = pm.trace.root.get("hook")
    try:
        hooktrace(f"{hook_name} of plugin {plugin_name}")
        results = pm.subset_hook_caller(hook_name, remove_plugins=others)()
        for item in (results[0] if results else None) or ():
            add(item, plugin_name)
    except Exception as exc:
        registry._problems.append(PluginProblem(plugin_name, f"{hook_name} failed: {type(exc).__name__}: {exc}"))
