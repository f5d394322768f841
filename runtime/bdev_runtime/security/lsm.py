"""AppArmor profiles and SELinux contexts: passed to the kernel where the host runs that
LSM, reported as unavailable where it does not (never silently dropped).

The label is set the way LXC sets it, for the next exec only: the container's init writes
``exec <profile>`` (AppArmor) or the context (SELinux) to its ``attr/exec`` file in
``/proc/thread-self`` just before it execs, so the init runs confined from its first
instruction and bdev's own code never runs confined.  ``lxc.selinux.context.keyring`` is
written to ``attr/keycreate`` likewise.

Keys (with LXC 1.0's names): ``lxc.apparmor.profile`` (``lxc.aa_profile``) takes a loaded
profile's name, ``unconfined``, ``unchanged`` (keep the caller's label) or ``generated``
(LXC writes a profile; bdev does not, and says so); unset, LXC's default
``lxc-container-default-cgns`` is used when it is loaded.  ``lxc.selinux.context``
(``lxc.se_context``) takes a context or ``unconfined_t`` (do not change it); the keyring's
context defaults to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bdev.errors import InvalidInput

from .._i18n import _
from .entries import last_entry

APPARMOR_KEYS = ("lxc.apparmor.profile", "lxc.aa_profile")
SELINUX_KEYS = ("lxc.selinux.context", "lxc.se_context")
SELINUX_KEYRING_KEY = "lxc.selinux.context.keyring"
APPARMOR_DEFAULT = "lxc-container-default-cgns"

APPARMOR_ENABLED = "sys/module/apparmor/parameters/enabled"
APPARMOR_PROFILES = "sys/kernel/security/apparmor/profiles"
SECURITYFS_LSM = "sys/kernel/security/lsm"
SELINUX_ENFORCE = "sys/fs/selinux/enforce"


@dataclass(frozen=True)
class HostLsms:
    """Which label-based LSMs the host runs: for each, None when usable, else why not;
    ``apparmor_profiles`` holds the names of the loaded AppArmor profiles, when readable."""

    apparmor: str | None
    selinux: str | None
    apparmor_profiles: frozenset[str] | None = None  # None: unknown (securityfs not mounted)


def probe_host(root: Path = Path("/")) -> HostLsms:
    """Look at ``root``'s sysfs (the real one by default) for AppArmor and SELinux."""
    active = _read(root / SECURITYFS_LSM)
    lsm_note = f"; active LSMs: {active.strip()}" if active else ""
    enabled = _read(root / APPARMOR_ENABLED)
    if enabled is None:
        apparmor = f"/{APPARMOR_ENABLED} is missing: the kernel runs no AppArmor{lsm_note}"
    elif enabled.strip() != "Y":
        apparmor = f"/{APPARMOR_ENABLED} reads {enabled.strip()!r}: AppArmor is disabled{lsm_note}"
    else:
        apparmor = None
    listing = _read(root / APPARMOR_PROFILES)
    profiles = (
        None if listing is None else frozenset(line.rsplit(" (", 1)[0] for line in listing.splitlines() if line.strip())
    )
    selinux = (
        None
        if (root / SELINUX_ENFORCE).exists()
        else (f"/{SELINUX_ENFORCE} is missing: no selinuxfs, so SELinux is not enabled{lsm_note}")
    )
    return HostLsms(apparmor, selinux, profiles)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@dataclass(frozen=True)
class LabelPlan:
    """One LSM's part of the plan: the ``(attr file, text)`` writes made before exec, and
    the line ``report`` shows."""

    lsm: str
    writes: tuple[tuple[str, str], ...]
    note: str

    def apply(self, proc: Path = Path("/proc")) -> None:
        """Write each label to ``proc``/thread-self/attr/<file> (AppArmor's own
        ``attr/apparmor/`` directory when the kernel has one).

        :raises OSError: the kernel refused the label (the caller names the container).
        """
        attr = proc / "thread-self" / "attr"
        for name, text in self.writes:
            own_dir = self.lsm == "apparmor" and (attr / "apparmor").is_dir()
            target = attr / "apparmor" / name if own_dir else attr / name
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, text.encode())
                finally:
                    os.close(fd)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(target)) from exc


def label_plans(config, host: HostLsms) -> tuple[LabelPlan, ...]:
    """The AppArmor and SELinux plans for ``config`` on ``host``.

    :raises InvalidInput: a profile that is not loaded, ``generated`` where AppArmor runs, or
        a malformed SELinux context.
    """
    return (_apparmor(config, host), _selinux(config, host))


def _where(config) -> str:
    return f" in {config.source}" if config.source else ""


def _apparmor(config, host: HostLsms) -> LabelPlan:
    key, profile = last_entry(config, APPARMOR_KEYS)
    if host.apparmor is not None:
        if profile in (None, "", "unconfined", "unchanged"):
            what = f"{profile} ({key})" if profile else _("nothing configured")
            return LabelPlan("apparmor", (), _("apparmor: unavailable on this host ({apparmor}); {what}").format(
                apparmor=host.apparmor, what=what))
        return LabelPlan(
            "apparmor",
            (),
            _("apparmor: profile {profile!r} ({key}) not applied: unavailable on this host ({apparmor})").format(
                profile=profile, key=key, apparmor=host.apparmor),
        )
    if profile == "unchanged":
        return LabelPlan("apparmor", (), _("apparmor: unchanged ({key}): the container keeps the caller's profile").format(
            key=key))
    if profile == "generated":
        raise InvalidInput(
            _("{key} = generated{where} asks for a generated AppArmor profile, which bdev does not write; name a "
              "loaded profile or unconfined").format(
                key=key, where=_where(config))
        )
    loaded = host.apparmor_profiles
    if not profile:
        if loaded is None or APPARMOR_DEFAULT not in loaded:
            why = _("is not loaded") if loaded is not None else _("may not be loaded (/{path} is unreadable)").format(
                path=APPARMOR_PROFILES)
            return LabelPlan(
                "apparmor",
                (),
                _("apparmor: no profile configured and LXC's default {apparmor_default} {why}: the container runs "
                  "under the caller's profile").format(
                    apparmor_default=APPARMOR_DEFAULT, why=why),
            )
        profile, key = APPARMOR_DEFAULT, "LXC's default"
    elif profile != "unconfined" and loaded is not None and profile not in loaded:
        raise InvalidInput(
            _("{key}{where}: AppArmor profile {profile!r} is not loaded on this host (see aa-status)").format(
                key=key, where=_where(config), profile=profile)
        )
    return LabelPlan("apparmor", (("exec", f"exec {profile}"),), _("apparmor: profile {profile!r} ({key})").format(
        profile=profile, key=key))


def _selinux(config, host: HostLsms) -> LabelPlan:
    key, context = last_entry(config, SELINUX_KEYS)
    keyring = config.get(SELINUX_KEYRING_KEY) or None
    wanted = [_("context {context!r} ({key})").format(context=context, key=key)] if context and context != "unconfined_t" else []
    if keyring:
        wanted.append(_("keyring context {keyring!r} ({key})").format(keyring=keyring, key=SELINUX_KEYRING_KEY))
    if host.selinux is not None:
        if not wanted:
            what = f"{context} ({key})" if context else _("nothing configured")
            return LabelPlan("selinux", (), _("selinux: unavailable on this host ({selinux}); {what}").format(
                selinux=host.selinux, what=what))
        note = _("selinux: {wanted} not applied: unavailable on this host ({selinux})").format(
            wanted=' and '.join(wanted), selinux=host.selinux)
        return LabelPlan("selinux", (), note)
    writes = []
    keyring_source = SELINUX_KEYRING_KEY if keyring else key  # LXC: the keyring defaults to the context
    for name, text, source in (("exec", context, key), ("keycreate", keyring or context, keyring_source)):
        if not text or text == "unconfined_t":
            continue
        if len(text.split(":")) < 3:
            raise InvalidInput(_("{source}{where}: {text!r} is not an SELinux context (user:role:type[:level])").format(
                source=source, where=_where(config), text=text))
        writes.append((name, text))
    if not writes:
        return LabelPlan("selinux", (), _("selinux: unchanged (no context configured)"))
    return LabelPlan("selinux", tuple(writes), _("selinux: {wanted}").format(wanted=' and '.join(wanted)))
