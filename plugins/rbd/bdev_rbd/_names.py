"""RBD locators and names: ``/dev/rbd/<pool>/<image>`` (LXC's form, the path the kernel's
udev rules give a mapped image) or ``/dev/rbd/<pool>/<namespace>/<image>`` for an image in an
RBD namespace, and the names bdev gives images it hides or stages."""

from __future__ import annotations

from dataclasses import dataclass

from bdev.errors import InvalidInput
from bdev.naming import validate_name
from ._i18n import _

PREFIX = "/dev/rbd/"
DELETED = ".bdev-deleted."
SWAP_SUFFIX = ".bdev-swap"


@dataclass(frozen=True)
class ImageRef:
    """One image: its pool, RBD namespace (``""``: the default) and name."""

    pool: str
    namespace: str
    name: str

    @property
    def locator(self) -> str:
        """``/dev/rbd/<pool>[/<namespace>]/<image>``."""
        parts = [self.pool, *([self.namespace] if self.namespace else []), self.name]
        return PREFIX + "/".join(parts)

    @property
    def spec(self) -> str:
        """``pool[/namespace]/image``, as Ceph's tools name it."""
        return self.locator.removeprefix(PREFIX)

    def renamed(self, name: str) -> "ImageRef":
        """The same pool and namespace, another image name."""
        return ImageRef(self.pool, self.namespace, name)


def name_problem(name: str, what: str = "image") -> str | None:
    """Why ``name`` cannot be a pool, namespace or image name bdev writes into a locator, or
    None: bdev's rules for names (:func:`bdev.naming.validate_name`: not empty, no ``/``, no
    leading ``.`` or ``-``, no control characters, at most 255 bytes) plus no ``@``, which
    Ceph's tools read as the snapshot separator.  Ceph itself may still reject a name."""
    try:
        validate_name(name, f"RBD {what}")
    except InvalidInput as exc:
        return exc.cause
    if "@" in name:
        return _("RBD {what} name {name!r} contains '@', which Ceph's tools read as the snapshot separator").format(
            what=what, name=name)
    return None


def split_locator(source: str) -> ImageRef | None:
    """The parts of ``/dev/rbd/<pool>[/<namespace>]/<image>``, unchecked, or None when it has
    another shape."""
    if not source.startswith(PREFIX):
        return None
    parts = source[len(PREFIX):].split("/")
    if len(parts) == 2:
        return ImageRef(parts[0], "", parts[1])
    if len(parts) == 3:
        return ImageRef(*parts)
    return None


def ref_problem(ref: ImageRef) -> str | None:
    """Why one of the names in ``ref`` is unacceptable (:func:`name_problem`), or None."""
    checks = [(ref.pool, "pool"), (ref.name, "image")] + ([(ref.namespace, "namespace")] if ref.namespace else [])
    return next((p for p in (name_problem(v, what) for v, what in checks) if p), None)


def parse_locator(source: str) -> ImageRef | None:
    """The image a locator names, or None when it is not ``/dev/rbd/<pool>[/<ns>]/<image>``
    with acceptable names."""
    ref = split_locator(source)
    return ref if ref is not None and ref_problem(ref) is None else None
