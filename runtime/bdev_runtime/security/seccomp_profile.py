"""LXC's seccomp profile format, parsed into plain data (no libseccomp needed).

The format (``lxc.container.conf(5)``, LXC's ``seccomp.c``)::

    2                       # version: 1 or 2
    denylist [ACTION]       # 2: denylist|allowlist (blacklist|whitelist accepted), with an
                            #    optional default action; 1: allowlist only
    reject_force_umount     # umount2(..., MNT_FORCE) fails with EACCES
    [all]                   # 2: an architecture section: all, x86_64, x86, x32, arm64, ...
    kexec_load errno 1      # 2: syscall name, optional action, optional argument filters
    ioctl errno 1 [1,0x5412,SCMP_CMP_EQ]
    mknodat errno 1 [2,8192,SCMP_CMP_MASKED_EQ,61440]

Version 1 lists one syscall number per line, each allowed; every other syscall kills.
In version 2 a denylist allows what has no rule and a rule without an action kills; an
allowlist kills what has no rule and a rule without an action allows; the word after the
policy replaces the no-rule action.  Actions: ``allow``, ``kill``, ``trap``, ``errno N``;
``notify`` needs a seccomp notification listener, which bdev does not run, so a profile
using it is refused.  An argument filter is ``[index,value,op]`` or
``[index,value,op,mask]`` with ``op`` one of ``SCMP_CMP_NE LT LE EQ GE GT MASKED_EQ`` or
``!= < <= == >= > &=``; up to six follow the action.  ``#`` starts a comment.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from .._i18n import _

MAX_ERRNO = 4095
MAX_ARGS = 6
MNT_FORCE = 1

OPERATORS = {
    "SCMP_CMP_NE": "ne", "!=": "ne",
    "SCMP_CMP_LT": "lt", "<": "lt",
    "SCMP_CMP_LE": "le", "<=": "le",
    "SCMP_CMP_EQ": "eq", "==": "eq",
    "SCMP_CMP_GE": "ge", ">=": "ge",
    "SCMP_CMP_GT": "gt", ">": "gt",
    "SCMP_CMP_MASKED_EQ": "masked_eq", "&=": "masked_eq",
}  # fmt: skip

# Section headers LXC knows (lower or upper case); "all" applies to every architecture.
ARCH_SECTIONS = (
    "all", "x86", "x32", "x86_64", "arm", "arm64", "ppc64le", "ppc64", "ppc",
    "mips64", "mips64n32", "mips", "mipsel64", "mipsel64n32", "mipsel", "s390x", "s390",
)  # fmt: skip

_DECIMAL = re.compile(r"[0-9]+")
_SYSCALL_NAME = re.compile(r"[a-z0-9_]+")
_POLICIES = {"denylist": "denylist", "blacklist": "denylist", "allowlist": "allowlist", "whitelist": "allowlist"}


class ProfileError(ValueError):
    """A profile line LXC's format does not allow; ``line`` is 1-based."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Action:
    """What the kernel does on a match: ``allow``, ``kill``, ``trap`` or ``errno``."""

    kind: str
    errno: int = 0

    def __str__(self) -> str:
        return f"errno {self.errno}" if self.kind == "errno" else self.kind


ALLOW = Action("allow")
KILL = Action("kill")


@dataclass(frozen=True)
class ArgFilter:
    """A comparison of syscall argument ``index``: ``op`` is ``eq``, ``masked_eq`` ...;
    for ``masked_eq`` the argument ANDed with ``mask`` must equal ``value``."""

    index: int
    op: str
    value: int
    mask: int = 0


@dataclass(frozen=True)
class Rule:
    """One rule: ``syscall`` is a name (version 2) or a number (version 1); ``arch`` the
    section it was written under; ``line`` where (1-based)."""

    syscall: str | int
    action: Action
    args: tuple[ArgFilter, ...]
    arch: str
    line: int


@dataclass(frozen=True)
class SeccompProfile:
    """A parsed profile: what a syscall without a rule gets (``default``), and the rules."""

    source: str
    version: int
    policy: str
    default: Action
    rules: tuple[Rule, ...]

    def describe(self) -> str:
        """A short summary for reports: ``denylist, 6 rules, otherwise allow``."""
        return _("{policy}, {count} rules, otherwise {default}").format(
            policy=self.policy, count=len(self.rules), default=self.default)


def parse_profile(text: str, source: str) -> SeccompProfile:
    """Parse a profile written in LXC's format.

    :param source: where it came from (a path), kept for messages.
    :raises ProfileError: naming the line and what is wrong with it.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() not in ("1", "2"):
        first = lines[0].strip() if lines else ""
        raise ProfileError(1, _("the first line must be the format version, 1 or 2, not {first!r}").format(first=first))
    version = int(lines[0])
    if len(lines) < 2:
        raise ProfileError(2, _("the second line must name the policy (allowlist or denylist)"))
    policy, default = _parse_policy(lines[1], version)
    if version == 1:
        rules = _parse_v1(lines)
        return SeccompProfile(source, 1, "allowlist", KILL, rules)
    rule_action = KILL if policy == "denylist" else ALLOW
    if default is None:
        default = ALLOW if policy == "denylist" else KILL
    return SeccompProfile(source, 2, policy, default, _parse_v2(lines, rule_action))


def _parse_policy(line: str, version: int) -> tuple[str, Action | None]:
    words = _strip_comment(line).split()
    if "debug" in words:
        raise ProfileError(2, _("'debug' is not implemented (LXC refuses it too)"))
    policy = _POLICIES.get(words[0]) if words else None
    if policy is None:
        raise ProfileError(2, _("the policy must be allowlist or denylist, not {line!r}").format(line=line.strip()))
    if version == 1:
        if policy != "allowlist" or len(words) > 1:
            raise ProfileError(2, _("a version 1 profile is an allowlist of syscall numbers and takes no action"))
        return policy, None
    return policy, _parse_action(words[1:], 2) if len(words) > 1 else None


def _parse_v1(lines: list[str]) -> tuple[Rule, ...]:
    rules = []
    for number, raw in enumerate(lines[2:], start=3):
        text = _strip_comment(raw).strip()
        if not text:
            continue
        if not _DECIMAL.fullmatch(text):
            raise ProfileError(number, _("a version 1 profile lists syscall numbers, not {text!r}").format(text=text))
        rules.append(Rule(int(text), ALLOW, (), "native", number))
    return tuple(rules)


def _parse_v2(lines: list[str], rule_action: Action) -> tuple[Rule, ...]:
    rules = []
    arch = "all"
    for number, raw in enumerate(lines[2:], start=3):
        text = _strip_comment(raw).strip()
        if not text:
            continue
        if text.startswith("["):
            arch = _parse_section(text, number)
            continue
        rules.append(_parse_rule(text, number, arch, rule_action))
    return tuple(rules)


def _parse_section(text: str, number: int) -> str:
    name = text[1:-1] if text.endswith("]") else ""
    if name.lower() not in ARCH_SECTIONS or name not in (name.lower(), name.upper()):
        raise ProfileError(number, _("unsupported architecture section {text!r} (known: {arch_sections})").format(
            text=text, arch_sections=', '.join(ARCH_SECTIONS)))
    return name.lower()


def _parse_rule(text: str, number: int, arch: str, rule_action: Action) -> Rule:
    head, bracket, tail = text.partition("[")
    words = head.split()
    name = words[0]
    action = _parse_action(words[1:], number) if len(words) > 1 else None
    args = _parse_args(bracket + tail, number) if bracket else ()
    if args and action is None:
        raise ProfileError(number, _("an argument filter must follow an action (LXC refuses it otherwise)"))
    if name == "reject_force_umount":
        if len(words) > 1 or args:
            raise ProfileError(number, _("reject_force_umount takes no action or argument filter"))
        force = ArgFilter(1, "masked_eq", MNT_FORCE, MNT_FORCE)
        return Rule("umount2", Action("errno", errno.EACCES), (force,), arch, number)
    if not _SYSCALL_NAME.fullmatch(name):
        raise ProfileError(number, _("{name!r} is not a system call name").format(name=name))
    return Rule(name, action or rule_action, args, arch, number)


def _parse_action(words: list[str], number: int) -> Action:
    kind = words[0]
    if kind in ("allow", "kill", "trap") and len(words) == 1:
        return Action(kind)
    if kind == "errno":
        if len(words) == 2 and _DECIMAL.fullmatch(words[1]) and int(words[1]) <= MAX_ERRNO:
            return Action("errno", int(words[1]))
        raise ProfileError(number, _("'errno' needs one number from 0 to {max_errno}, not {words!r}").format(
            max_errno=MAX_ERRNO, words=' '.join(words[1:])))
    if kind == "notify":
        raise ProfileError(
            number,
            _("the notify action needs a seccomp notification listener (lxc.seccomp.notify.proxy), which bdev does "
              "not provide"),
        )
    raise ProfileError(number, _("unknown action {words!r} (use allow, kill, trap or errno N)").format(
        words=' '.join(words)))


def _parse_args(text: str, number: int) -> tuple[ArgFilter, ...]:
    args = []
    rest = text.strip()
    while rest:
        if not rest.startswith("[") or "]" not in rest:
            raise ProfileError(
                number, _("an argument filter must be written [index,value,op] or [index,value,op,mask], not "
                          "{rest!r}").format(
                    rest=rest)
            )
        body, _bracket, rest = rest[1:].partition("]")
        rest = rest.strip()
        args.append(_parse_arg(body, number))
    if len(args) > MAX_ARGS:
        raise ProfileError(number, _("a rule takes at most {max_args} argument filters, not {count}").format(
            max_args=MAX_ARGS, count=len(args)))
    return tuple(args)


def _parse_arg(body: str, number: int) -> ArgFilter:
    fields = [field.strip() for field in body.split(",")]
    if len(fields) not in (3, 4):
        raise ProfileError(number, _("an argument filter has 3 or 4 fields (index,value,op[,mask]), not [{body}]").format(
            body=body))
    index = _number(fields[0], number, _("argument index"))
    if index >= MAX_ARGS:
        raise ProfileError(number, _("argument index {fields} is out of range (0 to {value})").format(
            fields=fields[0], value=MAX_ARGS - 1))
    op = OPERATORS.get(fields[2])
    if op is None:
        raise ProfileError(
            number, _("unknown comparison {fields!r} (use SCMP_CMP_EQ, ==, SCMP_CMP_MASKED_EQ, &= ...)").format(
                fields=fields[2])
        )
    mask = _number(fields[3], number, _("mask")) if len(fields) == 4 else 0
    return ArgFilter(index, op, _number(fields[1], number, _("argument value")), mask)


def _number(text: str, number: int, what: str) -> int:
    """``text`` read as C's strtoull(..., 0) reads it: decimal, 0x hex or 0 octal."""
    try:
        if "_" in text:
            raise ValueError(text)
        value = int(text, 8) if len(text) > 1 and text.startswith("0") and _DECIMAL.fullmatch(text) else int(text, 0)
    except ValueError:
        raise ProfileError(number, _("{what} {text!r} is not a number").format(what=what, text=text)) from None
    if not 0 <= value < 2**64:
        raise ProfileError(number, _("{what} {text!r} does not fit in 64 bits").format(what=what, text=text))
    return value


def _strip_comment(line: str) -> str:
    return line.partition("#")[0]


# LXC's config/common.seccomp, which LXC's distribution configs load: the policy bdev applies
# when a config names no profile.  (Incus and LXD write the same rules with errno 38.)
DEFAULT_PROFILE_TEXT = """\
2
denylist
reject_force_umount  # comment this to allow umount -f;  not recommended
[all]
kexec_load errno 1
open_by_handle_at errno 1
init_module errno 1
finit_module errno 1
delete_module errno 1
"""
DEFAULT_PROFILE_SOURCE = "bdev's default policy (LXC's common.seccomp)"


def default_profile() -> SeccompProfile:
    """The policy used when ``lxc.seccomp.profile`` is not set: LXC's ``common.seccomp``."""
    return parse_profile(DEFAULT_PROFILE_TEXT, DEFAULT_PROFILE_SOURCE)
