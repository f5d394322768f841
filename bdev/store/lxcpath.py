"""LXC's global configuration: where ``lxc.conf`` is, the lxcpath, and where locks live.

Matches what LXC 5.0 does (``initutils.c`` ``lxc_global_config_value``, ``utils.c``
``get_rundir``, ``lxclock.c`` ``lxclock_name``), checked against Debian's LXC 5.0.2:

* root reads ``/etc/lxc/lxc.conf``; other users ``$HOME/.config/lxc/lxc.conf`` (LXC ignores
  ``XDG_CONFIG_HOME`` and ``XDG_DATA_HOME``, so bdev does too; an unset ``HOME`` counts as
  ``/``);
* in ``lxc.conf`` the first line of a key wins and an empty value counts as unset;
* container locks are ``<rundir>/lxc/lock/<lxcpath>/.<name>``, rundir ``/run`` for root,
  else ``$XDG_RUNTIME_DIR``, else ``$HOME/.cache/lxc/run``.

Every function takes ``uid`` and ``env`` (default: the effective uid and ``os.environ``) so
callers and tests can ask on behalf of another user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError, InvalidInput
from ..i18n import N_, _
from ..naming import normalize_path, validate_path
from .config import LxcConfig

SYSTEM_CONFIG = Path("/etc/lxc/lxc.conf")
SYSTEM_LXCPATH = Path("/var/lib/lxc")
SYSTEM_DEFAULT_CONFIG = Path("/etc/lxc/default.conf")
SYSTEM_LOCK_BASE = Path("/run/lxc/lock")

CONF_ENV = "BDEV_LXC_CONF"
"""Environment variable naming the ``lxc.conf`` to read instead of the usual one (tests)."""
LOCK_ENV = "BDEV_LOCK_DIR"
"""Environment variable replacing ``<rundir>/lxc/lock`` (tests)."""

BACKEND_DEFAULTS: dict[str, str] = {
    "lxc.bdev.lvm.vg": "lxc",
    "lxc.bdev.lvm.thin_pool": "lxc",
    "lxc.bdev.zfs.root": "lxc",
    "lxc.bdev.rbd.rbdpool": "lxc",
}
"""Defaults of the storage keys (``lxc.bdev.rbd.rbduser`` has none)."""


def _ids(uid: int | None, env: Mapping[str, str] | None) -> tuple[int, Mapping[str, str]]:
    return (os.geteuid() if uid is None else uid), (os.environ if env is None else env)


def _home(env: Mapping[str, str]) -> str:
    # LXC uses getenv("HOME") and "/" when it is unset; it never consults the passwd file.
    return env.get("HOME") or "/"


def global_config_path(*, uid: int | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The ``lxc.conf`` LXC reads: ``$BDEV_LXC_CONF`` if set, ``/etc/lxc/lxc.conf`` for root,
    ``$HOME/.config/lxc/lxc.conf`` for other users."""
    uid, env = _ids(uid, env)
    if env.get(CONF_ENV):
        return Path(env[CONF_ENV])
    if uid == 0:
        return SYSTEM_CONFIG
    return normalize_path(os.path.join(_home(env), ".config/lxc/lxc.conf"))


def default_settings(*, uid: int | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What LXC uses when ``lxc.conf`` says nothing: ``lxc.lxcpath``, ``lxc.default_config``
    and the storage keys."""
    uid, env = _ids(uid, env)
    if uid == 0:
        lxcpath, default_config = SYSTEM_LXCPATH, SYSTEM_DEFAULT_CONFIG
    else:
        home = _home(env)
        lxcpath = normalize_path(os.path.join(home, ".local/share/lxc"))
        default_config = normalize_path(os.path.join(home, ".config/lxc/default.conf"))
    return {"lxc.lxcpath": str(lxcpath), "lxc.default_config": str(default_config), **BACKEND_DEFAULTS}


def global_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    uid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The global settings: the values in ``lxc.conf`` (``path``, default
    :func:`global_config_path`) over :func:`default_settings`.

    As in LXC, the first line of a key wins, an empty value leaves the default, and trailing
    slashes of ``lxc.lxcpath`` are dropped.  Keys bdev does not know are kept.  A missing file
    gives the defaults.

    :raises ConfigError: naming the file, when it exists but cannot be read or decoded.
    """
    settings = default_settings(uid=uid, env=env)
    path = Path(path) if path is not None else global_config_path(uid=uid, env=env)
    if not os.path.lexists(path):
        return settings
    seen: set[str] = set()
    for key, value in LxcConfig.load(path).items():
        if key in seen or not value:
            continue
        seen.add(key)
        if key == "lxc.lxcpath":
            value = value.rstrip("/") or "/"
        settings[key] = value
    return settings


def resolve_lxcpath(
    option: str | os.PathLike[str] | None,
    settings: Mapping[str, str] | None = None,
    *,
    uid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The lxcpath to work in: the ``-P`` option if given, else ``lxc.lxcpath`` of
    ``settings`` (default :func:`global_settings`).  Either is validated, made absolute and
    normalised; it need not exist.

    :raises InvalidInput: the option is not an acceptable path.
    :raises ConfigError: ``lxc.lxcpath`` in ``lxc.conf`` is not an acceptable path.
    """
    if option is not None:
        return validate_path(option, what=N_("the lxcpath"))
    if settings is None:
        settings = global_settings(uid=uid, env=env)
    value = settings.get("lxc.lxcpath") or default_settings(uid=uid, env=env)["lxc.lxcpath"]
    try:
        return validate_path(value, what=N_("the lxcpath"))
    except InvalidInput as exc:  # the configuration, not the user's input, is at fault
        raise ConfigError(_(
            "{cause} (lxc.lxcpath in {path})"
        ).format(cause=exc.cause, path=global_config_path(uid=uid, env=env))) from exc


def lock_dir(
    lxcpath: str | os.PathLike[str],
    *,
    uid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The directory holding LXC's lock files of the containers of ``lxcpath``.

    LXC builds ``"%s/lxc/lock/%s"`` from its rundir and the lxcpath (leading slash included,
    giving ``/run/lxc/lock//var/lib/lxc``); this returns the same directory normalised:
    ``/run/lxc/lock/var/lib/lxc`` for root, ``$XDG_RUNTIME_DIR/lxc/lock/<lxcpath>`` for other
    users, or ``$HOME/.cache/lxc/run/lxc/lock/<lxcpath>`` when ``XDG_RUNTIME_DIR`` is unset.
    ``$BDEV_LOCK_DIR`` replaces ``<rundir>/lxc/lock``.

    :raises ConfigError: a user has neither ``XDG_RUNTIME_DIR`` nor ``HOME`` (LXC fails too).
    """
    uid, env = _ids(uid, env)
    relative = str(normalize_path(lxcpath)).lstrip("/")
    if env.get(LOCK_ENV):
        base = Path(env[LOCK_ENV])
    elif uid == 0:
        base = SYSTEM_LOCK_BASE
    elif env.get("XDG_RUNTIME_DIR"):
        base = Path(env["XDG_RUNTIME_DIR"]) / "lxc" / "lock"
    elif env.get("HOME"):
        base = Path(env["HOME"]) / ".cache" / "lxc" / "run" / "lxc" / "lock"
    else:
        raise ConfigError(_("cannot place container locks: neither XDG_RUNTIME_DIR nor HOME is set"))
    return normalize_path(base / relative) if relative else normalize_path(base)


def lock_path(
    lxcpath: str | os.PathLike[str],
    name: str,
    *,
    uid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """LXC's lock file of container ``name``: ``<lock_dir>/.<name>``."""
    return lock_dir(lxcpath, uid=uid, env=env) / f".{name}"
