"""Container networking (``bdev_runtime.network``) on real namespaces and links.

Every test that makes a link runs in a "host" process forked into a network namespace of its
own, and the "container" is a grandchild in another one: the machine's real interfaces and
routes are never touched, and whatever a test makes dies with its namespaces, even when it
fails (both children have SIGKILL as their parent-death signal and are killed in finalizers).
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import re
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from bdev.errors import AlreadyExists, BdevError, InvalidInput, NotFound, NotSupported
from bdev.store.config import LxcConfig
from bdev.store.layout import ContainerRef
from bdev_runtime.network import NetworkPlan, container_tag, network_plan, read_nics
from bdev_runtime.network import plan as plan_module

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
IFF_UP = 0x1
TIMEOUT = 60.0
PORT = 7070
_libc = ctypes.CDLL(None, use_errno=True)

root = pytest.mark.root


# ---------------------------------------------------------------------------- forked namespaces


class ForkedError(Exception):
    """An exception raised in a forked process: its class name and message."""

    def __init__(self, kind: str, message: str, trace: str):
        super().__init__(f"{kind}: {message}\n{trace}")
        self.kind, self.message = kind, message


class Forked:
    """A forked process, in a network namespace of its own, that runs ``body`` once
    :meth:`release` is called and sends back its result (or its exception)."""

    def __init__(self, body: Callable[[], Any]):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                for fd in (ready_r, go_w, out_r):
                    os.close(fd)
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if _libc.unshare(CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
                os.write(ready_w, b"r")
                if os.read(go_r, 1) == b"g":
                    try:
                        payload: tuple = ("ok", body())
                    except BaseException as exc:  # noqa: BLE001 - sent to the parent
                        payload = ("error", type(exc).__name__, str(exc), traceback.format_exc())
                    with os.fdopen(out_w, "wb") as out:
                        out.write(pickle.dumps(payload))
                code = 0
            finally:
                os._exit(code)
        for fd in (ready_w, go_r, out_w):
            os.close(fd)
        self.pid, self._go, self._out = pid, go_w, out_r
        self._reaped = False
        if not _wait_readable(ready_r, TIMEOUT) or os.read(ready_r, 1) != b"r":
            os.close(ready_r)
            self.kill()
            raise AssertionError("the forked process did not make its network namespace")
        os.close(ready_r)

    def release(self) -> None:
        """Let the body run."""
        os.write(self._go, b"g")

    def result(self, timeout: float = TIMEOUT) -> Any:
        """The body's return value; its exception as :class:`ForkedError`."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            if not _wait_readable(self._out, deadline - time.monotonic()):
                self.kill()
                raise AssertionError(f"the forked process {self.pid} did not finish within {timeout} s")
            chunk = os.read(self._out, 65536)
            if not chunk:
                break
            data += chunk
        self._reap()
        if not data:
            raise AssertionError(f"the forked process {self.pid} died without a result")
        payload = pickle.loads(data)
        if payload[0] == "error":
            raise ForkedError(*payload[1:])
        return payload[1]

    def kill(self) -> None:
        """SIGKILL and reap it (nothing it made survives its namespace); idempotent."""
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        for fd in (self._go, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        self._go = self._out = -1

    def _reap(self) -> None:
        if not self._reaped:
            os.waitpid(self.pid, 0)
            self._reaped = True


def _wait_readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], max(timeout, 0))[0])


def in_host_netns(scenario: Callable[[], Any]) -> Any:
    """Run ``scenario`` in a fresh network namespace playing the host; its result."""
    host = Forked(scenario)
    try:
        host.release()
        return host.result(timeout=TIMEOUT * 2)
    finally:
        host.kill()


class FakeContainer:
    """The container's init, for the host scenario: a forked process in a new network
    namespace that, when released, runs ``before()``, the plan's ``setup_inside``, then
    ``then()``, and reports what its namespace holds."""

    def __init__(self, plan: NetworkPlan, then: Callable[[], Any] = lambda: None,
                 before: Callable[[], Any] = lambda: None):
        def body() -> Any:
            before()
            plan.setup_inside()
            return {"then": then(), "links": links_here(), "addresses": addresses_here(), "routes": routes_here()}

        self.process = Forked(body)
        self.pid = self.process.pid

    def run(self) -> dict:
        self.process.release()
        try:
            return self.process.result()
        finally:
            self.process.kill()


# ---------------------------------------------------------------------------- observations


def links_here() -> dict[str, dict]:
    """Every interface of this process's namespace, by name."""
    with IPRoute() as ipr:
        return {
            msg.get("IFLA_IFNAME"): {
                "index": msg["index"],
                "up": bool(msg["flags"] & IFF_UP),
                "mac": msg.get("IFLA_ADDRESS"),
                "mtu": msg.get("IFLA_MTU"),
                "alias": msg.get("IFLA_IFALIAS"),
                "master": msg.get("IFLA_MASTER"),
                "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            }
            for msg in ipr.get_links()
        }


def addresses_here() -> dict[str, list[str]]:
    """Every address (``a/prefix``) by interface name, link-local IPv6 left out."""
    names = {name: info["index"] for name, info in links_here().items()}
    by_index = {index: name for name, index in names.items()}
    out: dict[str, list[str]] = {}
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            address = msg.get("IFA_ADDRESS")
            if address.startswith("fe80:"):
                continue
            out.setdefault(by_index[msg["index"]], []).append(f"{address}/{msg['prefixlen']}")
    return out


def routes_here() -> list[tuple[str, str | None]]:
    """The default routes: ``(family, gateway or None)``."""
    out = []
    with IPRoute() as ipr:
        for family, name in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
            for msg in ipr.get_routes(family=family, table=254):
                if msg["dst_len"] == 0:
                    out.append((name, msg.get("RTA_GATEWAY")))
    return out


def tcp_echo_server(address: str, family: int = socket.AF_INET) -> tuple[threading.Thread, dict]:
    """A one-shot TCP server on ``address``, :data:`PORT`, in this namespace: answers what it
    gets, upper-cased.  (A fixed port: the namespace is the test's own, and the container,
    forked before the server exists, must know it.)"""
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((address, PORT))
    server.listen(1)
    server.settimeout(TIMEOUT)
    got: dict = {}

    def serve() -> None:
        try:
            conn, peer = server.accept()
            with conn:
                got["peer"] = peer[0]
                conn.sendall(conn.recv(100).upper())
        finally:
            server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, got


def tcp_ask(address: str, port: int = PORT, family: int = socket.AF_INET, patience: float = 10.0) -> str:
    """Send ``hello`` to ``address:port`` and return the answer (retrying while IPv6 DAD or
    the bridge's forwarding delay makes the path not ready yet)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                conn.sendall(b"hello")
                return conn.recv(100).decode()
        except OSError as exc:
            if time.monotonic() > deadline or exc.errno not in (errno.EADDRNOTAVAIL, errno.ENETUNREACH,
                                                                  errno.EHOSTUNREACH, errno.ETIMEDOUT, None):
                raise
            time.sleep(0.2)


def add_link(**kwargs: Any) -> int:
    """Create a link in this (test-made) namespace; its index."""
    with IPRoute() as ipr:
        ipr.link("add", **kwargs)
        return ipr.link_lookup(ifname=kwargs["ifname"])[0]


def configure(name: str, *addresses: str, mtu: int | None = None) -> None:
    """Give interface ``name`` addresses (``a/prefix``), optionally an MTU, and bring it up."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        if mtu:
            ipr.link("set", index=index, mtu=mtu)
        for text in addresses:
            address, prefix = text.split("/")
            ipr.addr("add", index=index, address=address, prefixlen=int(prefix))
        ipr.link("set", index=index, state="up")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def ref(tmp_path: Path) -> ContainerRef:
    return ContainerRef(tmp_path / "lxc", "c1")


def config(text: str) -> LxcConfig:
    return LxcConfig.parse(text.strip() + "\n")


VETH = """
lxc.net.0.type = veth
lxc.net.0.flags = up
lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx
lxc.net.0.mtu = 1400
lxc.net.0.ipv4.address = 10.200.0.2/24
lxc.net.0.ipv4.gateway = 10.200.0.1
lxc.net.0.ipv6.address = fd00:200::2/64
lxc.net.0.ipv6.gateway = fd00:200::1
"""


# ---------------------------------------------------------------------------- empty and none


@root
def test_empty_gives_only_loopback_up(ref: ContainerRef) -> None:
    def scenario() -> dict:
        plan = network_plan(ref, config("lxc.net.0.type = empty"))
        container = FakeContainer(plan, then=lambda: tcp_loopback())
        plan.setup_host(container.pid)
        seen = container.run()
        plan.teardown()
        return {"needs_netns": plan.needs_netns, "report": plan.report(), **seen}

    def tcp_loopback() -> str:
        thread, _ = tcp_echo_server("127.0.0.1")
        answer = tcp_ask("127.0.0.1")
        thread.join(TIMEOUT)
        return answer

    seen = in_host_netns(scenario)
    assert seen["needs_netns"] is True and seen["report"] == []
    assert list(seen["links"]) == ["lo"] and seen["links"]["lo"]["up"]
    assert seen["then"] == "HELLO"
    assert seen["routes"] == []


@pytest.mark.unprivileged
def test_none_stays_in_the_host_namespace_with_a_warning(ref: ContainerRef) -> None:
    plan = network_plan(ref, config("lxc.net.0.type = none"))
    assert plan.needs_netns is False
    assert any("shares the host's network namespace" in line for line in plan.report())
    before = links_here()
    plan.setup_host(os.getpid())  # nothing to do: no link is made, nothing is moved
    plan.setup_inside()
    plan.teardown()
    assert links_here().keys() == before.keys()


@pytest.mark.unprivileged
def test_no_network_config_means_a_private_namespace(ref: ContainerRef) -> None:
    plan = network_plan(ref, config("lxc.uts.name = c1"))
    assert plan.needs_netns is True and plan.nics == []


# ---------------------------------------------------------------------------- veth


@root
def test_veth_without_bridge_addresses_mtu_mac_routes_and_tcp_across(ref: ContainerRef) -> None:
    def scenario() -> dict:
        plan = network_plan(ref, config(VETH))
        container = FakeContainer(plan, then=lambda: tcp_ask("10.200.0.1"))
        plan.setup_host(container.pid)
        host_name = plan.host_interfaces[0]
        configure(host_name, "10.200.0.1/24", "fd00:200::1/64")
        thread, got = tcp_echo_server("10.200.0.1")
        seen = container.run()
        thread.join(TIMEOUT)
        host_before = links_here()[host_name]
        plan.teardown()
        plan.teardown()  # idempotent
        return {"host_name": host_name, "host": host_before, "peer": got.get("peer"), "hwaddr": plan.nics[0].hwaddr,
                "after": list(links_here()), **seen}

    seen = in_host_netns(scenario)
    assert re.fullmatch(r"veth[a-z0-9]{6}", seen["host_name"])
    assert seen["host"]["alias"].startswith(container_tag(ref)) and seen["host"]["mtu"] == 1400
    assert seen["host"]["mac"].startswith("fe:")
    eth0 = seen["links"]["eth0"]
    assert eth0["up"] and eth0["mtu"] == 1400
    assert re.fullmatch(r"00:16:3e(:[0-9a-f]{2}){3}", eth0["mac"]) and eth0["mac"] == seen["hwaddr"]
    assert sorted(seen["links"]) == ["eth0", "lo"] and seen["links"]["lo"]["up"]
    assert sorted(seen["addresses"]["eth0"]) == ["10.200.0.2/24", "fd00:200::2/64"]
    assert sorted(seen["routes"]) == [("ipv4", "10.200.0.1"), ("ipv6", "fd00:200::1")]
    assert seen["then"] == "HELLO" and seen["peer"] == "10.200.0.2"
    assert seen["after"] == ["lo"]


@root
def test_veth_pair_name_from_config_and_ipv6_across(ref: ContainerRef) -> None:
    text = """
lxc.net.0.type = veth
lxc.net.0.veth.pair = vc1host
lxc.net.0.name = lan0
lxc.net.0.flags = up
lxc.net.0.ipv6.address = fd00:201::2/64
"""

    def scenario() -> dict:
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan, then=lambda: tcp_ask("fd00:201::1", family=socket.AF_INET6))
        plan.setup_host(container.pid)
        with IPRoute() as ipr:  # IFA_F_NODAD: the host side answers at once
            ipr.addr("add", index=ipr.link_lookup(ifname="vc1host")[0], address="fd00:201::1", prefixlen=64,
                     flags=0x02)
        configure("vc1host")
        thread, got = tcp_echo_server("fd00:201::1", socket.AF_INET6)
        seen = container.run()
        thread.join(TIMEOUT)
        plan.teardown()
        return {"host_interfaces": dict(plan.host_interfaces), "after": list(links_here()), "peer": got.get("peer"),
                **seen}

    seen = in_host_netns(scenario)
    assert sorted(seen["links"]) == ["lan0", "lo"]
    assert seen["then"] == "HELLO" and seen["peer"] == "fd00:201::2"
    assert seen["after"] == ["lo"] and seen["host_interfaces"] == {}


@root
def test_two_interfaces_get_eth0_and_eth1_and_gateway_dev(ref: ContainerRef) -> None:
    text = """
lxc.net.0.type = empty
lxc.net.1.type = veth
lxc.net.1.flags = up
lxc.net.1.ipv4.address = 10.202.0.2/24
lxc.net.1.ipv4.gateway = dev
lxc.net.2.type = veth
lxc.net.2.ipv4.address = 10.203.0.2/24
"""

    def scenario() -> dict:
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        seen = container.run()
        names = sorted(plan.host_interfaces.values())
        plan.teardown()
        return {"names": names, **seen}

    seen = in_host_netns(scenario)
    assert len(set(seen["names"])) == 2
    assert sorted(seen["links"]) == ["eth0", "eth1", "lo"]
    assert seen["links"]["eth0"]["up"] and not seen["links"]["eth1"]["up"]  # no flags = up on net.2
    assert seen["addresses"]["eth0"] == ["10.202.0.2/24"] and seen["addresses"]["eth1"] == ["10.203.0.2/24"]
    assert seen["routes"] == [("ipv4", None)]


@root
def test_a_refusal_inside_the_container_is_one_sentence(ref: ContainerRef) -> None:
    """IPv6 switched off in the container's namespace: its address cannot be added."""
    def ipv6_off() -> None:
        Path("/proc/sys/net/ipv6/conf/eth0/disable_ipv6").write_text("1\n")

    def scenario() -> str:
        plan = network_plan(ref, config("lxc.net.0.type = veth\nlxc.net.0.ipv6.address = fd00:209::2/64"))
        container = FakeContainer(plan, before=ipv6_off)
        plan.setup_host(container.pid)
        try:
            container.run()
        except ForkedError as exc:
            return f"{exc.kind}: {exc.message}"
        finally:
            plan.teardown()
        return "no error"

    assert in_host_netns(scenario) == (
        "BdevError: container 'c1': cannot add fd00:209::2/64 to eth0 (lxc.net.0.ipv6.address): Permission denied."
    )


@root
def test_gateway_outside_the_subnet_gets_a_host_route(ref: ContainerRef) -> None:
    text = """
lxc.net.0.type = veth
lxc.net.0.flags = up
lxc.net.0.ipv4.address = 10.204.0.2/32
lxc.net.0.ipv4.gateway = 10.204.9.1
"""

    def scenario() -> dict:
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        seen = container.run()
        plan.teardown()
        return seen

    seen = in_host_netns(scenario)
    assert seen["routes"] == [("ipv4", "10.204.9.1")]


# ---------------------------------------------------------------------------- bridge


@root
def test_bridge_attach_gateway_auto_and_mtu_from_the_bridge(ref: ContainerRef) -> None:
    text = """
lxc.net.0.type = veth
lxc.net.0.link = brtest0
lxc.net.0.flags = up
lxc.net.0.ipv4.address = 10.205.0.2/24
lxc.net.0.ipv4.gateway = auto
lxc.net.0.ipv6.address = fd00:205::2/64
lxc.net.0.ipv6.gateway = auto
"""

    def scenario() -> dict:
        bridge = add_link(ifname="brtest0", kind="bridge")
        configure("brtest0", "10.205.0.1/24", "fd00:205::1/64", mtu=1450)
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan, then=lambda: tcp_ask("10.205.0.1"))
        thread, got = tcp_echo_server("10.205.0.1")
        plan.setup_host(container.pid)
        host = links_here()[plan.host_interfaces[0]]
        seen = container.run()
        thread.join(TIMEOUT)
        plan.teardown()
        return {"bridge": bridge, "host": host, "gateway": str(plan.nics[0].ipv4_gateway), "peer": got.get("peer"),
                "after": sorted(links_here()), **seen}

    seen = in_host_netns(scenario)
    assert seen["host"]["master"] == seen["bridge"] and seen["host"]["up"]
    assert seen["gateway"] == "10.205.0.1"
    assert seen["routes"] == [("ipv4", "10.205.0.1"), ("ipv6", "fd00:205::1")]
    assert seen["links"]["eth0"]["mtu"] == 1450 and seen["host"]["mtu"] == 1450
    assert seen["then"] == "HELLO" and seen["peer"] == "10.205.0.2"
    assert seen["after"] == ["brtest0", "lo"]


@root
def test_missing_bridge_is_one_sentence(ref: ContainerRef) -> None:
    def scenario() -> None:
        network_plan(ref, config("lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0"))

    with pytest.raises(ForkedError) as caught:
        in_host_netns(scenario)
    assert caught.value.kind == "NotFound"
    assert caught.value.message == "container 'c1': bridge lxcbr0 named by lxc.net.0.link does not exist on this host."


@root
def test_link_that_is_no_bridge_and_gateway_auto_without_address(ref: ContainerRef) -> None:
    def scenario() -> list[str]:
        add_link(ifname="notbr0", kind="veth", peer={"ifname": "notbr1"})
        add_link(ifname="brtest1", kind="bridge")
        out = []
        for text in ("lxc.net.0.type = veth\nlxc.net.0.link = notbr0",
                     "lxc.net.0.type = veth\nlxc.net.0.link = brtest1\nlxc.net.0.flags = up\n"
                     "lxc.net.0.ipv4.gateway = auto"):
            try:
                network_plan(ref, config(text))
            except NotFound as exc:
                out.append(str(exc))
        return out

    assert in_host_netns(scenario) == [
        "container 'c1': notbr0 named by lxc.net.0.link is not a bridge (it is a veth).",
        "container 'c1': lxc.net.0.ipv4.gateway = auto, but bridge brtest1 has no ipv4 address.",
    ]


@root
def test_bridge_gone_between_plan_and_start_leaves_no_link(ref: ContainerRef) -> None:
    def scenario() -> dict:
        add_link(ifname="brtest2", kind="bridge")
        plan = network_plan(ref, config("lxc.net.0.type = veth\nlxc.net.0.link = brtest2"))
        with IPRoute() as ipr:
            ipr.link("del", ifname="brtest2")
        container = FakeContainer(plan)
        try:
            plan.setup_host(container.pid)
        except NotFound as exc:
            error = str(exc)
        container.process.kill()
        return {"error": error, "after": sorted(links_here())}

    seen = in_host_netns(scenario)
    assert seen["error"] == "container 'c1': bridge brtest2 named by lxc.net.0.link does not exist on this host."
    assert seen["after"] == ["lo"]


# ---------------------------------------------------------------------------- names and concurrency


@root
def test_host_name_collision_is_an_error_and_the_other_link_is_untouched(ref: ContainerRef) -> None:
    text = """
lxc.net.0.type = veth
lxc.net.1.type = veth
lxc.net.1.veth.pair = taken0
"""

    def scenario() -> dict:
        add_link(ifname="taken0", kind="bridge")
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan)
        try:
            plan.setup_host(container.pid)
        except AlreadyExists as exc:
            error = str(exc)
        container.process.kill()
        return {"error": error, "after": links_here()}

    seen = in_host_netns(scenario)
    assert seen["error"] == "container 'c1': host interface taken0 named by lxc.net.1.veth.pair already exists."
    assert sorted(seen["after"]) == ["lo", "taken0"]  # net.0's veth was removed again
    assert seen["after"]["taken0"]["alias"] is None and seen["after"]["taken0"]["kind"] == "bridge"


@root
def test_generated_name_collision_is_retried(ref: ContainerRef, monkeypatch: pytest.MonkeyPatch) -> None:
    names = iter(["vethtaken", "vethtaken", "vethfree01"])
    monkeypatch.setattr(plan_module, "generated_host_name", lambda: next(names))

    def scenario() -> dict:
        add_link(ifname="vethtaken", kind="bridge")
        plan = network_plan(ref, config("lxc.net.0.type = veth"))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        chosen = plan.host_interfaces[0]
        container.run()
        plan.teardown()
        return {"chosen": chosen, "after": sorted(links_here())}

    seen = in_host_netns(scenario)
    assert seen == {"chosen": "vethfree01", "after": ["lo", "vethtaken"]}


@root
def test_concurrent_starts_and_a_later_teardown_touch_only_their_own_links(tmp_path: Path) -> None:
    """Four containers set up at once from threads (two share a name in two lxcpaths); a
    fresh plan, as in the next command after a crash of the monitor, removes exactly its
    container's link."""
    refs = [ContainerRef(tmp_path / "a", "c1"), ContainerRef(tmp_path / "b", "c1"),
            ContainerRef(tmp_path / "a", "c2"), ContainerRef(tmp_path / "a", "c3")]

    def scenario() -> dict:
        plans = [network_plan(r, config("lxc.net.0.type = veth")) for r in refs]
        containers = [FakeContainer(p) for p in plans]
        errors: list[str] = []

        def start(plan: NetworkPlan, container: FakeContainer) -> None:
            try:
                plan.setup_host(container.pid)
            except BdevError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=start, args=pair) for pair in zip(plans, containers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        during = sorted(name for name in links_here() if name != "lo")
        names = [p.host_interfaces.get(0) for p in plans]
        network_plan(refs[0], config("lxc.net.0.type = veth")).teardown()  # the "next command"
        after_one = sorted(name for name in links_here() if name != "lo")
        for plan, container in zip(plans, containers):
            container.process.kill()
            plan.teardown()
        return {"errors": errors, "during": during, "after_one": after_one,
                "names": names, "end": sorted(links_here())}

    seen = in_host_netns(scenario)
    assert seen["errors"] == []
    assert seen["during"] == sorted(seen["names"]) and len(set(seen["names"])) == 4
    assert seen["after_one"] == sorted(seen["names"][1:])
    assert seen["end"] == ["lo"]


@root
def test_cleanup_after_a_crash_needs_no_valid_config(ref: ContainerRef) -> None:
    """The bridge and the config changed after the start: the next command cannot plan the
    network any more, but a teardown-only plan still removes the container's links."""
    def scenario() -> dict:
        add_link(ifname="brtest3", kind="bridge")
        plan = network_plan(ref, config("lxc.net.0.type = veth\nlxc.net.0.link = brtest3\nlxc.net.1.type = veth"))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        during = len(links_here())
        with IPRoute() as ipr:
            ipr.link("del", ifname="brtest3")
        try:
            network_plan(ref, config("lxc.net.0.type = veth\nlxc.net.0.link = brtest3"))
        except NotFound as exc:
            error = str(exc)
        NetworkPlan.for_teardown(ref).teardown()
        after = sorted(links_here())
        container.process.kill()
        return {"during": during, "error": error, "after": after}

    seen = in_host_netns(scenario)
    assert seen["during"] == 4 and "bridge brtest3" in seen["error"] and seen["after"] == ["lo"]


@root
def test_setup_host_refuses_a_process_in_the_host_namespace(ref: ContainerRef) -> None:
    def scenario() -> str:
        plan = network_plan(ref, config("lxc.net.0.type = veth"))
        try:
            plan.setup_host(os.getpid())
        except BdevError as exc:
            return str(exc) + " | " + ",".join(sorted(links_here()))
        return "no error"

    message = in_host_netns(scenario)
    assert re.fullmatch(r"container 'c1': process \d+ is not in a network namespace of its own\. \| lo", message)


# ---------------------------------------------------------------------------- phys


@root
def test_phys_device_moves_in_renamed_and_comes_back(ref: ContainerRef) -> None:
    """A veth end stands in for a hardware NIC (the test must not borrow a real one)."""
    text = """
lxc.net.0.type = phys
lxc.net.0.link = hw0
lxc.net.0.name = eth7
lxc.net.0.flags = up
lxc.net.0.ipv4.address = 10.206.0.2/24
"""

    def scenario() -> dict:
        add_link(ifname="hw0", kind="veth", peer={"ifname": "hw0peer"})
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        during = sorted(links_here())
        seen = container.run()  # the container has exited; its namespace lives on through the plan
        plan.teardown()
        return {"during": during, "after": links_here(), **seen}

    seen = in_host_netns(scenario)
    assert seen["during"] == ["hw0peer", "lo"]
    assert sorted(seen["links"]) == ["eth7", "lo"] and seen["addresses"]["eth7"] == ["10.206.0.2/24"]
    assert sorted(seen["after"]) == ["hw0", "hw0peer", "lo"] and seen["after"]["hw0"]["alias"] is None


@root
def test_missing_phys_device_is_one_sentence(ref: ContainerRef) -> None:
    def scenario() -> None:
        network_plan(ref, config("lxc.net.0.type = phys\nlxc.net.0.link = hw9"))

    with pytest.raises(ForkedError) as caught:
        in_host_netns(scenario)
    assert caught.value.message == "container 'c1': host device hw9 named by lxc.net.0.link does not exist."


# ---------------------------------------------------------------------------- legacy keys


@root
def test_lxc_1_0_network_keys(ref: ContainerRef) -> None:
    text = """
lxc.network.type = veth
lxc.network.flags = up
lxc.network.name = eth5
lxc.network.veth.pair = vlegacy0
lxc.network.hwaddr = 00:16:3e:12:34:56
lxc.network.mtu = 1300
lxc.network.ipv4 = 10.207.0.2/24 10.207.0.255
lxc.network.ipv4.gateway = 10.207.0.1
lxc.network.type = empty
"""

    def scenario() -> dict:
        plan = network_plan(ref, config(text))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        host = sorted(links_here())
        seen = container.run()
        plan.teardown()
        return {"types": [n.type for n in plan.nics], "host": host, **seen}

    seen = in_host_netns(scenario)
    assert seen["types"] == ["veth", "empty"] and seen["host"] == ["lo", "vlegacy0"]
    eth5 = seen["links"]["eth5"]
    assert (eth5["mac"], eth5["mtu"], eth5["up"]) == ("00:16:3e:12:34:56", 1300, True)
    assert seen["addresses"]["eth5"] == ["10.207.0.2/24"] and seen["routes"] == [("ipv4", "10.207.0.1")]


# ---------------------------------------------------------------------------- validation


@pytest.mark.unprivileged
def test_mac_template_is_filled_once_per_plan_and_keeps_its_fixed_digits() -> None:
    text = "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 02:AB:xx:xx:xx:xX"
    macs = {read_nics(config(text))[0].hwaddr for _ in range(20)}
    assert all(re.fullmatch(r"02:ab(:[0-9a-f]{2}){4}", mac) for mac in macs)  # type: ignore[arg-type]
    assert len(macs) > 1
    xx = read_nics(config("lxc.net.0.type = veth\nlxc.net.0.hwaddr = xx:xx:xx:xx:xx:xx"))[0].hwaddr
    assert int(xx[:2], 16) & 1 == 0  # type: ignore[index]


@pytest.mark.unprivileged
def test_values_are_read_as_lxc_reads_them() -> None:
    nic = read_nics(config("""
lxc.net.3.type = veth
lxc.net.3.ipv4.address = 10.1.2.3
lxc.net.3.ipv4.address = 192.168.7.9/30 192.168.7.11
lxc.net.3.ipv6.address = fd00::5
lxc.net.3.script.up = /bin/true
lxc.net.1.type = empty
"""))
    assert [n.index for n in nic] == [1, 3]
    veth = nic[1]
    assert [str(a.interface) for a in veth.ipv4] == ["10.1.2.3/8", "192.168.7.9/30"]
    assert [str(a.broadcast) for a in veth.ipv4] == ["10.255.255.255", "192.168.7.11"]
    assert str(veth.ipv6[0].interface) == "fd00::5/64"
    assert veth.ignored == ["lxc.net.3.script.up"] and veth.name == "eth0"


@pytest.mark.unprivileged
def test_an_empty_lxc_net_line_clears_the_interfaces_above() -> None:
    assert [n.type for n in read_nics(config("lxc.net.0.type = veth\nlxc.net =\nlxc.net.1.type = empty"))] == ["empty"]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("text", "error", "message"), [
    ("lxc.net.0.type = macvlan", NotSupported,
     "lxc.net.0.type = macvlan is not supported by bdev's runtime (it sets up empty, none, veth, phys)"),
    ("lxc.net.0.type = bogus", InvalidInput, "lxc.net.0.type = bogus is not an interface type"),
    ("lxc.net.0.flags = up", InvalidInput, "lxc.net.0.type is missing"),
    ("lxc.net.0.type = veth\nlxc.net.0.flags = down", InvalidInput, "the only flag is 'up'"),
    ("lxc.net.0.type = veth\nlxc.net.0.name = averyveryverylongname", InvalidInput,
     "lxc.net.0.name = averyveryverylongname is 21 bytes long, more than the kernel's limit of 15"),
    ("lxc.net.0.type = veth\nlxc.net.0.veth.pair = a/b", InvalidInput, "is not a valid interface name"),
    ("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 01:00:5e:00:00:01", InvalidInput, "is a multicast address"),
    ("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:zz:00:01", InvalidInput, "is not a MAC address"),
    ("lxc.net.0.type = veth\nlxc.net.0.mtu = 9", InvalidInput, "lxc.net.0.mtu = 9 is not an MTU (a number from 68 to 65535)"),
    ("lxc.net.0.type = veth\nlxc.net.0.mtu = lots", InvalidInput, "is not an MTU"),
    ("lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.300/24", InvalidInput, "is not an IPv4 address"),
    ("lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.3/24 x y", InvalidInput, "is not an IPv4 address"),
    ("lxc.net.0.type = veth\nlxc.net.0.ipv6.address = fd00::/200", InvalidInput, "is not an IPv6 address"),
    ("lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.ipv4.gateway = 10.0.0", InvalidInput,
     "is not an IPv4 address, 'auto' or 'dev'"),
    ("lxc.net.0.type = veth\nlxc.net.0.ipv4.gateway = 10.0.0.1", InvalidInput, "needs lxc.net.0.flags = up"),
    ("lxc.net.0.type = empty\nlxc.net.0.flags = up\nlxc.net.0.ipv4.gateway = auto", InvalidInput,
     "needs a veth interface with a bridge"),
    ("lxc.net.0.type = veth\nlxc.net.0.bogus = 1", InvalidInput, "lxc.net.0.bogus is not a network key LXC knows"),
    ("lxc.net.x.type = veth", InvalidInput, "lxc.net.x.type is not a network key"),
    ("lxc.net.0.type = none\nlxc.net.1.type = veth", InvalidInput, "cannot be combined with other interfaces"),
    ("lxc.net.0.type = veth\nlxc.net.0.name = lo", InvalidInput, "is the container's loopback interface"),
    ("lxc.net.0.type = veth\nlxc.net.0.name = a\nlxc.net.1.type = veth\nlxc.net.1.name = a", InvalidInput,
     "both name the interface a"),
    ("lxc.net.0.type = veth\nlxc.net.0.veth.pair = h\nlxc.net.1.type = veth\nlxc.net.1.veth.pair = h",
     InvalidInput, "both name h"),
    ("lxc.net.0.type = phys", InvalidInput, "lxc.net.0.link must name the host device"),
    ("lxc.net = something", InvalidInput, "only an empty value"),
])
def test_bad_network_config_is_one_sentence(ref: ContainerRef, text: str, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        network_plan(ref, config(text))
    sentence = str(caught.value)
    assert sentence.startswith("container 'c1': ") and message in sentence and sentence.count("\n") == 0


@root
def test_veth_without_root_on_the_host_is_refused_before_anything(ref: ContainerRef) -> None:
    def scenario() -> str:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)  # drops CAP_NET_ADMIN
        try:
            network_plan(ref, config("lxc.net.0.type = empty\nlxc.net.1.type = veth"))
        except NotSupported as exc:
            return str(exc)
        return "no error"

    assert in_host_netns(scenario) == (
        "container 'c1': lxc.net.1.type = veth needs root on the host (bdev has no lxc-user-nic); "
        "use lxc.net.0.type = empty."
    )


@pytest.mark.unprivileged
def test_an_empty_address_line_clears_the_addresses_above() -> None:
    nic = read_nics(config("lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.2/24\n"
                           "lxc.net.0.ipv4.address =\nlxc.net.0.ipv4.address = 10.0.0.3/24"))[0]
    assert [str(a.interface) for a in nic.ipv4] == ["10.0.0.3/24"]


@root
def test_a_long_container_name_still_tags_its_link(tmp_path: Path) -> None:
    long_ref = ContainerRef(tmp_path, "c" * 250)

    def scenario() -> dict:
        plan = network_plan(long_ref, config("lxc.net.0.type = veth"))
        container = FakeContainer(plan)
        plan.setup_host(container.pid)
        alias = links_here()[plan.host_interfaces[0]]["alias"]
        container.process.kill()
        plan.teardown()
        return {"alias": alias, "after": sorted(links_here())}

    seen = in_host_netns(scenario)
    assert seen["alias"].startswith(container_tag(long_ref) + "0:veth:ccc") and len(seen["alias"]) == plan_module.ALIAS_MAX
    assert seen["after"] == ["lo"]
