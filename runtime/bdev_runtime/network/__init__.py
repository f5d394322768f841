"""Container networking: ``lxc.net.N.*`` (and LXC 1.0's ``lxc.network.*``) set up with netlink.

Types: ``empty`` (loopback only), ``none`` (the host's network namespace), ``veth`` (a host
side, optionally on a bridge, and a container side with MAC, MTU, addresses and gateways) and
``phys`` (a host device moved in and back).  ``macvlan``, ``ipvlan`` and ``vlan`` are refused.

The runtime calls, in this order: :func:`network_plan` in the parent before anything is
mounted; :meth:`NetworkPlan.setup_host` once the container's init has its network namespace;
:meth:`NetworkPlan.setup_inside` in that init once ``setup_host`` returned;
:meth:`NetworkPlan.teardown` after the container stopped (or in the next command after a
crash of the monitor).
"""

from .nics import Address, Nic, read_nics
from .plan import NetworkPlan, container_tag, network_plan

__all__ = ["Address", "Nic", "NetworkPlan", "container_tag", "network_plan", "read_nics"]
