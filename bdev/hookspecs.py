"""Hook specifications: the whole contract between bdev's core and its plugins.

A plugin is a module (or object) with functions marked ``@bdev.hookimpl``, published under the
``bdev.plugins`` entry-point group::

    [project.entry-points."bdev.plugins"]
    myfs = "bdev_myfs"

Built-in plugins are found exactly the same way.  Each hook returns *records*; the registry
collects them, rejects duplicates and reports plugins that fail, naming them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .backend import Backend
    from .templates import Template

PROJECT = "bdev"
ENTRY_POINT_GROUP = "bdev.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------- storage


@hookspec
def bdev_backends() -> Iterable[type["Backend"]]:
    """Return the storage backends this plugin offers.

    Each item is a subclass of :class:`bdev.backend.Backend` with ``name`` set.  The registry
    instantiates it with the global ``lxc.conf`` settings.  Two plugins offering the same name
    or alias are both reported and the first one loaded is kept.

    Example::

        from bdev import Backend, hookimpl

        class MyFsBackend(Backend):
            name = "myfs"
            ...

        @hookimpl
        def bdev_backends():
            return [MyFsBackend]

    :return: an iterable of backend classes.
    """


# ---------------------------------------------------------------------------- templates


@hookspec
def bdev_templates() -> Iterable["Template"]:
    """Return the templates (``lxc-create -t NAME``) this plugin offers.

    Example::

        from bdev import Template, hookimpl

        @hookimpl
        def bdev_templates():
            return [Template("hello", "a rootfs with one file", build=lambda ctx: ...)]

    :return: an iterable of :class:`bdev.templates.Template` records.
    """


# ---------------------------------------------------------------------------- commands


@hookspec
def bdev_commands() -> Iterable["click.Command"]:
    """Return subcommands this plugin adds to the ``bdev`` command line.

    Each item is a :class:`click.Command` whose name is the subcommand (``bdev start``).  A
    name the core already uses, or one a plugin loaded earlier offers, is reported and the
    earlier command kept.  Commands follow bdev's error policy (a
    :class:`~bdev.errors.BdevError` becomes one line on standard error) and reach the run's
    options (``-P``, ``-q``) through :func:`bdev.cli.session.get_session`.

    Example::

        import click
        from bdev import hookimpl
        from bdev.cli.session import get_session

        @click.command("hello")
        @click.argument("name")
        def hello(name):
            get_session().notify(f"hello {name}")

        @hookimpl
        def bdev_commands():
            return [hello]

    :return: an iterable of click commands.
    """
