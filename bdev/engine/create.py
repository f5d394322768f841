"""Creating a container: a rootfs on a chosen backend, filled by a template or from a local
directory or tarball, and an LXC config."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .. import blockfs
from ..backend import Backend
from ..errors import AlreadyExists, BdevError
from ..i18n import _
from ..idmap import config_idmap, default_idmap, has_subordinate_ids
from ..records import CreateOptions, Rootfs
from ..store.config import LxcConfig, expand_hwaddr
from ..store.layout import ContainerRef
from ..templates import TemplateContext
from . import faults
from .context import Context
from .idshift import shift_rootfs
from .newdir import new_container
from .plan import choose_backend

F = TypeVar("F", bound=Callable[..., Any])


def _naming_the_container(function: F) -> F:
    """Make every :class:`BdevError` raised by ``function(ctx, ref, ...)`` name ``ref``."""

    @functools.wraps(function)
    def wrapper(ctx: Context, ref: ContainerRef, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(ctx, ref, *args, **kwargs)
        except BdevError as exc:
            raise exc.about(container=ref.label)

    return wrapper  # type: ignore[return-value]


@_naming_the_container
def create(
    ctx: Context,
    ref: ContainerRef,
    *,
    template: str | None,
    backend: str | list[str] | tuple[str, ...],
    args: list[str],
    options: CreateOptions,
    source: str | os.PathLike[str] | None,
    config: list[tuple[str, str]],
    progress: object | None = None,
) -> None:
    """Create ``ref``; on any failure nothing is left behind (see :func:`new_container`).

    ``source`` (a directory or tarball) is handed to the ``local`` template.  The config is
    LXC's default config (``lxc.default_config``), then ``config`` (``lxc-create -f``), then
    the template's lines, then ``lxc.rootfs.path`` and ``lxc.uts.name``.
    """
    spec = backend if isinstance(backend, str) else ",".join(backend)
    if template and source is not None:
        raise BdevError(_("give a template or a source, not both"), container=ref.name)
    if source is not None:
        template, args = "local", ["--path", os.fspath(source), *args]
    tpl = ctx.registry.template(template) if template else None
    base_config = _default_config(ctx)
    candidate = LxcConfig.parse("")
    for key, value in config:  # validate user lines before anything exists
        candidate.append(key, value)
    with ctx.locked(ref):
        if ctx.store.exists(ref):
            raise AlreadyExists(_(
                "container already exists in {lxcpath}"
            ).format(lxcpath=ref.lxcpath), container=ref.name)
        passed_over: list[str] = []
        chosen = choose_backend(ctx.registry, spec, ref.placement, options, passed_over)
        options = _sized_for_source(chosen, options, source)
        rootfs = chosen.parse(chosen.default_source(ref.placement, options))  # refuses bad paths now
        with new_container(ctx, ref, "create", rootfs=rootfs):
            try:
                rootfs = chosen.create(ref.placement, options)
                faults.checkpoint("create:after-rootfs")
                template_lines: list[tuple[str, str]] = []
                if tpl is not None:
                    with chosen.accessed(rootfs) as path:
                        context = TemplateContext(name=ref.name, rootfs=Path(path), lxcpath=ref.lxcpath, args=list(args))
                        tpl.build(context)
                        template_lines = context.config
            except BdevError as exc:
                raise exc.about(container=ref.name, backend=chosen.name)
            faults.checkpoint("create:after-template")
            final = base_config.copy()
            for key, value in [*config, *template_lines]:
                if key in ("lxc.uts.name", "lxc.utsname", "lxc.rootfs.path", "lxc.rootfs"):
                    continue
                final.append(key, value)
            final.rewrite(_expand_mac_placeholders)
            _shift_for_idmap(final, chosen, rootfs, ref)
            final.set_rootfs(rootfs.config_value)
            final.set_uts_name(ref.name)
            final.save(ref.config_path)
    how = _("from template {template}").format(template=template) if template else _("empty")
    ctx.notify(_(
        "created {name} on {backend} ({how}) at {directory}{why}"
    ).format(name=ref.name, backend=chosen.name, how=how, directory=ref.directory, why=_why(spec, chosen, passed_over)))


def _sized_for_source(backend: Backend, options: CreateOptions, source: str | os.PathLike[str] | None) -> CreateOptions:
    """Without ``--fssize``, a sized backend (loop, lvm, rbd) gets a device big enough for a
    ``--source`` directory: LXC's default size (1 GiB), or the tree's usage plus a quarter and
    64 MiB when that is more, as a full copy into it would."""
    if options.fssize is not None or source is None or not backend.capabilities.sized or not os.path.isdir(source):
        return options
    needed = blockfs.size_for_tree(Path(source), blockfs.DEFAULT_SIZE)
    return dataclasses.replace(options, fssize=needed) if needed > blockfs.DEFAULT_SIZE else options


def _shift_for_idmap(config: LxcConfig, backend: Backend, rootfs: Rootfs, ref: ContainerRef) -> None:
    """Give the new rootfs the ownership its id map asks for.  An ordinary user's container
    without ``lxc.idmap`` gets the map LXC's per-user default config has (their first
    ``/etc/subuid`` and ``/etc/subgid`` ranges) when they have ranges."""
    idmap = config_idmap(config)
    if idmap is None and os.geteuid() != 0 and has_subordinate_ids():
        idmap = default_idmap()
        for key, value in idmap.config_lines():
            config.append(key, value)
    if idmap is not None:
        with backend.accessed(rootfs) as path:
            shift_rootfs(Path(path), idmap, container=ref.name)


def _default_config(ctx: Context) -> LxcConfig:
    """LXC's ``lxc.default_config`` file, the base of every new container's config."""
    path = ctx.settings.get("lxc.default_config")
    if path and os.path.isfile(path):
        return LxcConfig.load(Path(path))
    return LxcConfig.parse("")


def _expand_mac_placeholders(key: str, value: str) -> tuple[str, str]:
    """LXC writes concrete MACs for ``00:16:3e:xx:xx:xx`` patterns of the default config."""
    if key.endswith(".hwaddr") and any(c in "xX" for c in value):
        return key, expand_hwaddr(value)
    return key, value


def _why(spec: str, chosen: object, passed_over: list[str]) -> str:
    """For ``best`` and lists: which backend was chosen and why the earlier ones were not."""
    if "," not in spec and spec.strip().lower() != "best":
        return ""
    skipped = _("; passed over {backends}").format(backends="; ".join(passed_over)) if passed_over else ""
    return _(" (chosen from -B {spec}{skipped})").format(spec=spec, skipped=skipped)
