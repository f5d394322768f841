"""Reading keys that LXC renamed: the last line of any of a key's names wins."""

from __future__ import annotations

from bdev.store.config import LxcConfig


def last_entry(config: LxcConfig, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """``(key, value)`` of the config's last line whose key is one of ``keys`` (a key and
    its LXC 1.0 alias, for example), or ``(None, None)``."""
    found: tuple[str | None, str | None] = (None, None)
    for key, value in config.items():
        if key in keys:
            found = (key, value)
    return found
