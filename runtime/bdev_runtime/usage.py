"""What a running container uses, as ``lxc-info -S`` prints it: CPU time, block I/O, memory
and kernel memory from its cgroup, and the bytes each of its host-side network links carried.

The links are found the way each runtime keeps them: the host ends bdev's runtime made carry
its tag (:func:`~bdev_runtime.network.plan.container_tag`); a container real LXC runs is asked
for its live ``lxc.net.N.veth.pair`` (LXC's ``GET_CONFIG_ITEM``), which names the host end it
generated.  Sent and received are the container's point of view, as LXC prints them: what the
host end received, the container sent.  Labels and units stay as LXC writes them, untranslated,
for the scripts that read them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from bdev.errors import BdevError
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

#: How many ``lxc.net.N`` entries are asked of real LXC at most.
MAX_NICS = 64


@dataclass
class LinkUsage:
    """One host-side link of the container and the bytes it carried (None: unreadable)."""

    name: str
    sent: int | None
    received: int | None


@dataclass
class Usage:
    """A running container's usage; None where the host cannot tell."""

    cpu_ns: int | None = None
    block_io: int | None = None
    memory: int | None = None
    kernel_memory: int | None = None
    links: list[LinkUsage] = field(default_factory=list)


def container_usage(ref: ContainerRef, config: LxcConfig, *, managed_by: str) -> Usage:
    """``ref``'s usage now; ``managed_by`` is ``bdev`` or ``lxc`` (who runs it)."""
    from .cgroups import container_cgroup

    found = Usage(links=[_link_usage(name) for name in host_links(ref, config, managed_by=managed_by)])
    with contextlib.suppress(BdevError, OSError):
        cgroup = container_cgroup(ref, config)
        found.cpu_ns = cgroup.cpu_usage_ns()
        found.block_io = cgroup.block_io_bytes()
        found.memory = cgroup.memory_usage()[0]
        found.kernel_memory = cgroup.kernel_memory_usage()
    return found


def host_links(ref: ContainerRef, config: LxcConfig, *, managed_by: str) -> list[str]:
    """The host-side names of ``ref``'s veth links, in ``lxc.net.N`` order."""
    if managed_by == "lxc":
        from . import lxccmd

        names = []
        for index in range(MAX_NICS):
            kind = lxccmd.config_item(ref, f"lxc.net.{index}.type")
            if kind is None:
                break
            pair = lxccmd.config_item(ref, f"lxc.net.{index}.{'veth.pair' if kind == 'veth' else 'link'}")
            if pair:
                names.append(pair)
        return names
    from .network import netlink
    from .network.plan import container_tag

    tag = container_tag(ref)
    try:
        with netlink.socket_in() as ipr:
            tagged = [(msg.get("IFLA_IFALIAS") or "", msg.get("IFLA_IFNAME") or "") for msg in netlink.links_with_alias(ipr, tag)]
    except BdevError:
        return []
    veths = [(alias[len(tag):].split(":"), name) for alias, name in tagged]
    return [name for fields, name in sorted(veths, key=lambda item: int(item[0][0]) if item[0][0].isdigit() else 0)
            if fields[1:2] == ["veth"]]


def _link_usage(name: str) -> LinkUsage:
    statistics = Path("/sys/class/net") / name / "statistics"
    return LinkUsage(name, _read_number(statistics / "rx_bytes"), _read_number(statistics / "tx_bytes"))


def _read_number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def humanized(size: int) -> str:
    """A byte count as LXC's ``lxc-info`` writes it (its ``size_humanize``: ``660.00 KiB``,
    two decimals cut, not rounded, except the small rounding LXC adds)."""
    if size > 1 << 30:
        return f"{size >> 30}.{(size & ((1 << 30) - 1)) // 10737419:02d} GiB"
    if size > 1 << 20:
        rounded = size + 5243
        return f"{rounded >> 20}.{((rounded & ((1 << 20) - 1)) * 100) >> 20:02d} MiB"
    if size > 1 << 10:
        rounded = size + 5
        return f"{rounded >> 10}.{((rounded & ((1 << 10) - 1)) * 100) >> 10:02d} KiB"
    return f"{size} bytes"


def usage_lines(usage: Usage, *, humanize: bool) -> list[tuple[str, str]]:
    """``(label, value)`` pairs in ``lxc-info -S``'s order; what is unknown is left out."""
    def size(value: int) -> str:
        return humanized(value) if humanize else str(value)

    lines: list[tuple[str, str]] = []
    if usage.cpu_ns is not None:
        lines.append(("CPU use", f"{usage.cpu_ns / 1e9:.2f} seconds" if humanize else str(usage.cpu_ns)))
    for label, value in (("BlkIO use", usage.block_io), ("Memory use", usage.memory),
                         ("KMem use", usage.kernel_memory)):
        if value is not None:
            lines.append((label, size(value)))
    for link in usage.links:
        lines.append(("Link", link.name))
        if link.sent is not None and link.received is not None:
            lines += [(" TX bytes", size(link.sent)), (" RX bytes", size(link.received)),
                      (" Total bytes", size(link.sent + link.received))]
    return lines
