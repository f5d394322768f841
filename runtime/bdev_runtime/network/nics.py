"""A container's network interfaces as its config describes them (``lxc.net.N.*``).

LXC 1.0's ``lxc.network.*`` keys are read through :func:`bdev.store.legacy.upgrade_keys`, which
numbers them as LXC did (a new interface at each ``lxc.network.type``).  Every value is checked
here, in the parent, before anything is created: a bad value is one sentence naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from bdev.errors import InvalidInput, NotSupported
from bdev.store.config import LxcConfig, expand_hwaddr
from bdev.store.legacy import upgrade_keys
from .._i18n import _

IFNAMSIZ = 16
"""The kernel's interface name buffer: names have at most 15 bytes."""

MTU_MIN, MTU_MAX = 68, 65535
"""The MTUs accepted: IPv4's minimum up to the largest a veth takes."""

TYPES = ("empty", "none", "veth", "phys")
"""The interface types this runtime sets up."""

REFUSED_TYPES = ("macvlan", "ipvlan", "vlan")
"""Types LXC knows that this runtime refuses (with one sentence) instead of half doing them."""

IGNORED_KEYS = (
    "l2proxy", "script.up", "script.down", "veth.mode", "veth.ipv4.route", "veth.ipv6.route",
    "veth.vlan.id", "veth.vlan.tagged.id", "veth.n_rxqueues", "veth.n_txqueues",
    "macvlan.mode", "ipvlan.mode", "ipvlan.isolation", "vlan.id",
)
"""Keys LXC accepts that this runtime does not apply: reported, not refused."""

KNOWN_KEYS = (
    "type", "flags", "link", "name", "hwaddr", "mtu", "veth.pair",
    "ipv4.address", "ipv4.gateway", "ipv6.address", "ipv6.gateway",
)
"""The keys this runtime applies."""

_NET_KEY = re.compile(r"^lxc\.net\.(\d+)\.(.+)$")
_MAC_PATTERN = re.compile(r"^[0-9A-Fa-fXx]{2}(?::[0-9A-Fa-fXx]{2}){5}$")


@dataclass(frozen=True)
class Address:
    """One address of an interface: ``interface`` (address and prefix) and, for IPv4, the
    ``broadcast`` address (computed as LXC does when the config gives none)."""

    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    broadcast: ipaddress.IPv4Address | None = None


Gateway = ipaddress.IPv4Address | ipaddress.IPv6Address | str | None
"""A gateway: an address, ``"auto"`` (the bridge's address), ``"dev"`` (on-link) or None."""


@dataclass
class Nic:
    """One ``lxc.net.N`` interface.

    ``index`` is N; ``type`` one of :data:`TYPES`; ``name`` the name inside the container
    (``lxc.net.N.name``, else ``ethK``); ``link`` the bridge (veth) or host device (phys);
    ``up`` whether ``flags = up``; ``hwaddr`` the MAC with any ``x`` template filled;
    ``mtu``; ``ipv4``/``ipv6`` the addresses; ``ipv4_gateway``/``ipv6_gateway``;
    ``veth_pair`` the host-side name the config asks for; ``ignored`` the keys LXC knows
    that are not applied here.
    """

    index: int
    type: str = ""
    name: str = ""
    link: str | None = None
    up: bool = False
    hwaddr: str | None = None
    mtu: int | None = None
    ipv4: list[Address] = field(default_factory=list)
    ipv6: list[Address] = field(default_factory=list)
    ipv4_gateway: Gateway = None
    ipv6_gateway: Gateway = None
    veth_pair: str | None = None
    ignored: list[str] = field(default_factory=list)

    def key(self, sub: str) -> str:
        """The config key of ``sub`` for this interface (``lxc.net.0.link``)."""
        return f"lxc.net.{self.index}.{sub}"


def check_ifname(name: str, key: str) -> str:
    """Return ``name`` if the kernel accepts it as an interface name (``dev_valid_name``).

    :raises InvalidInput: empty, longer than 15 bytes, ``.``/``..``, or holding ``/``, ``:``
        or a blank.
    """
    size = len(name.encode("utf-8", "surrogateescape"))
    if not name:
        raise InvalidInput(_("{key} is empty").format(key=key))
    if size >= IFNAMSIZ:
        raise InvalidInput(_("{key} = {name} is {size} bytes long, more than the kernel's limit of {value}").format(
            key=key, name=name, size=size, value=IFNAMSIZ - 1))
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise InvalidInput(_("{key} = {name!r} is not a valid interface name (no '/', ':', blanks, '.' or '..')").format(
            key=key, name=name))
    return name


def read_nics(config: LxcConfig) -> list[Nic]:
    """The interfaces of ``config`` in index order, every value checked.

    An empty ``lxc.net =`` (or LXC 1.0's ``lxc.network =``) line drops the interfaces above
    it, as in LXC.

    :raises InvalidInput: an unknown key, a bad value, a missing type, ``none`` combined
        with other interfaces, two interfaces with one name.
    :raises NotSupported: a type LXC has that this runtime does not set up (macvlan ...).
    """
    raw: dict[int, list[tuple[str, str]]] = {}
    for key, value in upgrade_keys(config):
        if key == "lxc.net":
            if value.strip():
                raise InvalidInput(_("lxc.net = {value} is not valid (only an empty value, which clears the "
                                     "interfaces)").format(
                    value=value))
            raw.clear()
            continue
        match = _NET_KEY.match(key)
        if match:
            raw.setdefault(int(match[1]), []).append((match[2], value.strip()))
        elif key.startswith("lxc.net."):
            raise InvalidInput(_("{key} is not a network key (expected lxc.net.<index>.<key>)").format(key=key))
    nics = [_read_nic(index, raw[index]) for index in sorted(raw)]
    _check_together(nics)
    _default_names(nics)
    return nics


def _read_nic(index: int, entries: list[tuple[str, str]]) -> Nic:
    nic = Nic(index)
    for sub, value in entries:
        if sub in IGNORED_KEYS:
            nic.ignored.append(nic.key(sub))
        elif sub in KNOWN_KEYS:
            _set(nic, sub, value)
        else:
            raise InvalidInput(_("{key} is not a network key LXC knows").format(key=nic.key(sub)))
    if not nic.type:
        raise InvalidInput(_("{key} is missing (one of {types})").format(key=nic.key('type'), types=', '.join(TYPES)))
    if nic.type in REFUSED_TYPES:
        raise NotSupported(
            _("{key} = {type} is not supported by bdev's runtime (it sets up {types})").format(
                key=nic.key('type'), type=nic.type, types=', '.join(TYPES))
        )
    if nic.type == "phys" and not nic.link:
        raise InvalidInput(_("{key} must name the host device a phys interface moves into the container").format(
            key=nic.key('link')))
    for family, gateway in (("ipv4", nic.ipv4_gateway), ("ipv6", nic.ipv6_gateway)):
        if gateway is not None and not nic.up:
            raise InvalidInput(_("{key} needs {key2} = up (a gateway needs a running interface)").format(
                key=nic.key(family + '.gateway'), key2=nic.key('flags')))
        if gateway == "auto" and (nic.type != "veth" or not nic.link):
            raise InvalidInput(_("{key} = auto needs a veth interface with a bridge in {key2}").format(
                key=nic.key(family + '.gateway'), key2=nic.key('link')))
    return nic


def _set(nic: Nic, sub: str, value: str) -> None:
    key = nic.key(sub)
    if sub == "type":
        if value not in TYPES + REFUSED_TYPES:
            raise InvalidInput(_("{key} = {value} is not an interface type (one of {types})").format(
                key=key, value=value, types=', '.join(TYPES)))
        nic.type = value
    elif sub == "flags":
        if value not in ("", "up"):
            raise InvalidInput(_("{key} = {value} is not valid (the only flag is 'up')").format(key=key, value=value))
        nic.up = value == "up"
    elif sub == "link":
        nic.link = check_ifname(value, key) if value else None
    elif sub == "name":
        nic.name = check_ifname(value, key) if value else ""
    elif sub == "veth.pair":
        nic.veth_pair = check_ifname(value, key) if value else None
    elif sub == "hwaddr":
        nic.hwaddr = _hwaddr(value, key) if value else None
    elif sub == "mtu":
        nic.mtu = _mtu(value, key) if value else None
    elif sub == "ipv4.address":  # repeated lines add addresses; an empty one clears them
        nic.ipv4 = nic.ipv4 + [_ipv4_address(value, key)] if value else []
    elif sub == "ipv6.address":
        nic.ipv6 = nic.ipv6 + [_ipv6_address(value, key)] if value else []
    elif sub == "ipv4.gateway":
        nic.ipv4_gateway = _gateway(value, key, ipaddress.IPv4Address)
    elif sub == "ipv6.gateway":
        nic.ipv6_gateway = _gateway(value, key, ipaddress.IPv6Address)


def _hwaddr(value: str, key: str) -> str:
    if not _MAC_PATTERN.match(value):
        raise InvalidInput(_("{key} = {value} is not a MAC address (six hex octets such as 00:16:3e:xx:xx:xx)").format(
            key=key, value=value))
    mac = expand_hwaddr(value).lower()
    if int(mac[:2], 16) & 1:
        raise InvalidInput(_("{key} = {value} is a multicast address (the first octet must be even)").format(
            key=key, value=value))
    if mac == "00:00:00:00:00:00":
        raise InvalidInput(_("{key} = {value} is the all-zero address").format(key=key, value=value))
    return mac


def _mtu(value: str, key: str) -> int:
    if not value.isdigit() or not MTU_MIN <= int(value) <= MTU_MAX:
        raise InvalidInput(_("{key} = {value} is not an MTU (a number from {mtu_min} to {mtu_max})").format(
            key=key, value=value, mtu_min=MTU_MIN, mtu_max=MTU_MAX))
    return int(value)


def _ipv4_address(value: str, key: str) -> Address:
    """``a.b.c.d[/prefix] [broadcast]``: without a prefix the class's (as LXC)."""
    parts = value.split()
    if len(parts) > 2:
        raise InvalidInput(_("{key} = {value} is not an IPv4 address (expected ADDRESS/PREFIX [BROADCAST])").format(
            key=key, value=value))
    text = parts[0]
    try:
        if "/" not in text:
            text += f"/{_classful_prefix(ipaddress.IPv4Address(text))}"
        interface = ipaddress.IPv4Interface(text)
        broadcast = ipaddress.IPv4Address(parts[1]) if len(parts) > 1 else None
    except ValueError as exc:
        raise InvalidInput(_("{key} = {value} is not an IPv4 address ({error})").format(
            key=key, value=value, error=exc)) from None
    if broadcast is None and interface.network.prefixlen < 31:
        broadcast = interface.network.broadcast_address
    return Address(interface, broadcast)


def _classful_prefix(address: ipaddress.IPv4Address) -> int:
    first = int(address) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24


def _ipv6_address(value: str, key: str) -> Address:
    """``address[/prefix]``, /64 when no prefix is given (as LXC)."""
    text = value if "/" in value else f"{value}/64"
    try:
        return Address(ipaddress.IPv6Interface(text))
    except ValueError as exc:
        raise InvalidInput(_("{key} = {value} is not an IPv6 address ({error})").format(
            key=key, value=value, error=exc)) from None


def _gateway(value: str, key: str, kind: type) -> Gateway:
    if not value:
        return None
    if value in ("auto", "dev"):
        return value
    try:
        return kind(value)
    except ValueError:
        family = "IPv4" if kind is ipaddress.IPv4Address else "IPv6"
        raise InvalidInput(_("{key} = {value} is not an {family} address, 'auto' or 'dev'").format(
            key=key, value=value, family=family)) from None


def _check_together(nics: list[Nic]) -> None:
    types = {nic.type for nic in nics}
    if "none" in types and len(nics) > 1:
        raise InvalidInput(_("lxc.net type 'none' (share the host's network) cannot be combined with other "
                             "interfaces"))
    pairs: dict[str, Nic] = {}
    links: dict[str, Nic] = {}
    for nic in nics:
        if nic.veth_pair:
            other = pairs.setdefault(nic.veth_pair, nic)
            if other is not nic:
                raise InvalidInput(_("{key} and {key2} both name {veth_pair}").format(
                    key=nic.key('veth.pair'), key2=other.key('veth.pair'), veth_pair=nic.veth_pair))
        if nic.type == "phys" and nic.link:
            other = links.setdefault(nic.link, nic)
            if other is not nic:
                raise InvalidInput(_("{key} and {key2} both move {link} into the container").format(
                    key=nic.key('link'), key2=other.key('link'), link=nic.link))


def _default_names(nics: list[Nic]) -> None:
    """Give unnamed veth/phys interfaces the first free ``ethK``; refuse duplicate names."""
    inside = [nic for nic in nics if nic.type in ("veth", "phys")]
    seen: dict[str, Nic] = {}
    for nic in inside:
        if nic.name == "lo":
            raise InvalidInput(_("{key} = lo is the container's loopback interface").format(key=nic.key('name')))
        if nic.name:
            other = seen.setdefault(nic.name, nic)
            if other is not nic:
                raise InvalidInput(_("{key} and {key2} both name the interface {name}").format(
                    key=nic.key('name'), key2=other.key('name'), name=nic.name))
    counter = 0
    for nic in inside:
        if nic.name:
            continue
        while f"eth{counter}" in seen:
            counter += 1
        nic.name = f"eth{counter}"
        seen[nic.name] = nic
