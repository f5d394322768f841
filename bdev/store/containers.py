"""Reading the container store: which containers exist, their configs, rootfs, snapshots and
dependencies.  Nothing here changes anything; the engine does the writing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, NotFound
from ..i18n import N_, _
from ..records import Rootfs
from . import deps
from .config import LxcConfig
from .layout import CONFIG, DEPENDENTS, ORIGIN, PARTIAL, ContainerRef, snapshot_number, snapshots_dir


if TYPE_CHECKING:
    from ..registry import Registry


class HasRegistry(Protocol):
    registry: "Registry"


class ContainerStore:
    """Read access to containers under any lxcpath, interpreting rootfs values with the
    registry of ``source`` (anything with a ``registry`` attribute, looked up only when a
    rootfs must be interpreted)."""

    def __init__(self, source: "HasRegistry"):
        self._source = source

    @property
    def registry(self) -> "Registry":
        return self._source.registry

    def exists(self, ref: ContainerRef) -> bool:
        """Whether anything (even a failed create) occupies ``ref``'s directory."""
        return os.path.lexists(ref.directory)

    def is_defined(self, ref: ContainerRef) -> bool:
        """Whether ``ref`` has a config and no ``partial`` marker."""
        return ref.config_path.is_file() and not ref.file(PARTIAL).exists()

    def require(self, ref: ContainerRef, what: str = N_("container")) -> None:
        """Raise :class:`NotFound` unless ``ref`` is defined."""
        if not self.is_defined(ref):
            if ref.owner is None:
                raise NotFound(_("no such {what} in {where}").format(what=what, where=ref.lxcpath), container=ref.label)
            raise NotFound(_("no such {what} in the snapshots of {owner}").format(what=what, owner=ref.owner),
                           container=ref.label)

    def load_config(self, ref: ContainerRef) -> LxcConfig:
        """The parsed config of ``ref``.

        :raises NotFound: it has no config.
        """
        if not ref.config_path.is_file():
            raise NotFound(_("no such container in {lxcpath}").format(lxcpath=ref.lxcpath), container=ref.label)
        return LxcConfig.load(ref.config_path)

    def rootfs_of(self, ref: ContainerRef, config: LxcConfig | None = None) -> Rootfs:
        """The rootfs named by ``ref``'s config (current or LXC 1.0 keys).

        :raises ConfigError: the config names no rootfs.
        """
        if config is None:
            config = self.load_config(ref)
        value, hint = config.rootfs_value()
        if not value:
            raise ConfigError(_("its config has no lxc.rootfs.path"), container=ref.label)
        try:
            return self.registry.parse_rootfs(value, backend_hint=hint)
        except (ConfigError, NotFound) as exc:
            raise exc.about(container=ref.label)

    def list_refs(self, lxcpath: Path) -> list[ContainerRef]:
        """Containers of ``lxcpath``: directories holding a config and no ``partial``, sorted."""
        try:
            entries = sorted(os.listdir(lxcpath))
        except FileNotFoundError:
            return []
        refs = [ContainerRef(lxcpath, n) for n in entries if not n.startswith(".")]
        return [r for r in refs if self.is_defined(r)]

    def snapshot_refs(self, ref: ContainerRef) -> list[ContainerRef]:
        """``ref``'s snapshots, ordered by N (``snap0, snap1, …``), then other names."""
        directory = snapshots_dir(ref)
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        snaps = [ContainerRef(directory, n, owner=ref.name) for n in names if (directory / n / CONFIG).is_file()]
        snaps = [s for s in snaps if not (s.directory / PARTIAL).exists()]

        def order(s: ContainerRef) -> tuple[int, str]:
            number = snapshot_number(s.name)
            return (number if number is not None else 1 << 30, s.name)

        return sorted(snaps, key=order)

    def dependents(self, ref: ContainerRef) -> list[tuple[Path, str]]:
        """Live containers listed in ``ref``'s ``lxc_snapshots`` (entries whose container is
        gone are ignored)."""
        pairs, legacy_count = deps.read_pairs(ref.file(DEPENDENTS))
        live = [(p, n) for p, n in pairs if (p / n / CONFIG).is_file()]
        if legacy_count and not live:
            # LXC 1.0 kept only a count; we cannot tell who, so report it as unknown clones.
            live = [(ref.lxcpath, f"<{legacy_count} clone(s) recorded by LXC 1.0>")]
        return live

    def origin(self, ref: ContainerRef) -> tuple[Path, str] | None:
        """The origin named in ``ref``'s ``lxc_rdepends``, if any."""
        pairs, _ = deps.read_pairs(ref.file(ORIGIN))
        return pairs[0] if pairs else None
