"""The device allow-list on cgroup v2: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program.

cgroup v2 has no ``devices.allow`` file; the kernel asks the eBPF programs attached to a
cgroup instead (what LXC's ``cgroup2_devices.c`` and systemd's ``bpf-devices.c`` build).  The
program here is the allow-list of :mod:`.devices`: for each rule, compare the device type,
check that the requested access is within the rule's, compare major and minor, and answer 1
(allow) on a match; answer 0 (deny) when no rule matched.

The program is attached with ``BPF_F_ALLOW_MULTI`` (as LXC does); a new list is attached
before the old programs are detached, so a change never leaves the cgroup unguarded.  Programs
are released with the cgroup.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from .devices import DeviceRule

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
_DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_ATTR_SIZE = 128  # room for the bpf_attr fields used here; the rest must be zero

# opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_X = 0xBC
_ALU64_MOV_K = 0xB7
_JMP_JNE_K = 0x55
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: DeviceRule) -> list[bytes]:
    """Instructions allowing ``rule``; each test jumps past the block when it fails.
    Registers: r2 type, r3 access, r4 major, r5 minor (loaded by the prologue)."""
    tests: list[list[tuple[int, int, int, int]]] = []  # each: instructions, the last a jump
    if rule.type != "a":
        tests.append([(_JMP_JNE_K, 2, 0, _DEV_TYPE[rule.type])])
    allowed = sum(_ACCESS[letter] for letter in rule.access)
    if allowed != 7:
        tests.append([(_ALU32_MOV_X, 1, 3, 0), (_ALU32_AND_K, 1, 0, ~allowed), (_JMP_JNE_K, 1, 0, 0)])
    if rule.major is not None:
        tests.append([(_JMP_JNE_K, 4, 0, rule.major)])
    if rule.minor is not None:
        tests.append([(_JMP_JNE_K, 5, 0, rule.minor)])
    flat = [insn for test in tests for insn in test]
    block: list[bytes] = []
    for index, (code, dst, src, imm) in enumerate(flat):
        if code == _JMP_JNE_K:  # past the rest of the block, whose last two insns allow
            block.append(_insn(code, dst, src, off=len(flat) - index - 1 + 2, imm=imm))
        else:
            block.append(_insn(code, dst, src, imm=imm))
    return [*block, _insn(_ALU64_MOV_K, 0, imm=1), _insn(_EXIT)]


def program(rules: tuple[DeviceRule, ...]) -> bytes:
    """The bytecode of an allow-list program for ``rules`` (no rule: every device denied)."""
    prologue = [
        _insn(_LDX_MEM_W, 2, 1, 0), _insn(_ALU32_AND_K, 2, imm=0xFFFF),  # type = access_type & 0xffff
        _insn(_LDX_MEM_W, 3, 1, 0), _insn(_ALU32_RSH_K, 3, imm=16),      # access = access_type >> 16
        _insn(_LDX_MEM_W, 4, 1, 4), _insn(_LDX_MEM_W, 5, 1, 8),          # major, minor
    ]
    body = [insn for rule in rules for insn in _rule_block(rule)]
    return b"".join([*prologue, *body, _insn(_ALU64_MOV_K, 0, imm=0), _insn(_EXIT)])


def _attr(*fields: tuple[str, int | bytes]) -> ctypes.Array:  # type: ignore[type-arg]
    data = b"".join(struct.pack("<" + fmt, value) for fmt, value in fields)
    return ctypes.create_string_buffer(data.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)


def load(rules: tuple[DeviceRule, ...]) -> int:
    """Load the allow-list program; returns its file descriptor.

    :raises OSError: the kernel refused it (its verifier log is in the message).
    """
    from .. import linux

    code = ctypes.create_string_buffer(program(rules))
    license_text = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)

    def attempt(log_level: int) -> int:
        return linux.bpf(BPF_PROG_LOAD, _attr(
            ("I", BPF_PROG_TYPE_CGROUP_DEVICE), ("I", (len(code) - 1) // 8), ("Q", ctypes.addressof(code)),
            ("Q", ctypes.addressof(license_text)), ("I", log_level), ("I", len(log) if log_level else 0),
            ("Q", ctypes.addressof(log) if log_level else 0), ("I", 0), ("I", 0), ("16s", b"bdev_devices")))

    try:
        return attempt(0)
    except OSError as exc:
        try:  # again with the verifier's log, to say why
            attempt(1)
        except OSError:
            pass
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(exc.errno, f"the kernel refused the device program: {os.strerror(exc.errno or 0)}"
                      + (f" ({detail[-1]})" if detail else "")) from None


def attached(cgroup_fd: int) -> list[int]:
    """The ids of the device programs attached to the cgroup open at ``cgroup_fd``."""
    from .. import linux

    ids = (ctypes.c_uint32 * 64)()
    attr = _attr(("I", cgroup_fd), ("I", BPF_CGROUP_DEVICE), ("I", 0), ("I", 0), ("Q", ctypes.addressof(ids)),
                 ("I", len(ids)))
    linux.bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr.raw, 24)[0]
    return list(ids[:count])


def replace_program(directory: Path, rules: tuple[DeviceRule, ...]) -> None:
    """Make ``rules`` the device allow-list of the v2 cgroup ``directory``: attach the new
    program, then detach the ones attached before.

    :raises OSError: loading, attaching or detaching failed.
    """
    from .. import linux

    cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached(cgroup_fd)
        prog_fd = load(rules)
        try:
            linux.bpf(BPF_PROG_ATTACH, _attr(("I", cgroup_fd), ("I", prog_fd), ("I", BPF_CGROUP_DEVICE),
                                             ("I", BPF_F_ALLOW_MULTI)))
        finally:
            os.close(prog_fd)
        for prog_id in old:
            old_fd = linux.bpf(BPF_PROG_GET_FD_BY_ID, _attr(("I", prog_id)))
            try:
                linux.bpf(BPF_PROG_DETACH, _attr(("I", cgroup_fd), ("I", old_fd), ("I", BPF_CGROUP_DEVICE)))
            finally:
                os.close(old_fd)
    finally:
        os.close(cgroup_fd)
