"""LXC container config files, read and written without disturbing what the user wrote.

A config is a sequence of lines.  A line that, after leading blanks, holds ``key = value``
(key made of ``A-Z a-z 0-9 _ . -``) is an *entry*; every other line (comments, blank lines,
anything LXC would ignore or reject) is kept as opaque text.  Rendering gives back the parsed
text byte for byte; only lines that were changed are rebuilt, and those keep their
indentation and their spacing around ``=``.

Values are read the way LXC 5 reads them (``confile.c``): blanks around the value are
dropped and one pair of matching outer quotes (``"..."`` or ``'...'``) is removed, so the
busybox template's ``lxc.uts.name = "t1"`` reads ``t1``.  Values are written so LXC reads back
exactly what was given (quoted when they would otherwise lose blanks or quotes).  Every write
refuses a key or value that could start a new line.
"""

from __future__ import annotations

import copy as _copy
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, InvalidInput
from ..i18n import _

if TYPE_CHECKING:
    import random

KEY_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")
_ENTRY = re.compile(
    r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z0-9_.\-]+)(?P<sep>[ \t]*=[ \t]*)(?P<value>.*?)(?P<trail>[ \t]*)$",
    re.DOTALL,
)
_FORBIDDEN = {"\n": "a newline", "\r": "a carriage return", "\0": "a NUL byte"}

ROOTFS_KEY = "lxc.rootfs.path"
LEGACY_ROOTFS_KEY = "lxc.rootfs"
ROOTFS_BACKEND_KEY = "lxc.rootfs.backend"
UTS_KEY = "lxc.uts.name"
LEGACY_UTS_KEY = "lxc.utsname"
UTS_NAME_MAX = 64  # sizeof(struct utsname.nodename) - 1: LXC refuses longer names
MAC_PREFIX = "00:16:3e"
_HWADDR_KEY = re.compile(r"^lxc\.(?:net|network)(?:\.\d+)?\.hwaddr$")
_MAC_OR_PATTERN = re.compile(r"^[0-9A-Fa-fXx]{2}(?::[0-9A-Fa-fXx]{2}){5}$")
PATH_VALUE_KEYS: tuple[str, ...] = ("lxc.mount.entry", "lxc.mount.fstab", "lxc.hook.")


@dataclass
class _Line:
    """One line: ``text`` without its end of line, ``eol`` (``\\n``, ``\\r\\n`` or ``""`` for a
    last line without one); for entries the parts of ``text``."""

    text: str
    eol: str
    indent: str = ""
    key: str | None = None
    sep: str = ""
    raw: str = ""
    trail: str = ""

    @classmethod
    def parse(cls, text: str, eol: str) -> "_Line":
        match = _ENTRY.match(text)
        if not match:
            return cls(text, eol)
        return cls(text, eol, match["indent"], match["key"], match["sep"], match["value"], match["trail"])

    @classmethod
    def entry(cls, key: str, value: str, eol: str) -> "_Line":
        line = cls("", eol, key=key, sep=" = ")
        line.set_value(value)
        return line

    @property
    def value(self) -> str:
        return decode_value(self.raw)

    def set_value(self, value: str) -> None:
        self.raw = encode_value(value)
        self.trail = ""
        sep = self.sep
        if not self.raw:
            sep = sep.rstrip(" \t")
        elif sep.endswith("=") and sep[:1] in (" ", "\t"):
            sep += " "  # "key =" given a value becomes "key = value", not "key =value"
        self.sep = sep
        self.text = f"{self.indent}{self.key}{sep}{self.raw}"

    def set_raw(self, raw: str) -> None:
        self.raw = raw
        self.text = f"{self.indent}{self.key}{self.sep}{self.raw}{self.trail}"

    def rename(self, key: str) -> None:
        self.key = key
        self.text = f"{self.indent}{self.key}{self.sep}{self.raw}{self.trail}"


def decode_value(raw: str) -> str:
    """The value LXC sees for the text after ``=`` (already stripped of blanks): one pair of
    matching outer quotes removed."""
    if len(raw) > 1 and raw[0] in "\"'" and raw[-1] == raw[0]:
        return raw[1:-1]
    return raw


def encode_value(value: str) -> str:
    """The text to write after ``=`` so that LXC reads back ``value`` exactly."""
    if not value:
        return value
    needs_quotes = value[0] in " \t" or value[-1] in " \t" or (
        len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]
    )
    return f'"{value}"' if needs_quotes else value


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed config key.

    :raises InvalidInput: it is empty or holds anything but letters, digits, ``_ . -``.
    """
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        for char, name in _FORBIDDEN.items():
            if isinstance(key, str) and char in key:
                raise InvalidInput(_("config key {key!r} contains {name}").format(key=key, name=name))
        raise InvalidInput(_("config key {key!r} is not valid (use letters, digits, '_', '.' and '-')").format(key=key))
    return key


def check_value(key: str, value: str) -> str:
    """Return ``value`` if it can be written as the value of ``key`` on one line.

    :raises InvalidInput: it is not a string, contains a newline, carriage return or NUL, or
        cannot be written as UTF-8.
    """
    if not isinstance(value, str):
        raise InvalidInput(_(
            "config value for {key} must be text, not {kind}"
        ).format(key=key, kind=type(value).__name__))
    for char, name in _FORBIDDEN.items():
        if char in value:
            raise InvalidInput(_("config value for {key} contains {name}").format(key=key, name=name))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(_(
            "config value for {key} is not valid UTF-8: {value!r}"
        ).format(key=key, value=value)) from None
    return value


def _system_random() -> "random.Random":
    """The OS's random source (``random`` is imported here, not by every command that only
    reads configs)."""
    import random

    return random.SystemRandom()


def random_hwaddr(rng: random.Random | None = None) -> str:
    """A random MAC address with LXC's ``00:16:3e`` prefix (as LXC's ``new_hwaddr``)."""
    rng = rng or _system_random()
    return MAC_PREFIX + "".join(f":{rng.randrange(256):02x}" for _ in range(3))


def expand_hwaddr(pattern: str, rng: random.Random | None = None) -> str:
    """Replace each ``x``/``X`` of ``pattern`` (``00:16:3e:xx:xx:xx``) by a random hex digit,
    as LXC does when it loads a config; a placeholder in the first octet's low digit gets an
    even digit so the address stays unicast."""
    rng = rng or _system_random()
    out = []
    for index, char in enumerate(pattern):
        if char in "xX":
            digit = rng.randrange(16)
            out.append("0123456789abcdef"[digit & 0x0E if index == 1 else digit])
        else:
            out.append(char)
    return "".join(out)


def _path_pattern(old: str) -> re.Pattern[str]:
    # A path starts at the start of the value or after a blank or a separator used in mount
    # entries, overlay specs and option lists, and ends at the end, a '/', or such a separator.
    return re.compile(r"(?<![^\s=,:;\"'(])" + re.escape(old) + r"(?![^/\s,:;\"')])")


class LxcConfig:
    """An LXC config file (container config or ``lxc.conf``) that renders back byte for byte.

    ``render(parse(text)) == text`` for every text; edits touch only the lines they change.
    """

    def __init__(self, lines: Iterable[_Line] = (), *, source: str | None = None):
        self._lines: list[_Line] = list(lines)
        self.source = source

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def parse(cls, text: str, *, source: str | None = None) -> "LxcConfig":
        """Parse config text.  Nothing is rejected: lines that are not entries are kept as is.

        :param source: where the text came from (a path), used in error messages.
        """
        lines = []
        pos = 0
        while pos < len(text):
            end = text.find("\n", pos)
            if end < 0:
                chunk, eol, pos = text[pos:], "", len(text)
            else:
                chunk, eol, pos = text[pos:end], "\n", end + 1
                if chunk.endswith("\r"):
                    chunk, eol = chunk[:-1], "\r\n"
            lines.append(_Line.parse(chunk, eol))
        return cls(lines, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LxcConfig":
        """Read and parse the config file at ``path``.

        :raises ConfigError: naming the file, when it cannot be read or is not UTF-8.
        """
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(_(
                "cannot read config file {path}: {reason}"
            ).format(path=os.fspath(path), reason=exc.strerror or exc)) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                _(
                    "config file {path} is not valid UTF-8 (byte {start}: {raw!r})"
                ).format(path=os.fspath(path), start=exc.start, raw=raw[exc.start:exc.start + 1])
            ) from exc
        return cls.parse(text, source=os.fspath(path))

    def render(self) -> str:
        """The config text: the parsed text exactly, plus the edits made since."""
        return "".join(line.text + line.eol for line in self._lines)

    def save(self, path: str | os.PathLike[str], mode: int = 0o640) -> None:
        """Write the config to ``path`` atomically (a crash leaves the old or the new file).

        :raises ConfigError: naming the file, when it cannot be written.
        """
        try:
            data = self.render().encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(_(
                "cannot write config file {path}: the text is not valid UTF-8"
            ).format(path=os.fspath(path))) from exc
        try:
            from ..fsops import write_atomic  # not at import: listing only reads configs

            write_atomic(Path(path), data, mode=mode)
        except OSError as exc:
            raise ConfigError(_(
                "cannot write config file {path}: {reason}"
            ).format(path=os.fspath(path), reason=exc.strerror or exc)) from exc

    def copy(self) -> "LxcConfig":
        """An independent copy."""
        return LxcConfig(_copy.deepcopy(self._lines), source=self.source)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LxcConfig) and self.render() == other.render()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<LxcConfig{where}: {len(self._entries())} entries>"

    # ------------------------------------------------------------------ generic access

    def _entries(self) -> list[_Line]:
        return [line for line in self._lines if line.key is not None]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the last ``key`` line (LXC's rule for single-valued keys), or ``default``."""
        for line in reversed(self._lines):
            if line.key == key:
                return line.value
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key``, in file order."""
        return [line.value for line in self._lines if line.key == key]

    def items(self) -> list[tuple[str, str]]:
        """``(key, value)`` of every entry, in file order (repeated keys repeated)."""
        return [(line.key, line.value) for line in self._entries()]  # type: ignore[misc]

    def keys(self) -> list[str]:
        """The distinct keys, in order of first appearance."""
        return list(dict.fromkeys(line.key for line in self._entries()))  # type: ignore[arg-type]

    def __contains__(self, key: object) -> bool:
        return any(line.key == key for line in self._lines)

    def set(self, key: str, value: str) -> None:
        """Give ``key`` the single value ``value``: the first ``key`` line is changed in place,
        later ones are deleted; the line is appended if ``key`` is absent.

        :raises InvalidInput: the key or value could break the file's line structure.
        """
        self._set_first(check_key(key), check_value(key, value), ())

    def append(self, key: str, value: str) -> None:
        """Add a ``key = value`` line at the end (for multi-valued keys like ``lxc.mount.entry``).

        :raises InvalidInput: the key or value could break the file's line structure.
        """
        self._append(check_key(key), check_value(key, value))

    def remove(self, key: str) -> int:
        """Delete every ``key`` line; returns how many were deleted."""
        return self._remove(lambda k: k == key)

    def remove_prefix(self, prefix: str) -> int:
        """Delete every entry whose key is ``prefix`` or lies below it on a ``.`` boundary
        (``lxc.net.0`` removes ``lxc.net.0.type`` but not ``lxc.net.01``; a prefix ending in
        ``.`` removes only keys below it).  Returns how many were deleted."""
        if not prefix:
            raise InvalidInput(_("config key prefix is empty"))
        return self._remove(lambda k: _under(k, prefix))

    def rewrite(self, change: Callable[[str, str], tuple[str, str] | None]) -> int:
        """Rewrite entries in place, in order: ``change(key, value)`` returns the new
        ``(key, value)`` (the same pair leaves the line untouched) or None to delete the line.
        Returns the number of lines changed or deleted.

        :raises InvalidInput: a new key or value could break the file's line structure; nothing
            is changed then.
        """
        planned: list[tuple[_Line, tuple[str, str] | None]] = []
        for line in self._entries():
            old = (line.key, line.value)
            new = change(*old)  # type: ignore[arg-type]
            if new is not None:
                check_value(check_key(new[0]), new[1])
                if new == old:
                    continue
            planned.append((line, new))
        dropped = []
        for line, new in planned:
            if new is None:
                dropped.append(line)
                continue
            key, value = new
            if value != line.value:
                line.key = key
                line.set_value(value)
            else:
                line.rename(key)
        self._drop(dropped)
        return len(planned)

    # ------------------------------------------------------------------ rootfs and uts name

    def rootfs_value(self) -> tuple[str | None, str | None]:
        """``(value, backend_hint)``: the rootfs as written (``lxc.rootfs.path``, or LXC 1.0's
        ``lxc.rootfs``; LXC 2.x read both as one setting, so the last line of either wins) and
        LXC 2.0's ``lxc.rootfs.backend``, each None when absent or empty."""
        value = self._last_of((ROOTFS_KEY, LEGACY_ROOTFS_KEY))
        hint = self.get(ROOTFS_BACKEND_KEY)
        return (value or None, hint or None)

    def set_rootfs(self, value: str) -> None:
        """Write ``lxc.rootfs.path = value`` where the rootfs line is (a legacy ``lxc.rootfs``
        line is renamed in place), drop other rootfs lines and ``lxc.rootfs.backend``."""
        check_value(ROOTFS_KEY, value)
        self._set_first(ROOTFS_KEY, value, (LEGACY_ROOTFS_KEY,))
        self.remove(ROOTFS_BACKEND_KEY)

    def uts_name(self) -> str | None:
        """The hostname: ``lxc.uts.name`` or LXC 1.0's ``lxc.utsname`` (last line wins)."""
        return self._last_of((UTS_KEY, LEGACY_UTS_KEY)) or None

    def set_uts_name(self, name: str) -> None:
        """Write ``lxc.uts.name = name`` in place (a legacy ``lxc.utsname`` line is renamed).

        :raises InvalidInput: the name has a line break or is longer than LXC accepts (64 bytes).
        """
        check_value(UTS_KEY, name)
        if len(name.encode("utf-8")) > UTS_NAME_MAX:
            raise InvalidInput(
                _(
                    "host name {name!r} is longer than {limit} bytes, which LXC refuses for {key}"
                ).format(name=name, limit=UTS_NAME_MAX, key=UTS_KEY)
            )
        self._set_first(UTS_KEY, name, (LEGACY_UTS_KEY,))

    # ------------------------------------------------------------------ network and paths

    def hwaddr_keys(self) -> list[str]:
        """The keys of the lines holding MAC addresses (``lxc.net.N.hwaddr``, legacy
        ``lxc.network.hwaddr`` ...), one per line, in file order."""
        return [line.key for line in self._entries() if _HWADDR_KEY.match(line.key)]  # type: ignore[arg-type]

    def randomize_hwaddrs(self, rng: random.Random | None = None) -> list[tuple[str, str, str]]:
        """Give every MAC address line a new random address, as LXC does on clone.

        A pattern with ``x`` placeholders (``00:16:3e:xx:xx:xx``, or a prefix of the user's
        choice) keeps its fixed digits and gets the placeholders filled; a concrete address
        becomes ``00:16:3e:`` plus three random octets.  New addresses differ from the old ones
        and from each other.  Values that are no MAC address are left alone (LXC skips them too).
        Returns ``(key, old, new)`` for each line changed.
        """
        rng = rng or _system_random()
        lines = [line for line in self._entries() if _HWADDR_KEY.match(line.key)]  # type: ignore[arg-type]
        taken = {line.value.lower() for line in lines}
        changed = []
        for line in lines:
            old = line.value
            if not _MAC_OR_PATTERN.match(old):
                continue
            has_placeholder = any(c in "xX" for c in old)
            for _attempt in range(1000):
                new = expand_hwaddr(old, rng) if has_placeholder else random_hwaddr(rng)
                if new.lower() not in taken:
                    break
            else:  # a pattern with a single placeholder cannot always give a fresh address
                raise InvalidInput(_("cannot find a new MAC address for {key} = {old}").format(key=line.key, old=old))
            taken.add(new.lower())
            line.set_value(new)
            changed.append((line.key, old, new))  # type: ignore[arg-type]
        return changed

    def mount_entries(self) -> list[str]:
        """The values of ``lxc.mount.entry``, in order."""
        return self.get_all("lxc.mount.entry")

    def replace_in_values(self, old: str, new: str, keys: Iterable[str] = PATH_VALUE_KEYS) -> int:
        """Replace the path ``old`` by ``new`` where it appears as a whole path or a leading
        part of one in the values of ``keys`` (exact keys, or prefixes ending in ``.`` such as
        ``lxc.hook.``).  ``/var/lib/lxc/c1`` matches ``/var/lib/lxc/c1`` and
        ``/var/lib/lxc/c1/rootfs`` but never ``/var/lib/lxc/c10`` or ``/x/var/lib/lxc/c1``.
        Returns the number of replacements.

        :raises InvalidInput: ``old`` is empty or ``/``, or ``new`` contains a line break.
        """
        old_norm, new_norm = old.rstrip("/"), new.rstrip("/") or new
        if not old_norm:
            raise InvalidInput(_("cannot replace the path {old!r} in config values").format(old=old))
        keys = tuple(keys)
        pattern = _path_pattern(old_norm)
        total = 0
        for line in self._entries():
            key: str = line.key  # type: ignore[assignment]
            if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys):
                continue
            check_value(key, new_norm)
            replaced, count = pattern.subn(lambda _m: new_norm, line.raw)
            if count:
                line.set_raw(replaced)
                total += count
        return total

    # ------------------------------------------------------------------ helpers

    def _last_of(self, keys: tuple[str, ...]) -> str | None:
        for line in reversed(self._lines):
            if line.key in keys:
                return line.value
        return None

    def _set_first(self, key: str, value: str, aliases: tuple[str, ...]) -> None:
        """Set ``key`` on its first line, else on the first line of an alias (renamed to
        ``key``), else on a new last line; delete every other line of ``key`` and aliases."""
        first = next((line for line in self._lines if line.key == key), None)
        if first is None:
            first = next((line for line in self._lines if line.key in aliases), None)
        if first is None:
            self._remove(lambda k: k in aliases)
            self._append(key, value)
            return
        first.key = key
        first.set_value(value)
        self._drop([line for line in self._lines if line is not first and (line.key == key or line.key in aliases)])

    def _append(self, key: str, value: str) -> None:
        eol = "\n"
        for line in reversed(self._lines):
            if line.eol:
                eol = line.eol
                break
        if self._lines and not self._lines[-1].eol:
            self._lines[-1].eol = eol
        self._lines.append(_Line.entry(key, value, eol))

    def _remove(self, match: Callable[[str], bool]) -> int:
        doomed = [line for line in self._lines if line.key is not None and match(line.key)]
        self._drop(doomed)
        return len(doomed)

    def _drop(self, doomed: list[_Line]) -> None:
        if not doomed:
            return
        ids = {id(line) for line in doomed}
        had_final_eol = bool(self._lines) and bool(self._lines[-1].eol)
        self._lines = [line for line in self._lines if id(line) not in ids]
        # Deleting the last line must not glue the previous one to what comes next, nor add
        # a newline the file did not have.
        if self._lines and not had_final_eol:
            self._lines[-1].eol = ""


def _under(key: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return key.startswith(prefix)
    return key == prefix or key.startswith(prefix + ".")
