"""``bdev rbd``: what only RBD containers need.

* ``bdev rbd flatten NAME``: copy the origin's data into a clone so it no longer depends on it
  (the origin's snapshot, and a hidden origin, go when nothing else uses them).
* ``bdev rbd publish NAME``: store the container's config in its image (metadata
  ``bdev.config``), so another host can adopt it.
* ``bdev rbd adopt NAME [--image POOL/IMAGE]``: make container NAME in this host's lxcpath from
  an image of the cluster and the config published with it.
* ``bdev rbd locks NAME`` / ``bdev rbd break-lock NAME``: who has the image mounted, and
  removing the lock of a host that is known to be gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from bdev.cli.session import get_session
from bdev.errors import AlreadyExists, BdevError, InvalidInput, NotFound
from bdev.i18n import option
from bdev.records import Rootfs

from . import _images, _locks
from ._i18n import _, N_
from ._names import ImageRef, parse_locator

if TYPE_CHECKING:
    from bdev.engine.context import Context
    from bdev.store.layout import ContainerRef

    from .backend import RbdBackend


def _context() -> "Context":
    from bdev.engine.context import Context

    session = get_session()
    return Context.create(session.lxcpath(), notify=session.notify)


def _backend(context: "Context") -> "RbdBackend":
    return context.registry.backend("rbd")  # type: ignore[return-value]


def _rbd_rootfs(context: "Context", ref: "ContainerRef") -> Rootfs:
    context.store.require(ref)
    rootfs = context.store.rootfs_of(ref)
    if rootfs.backend != "rbd":
        raise InvalidInput(_("its rootfs is {config_value}, not an RBD image").format(
            config_value=rootfs.config_value), container=ref.name)
    return rootfs


def _rbd_image(context: "Context", ref: "ContainerRef") -> tuple["RbdBackend", ImageRef]:
    """The rbd backend and the image of container ``ref``."""
    backend = _backend(context)
    return backend, backend.image_of(_rbd_rootfs(context, ref))


@click.group("rbd", help=N_("Ceph RBD containers: flatten clones, move containers between hosts, locks."))
def rbd_group() -> None:
    """Ceph RBD containers: flatten clones, move containers between hosts, locks."""


@rbd_group.command("flatten", help=N_("Detach clone NAME from its origin (copies the shared data into it)."))
@click.argument("name")
def flatten(name: str) -> None:
    """Detach clone NAME from its origin (copies the shared data into it)."""
    context = _context()
    ref = context.ref(name)
    with context.locked(ref):
        rootfs = _rbd_rootfs(context, ref)
        try:
            done = _backend(context).flatten(rootfs)
        except BdevError as exc:
            raise exc.about(container=name) from None
    get_session().notify(_("{name}: flattened").format(name=name) if done else _("{name}: not a clone, nothing to "
                                                                                 "do").format(
        name=name))


@rbd_group.command("publish", help=N_("Store NAME's config in its RBD image, for 'bdev rbd adopt' on another host."))
@click.argument("name")
def publish(name: str) -> None:
    """Store NAME's config in its RBD image, for 'bdev rbd adopt' on another host."""
    context = _context()
    ref = context.ref(name)
    with context.locked(ref):
        backend, image = _rbd_image(context, ref)
        text = ref.config_path.read_text()
        with backend.opened_pool(image) as ioctx:
            _images.set_metadata(ioctx, image.name, _images.CONFIG_KEY, text)
            _images.set_metadata(ioctx, image.name, _images.NAME_KEY, name)
    get_session().notify(_("{name}: config published in RBD image {spec}").format(name=name, spec=image.spec))


@rbd_group.command("adopt", help=N_("Make container NAME on this host from an RBD image and the config published "
                                    "with it."))
@click.argument("name")
@option("--image", "image_spec", metavar="POOL/IMAGE", help=N_("The image (default: NAME in the default pool)."))
def adopt(name: str, image_spec: str | None) -> None:
    """Make container NAME on this host from an RBD image and the config published with it."""
    from bdev.fsops import write_atomic
    from bdev.store.config import LxcConfig

    context = _context()
    ref = context.ref(name)
    backend = _backend(context)
    image = _image_ref(backend, image_spec or name)
    with context.locked(ref):
        if context.store.exists(ref):
            raise AlreadyExists(_("container {name} already exists in {lxcpath}").format(
                name=name, lxcpath=ref.lxcpath), container=name)
        with backend.opened_pool(image) as ioctx:
            if not _images.exists(ioctx, image.name):
                raise NotFound(_("RBD image {spec} does not exist").format(spec=image.spec),
                               container=name, backend="rbd")
            meta = _images.metadata(ioctx, image.name)
        config = LxcConfig.parse(meta.get(_images.CONFIG_KEY, ""))
        config.set_rootfs(Rootfs("rbd", image.locator).config_value)
        config.set_uts_name(name)
        ref.directory.mkdir(mode=0o770)
        (ref.directory / "rootfs").mkdir(mode=0o755)
        write_atomic(ref.config_path, config.render(), mode=0o640)
    get_session().notify(_("{name}: adopted RBD image {spec}").format(
        name=name, spec=image.spec) + ("" if _images.CONFIG_KEY in meta else " (no published config: a minimal one)"))


def _image_ref(backend: "RbdBackend", spec: str) -> ImageRef:
    """``POOL/IMAGE``, ``POOL/NAMESPACE/IMAGE``, or an image name in the default pool."""
    from ._cluster import DEFAULT_POOL, KEY_POOL

    locator = "/dev/rbd/" + (spec if "/" in spec else f"{backend.settings.get(KEY_POOL) or DEFAULT_POOL}/{spec}")
    image = parse_locator(locator)
    if image is None:
        raise InvalidInput(_("{spec!r} is not an RBD image name or POOL/IMAGE").format(spec=spec), backend="rbd")
    return image


@rbd_group.command("locks", help=N_("Show which host has container NAME's image mounted read-write."))
@click.argument("name")
def locks(name: str) -> None:
    """Show which host has container NAME's image mounted read-write."""
    context = _context()
    ref = context.ref(name)
    backend, image = _rbd_image(context, ref)
    with backend.opened_pool(image) as ioctx, _images.opened(ioctx, image.name, read_only=True) as handle:
        found = _locks.holders(handle)
    for holder in found:
        click.echo(f"{holder.describe()} [{holder.client}]")
    if not found:
        click.echo(_("{spec}: not locked").format(spec=image.spec))


@rbd_group.command("break-lock", help=N_("Remove HOST's lock on NAME's image, after that host died with the image "
                                         "mounted."))
@click.argument("name")
@option("--host", "host", required=True, help=N_("The host whose lock goes (it must be gone: its mount is not "
                                                 "unmounted)."))
def break_lock(name: str, host: str) -> None:
    """Remove HOST's lock on NAME's image, after that host died with the image mounted."""
    context = _context()
    ref = context.ref(name)
    with context.locked(ref):
        backend, image = _rbd_image(context, ref)
        with backend.opened_pool(image) as ioctx, _images.opened(ioctx, image.name) as handle:
            gone = [h for h in _locks.holders(handle) if h.host == host]
            if not gone:
                raise NotFound(_("host {host} holds no lock on RBD image {spec}").format(host=host, spec=image.spec),
                               container=name, backend="rbd")
            for holder in gone:
                _locks.release(handle, holder)
    get_session().notify(_("{name}: removed the lock of host {host} on {spec}").format(
        name=name, host=host, spec=image.spec))
