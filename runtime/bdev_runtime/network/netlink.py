"""The few netlink requests the runtime makes, through pyroute2, with errors as sentences.

Each function takes an open :class:`pyroute2.IPRoute`, which talks to the network namespace
the socket was made in: the host's in the monitor, the container's in its init before exec,
or another one through :func:`socket_in`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bdev.errors import BdevError

T = TypeVar("T")


def call(what: str, request: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one netlink ``request``; a refusal becomes ``BdevError("cannot <what>: <cause>")``."""
    try:
        return request(*args, **kwargs)
    except NetlinkError as exc:
        raise BdevError(f"cannot {what}: {os.strerror(exc.code) if exc.code else exc}") from exc
    except OSError as exc:
        raise BdevError(f"cannot {what}: {exc.strerror or exc}") from exc


def errno_of(exc: BaseException) -> int | None:
    """The errno behind a :func:`call` failure (or a raw netlink error), else None."""
    cause = exc.__cause__ if isinstance(exc, BdevError) else exc
    if isinstance(cause, NetlinkError):
        return cause.code
    if isinstance(cause, OSError):
        return cause.errno
    return None


@contextmanager
def socket_in(netns_path: str | None = None) -> Iterator[IPRoute]:
    """A netlink socket in this process's network namespace, or in the one ``netns_path``
    names (``/proc/PID/ns/net``, ``/proc/self/fd/N``), closed on exit."""
    if netns_path is None:
        ipr = call("open a netlink socket", IPRoute)
    else:
        ipr = call(f"enter the network namespace {netns_path}", IPRoute, netns=netns_path, flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def link(ipr: IPRoute, name: str) -> Any | None:
    """The link message of interface ``name``, or None when there is none."""
    try:
        found = ipr.get_links(ifname=name)
    except NetlinkError as exc:
        if exc.code == 19:  # ENODEV
            return None
        raise BdevError(f"cannot look up the interface {name}: {os.strerror(exc.code)}") from exc
    return found[0] if found else None


def kind(message: Any) -> str | None:
    """The link kind (``veth``, ``bridge`` ...) of a link message; None for hardware."""
    return message.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def links_with_alias(ipr: IPRoute, alias_prefix: str) -> list[Any]:
    """Every link whose alias (``ip link set ... alias``) starts with ``alias_prefix``."""
    found = call("list the network interfaces", ipr.get_links)
    return [msg for msg in found if (msg.get("IFLA_IFALIAS") or "").startswith(alias_prefix)]


def addresses(ipr: IPRoute, name: str, family: int) -> list[str]:
    """The addresses (without prefix) of interface ``name`` in ``family`` (``socket.AF_INET``
    or ``AF_INET6``)."""
    message = link(ipr, name)
    if message is None:
        return []
    found = call(f"list the addresses of {name}", ipr.get_addr, family=family, index=message["index"])
    return [msg.get("IFA_ADDRESS") for msg in found]
