"""LXC's start hooks: ``lxc.hook.pre-start``, run by the monitor before anything of the
container exists (no namespace, no mount), and ``lxc.hook.pre-mount``, run by the container's
first process in its new mount namespace before the rootfs is mounted (what it mounts stays
there).  Each value runs, in order, through ``/bin/sh`` as LXC runs hooks (``HOOK NAME lxc
TYPE``), with LXC's ``LXC_*`` environment.  A hook that fails stops the start, with one
sentence naming it and what it said."""

from __future__ import annotations

from collections.abc import Sequence

from bdev.command import run
from bdev.errors import BdevError, CommandError
from bdev.records import Rootfs
from bdev.store.layout import ContainerRef

from ._i18n import _

PRE_START = "pre-start"
PRE_MOUNT = "pre-mount"


def hook_environment(ref: ContainerRef, rootfs: Rootfs, mount_point: str, kind: str) -> dict[str, str]:
    """The variables LXC gives a hook: the container's name, config, rootfs and the hook's kind."""
    return {
        "LXC_NAME": ref.name,
        "LXC_CONFIG_FILE": str(ref.config_path),
        "LXC_ROOTFS_PATH": rootfs.config_value,
        "LXC_ROOTFS_MOUNT": mount_point,
        "LXC_HOOK_TYPE": kind,
        "LXC_HOOK_SECTION": "lxc",
        "LXC_HOOK_VERSION": "0",
    }


def run_hooks(hooks: Sequence[str], ref: ContainerRef, environment: dict[str, str], kind: str) -> None:
    """Run each of ``hooks`` (a command line each) for ``ref``, stopping at the first failure.

    :raises BdevError: a hook failed or could not be run.
    """
    for hook in hooks:
        try:
            run(["/bin/sh", "-c", f'{hook} "$@"', "sh", ref.name, "lxc", kind], env=environment,
                container=ref.label)
        except CommandError as exc:
            said = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
            raise BdevError(_("its lxc.hook.{kind} hook {hook!r} failed with status {status}{detail}").format(
                kind=kind, hook=hook, status=exc.returncode, detail=f": {said[-1]}" if said else ""),
                container=ref.label) from None
