"""Small file writers the templates share."""

from __future__ import annotations

from pathlib import Path


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` (parents made as needed) and set its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def hosts_text(name: str) -> str:
    """The ``/etc/hosts`` of a container called ``name`` (Debian's layout)."""
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
