"""Shell completion (bash, zsh) through click's machinery: container, snapshot and backend
names come from the lxcpath the command line names (``-P``), else LXC's default one.

Each program answers its own completion requests (``_BDEV_COMPLETE=bash_source bdev`` prints
the bash script, ``_LXC_CLONE_COMPLETE=zsh_source lxc-clone`` the zsh one), and
``python -m bdev.cli.completion install [PREFIX]`` writes the scripts of every program to
``<prefix>/share/bash-completion/completions/<prog>`` and
``<prefix>/share/zsh/site-functions/_<prog>``.  bash-completion finds the first when
``<prefix>/share`` is in ``XDG_DATA_DIRS`` (``/usr/local/share`` is by default), zsh the second
when that directory is in ``fpath``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .session import get_session

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from ..store.containers import ContainerStore

SHELLS = {"bash": Path("bash-completion/completions/{prog}"), "zsh": Path("zsh/site-functions/_{prog}")}
_CONTAINER_PARAMS = ("name", "orig")


def _lxcpath(ctx: click.Context) -> Path:
    """The lxcpath the command line names so far (``-P`` of the command or of ``bdev``),
    resolved as every command resolves it."""
    chosen = None
    current: click.Context | None = ctx
    while current is not None and not chosen:
        chosen = current.params.get("lxcpath")
        current = current.parent
    return get_session(ctx).lxcpath(chosen)


def _store(ctx: click.Context) -> "ContainerStore":
    from ..store.containers import ContainerStore

    return ContainerStore(get_session(ctx))


def _matching(names: list[str], incomplete: str, prefix: str = "") -> list["CompletionItem"]:
    from click.shell_completion import CompletionItem  # only a completing run needs it

    return [CompletionItem(prefix + name) for name in names if name.startswith(incomplete)]


def container_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list["CompletionItem"]:
    """Complete a container name: the containers of the lxcpath (none when it is unreadable)."""
    try:
        refs = _store(ctx).list_refs(_lxcpath(ctx))
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return _matching([ref.name for ref in refs], incomplete)


def snapshot_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list["CompletionItem"]:
    """Complete a snapshot name of the container named earlier on the line."""
    from ..store.layout import ContainerRef

    name = next((ctx.params[key] for key in _CONTAINER_PARAMS if ctx.params.get(key)), None)
    if not name:
        return []
    try:
        snaps = _store(ctx).snapshot_refs(ContainerRef(_lxcpath(ctx), name))
    except Exception:  # noqa: BLE001 - see container_names
        return []
    return _matching([snap.name for snap in snaps], incomplete)


def backend_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list["CompletionItem"]:
    """Complete a backend name (``best`` and each backend's name and aliases); after a comma,
    the next name of a ``-B a,b`` list."""
    from ..engine.context import default_registry

    head, _sep, last = incomplete.rpartition(",")
    prefix = f"{head}," if _sep else ""
    try:
        backends = [entry.backend for entry in default_registry().backend_entries()]
    except Exception:  # noqa: BLE001 - see container_names
        return []
    names = sorted({"best", *(b.name for b in backends), *(a for b in backends for a in b.aliases)})
    return _matching(names, last, prefix)


def complete_var(prog: str) -> str:
    """The environment variable through which ``prog`` answers completion requests."""
    return "_{}_COMPLETE".format(prog.replace("-", "_").replace(".", "_").upper())


def script(prog: str, command: click.Command, shell: str) -> str:
    """The completion script of ``prog`` for ``shell`` (``bash``, ``zsh``)."""
    from click.shell_completion import get_completion_class

    completion = get_completion_class(shell)
    if completion is None:
        raise ValueError(f"no completion for {shell}")
    return completion(command, {}, prog, complete_var(prog)).source()


def install(prefix: Path) -> list[Path]:
    """Write the bash and zsh scripts of every program under ``<prefix>/share``."""
    from .programs import programs

    written = []
    for program in programs():
        for shell, relative in SHELLS.items():
            path = prefix / "share" / str(relative).format(prog=program.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script(program.name, program.command, shell))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m bdev.cli.completion install [PREFIX]`` (default: the running environment)."""
    from .programs import install_prefix

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install" or len(args) > 2:
        print("usage: python -m bdev.cli.completion install [PREFIX]", file=sys.stderr)
        return 2
    prefix = Path(args[1]) if len(args) == 2 else install_prefix()
    written = install(prefix)
    print(f"bdev.cli.completion: {len(written)} scripts in {prefix / 'share'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
