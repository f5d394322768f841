"""A parsed seccomp profile turned into a kernel filter with libseccomp's Python binding
(Debian ``python3-seccomp``), built in the parent and loaded in the container's init.

As LXC does, a version 2 profile is resolved for every ABI the host runs: on x86_64 the
filter covers x86_64, i386 and x32 (so a denied syscall cannot be reached through
``int 0x80``), on arm64 also arm, on ppc64 also ppc, on mips64 also its 32-bit ABIs.  A rule
under ``[all]`` is added for each of them; a rule under an architecture's section only for
that one; sections for architectures the host does not run are skipped.  A version 1
profile (syscall numbers) covers the native ABI only, and the others are killed.  A rule
naming a syscall that no covered ABI has is skipped, as LXC skips it; the plan reports it.

``kill`` kills the whole process (``SCMP_ACT_KILL_PROCESS``): LXC's ``SCMP_ACT_KILL`` kills
one thread, which leaves a multi-threaded process running without it.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .._i18n import _
from .seccomp_profile import Action, ArgFilter, ProfileError, Rule, SeccompProfile


def _seccomp():
    import seccomp  # Debian python3-seccomp; imported late so parsing never needs it

    return seccomp


# uname machine prefix -> the profile sections the filter covers, native ABI first, with
# libseccomp's Arch attribute for each (LXC's get_hostarch and parse_config_v2).
_HOST_ABIS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("x86_64", (("x86_64", "X86_64"), ("x86", "X86"), ("x32", "X32"))),
    ("i686", (("x86", "X86"),)),
    ("aarch64", (("arm64", "AARCH64"), ("arm", "ARM"))),
    ("armv7", (("arm", "ARM"),)),
    ("ppc64le", (("ppc64le", "PPC64LE"),)),
    ("ppc64", (("ppc64", "PPC64"), ("ppc", "PPC"))),
    ("ppc", (("ppc", "PPC"),)),
    ("mips64", (("mips64", "MIPS64"), ("mips64n32", "MIPS64N32"), ("mips", "MIPS"))),
    ("mipsel64", (("mipsel64", "MIPSEL64"), ("mipsel64n32", "MIPSEL64N32"), ("mipsel", "MIPSEL"))),
    ("mips", (("mips", "MIPS"),)),
    ("s390x", (("s390x", "S390X"),)),
    ("s390", (("s390", "S390"),)),
)

_OPERATORS = {"ne": "NE", "lt": "LT", "le": "LE", "eq": "EQ", "ge": "GE", "gt": "GT", "masked_eq": "MASKED_EQ"}


def host_sections(machine: str | None = None) -> tuple[tuple[str, str], ...]:
    """``(section, libseccomp Arch name)`` for each ABI of this host, native first; the
    native ABI alone (section ``native``) for a machine LXC does not know."""
    machine = machine or os.uname().machine
    for prefix, sections in _HOST_ABIS:
        if machine.startswith(prefix):
            return sections
    return (("native", "NATIVE"),)


@dataclass
class BuiltFilter:
    """A libseccomp filter ready to load, and what building it skipped."""

    filter: object
    sections: tuple[str, ...]
    missing: list[Rule] = field(default_factory=list)
    foreign: list[Rule] = field(default_factory=list)

    def load(self) -> None:
        """Install the filter on the calling thread (inherited by every child and exec).

        :raises OSError: the kernel refused it.
        """
        try:
            self.filter.load()
        except (RuntimeError, ValueError) as exc:
            code = _library_errno(exc)
            raise OSError(code or 0, os.strerror(code) if code else str(exc)) from exc

    def export_pfc(self, path: str) -> None:
        """Write the filter as libseccomp's human-readable pseudo filter code to ``path``."""
        with open(path, "w") as out:
            self.filter.export_pfc(out)


def build_filter(profile: SeccompProfile, machine: str | None = None) -> BuiltFilter:
    """Resolve ``profile`` for this host's ABIs into one libseccomp filter.

    :raises ProfileError: libseccomp refused a rule (the error names its line).
    """
    seccomp = _seccomp()
    sections = host_sections(machine)
    if profile.version == 1:
        sections = sections[:1]
    names = {section for section, _ in sections}
    main = None
    resolved: set[int] = set()  # the rules added for at least one ABI
    for position, (section, arch_name) in enumerate(sections):
        arch = getattr(seccomp.Arch, arch_name)
        part = seccomp.SyscallFilter(_action(profile.default))
        part.set_attr(seccomp.Attr.CTL_NNP, 0)  # no_new_privs is lxc.no_new_privs's business
        part.set_attr(seccomp.Attr.API_SYSRAWRC, 1)  # the kernel's errno on load, not ECANCELED
        if position:
            part.add_arch(arch)
            part.remove_arch(seccomp.Arch.NATIVE)
        for index, rule in enumerate(profile.rules):
            if rule.arch not in ("all", "native", section):
                continue
            if isinstance(rule.syscall, str) and seccomp.resolve_syscall(arch, rule.syscall) < 0:
                continue  # not a syscall of this ABI (or of none)
            resolved.add(index)
            _add(part, rule, section)
        if main is None:
            main = part
        else:
            main.merge(part)
    built = BuiltFilter(main, tuple(section for section, _ in sections))
    for index, rule in enumerate(profile.rules):
        if rule.arch not in ("all", "native") and rule.arch not in names:
            built.foreign.append(rule)
        elif index not in resolved:
            built.missing.append(rule)
    return built


def _add(part, rule: Rule, section: str) -> None:
    """Add ``rule`` to a one-ABI filter.  A name is passed as a name: libseccomp reads a
    number as the native ABI's number, whatever the filter's ABI."""
    args = [_arg(arg) for arg in rule.args]
    try:
        part.add_rule_exactly(_action(rule.action), rule.syscall, *args)
    except (RuntimeError, ValueError, OSError) as exc:
        reason = _rule_refusal(exc)
        raise ProfileError(
            rule.line, _("libseccomp refused the rule for {syscall} ({action}) on {section}: {reason}").format(
                syscall=rule.syscall, action=rule.action, section=section, reason=reason)
        ) from exc


def _library_errno(exc: Exception) -> int | None:
    """The errno in the binding's ``Library error (errno = -17)``, if there is one."""
    code = str(exc).rpartition("errno = ")[2].rstrip(")").lstrip("-")
    return int(code) if code.isascii() and code.isdigit() else None


def _rule_refusal(exc: Exception) -> str:
    """Why libseccomp refused to add a rule, in words."""
    code = _library_errno(exc)
    if code == errno.EEXIST:
        return _("it conflicts with an earlier rule for the same call")
    if code == errno.EACCES:
        return _("its action is the profile's default action")
    return os.strerror(code) if code else str(exc)


def _action(action: Action) -> int:
    seccomp = _seccomp()
    if action.kind == "errno":
        return seccomp.ERRNO(action.errno)
    return {"allow": seccomp.ALLOW, "kill": seccomp.KILL_PROCESS, "trap": seccomp.TRAP}[action.kind]


def _arg(arg: ArgFilter):
    seccomp = _seccomp()
    op = getattr(seccomp, _OPERATORS[arg.op])
    if arg.op == "masked_eq":
        return seccomp.Arg(arg.index, op, arg.mask, arg.value)
    return seccomp.Arg(arg.index, op, arg.value)
