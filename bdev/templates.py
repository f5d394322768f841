"""Template records: how a plugin offers a way to fill a new rootfs (``lxc-create -t NAME``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TemplateContext:
    """What a template gets when it runs.

    :param name: the container's name (for the hostname).
    :param rootfs: the mounted, empty rootfs to fill.
    :param lxcpath: the lxcpath the container lives in.
    :param args: the template's own arguments (what follows ``--`` on ``lxc-create``).
    :param config: ``(key, value)`` lines the template wants in the container's config; it
        appends to this list.
    """

    name: str
    rootfs: Path
    lxcpath: Path
    args: list[str] = field(default_factory=list)
    config: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Template:
    """A template a plugin registers through the ``bdev_templates`` hook.

    :param name: what ``-t`` takes.
    :param description: one line for ``bdev templates``.
    :param build: fills ``context.rootfs``; raises :class:`~bdev.errors.BdevError` on failure.
    :param usage: the help for its own arguments.
    """

    name: str
    description: str
    build: Callable[[TemplateContext], None]
    usage: str = ""

    def help_text(self) -> str:
        """What ``lxc-create -t NAME -- --help`` prints: the description, then the options."""
        return f"Template {self.name}: {self.description}\n\nOptions:\n{self.usage or '(none described)'}"


#: Template arguments that ask for the template's help instead of a container (as LXC's
#: templates take them).
HELP_ARGS = ("-h", "--help")


def asks_for_help(args: Sequence[str]) -> bool:
    """Whether a template's arguments ask for its help (``lxc-create -t NAME -- --help``)."""
    return any(arg in HELP_ARGS for arg in args)
