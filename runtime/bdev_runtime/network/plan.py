"""A container's network, from its config to links in its namespace and back.

:func:`network_plan` reads and checks everything in the parent, before a mount or a process
exists: the interfaces (:mod:`.nics`), the bridges they name, the values only the host can
tell (``ipv4.gateway = auto``, a bridge's MTU).  Everything the child needs is decided then,
because the child is forked before the host side exists and sees only the plan it was given.

Host-side links carry an alias (``ip link show`` prints it) that names the container, so
:meth:`NetworkPlan.teardown` finds them even in a later process after a crash of the monitor,
and never touches a link it did not make.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import ipaddress
import os
import secrets
import socket
import string
from typing import TYPE_CHECKING, Any

import prctl  # Debian python3-prctl

from bdev.errors import AlreadyExists, BdevError, NotFound, NotSupported
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

from .._i18n import _
from . import netlink
from .nics import Address, Nic, read_nics

if TYPE_CHECKING:
    from pyroute2 import IPRoute

VETH_PREFIX = "veth"
"""Generated host-side names are ``veth`` and six random letters or digits (as LXC's)."""

NAME_ATTEMPTS = 20
"""Generated host-side names tried before giving up (a collision needs a concurrent caller)."""

_NAME_ALPHABET = string.ascii_lowercase + string.digits
RT_SCOPE_LINK = 253  # <linux/rtnetlink.h>: a route to hosts on the link itself

ALIAS_MAX = 254
"""The longest link alias the kernel takes (IFALIASZ is 256 with the NUL netlink counts)."""


def network_plan(ref: ContainerRef, config: LxcConfig) -> "NetworkPlan":
    """The network of container ``ref`` as ``config`` describes it, checked against this host.

    Runs in the parent before anything is set up; a bad value, a bridge that does not exist
    or a type this runtime does not set up is one sentence naming the container.

    :raises InvalidInput: a bad ``lxc.net.*`` value or combination.
    :raises NotSupported: a type such as macvlan.
    :raises NotFound: a bridge or phys device named by ``lxc.net.N.link`` is missing.
    """
    try:
        nics = read_nics(config)
        _check_host_privilege(nics)
        if any(_needs_host(nic) for nic in nics):  # no netlink socket (nor pyroute2) for empty networks
            with netlink.socket_in() as ipr:
                nics = [_resolve(ipr, nic) for nic in nics]
    except BdevError as exc:
        raise exc.about(container=ref.label)
    return NetworkPlan(ref, nics)


def _check_host_privilege(nics: list[Nic]) -> None:
    """veth and phys interfaces change the host's network: that needs CAP_NET_ADMIN there."""
    needy = [nic for nic in nics if nic.type in ("veth", "phys")]
    if needy and not prctl.cap_effective.net_admin:
        raise NotSupported(
            _("{key} = {type} needs root on the host (bdev has no lxc-user-nic); use lxc.net.0.type = empty").format(
                key=needy[0].key('type'), type=needy[0].type)
        )


def _needs_host(nic: Nic) -> bool:
    """Whether :func:`_resolve` asks the host about ``nic`` (a phys device, a veth's bridge)."""
    return nic.type == "phys" or (nic.type == "veth" and bool(nic.link))


def _resolve(ipr: IPRoute, nic: Nic) -> Nic:
    """``nic`` with what the host decides filled in: the bridge exists and is one, its MTU
    where the config gives none, its address for a gateway ``auto``; a phys device exists."""
    if nic.type == "phys":
        if netlink.link(ipr, nic.link) is None:  # type: ignore[arg-type]
            raise NotFound(_("host device {link} named by {key} does not exist").format(
                link=nic.link, key=nic.key('link')))
        return nic
    if not _needs_host(nic):
        return nic
    bridge = bridge_link(ipr, nic)
    changes: dict[str, Any] = {}
    if nic.mtu is None:
        changes["mtu"] = bridge.get("IFLA_MTU")
    for family, attr, kind in (
        ("ipv4", "ipv4_gateway", socket.AF_INET),
        ("ipv6", "ipv6_gateway", socket.AF_INET6),
    ):
        if getattr(nic, attr) == "auto":
            found = [a for a in netlink.addresses(ipr, nic.link, kind) if not a.startswith("fe80:")]
            if not found:
                raise NotFound(
                    _("{key} = auto, but bridge {link} has no {family} address").format(
                        key=nic.key(family + '.gateway'), link=nic.link, family=family)
                )
            changes[attr] = ipaddress.ip_address(found[0])
    return dataclasses.replace(nic, **changes)


def bridge_link(ipr: IPRoute, nic: Nic) -> Any:
    """The link message of the bridge ``nic`` names in ``lxc.net.N.link``.

    :raises NotFound: there is no such interface, or it is no bridge.
    """
    message = netlink.link(ipr, nic.link)  # type: ignore[arg-type]
    if message is None:
        raise NotFound(_("bridge {link} named by {key} does not exist on this host").format(
            link=nic.link, key=nic.key('link')))
    if netlink.kind(message) != "bridge":
        raise NotFound(_("{link} named by {key} is not a bridge (it is a {kind})").format(
            link=nic.link, key=nic.key('link'), kind=netlink.kind(message) or 'device'))
    return message


def container_tag(ref: ContainerRef) -> str:
    """The alias prefix of every host link made for ``ref``: ``bdev:`` and a digest of its
    directory, so two containers of one name in two lxcpaths never share it."""
    digest = hashlib.sha256(os.fsencode(ref.directory)).hexdigest()[:16]
    return f"bdev:{digest}:"


def host_side_mac() -> str:
    """A random MAC for a veth's host end, starting with ``fe``: a bridge takes the lowest MAC
    of its ports as its own, so a host end must never undercut the bridge's (as LXC)."""
    return "fe" + "".join(f":{byte:02x}" for byte in secrets.token_bytes(5))


def generated_host_name() -> str:
    """A fresh host-side veth name: ``veth`` and six random lowercase letters or digits."""
    return VETH_PREFIX + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(6))


class NetworkPlan:
    """What to set up for one container's network, and how to take it down.

    ``needs_netns`` is False only for ``lxc.net.0.type = none``: the container then stays
    in the host's network namespace.  ``nics`` are the interfaces with every value decided;
    ``host_interfaces`` maps each veth's index to its host-side name once
    :meth:`setup_host` made it.
    """

    def __init__(self, ref: ContainerRef, nics: list[Nic]):
        self.ref = ref
        self.nics = nics
        self.needs_netns = not any(nic.type == "none" for nic in nics)
        self.tag = container_tag(ref)
        self.host_interfaces: dict[int, str] = {}
        self._netns_fd: int | None = None

    @classmethod
    def for_teardown(cls, ref: ContainerRef) -> "NetworkPlan":
        """A plan that only tears down: it needs no config, so it cleans up after a crash of
        the monitor even when the config has changed or names a bridge that is gone since
        (its :meth:`teardown` finds the links by their tag)."""
        return cls(ref, [])

    # ------------------------------------------------------------------ reporting

    def report(self) -> list[str]:
        """Warnings and notes for the user: a shared host network, keys not applied."""
        lines = []
        if not self.needs_netns:
            lines.append(
                "network: lxc.net type none: the container shares the host's network namespace "
                "and can change the host's interfaces and routes"
            )
        for nic in self.nics:
            for key in nic.ignored:
                lines.append(f"network: {key} is not applied by bdev's runtime (ignored)")
        return lines

    # ------------------------------------------------------------------ host side

    def setup_host(self, init_pid: int) -> None:
        """Create the host side once the container's init ``init_pid`` has its own network
        namespace: each veth pair with its container end created inside that namespace,
        the host end tagged, attached to its bridge and up; each phys device moved in.

        Either everything is set up or what was made is removed again.

        :raises BdevError: one sentence naming the container, the interface key and the cause
            (a host name taken, a bridge gone, init not in a namespace of its own ...).
        """
        veths = [nic for nic in self.nics if nic.type == "veth"]
        physs = [nic for nic in self.nics if nic.type == "phys"]
        if not veths and not physs:
            return
        try:
            self._check_own_netns(init_pid)
            with netlink.socket_in() as ipr:
                for nic in veths:
                    self.host_interfaces[nic.index] = self._add_veth(ipr, nic, init_pid)
                if physs:
                    self._netns_fd = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                for nic in physs:
                    self._move_phys_in(ipr, nic, init_pid)
        except BaseException as exc:
            try:
                self.teardown()
            except BdevError:
                pass  # the first error is the one to report; teardown runs again at stop
            if isinstance(exc, BdevError):
                raise exc.about(container=self.ref.label)
            raise

    def _check_own_netns(self, pid: int) -> None:
        try:
            theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError as exc:
            raise BdevError(_("cannot reach the network namespace of process {pid}: {cause}").format(
                pid=pid, cause=exc.strerror)) from exc
        if theirs == os.stat("/proc/self/ns/net").st_ino:
            raise BdevError(_("process {pid} is not in a network namespace of its own").format(pid=pid))

    def _add_veth(self, ipr: IPRoute, nic: Nic, pid: int) -> str:
        bridge = bridge_link(ipr, nic) if nic.link else None
        host = self._create_veth(ipr, nic, pid)
        index = netlink.link(ipr, host)["index"]
        try:
            netlink.call(_("tag {host}").format(host=host),
                         ipr.link, "set", index=index, ifalias=self._alias(nic, "veth", self.ref.name))
            if bridge is not None:
                netlink.call(_("attach {host} to bridge {link}").format(host=host, link=nic.link),
                             ipr.link, "set", index=index, master=bridge["index"])
            netlink.call(_("bring {host} up").format(host=host), ipr.link, "set", index=index, state="up")
        except BaseException:
            try:
                netlink.call(_("delete {host}").format(host=host), ipr.link, "del", index=index)
            except BdevError:
                pass  # tagged or not, it dies with the container's namespace
            raise
        return host

    def _create_veth(self, ipr: IPRoute, nic: Nic, pid: int) -> str:
        """Create the pair: the host end under the configured or a fresh unique name, the
        container end created directly in the container's namespace under its final name."""
        settings: dict[str, Any] = {"address": host_side_mac()}
        if nic.mtu:
            settings["mtu"] = nic.mtu
        for _attempt in range(NAME_ATTEMPTS):
            host = nic.veth_pair or generated_host_name()
            try:
                netlink.call(
                    _("create the veth pair {host} for {key}").format(host=host, key=nic.key('type')), ipr.link, "add",
                    ifname=host, kind="veth", peer={"ifname": nic.name, "net_ns_pid": pid}, **settings,
                )
                return host
            except BdevError as exc:
                if netlink.errno_of(exc) != errno.EEXIST:
                    raise
                if netlink.link(ipr, host) is None:
                    raise BdevError(
                        _("interface {name} ({key}) already exists in the container's network namespace").format(
                            name=nic.name, key=nic.key('name'))
                    ) from exc
                if nic.veth_pair:
                    raise AlreadyExists(
                        _("host interface {host} named by {key} already exists").format(
                            host=host, key=nic.key('veth.pair'))
                    ) from exc
        raise BdevError(_("found no free host-side name for {key} after {name_attempts} tries").format(
            key=nic.key('type'), name_attempts=NAME_ATTEMPTS))

    def _move_phys_in(self, ipr: IPRoute, nic: Nic, pid: int) -> None:
        device = netlink.link(ipr, nic.link)  # type: ignore[arg-type]
        if device is None:
            raise NotFound(_("host device {link} named by {key} does not exist").format(
                link=nic.link, key=nic.key('link')))
        alias = device.get("IFLA_IFALIAS") or ""
        if alias.startswith(self.tag):
            raise AlreadyExists(
                _("host device {link} named by {key} is still marked as this container's by an earlier start that "
                  "was not cleaned up (stopping the container gives it back)").format(
                    link=nic.link, key=nic.key('link'))
            )
        if alias.startswith("bdev:"):
            raise AlreadyExists(_("host device {link} named by {key} is in use by another container").format(
                link=nic.link, key=nic.key('link')))
        index = device["index"]
        netlink.call(_("tag {link}").format(link=nic.link),
                     ipr.link, "set", index=index, ifalias=self._alias(nic, "phys", nic.link))
        netlink.call(_("move {link} into the container").format(link=nic.link),
                     ipr.link, "set", index=index, net_ns_pid=pid)

    def _alias(self, nic: Nic, role: str, detail: str) -> str:
        """``bdev:<digest>:<N>:<role>:<detail>``, cut to :data:`ALIAS_MAX` bytes (only a long
        container name in a veth's ``detail`` can reach that)."""
        alias = f"{self.tag}{nic.index}:{role}:{detail}".encode()
        return alias[:ALIAS_MAX].decode(errors="ignore")

    # ------------------------------------------------------------------ container side

    def setup_inside(self) -> None:
        """Configure the container's side from inside its network namespace (in its init,
        after :meth:`setup_host` returned, before exec): loopback up; each interface renamed
        (phys), given its MAC, MTU and addresses, brought up, and its gateways routed.

        :raises BdevError: one sentence naming the container, the interface key and the cause.
        """
        if not self.needs_netns:
            return
        try:
            with netlink.socket_in() as ipr:
                loopback = netlink.link(ipr, "lo")
                netlink.call(_("bring the loopback interface up"), ipr.link, "set", index=loopback["index"], state="up")
                for nic in self.nics:
                    if nic.type in ("veth", "phys"):
                        _configure_inside(ipr, nic)
        except BdevError as exc:
            raise exc.about(container=self.ref.label)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Remove what :meth:`setup_host` made, in this or a later process: phys devices go
        back to the host under their own names, tagged host-side veths are deleted (the
        kernel deletes them with the namespace, but not always in time).  Idempotent.

        :raises BdevError: a device could not be returned or deleted (all others were).
        """
        problems: list[str] = []
        if self._netns_fd is not None:
            try:
                self._return_phys_from_netns(problems)
            finally:
                os.close(self._netns_fd)
                self._netns_fd = None
        with netlink.socket_in() as ipr:
            for message in netlink.links_with_alias(ipr, self.tag):
                name, role = message.get("IFLA_IFNAME"), _role(message)
                try:
                    if role == "phys":
                        _restore_phys_name(ipr, message, problems)
                    else:
                        netlink.call(_("delete {name}").format(name=name), ipr.link, "del", index=message["index"])
                except BdevError as exc:
                    if netlink.errno_of(exc) != errno.ENODEV:
                        problems.append(str(exc))
        self.host_interfaces.clear()
        if problems:
            raise BdevError("; ".join(problems), container=self.ref.label)

    def _return_phys_from_netns(self, problems: list[str]) -> None:
        """Send each tagged phys device from the container's namespace (kept alive by our
        descriptor) back to ours, under its host name."""
        host_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with netlink.socket_in(f"/proc/self/fd/{self._netns_fd}") as inside:
                for message in netlink.links_with_alias(inside, self.tag):
                    if _role(message) != "phys":
                        continue
                    name, original = message.get("IFLA_IFNAME"), _original_name(message)
                    try:
                        netlink.call(_("bring {name} down").format(name=name),
                                     inside.link, "set", index=message["index"], state="down")
                        if name != original:
                            netlink.call(_("rename {name} back to {original}").format(name=name, original=original),
                                         inside.link, "set",
                                         index=message["index"], ifname=original)
                        netlink.call(_("return {original} to the host").format(original=original), inside.link, "set",
                                     index=message["index"], net_ns_fd=host_netns)
                    except BdevError as exc:
                        problems.append(str(exc))
        finally:
            os.close(host_netns)


def _role(message: Any) -> str:
    parts = (message.get("IFLA_IFALIAS") or "").split(":")
    return parts[3] if len(parts) > 3 else ""


def _original_name(message: Any) -> str:
    return (message.get("IFLA_IFALIAS") or "").split(":", 4)[4]


def _restore_phys_name(ipr: IPRoute, message: Any, problems: list[str]) -> None:
    """A phys device back on the host (returned by us, or by the kernel when the container's
    namespace died): its host name again, its tag removed."""
    name, original, index = message.get("IFLA_IFNAME"), _original_name(message), message["index"]
    if name != original:
        if netlink.link(ipr, original) is not None:
            problems.append(_("host device {original} came back as {name}: the name {original} is taken").format(
                original=original, name=name))
            return
        netlink.call(_("bring {name} down").format(name=name), ipr.link, "set", index=index, state="down")
        netlink.call(_("rename {name} back to {original}").format(name=name, original=original),
                     ipr.link, "set", index=index, ifname=original)
    netlink.call(_("untag {original}").format(original=original), ipr.link, "set", index=index, ifalias="")


def _configure_inside(ipr: IPRoute, nic: Nic) -> None:
    arrived = nic.link if nic.type == "phys" else nic.name
    message = netlink.link(ipr, arrived)  # type: ignore[arg-type]
    if message is None:
        raise BdevError(_("interface {arrived} for {key} is not in the container's network namespace").format(
            arrived=arrived, key=nic.key('type')))
    index = message["index"]
    settings: dict[str, Any] = {}
    if arrived != nic.name:
        if netlink.link(ipr, nic.name) is not None:
            raise AlreadyExists(_("interface {name} ({key}) already exists in the container").format(
                name=nic.name, key=nic.key('name')))
        settings["ifname"] = nic.name
    if nic.hwaddr:
        settings["address"] = nic.hwaddr
    if nic.mtu:
        settings["mtu"] = nic.mtu
    if settings:
        netlink.call(_("configure {name} ({key})").format(name=nic.name, key=nic.key('type')),
                     ipr.link, "set", index=index, **settings)
    for address in nic.ipv4 + nic.ipv6:
        _add_address(ipr, nic, index, address)
    if nic.up:
        netlink.call(_("bring {name} up").format(name=nic.name), ipr.link, "set", index=index, state="up")
    for gateway, family in ((nic.ipv4_gateway, "ipv4"), (nic.ipv6_gateway, "ipv6")):
        if gateway is not None:
            _add_default_route(ipr, nic, index, gateway, family)


def _add_address(ipr: IPRoute, nic: Nic, index: int, address: Address) -> None:
    interface = address.interface
    family = "ipv4" if interface.version == 4 else "ipv6"
    extra = {"broadcast": str(address.broadcast)} if address.broadcast else {}
    netlink.call(
        _("add {interface} to {name} ({key})").format(
            interface=interface, name=nic.name, key=nic.key(family + '.address')), ipr.addr, "add",
        index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen, **extra,
    )


def _add_default_route(ipr: IPRoute, nic: Nic, index: int, gateway: Any, family: str) -> None:
    """The default route of ``family`` through the interface: on-link for ``dev``, else via
    ``gateway``, with a host route to a gateway outside the interface's subnets first (as
    LXC does)."""
    what = f"({nic.key(family + '.gateway')})"
    family_number = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    default = "0.0.0.0/0" if family == "ipv4" else "::/0"
    if gateway == "dev":
        netlink.call(_("add the default route on {name} {what}").format(name=nic.name, what=what), ipr.route, "add",
                     family=family_number, dst=default, oif=index, scope=RT_SCOPE_LINK)
        return
    subnets = [a.interface.network for a in nic.ipv4 + nic.ipv6 if a.interface.version == gateway.version]
    if not gateway.is_link_local and not any(gateway in subnet for subnet in subnets):
        netlink.call(_("add a route to the gateway {gateway} on {name} {what}").format(
            gateway=gateway, name=nic.name, what=what), ipr.route, "add",
                     family=family_number, dst=f"{gateway}/{gateway.max_prefixlen}", oif=index, scope=RT_SCOPE_LINK)
    netlink.call(_("add the default route via {gateway} {what}").format(gateway=gateway, what=what), ipr.route, "add",
                 family=family_number, dst=default, gateway=str(gateway), oif=index)
