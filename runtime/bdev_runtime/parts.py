"""The runtime's other parts for one container, planned (and so validated) together.

:func:`plan_parts` asks the cgroup, security and network packages for their plans in the
parent, before anything is mounted or started: a bad limit, an unknown capability or a
missing bridge is refused there, as one sentence naming the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bdev.errors import BdevError
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef

if TYPE_CHECKING:
    from .cgroups import ContainerCgroup
    from .network import NetworkPlan
    from .security import SecurityPlan


@dataclass
class Parts:
    """The container's cgroup, security plan and network plan."""

    cgroup: "ContainerCgroup"
    security: "SecurityPlan"
    network: "NetworkPlan"

    def report(self) -> list[str]:
        """What the security and network plans say about themselves (for logs and info)."""
        return list(self.security.report()) + list(getattr(self.network, "report", lambda: [])())


def plan_parts(ref: ContainerRef, config: LxcConfig) -> Parts:
    """Plan and validate the cgroup, security and network of ``ref``.

    :raises BdevError: any part refuses the config.
    """
    from .cgroups import container_cgroup
    from .network import network_plan
    from .security import security_plan

    try:
        cgroup = container_cgroup(ref, config)
        cgroup.validate()
        return Parts(cgroup=cgroup, security=security_plan(ref, config), network=network_plan(ref, config))
    except BdevError as exc:
        raise exc.about(container=ref.label) from None

