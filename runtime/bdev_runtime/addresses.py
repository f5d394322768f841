"""The IP addresses a running container has, as ``lxc-info -i`` lists them: every address
in the container's network namespace except loopback and IPv6 link-local ones."""

from __future__ import annotations

import ipaddress
import json
import os

from . import linux
from .init import exit_status


def _read_addresses() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = [message.get_attr("IFA_ADDRESS") for message in ipr.get_addr()]
    out = []
    for text in filter(None, found):
        address = ipaddress.ip_address(text)
        if not (address.is_loopback or address.is_link_local):
            out.append(text)
    return out


def container_addresses(init_pid: int) -> list[str]:
    """The addresses in the network namespace of ``init_pid`` (read by a child that joins it,
    so this process stays where it is).

    :raises OSError: the namespace cannot be joined (the container stopped meanwhile).
    """
    fd = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read_end)
            linux.setns(fd, linux.CLONE_NEWNET)
            os.write(write_end, json.dumps(_read_addresses()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(fd)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(child, 0)
    if exit_status(status) != 0:
        raise OSError(f"reading the addresses of process {init_pid} failed")
    return list(json.loads(b"".join(chunks) or b"[]"))
