"""Network namespaces and links of a lab, through iproute2, plus entering a namespace (setns).

Every namespace of a lab is named ``<lab>-…``; :func:`lab_namespaces` finds them all,
which is what ``down`` removes, whatever the state file says.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
from pathlib import Path

from services.lab.command import run
from services.lab.errors import LabError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> Path:
    """Where iproute2 keeps a named namespace."""
    return NETNS_DIR / name


def exists(name: str) -> bool:
    """True when the named namespace exists."""
    return netns_path(name).exists()


def lab_namespaces(prefix: str) -> list[str]:
    """Every namespace whose name starts with ``prefix`` (a lab's), sorted."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(e.name for e in NETNS_DIR.iterdir() if e.name.startswith(prefix))


async def create(name: str) -> None:
    """A new namespace with ``lo`` up; raise LabError if it already exists."""
    if exists(name):
        raise LabError(f"network namespace {name} already exists (left by another lab? run 'calico-lab down')")
    await run("ip", "netns", "add", name)
    await run("ip", "-n", name, "link", "set", "lo", "up")


async def delete(name: str) -> None:
    """Delete a namespace (its interfaces go with it); fine when it is already gone."""
    if exists(name):
        await run("ip", "netns", "del", name, check=False)


async def pids(name: str) -> list[int]:
    """The processes running in a namespace."""
    if not exists(name):
        return []
    done = await run("ip", "netns", "pids", name, check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


async def ip(netns: str, *args: str) -> str:
    """``ip -n <netns> …``; returns stdout."""
    return (await run("ip", "-n", netns, *args)).stdout


async def sysctl(netns: str, key: str, value: str) -> None:
    """Set a sysctl inside a namespace."""
    await run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}")


async def make_bridge(netns: str, bridge: str, cidr: str) -> None:
    """The underlay: a bridge holding the hosts' gateway address."""
    await ip(netns, "link", "add", bridge, "type", "bridge")
    await ip(netns, "addr", "add", cidr, "dev", bridge)
    await ip(netns, "link", "set", bridge, "up")


async def attach_host(infra: str, bridge: str, host: str, uplink: str, cidr: str, gateway: str) -> None:
    """Give a host namespace ``eth0`` on the bridge, an address and a default route via the gateway."""
    await run("ip", "link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", uplink, "netns", infra)
    await ip(infra, "link", "set", uplink, "master", bridge, "up")
    await ip(host, "addr", "add", cidr, "dev", "eth0")
    await ip(host, "link", "set", "eth0", "up")
    await ip(host, "route", "add", "default", "via", gateway, "dev", "eth0")


def enter(name: str) -> None:
    """Move the calling thread into a namespace (threads it starts afterwards are there too)."""
    try:
        fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabError(f"network namespace {name} does not exist") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise LabError(f"cannot enter network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsSwitch:
    """Create sockets in other namespaces from the current thread: enter, create, come back.

    A socket stays in the namespace it was created in, so an event loop can drive sockets
    of many namespaces at once.
    """

    def __init__(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def fd(self, name: str) -> int:
        """An open descriptor of a namespace (kept for the switch's lifetime)."""
        if name not in self._fds:
            try:
                self._fds[name] = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise LabError(f"network namespace {name} does not exist") from None
        return self._fds[name]

    def _setns(self, fd: int, what: str) -> None:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise LabError(f"cannot enter network namespace {what}: {os.strerror(ctypes.get_errno())}")

    def socket(self, name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A new socket that lives in namespace ``name``."""
        fd = self.fd(name)
        self._setns(fd, name)
        try:
            return socket.socket(family, kind, proto)
        finally:
            self._setns(self._home, "of the calling thread")

    def close(self) -> None:
        """Close every descriptor held."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self._home)
