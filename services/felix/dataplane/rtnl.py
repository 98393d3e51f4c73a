"""Routes and link events on raw rtnetlink sockets: route requests in bulk, route dumps, link events.

How it works: pyroute2 spends ~250 us of Python per route request (building,
encoding, matching its answer); at start-up that is 25 ms per 100 workloads,
after the rules are in and before Felix is ready. Here the requests are packed
by hand (:func:`netlinkplan.encode_route`) and sent ``_CHUNK`` at a time in one
``send`` each; the kernel's acknowledgements (one ``NLMSG_ERROR`` per request,
errno 0 for success) are read back and matched by sequence number before the
next chunk goes: each one holds several hundred bytes of the receive buffer
until it is read (540 at once overflowed it here: ENOBUFS). The socket is
created in the namespace thread, which ties it to the managed namespace; it is
blocking and used only from that thread. The same socket dumps the routing
table (:meth:`RouteSocket.dump_routes`), and :func:`watch_links` reports link
events: with these, Felix imports pyroute2 only for tunnel devices.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from services.felix.dataplane.errors import NetlinkOperationError
from services.felix.dataplane.namespace import NamespaceThread
from services.felix.dataplane.netlinkplan import (
    NLM_F_REQUEST,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    NetlinkRequest,
    encode_route,
)

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # acknowledgements without a copy of the request
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP = 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_GETROUTE = 16, 17, 24, 26
RTMGRP_LINK = 1
IFLA_IFNAME = 3
_RTMSG = struct.Struct("=BBBBBBBBI")
_IFINFOMSG_SIZE = 16
_CHUNK = 128
_HEADER = struct.Struct("=IHHII")
_ERRNO = struct.Struct("=i")
_TIMEOUT = 10.0


class RouteSocket:
    """One NETLINK_ROUTE socket for route requests in bulk (create and use it in the namespace thread)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.bind((0, 0))
            self._sock.settimeout(_TIMEOUT)
        except OSError:
            self._sock.close()
            raise
        self._sequence = 0

    def run(self, requests: list[NetlinkRequest]) -> list[int]:
        """Send route requests (``replace`` / ``del``); each one's errno in order (0: done)."""
        results = [0] * len(requests)
        start = 0
        while start < len(requests):
            waiting: dict[int, int] = {}
            parts: list[bytes] = []
            while start < len(requests) and len(parts) < _CHUNK:
                self._sequence = self._sequence % 0x7FFFFFFF + 1
                data = encode_route(requests[start], self._sequence)
                waiting[self._sequence] = start
                parts.append(data)
                start += 1
            try:
                self._sock.send(b"".join(parts))
                self._collect(waiting, results)
            except OSError as exc:
                raise NetlinkOperationError(f"route requests failed: {exc}") from exc
        return results

    def _collect(self, waiting: dict[int, int], results: list[int]) -> None:
        for _ in range(len(waiting) + 64):  # each read brings at least one answer
            if not waiting:
                return
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, sequence, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    break
                if kind == NLMSG_ERROR and sequence in waiting:
                    results[waiting.pop(sequence)] = -_ERRNO.unpack_from(data, offset + _HEADER.size)[0]
                offset += (length + 3) & ~3
        if waiting:
            raise NetlinkOperationError(f"no answer from the kernel for {len(waiting)} route requests")

    def dump_routes(self, family: int) -> list[KernelRoute]:
        """Every route of one address family (``socket.AF_INET`` / ``AF_INET6``), in every table."""
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        sequence = self._sequence
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        out: list[KernelRoute] = []
        try:
            self._sock.send(_HEADER.pack(_HEADER.size + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP,
                                         sequence, 0) + body)
            for _ in range(1_000_000):  # one read per batch of answers, until NLMSG_DONE
                data = self._sock.recv(1 << 16)
                for kind, msg_sequence, start, end in _messages(data):
                    if msg_sequence != sequence:
                        continue
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        code = -_ERRNO.unpack_from(data, start)[0]
                        if code:
                            raise NetlinkOperationError(f"route dump failed: {errno.errorcode.get(code, code)}")
                    elif kind == RTM_NEWROUTE:
                        out.append(_route(data, start, end))
        except OSError as exc:
            raise NetlinkOperationError(f"route dump failed: {exc}") from exc
        raise NetlinkOperationError("route dump did not end")

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One route as the kernel lists it."""

    dst: str | None  # "10.65.0.2/32"; None for a default route
    oif: int | None
    gateway: str | None
    table: int
    protocol: int
    type: int


def _messages(data: bytes) -> list[tuple[int, int, int, int]]:
    """(type, sequence, payload start, message end) of each netlink message in ``data``."""
    out = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, sequence, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            break
        out.append((kind, sequence, offset + _HEADER.size, offset + length))
        offset += (length + 3) & ~3
    return out


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def _route(data: bytes, start: int, end: int) -> KernelRoute:
    family, dst_len, _src_len, _tos, table, protocol, _scope, kind, _flags = _RTMSG.unpack_from(data, start)
    attrs = _attributes(data, start + _RTMSG.size, end)
    if RTA_TABLE in attrs:
        table = struct.unpack("=I", attrs[RTA_TABLE][:4])[0]
    dst = f"{socket.inet_ntop(family, attrs[RTA_DST])}/{dst_len}" if RTA_DST in attrs else None
    gateway = socket.inet_ntop(family, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
    oif = struct.unpack("=i", attrs[RTA_OIF][:4])[0] if RTA_OIF in attrs else None
    return KernelRoute(dst, oif, gateway, table, protocol, kind)


def link_names(data: bytes) -> list[str]:
    """The interface names in a read of link messages (``RTM_NEWLINK`` / ``RTM_DELLINK``)."""
    out = []
    for kind, _sequence, start, end in _messages(data):
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            name = _attributes(data, start + _IFINFOMSG_SIZE, end).get(IFLA_IFNAME)
            if name:
                out.append(name.split(b"\0", 1)[0].decode(errors="replace"))
    return out


def _link_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def watch_links(thread: NamespaceThread, on_change: Callable[[str], None],
                      on_overflow: Callable[[], None]) -> None:
    """Call ``on_change(ifname)`` for every link event in the thread's namespace, ``on_overflow()`` when
    events were lost (the kernel's queue for us overflowed); a task, it runs until cancelled."""
    sock = await thread.run(_link_socket)
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                data = await loop.sock_recv(sock, 1 << 16)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                on_overflow()
                continue
            for name in link_names(data):
                on_change(name)
    finally:
        sock.close()
