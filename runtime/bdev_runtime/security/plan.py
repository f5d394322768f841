"""A container's security settings, checked in the parent and applied in its init.

:func:`security_plan` reads the config, refuses what LXC would refuse (one sentence naming
the container, the key and the file or profile line), and builds everything the child will
need: the capability numbers, the seccomp filter (a profile is read here, on the host, not
after ``pivot_root``) and the LSM labels.  :meth:`SecurityPlan.apply_in_child` then only
makes system calls, in LXC's order: the LSM label for the next exec, the capability
bounding set, ``no_new_privs``, and the seccomp filter last (it may forbid what came before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bdev.errors import BdevError, InvalidInput
from bdev.naming import validate_path
from bdev.requirements import PythonModule
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from .._i18n import _
from .capabilities import CapabilityPlan, capability_plan
from .entries import last_entry
from .lsm import HostLsms, LabelPlan, label_plans, probe_host
from .seccomp_filter import BuiltFilter, build_filter
from .seccomp_profile import ProfileError, SeccompProfile, default_profile, parse_profile

NO_NEW_PRIVS_KEY = "lxc.no_new_privs"
SECCOMP_KEYS = ("lxc.seccomp.profile", "lxc.seccomp")  # LXC 1.0 and 2.0 called it lxc.seccomp
SECCOMP_NESTING_KEY = "lxc.seccomp.allow_nesting"
PRCTL = PythonModule("prctl", package="python3-prctl")
SECCOMP = PythonModule("seccomp", package="python3-seccomp")


@dataclass
class SeccompPlan:
    """The filter to load, the profile it came from, and what building it skipped."""

    profile: SeccompProfile
    built: BuiltFilter

    def report(self) -> list[str]:
        """The profile, the ABIs it covers, and the rules building it skipped."""
        lines = [f"seccomp: {self.profile.source} ({self.profile.describe()}) for {', '.join(self.built.sections)}"]
        if self.built.missing:
            calls = ", ".join(f"{rule.syscall} (line {rule.line})" for rule in self.built.missing)
            lines.append(f"seccomp: skipped rules for system calls this machine does not have: {calls}")
        if self.built.foreign:
            lines.append(f"seccomp: skipped {len(self.built.foreign)} rules written for other architectures")
        return lines


@dataclass
class SecurityPlan:
    """What :func:`security_plan` decided for one container."""

    container: str
    capabilities: CapabilityPlan
    no_new_privs: bool
    seccomp: SeccompPlan | None
    labels: tuple[LabelPlan, ...]
    notes: list[str] = field(default_factory=list)
    proc: Path = Path("/proc")

    def report(self) -> list[str]:
        """One line per mechanism: what will be applied, or why it will not (an LSM this host
        lacks is reported as unavailable, never dropped silently)."""
        lines = [self.capabilities.report()]
        lines.append(f"no_new_privs: {'on' if self.no_new_privs else 'off'} ({NO_NEW_PRIVS_KEY})")
        lines.extend(self.seccomp.report() if self.seccomp else [])
        lines.extend(self.notes)
        lines.extend(label.note for label in self.labels)
        return lines

    def apply_in_child(self) -> None:
        """Apply the plan to the calling process: call it in the container's init (or an
        attached process) after ``pivot_root`` and the mounts, immediately before exec.

        :raises BdevError: the kernel refused a step; the sentence names the container and
            the step.
        """
        for label in self.labels:
            self._step(_("cannot set the {lsm} label").format(lsm=label.lsm), label.apply, self.proc)
        self._step(_("cannot drop capabilities"), self.capabilities.apply)
        if self.no_new_privs:
            self._step(_("cannot set no_new_privs"), _set_no_new_privs)
        if self.seccomp:
            self._step(_("cannot load the seccomp filter from {source}").format(source=self.seccomp.profile.source),
                       self.seccomp.built.load)

    def _step(self, what: str, action, *args) -> None:
        try:
            action(*args)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise BdevError(f"{what}{where}: {exc.strerror or exc}", container=self.container) from exc
        except ValueError as exc:  # python-prctl's way of refusing a capability number
            raise BdevError(f"{what}: {exc}", container=self.container) from exc


def _set_no_new_privs() -> None:
    import prctl

    prctl.set_no_new_privs(1)


def security_plan(ref: ContainerRef, config: LxcConfig, *, host: HostLsms | None = None) -> SecurityPlan:
    """Check ``config``'s security keys and build the plan the container's init applies.

    :param host: which LSMs the host runs (probed from this machine by default).
    :raises InvalidInput: one sentence naming the container, the key and the file (and, for
        a seccomp profile, the line): an unknown capability, ``lxc.cap.drop`` with
        ``lxc.cap.keep``, a bad ``lxc.no_new_privs``, an unreadable or malformed profile, an
        AppArmor profile that is not loaded.
    :raises BdevError: python3-prctl or python3-seccomp is needed and missing.
    """
    try:
        return _plan(ref, config, host if host is not None else probe_host())
    except BdevError as exc:
        raise exc.about(container=ref.label)


def _plan(ref: ContainerRef, config: LxcConfig, host: HostLsms) -> SecurityPlan:
    where = f" in {config.source}" if config.source else ""
    _require(PRCTL, _("capabilities and no_new_privs"))
    capabilities = capability_plan(config.items(), config_file=config.source)
    no_new_privs = _flag(config, NO_NEW_PRIVS_KEY, where)
    notes: list[str] = []
    seccomp = _seccomp_plan(config, where, notes)
    return SecurityPlan(ref.label, capabilities, no_new_privs, seccomp, label_plans(config, host), notes)


def _require(module: PythonModule, what: str) -> None:
    problem = module.problem()
    if problem:
        raise BdevError(_("cannot apply {what}: {problem}").format(what=what, problem=problem))


def _flag(config: LxcConfig, key: str, where: str) -> bool:
    value = (config.get(key) or "0").strip()
    if value not in ("0", "1"):
        raise InvalidInput(_("{key}{where} must be 0 or 1, not {value!r}").format(key=key, where=where, value=value))
    return value == "1"


def _seccomp_plan(config: LxcConfig, where: str, notes: list[str]) -> SeccompPlan | None:
    key, value = last_entry(config, SECCOMP_KEYS)
    value = (value or "").strip()
    if key is not None and not value:
        notes.append(_("seccomp: no filter ({key} is empty{where})").format(key=key, where=where))
        return None
    nesting = _flag(config, SECCOMP_NESTING_KEY, where)
    if _already_filtered() and not nesting:
        notes.append(
            _("seccomp: not loaded: this process already runs under a seccomp filter (set {seccomp_nesting_key} = 1 "
              "to stack the container's on top, as LXC does)").format(
                seccomp_nesting_key=SECCOMP_NESTING_KEY)
        )
        return None
    _require(SECCOMP, _("seccomp filters"))
    if key is None:
        profile = default_profile()
    else:
        profile = _read_profile(key, value, where)
    try:
        built = build_filter(profile)
    except ProfileError as exc:
        raise _profile_refusal(key, where, profile.source, exc) from exc
    return SeccompPlan(profile, built)


def _profile_refusal(key: str | None, where: str, source: str, exc: ProfileError) -> InvalidInput:
    """The sentence for a profile line that cannot be used: key, config, profile, line."""
    subject = f"{key}{where}: seccomp profile {source}" if key else source
    return InvalidInput(_("{subject} line {line}: {message}").format(
        subject=subject, line=exc.line, message=exc.message))


def _read_profile(key: str, value: str, where: str) -> SeccompProfile:
    path = validate_path(value, what=f"{key}{where}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(_("{key}{where}: cannot read seccomp profile {path}: {error}").format(
            key=key, where=where, path=path, error=exc.strerror or exc)) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(_("{key}{where}: seccomp profile {path} is not text (byte {start})").format(
            key=key, where=where, path=path, start=exc.start)) from exc
    try:
        return parse_profile(text, str(path))
    except ProfileError as exc:
        raise _profile_refusal(key, where, str(path), exc) from exc


def _already_filtered() -> bool:
    """True when this process runs under a seccomp filter (``Seccomp: 2`` in its status):
    LXC then loads none unless lxc.seccomp.allow_nesting is set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1] != "0"
    return False
