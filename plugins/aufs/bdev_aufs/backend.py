"""The aufs backend's operations (the contract of :class:`bdev.backend.Backend`), plus the
native conversion :mod:`bdev.engine.convert` asks for.

Layout (LXC 1.0's): ``lxc.rootfs.path = aufs:<lower>:<upper>``, the upper ``<container>/delta0``
and an empty ``<container>/rootfs`` as LXC's mount point.  Snapshot clones layer over a dir
container's live rootfs (``lxc-clone -s -B aufs``) and depend on it; a clone of an aufs
container shares its lower and copies its upper, as LXC 1.0 did.

What needs the aufs filesystem (mounting, and so every copy or template run) says in one
sentence, naming the container, that this kernel cannot mount aufs and how to convert the
container to overlayfs.  What only needs the branches works everywhere: parsing, destroy,
usage, and the conversion itself, which reads the branches directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from bdev import Backend, Capabilities, CloneOutcome, CreateOptions, Placement, Rootfs, Usage
from bdev.command import run
from bdev.copying import copytree
from bdev.engine import faults
from bdev.errors import AlreadyExists, BackendUnavailable, BdevError, NotSupported
from bdev.fsops import remove_tree, tree_usage
from bdev.records import Change
from bdev.requirements import KernelFilesystem, Tool, unmet

from ._i18n import _, N_
from .diff import branch_diff
from .kernel import CONVERT_TARGET, AufsUnavailable, kernel_problem
from .layout import FORBIDDEN, AufsPaths, new_paths
from .whiteouts import Translation, translate_branch

log = logging.getLogger("bdev.aufs")


class AufsBackend(Backend):
    """LXC 1.0's aufs clones: a writable branch over a read-only one."""

    name = "aufs"
    description = N_("aufs branches (LXC 1.0 snapshot clones); convertible to overlayfs without the aufs module")
    capabilities = Capabilities(
        native_snapshot=True,
        snapshot_depends_on_origin=True,
        layers_over=("dir",),
        needs_mount=True,
        can_backup=True,
    )
    requires = (Tool("mount", "mount"), Tool("umount", "mount"), KernelFilesystem("aufs"))
    detect_priority = None  # LXC always wrote the aufs: prefix
    best_priority = None

    # ------------------------------------------------------------------ availability

    def unavailable_reasons(self) -> list[str]:
        """The tools, and a kernel that can mount aufs (no mainline kernel can)."""
        reasons = unmet(tuple(r for r in self.requires if not isinstance(r, KernelFilesystem)))
        problem = kernel_problem()  # the kernel check of ``requires``, with one modprobe try
        if problem:
            reasons.append(_("{problem}; aufs containers can be converted to overlayfs with: bdev convert NAME -B "
                             "{convert_target}").format(
                problem=problem, convert_target=CONVERT_TARGET))
        return reasons

    def unavailable_error(self, reasons: list[str]) -> BackendUnavailable:
        """On a kernel without aufs, an error that names the container once the core knows it
        and offers its conversion (``bdev convert web1 -B overlay``)."""
        problem = kernel_problem()
        if problem and len(reasons) == 1:
            return AufsUnavailable(problem)
        return super().unavailable_error(reasons)

    def refusal_at(self, placement: Placement, options: CreateOptions) -> str | None:
        """Refuse container paths that aufs mount options cannot carry."""
        for char in FORBIDDEN:
            if char in str(placement.directory):
                return _("{directory} contains {char!r}, which aufs mount options cannot carry").format(
                    directory=placement.directory, char=char)
        return None

    def implementation(self) -> str:
        """Kernel aufs through mount(8), with a per-container xino file on tmpfs."""
        return _("kernel aufs, mount(8), xino per container in /dev/shm")

    # ------------------------------------------------------------------ identity

    def parse(self, source: str) -> Rootfs:
        """Accept ``<lower>:<upper>`` of absolute paths."""
        return Rootfs(self.name, AufsPaths.parse(source, self.name).value)

    def default_source(self, placement: Placement, options: CreateOptions) -> str:
        """``<container>/rootfs:<container>/delta0``; a clone's lower is its origin's rootfs,
        known once made (the journaled locator names the clone's upper, which is what
        :meth:`exists` and :meth:`destroy` go by)."""
        return new_paths(placement, placement.rootfs_dir).value

    # ------------------------------------------------------------------ lifecycle

    def create(self, placement: Placement, options: CreateOptions) -> Rootfs:
        """An empty container as LXC 1.0's aufs create made it: the lower ``<container>/rootfs``
        and an empty upper ``delta0``, both 0755."""
        self._require_kernel(placement.name)
        paths = new_paths(placement, placement.rootfs_dir)
        if os.path.lexists(paths.upper):
            raise AlreadyExists(_("{upper} already exists").format(upper=paths.upper), backend=self.name)
        for directory in (paths.lower, paths.upper):
            directory.mkdir(mode=0o755, exist_ok=directory == paths.lower)
            os.chmod(directory, 0o755)
        return Rootfs(self.name, paths.value)

    def destroy(self, rootfs: Rootfs) -> None:
        """Remove the upper branch (and the lower only when it is this container's own
        ``rootfs``); an origin's rootfs used as the lower is never touched."""
        _remove_branches(AufsPaths.parse(rootfs.source, self.name), keep=frozenset())

    def exists(self, rootfs: Rootfs) -> bool:
        """Whether the upper branch exists."""
        return os.path.lexists(AufsPaths.parse(rootfs.source, self.name).upper)

    def identity(self, rootfs: Rootfs) -> str:
        """Device and inode of the upper branch."""
        st = os.lstat(AufsPaths.parse(rootfs.source, self.name).upper)
        return f"{st.st_dev}:{st.st_ino}"

    def mount(self, rootfs: Rootfs, mountpoint: Path, *, readonly: bool = False) -> None:
        """``mount -t aufs -o br=<upper>=rw:<lower>=ro,xino=<own xino>``; on a kernel without
        aufs, the failure names the container and offers the conversion to overlayfs."""
        paths = AufsPaths.parse(rootfs.source, self.name)
        for branch in (paths.upper, paths.lower):
            if not branch.is_dir():
                raise BdevError(_("its aufs branch {branch} is missing").format(branch=branch),
                                container=paths.container_name, backend=self.name)
        options = ("ro," if readonly else "") + paths.mount_options(readonly=readonly)
        result = run(["mount", "-t", self.name, "-o", options, self.name, str(mountpoint)], check=False, backend=self.name)
        if result.returncode == 0:
            return
        problem = kernel_problem()
        if problem:
            raise AufsUnavailable(problem, container=paths.container_name)
        last = (result.stderr.strip().splitlines() or ["mount failed"])[-1]
        raise BdevError(_("mounting its aufs branches failed: {last}").format(last=last),
                        container=paths.container_name, backend=self.name)

    def umount(self, rootfs: Rootfs, mountpoint: Path) -> None:
        """Unmount it."""
        run(["umount", str(mountpoint)], backend=self.name)

    def usage(self, rootfs: Rootfs) -> Usage:
        """Bytes in the upper branch (the shared lower is not counted)."""
        paths = AufsPaths.parse(rootfs.source, self.name)
        return Usage(tree_usage(paths.upper) if paths.upper.is_dir() else 0, note=_("the upper branch; the shared "
                                                                                    "lower is not counted"))

    def diff(self, rootfs: Rootfs) -> list[Change]:
        """Changes against the lower, read from the upper branch (works without aufs):
        added, modified, metadata, deleted (whiteouts) and opaque directories."""
        paths = AufsPaths.parse(rootfs.source, self.name)
        if not paths.upper.is_dir():
            raise BdevError(_("its aufs branch {upper} is missing").format(upper=paths.upper),
                            container=paths.container_name, backend=self.name)
        return branch_diff(paths.upper, paths.lower)

    # ------------------------------------------------------------------ cloning

    def snapshot(self, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions) -> CloneOutcome:
        """``lxc-clone -s -B aufs``: over a dir container's live rootfs (depends on it), or,
        from an aufs container, over its lower with a copy of its upper (LXC 1.0's
        ``aufs_clonepaths``)."""
        if placement.stage is not None:
            raise NotSupported(_("an aufs rootfs cannot be restored in place; restore it to a new name"), backend=self.name)
        self._require_kernel(placement.name)
        if source_backend.name == self.name:
            origin = AufsPaths.parse(source.source, self.name)
            lower, copy_from = origin.lower, origin.upper
        else:
            lower_path = source_backend.data_path(source)
            if lower_path is None:
                raise NotSupported(_("aufs can only layer over a directory, not a {name} rootfs").format(
                    name=source_backend.name), backend=self.name)
            lower, copy_from = lower_path, None
        paths = new_paths(placement, lower)
        if os.path.lexists(paths.upper):
            raise AlreadyExists(_("{upper} already exists").format(upper=paths.upper), backend=self.name)
        paths.upper.mkdir(mode=0o755)
        try:
            if copy_from is not None:
                copytree(copy_from, paths.upper)
            placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
        except BaseException:
            remove_tree(paths.upper)
            raise
        return CloneOutcome(Rootfs(self.name, paths.value), "snapshot" if copy_from else "layer", depends_on_origin=True)

    # ------------------------------------------------------------------ conversion (bdev convert)

    def conversion_source(self, rootfs: Rootfs, target: Backend, placement: Placement, options: CreateOptions) -> str:
        """The locator :meth:`convert_into` gives the new rootfs at ``placement``: for
        overlay, the aufs lower under an upper at overlay's own place; for any other backend,
        that backend's usual place (it receives the merged tree)."""
        if target.name != CONVERT_TARGET:
            return target.default_source(placement, options)
        paths = AufsPaths.parse(rootfs.source, self.name)
        upper = target.default_source(placement, options).split(":")[-1]
        return target.parse(f"{paths.lower}:{upper}").source

    def convert_into(
        self,
        rootfs: Rootfs,
        target: Backend,
        placement: Placement,
        options: CreateOptions,
        scratch: Path,
        progress: object | None = None,
    ) -> CloneOutcome:
        """Build a ``target`` rootfs at ``placement`` from the branches, never mounting aufs.

        To overlay: the lower stays as it is and the upper is the aufs branch translated
        (:func:`~bdev_aufs.whiteouts.translate_branch`); the new rootfs depends on the origin
        exactly as the aufs one did.  To any other backend: the translated branch is stacked
        over the lower in a read-only overlay mount (the overlay backend's own access), and
        ``target`` copies the merged tree, which then depends on nothing.
        ``scratch`` is an empty directory of the caller's, removed by the caller.
        """
        paths = AufsPaths.parse(rootfs.source, self.name)
        for branch in (paths.upper, paths.lower):
            if not branch.is_dir():
                raise BdevError(_("its aufs branch {branch} is missing").format(branch=branch), backend=self.name)
        if target.name == CONVERT_TARGET:
            value = self.conversion_source(rootfs, target, placement, options)
            new = Rootfs(target.name, value)
            upper = Path(value.split(":")[-1])
            upper.parent.mkdir(mode=0o755, exist_ok=True)
            upper.mkdir(mode=0o755)
            try:
                (upper.parent / "work").mkdir(mode=0o755, exist_ok=True)  # overlay/work, as lxc-copy -s leaves it
                self._report(translate_branch(paths.upper, [paths.lower], upper))
                placement.rootfs_dir.mkdir(mode=0o755, exist_ok=True)
            except BaseException:
                with contextlib.suppress(BdevError, OSError):
                    target.destroy(new)
                raise
            return CloneOutcome(new, "layer", depends_on_origin=True)
        if self.registry is None:
            raise BdevError(_("converting to a backend other than overlay needs the overlay backend installed"), backend=self.name)
        overlay = self.registry.backend(CONVERT_TARGET)
        translated = scratch / "upper"
        translated.mkdir(mode=0o755)
        self._report(translate_branch(paths.upper, [paths.lower], translated))
        view = overlay.parse(f"{paths.lower}:{translated}")
        with overlay.accessed(view, readonly=True) as merged:
            faults.checkpoint("aufs:merged-view-mounted")
            outcome = target.copy_from(merged, placement, options, progress)
        return CloneOutcome(outcome.rootfs, "copy", stats=outcome.stats)

    def discard_converted(self, rootfs: Rootfs, new: Rootfs) -> None:
        """Remove the upper branch and xino file of a converted rootfs, and its lower only if
        it is this container's own and ``new`` does not use it (an overlay keeps the lower)."""
        kept = frozenset(Path(os.path.normpath(part)) for part in new.source.split(":"))
        _remove_branches(AufsPaths.parse(rootfs.source, self.name), keep=kept)

    # ------------------------------------------------------------------ helpers

    def _require_kernel(self, container: str | None) -> None:
        problem = kernel_problem()
        if problem:
            raise AufsUnavailable(problem, container=container)

    @staticmethod
    def _report(translation: Translation) -> None:
        """Log what the translation did (``bdev -v`` shows it); pseudo-links dropped are a warning."""
        log.info(
            "aufs branch translated: %d whiteouts, %d opaque directories, %d redundant whiteouts dropped",
            translation.whiteouts, translation.opaque_dirs, translation.redundant_whiteouts,
        )
        if translation.pseudo_links_dropped:
            log.warning(
                "%d aufs pseudo-links (.wh..wh.plnk) were not folded back; the other names of those hard-linked "
                "files show the lower's version",
                translation.pseudo_links_dropped,
            )


def _remove_branches(paths: AufsPaths, *, keep: frozenset[Path]) -> None:
    """Remove the upper branch, the xino file, and the lower when it is the container's own
    (``<container>/rootfs``) and not in ``keep``; what is already gone is skipped."""
    remove_tree(paths.upper)
    if paths.lower.parent == paths.container_dir and paths.lower not in keep:
        remove_tree(paths.lower)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.xino)
