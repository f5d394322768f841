"""The few netlink requests the runtime makes, through pyroute2, with errors as sentences.

Each function takes an open :class:`pyroute2.IPRoute`, which talks to the network namespace
the socket was made in: the host's in the monitor, the container's in its init before exec,
or another one through :func:`socket_in`.

pyroute2 is imported when a socket is first opened, not with this module: it takes about half
a second, which a container with no network (``lxc.net.0.type = empty``) should not pay on
every start, attach and ``info``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from bdev.errors import BdevError
from .._i18n import _

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")


def _netlink_error() -> type[Exception]:
    """pyroute2's ``NetlinkError`` (imported on first use)."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


def call(what: str, request: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one netlink ``request``; a refusal becomes ``BdevError("cannot <what>: <cause>")``."""
    try:
        return request(*args, **kwargs)
    except OSError as exc:
        raise BdevError(_("cannot {what}: {error}").format(what=what, error=exc.strerror or exc)) from exc
    except Exception as exc:
        if not isinstance(exc, _netlink_error()):
            raise
        code = getattr(exc, "code", 0)
        raise BdevError(_("cannot {what}: {value}").format(
            what=what, value=os.strerror(code) if code else exc)) from exc


def errno_of(exc: BaseException) -> int | None:
    """The errno behind a :func:`call` failure (or a raw netlink error), else None."""
    cause = exc.__cause__ if isinstance(exc, BdevError) else exc
    if "pyroute2" in sys.modules and isinstance(cause, _netlink_error()):  # else none was raised
        return getattr(cause, "code", None)
    if isinstance(cause, OSError):
        return cause.errno
    return None


@contextmanager
def socket_in(netns_path: str | None = None) -> Iterator[IPRoute]:
    """A netlink socket in this process's network namespace, or in the one ``netns_path``
    names (``/proc/PID/ns/net``, ``/proc/self/fd/N``), closed on exit."""
    from pyroute2 import IPRoute

    if netns_path is None:
        ipr = call(_("open a netlink socket"), IPRoute)
    else:
        ipr = call(_("enter the network namespace {netns_path}").format(netns_path=netns_path),
                   IPRoute, netns=netns_path, flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def link(ipr: IPRoute, name: str) -> Any | None:
    """The link message of interface ``name``, or None when there is none."""
    try:
        found = ipr.get_links(ifname=name)
    except Exception as exc:
        if not isinstance(exc, _netlink_error()):
            raise
        code = getattr(exc, "code", 0)
        if code == 19:  # ENODEV
            return None
        raise BdevError(_("cannot look up the interface {name}: {cause}").format(
            name=name, cause=os.strerror(code))) from exc
    return found[0] if found else None


def kind(message: Any) -> str | None:
    """The link kind (``veth``, ``bridge`` ...) of a link message; None for hardware."""
    return message.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def links_with_alias(ipr: IPRoute, alias_prefix: str) -> list[Any]:
    """Every link whose alias (``ip link set ... alias``) starts with ``alias_prefix``."""
    found = call(_("list the network interfaces"), ipr.get_links)
    return [msg for msg in found if (msg.get("IFLA_IFALIAS") or "").startswith(alias_prefix)]


def addresses(ipr: IPRoute, name: str, family: int) -> list[str]:
    """The addresses (without prefix) of interface ``name`` in ``family`` (``socket.AF_INET``
    or ``AF_INET6``)."""
    message = link(ipr, name)
    if message is None:
        return []
    found = call(_("list the addresses of {name}").format(name=name),
                 ipr.get_addr, family=family, index=message["index"])
    return [msg.get("IFA_ADDRESS") for msg in found]
