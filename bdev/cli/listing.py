"""Listing containers: what ``lxc-ls`` and ``bdev ls`` show about each one, read from its
config through the API the way LXC 5 reads it (``lxc.start.auto``, ``lxc.group``,
``lxc.idmap``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api import Container
    from ..errors import BdevError
    from .session import Session


@dataclass(frozen=True)
class Listed:
    """One container as a listing shows it.

    :param groups: ``lxc.group`` values in order (each value split on blanks; an empty
        value clears the list, as LXC does).
    :param unprivileged: the config maps ids (``lxc.idmap`` or LXC 1.0's ``lxc.id_map``).
    """

    container: "Container"
    name: str
    autostart: bool
    groups: tuple[str, ...]
    unprivileged: bool
    state: str = "STOPPED"


def _items(container: "Container", key: str) -> list[str]:
    return [v.strip() for v in container.get_config_item(key)]


def _list_values(values: list[str], *, split: bool = True) -> list[str]:
    """LXC's list semantics: values (or, with ``split``, their blank-separated words)
    accumulate; an empty value clears the list."""
    out: list[str] = []
    for value in values:
        if not value:
            out.clear()
        else:
            out.extend(value.split() if split else [value])
    return out


def describe(container: "Container") -> Listed:
    """The listing facts of ``container`` (read from its config)."""
    auto = _items(container, "lxc.start.auto")
    idmaps = [
        *_list_values(_items(container, "lxc.idmap"), split=False),
        *_list_values(_items(container, "lxc.id_map"), split=False),
    ]
    return Listed(
        container=container,
        name=container.name,
        autostart=bool(auto) and auto[-1] == "1",
        groups=tuple(_list_values(_items(container, "lxc.group"))),
        unprivileged=bool(idmaps),
        state=container.state,
    )


def describe_or_error(container: "Container") -> "Listed | BdevError":
    """:func:`describe`, or the error that kept its config from being read."""
    from ..errors import BdevError

    try:
        return describe(container)
    except BdevError as err:
        return err.about(container=container.name)


def containers(session: "Session", lxcpath: str | None = None) -> list["Container"]:
    """Every container of the lxcpath (``-P``, or LXC's default), sorted by name; none
    when the lxcpath does not exist."""
    path = session.lxcpath(lxcpath)
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:  # unreadable: say so rather than list nothing
        from ..errors import from_os_error

        raise from_os_error(exc) from exc
    if all(name.startswith(".") for name in names):
        return []  # nothing to list or repair (both skip dot entries): the API is not even imported
    from ..api import list_containers

    return list_containers(path)  # plugins load only if a rootfs must be interpreted
