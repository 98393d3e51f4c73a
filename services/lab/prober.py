"""Real traffic between pods: listeners in every destination, probes from every source, in parallel.

How it works: a socket stays in the network namespace it was created in, so one event
loop drives sockets of every pod at once. :class:`~services.lab.namespaces.NetnsSwitch`
creates each socket inside the right namespace; everything else is plain asyncio.

- tcp: a listener per pod echoes what it reads; a probe connects, sends, expects the echo.
- udp: a listener per pod echoes datagrams; a probe sends (again every third of the
  timeout) and expects the echo.
- icmp: the kernel answers echo requests; one raw socket per source pod sends them and a
  reader hands each reply to the probe waiting for it (by source address and id).

Every probe is bounded by ``timeout``; a policy drop shows up as a timeout.

Policy decides *new* connections; conntrack lets an established flow go on after a policy
change. So a probe must never look like an earlier flow: ICMP ids and UDP source ports come
from process-wide sequences that start at random and never repeat within a process (TCP
leaves the port to the kernel: a SYN never matches an old entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import resource
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from services.lab.errors import LabError
from services.lab.namespaces import NetnsSwitch

PROTOCOLS = ("tcp", "udp", "icmp")
PAYLOAD = b"calico-lab-probe"
DEFAULT_TIMEOUT = 1.5
MAX_IN_FLIGHT = 512
UDP_SOURCE_PORTS = (20000, 60000)
_icmp_ids = itertools.count(random.randrange(1 << 16))
_udp_ports = itertools.count(random.randrange(UDP_SOURCE_PORTS[1] - UDP_SOURCE_PORTS[0]))


def next_icmp_id() -> int:
    """A fresh ICMP echo id (16 bits, never the same twice in a row of 65536)."""
    return next(_icmp_ids) & 0xFFFF


def next_udp_port() -> int:
    """A fresh UDP source port from the probe range."""
    low, high = UDP_SOURCE_PORTS
    return low + next(_udp_ports) % (high - low)


@dataclass(frozen=True)
class Endpoint:
    """A pod as the prober sees it: a name, its namespace and its address."""

    name: str
    netns: str
    ip: str


@dataclass(frozen=True)
class Observation:
    """What one probe saw."""

    src: str
    dst: str
    proto: str
    port: int | None
    allowed: bool
    detail: str  # "echoed", "reply", "timeout", "refused", or an error

    def to_dict(self) -> dict[str, object]:
        """The JSON form ``calico-lab matrix -o json`` prints."""
        return {"src": self.src, "dst": self.dst, "proto": self.proto, "port": self.port, "allowed": self.allowed}


def raise_fd_limit(wanted: int = 16384) -> None:
    """Let this process hold enough sockets for a big matrix."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request (type 8) with our payload."""
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + PAYLOAD), ident, seq) + PAYLOAD


def parse_echo_reply(packet: bytes) -> tuple[str, int] | None:
    """(source address, id) of an ICMP echo reply received on a raw socket (IP header included)."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or packet[ihl] != 0:
        return None
    source = socket.inet_ntoa(packet[12:16])
    ident = struct.unpack("!H", packet[ihl + 4:ihl + 6])[0]
    return source, ident


class _UdpEcho(asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await asyncio.wait_for(reader.read(256), 5.0)
        writer.write(data)
        await writer.drain()
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class _IcmpSource:
    sock: socket.socket
    waiting: dict[tuple[str, int], asyncio.Future[None]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class Prober:
    """Listeners in pods and probes between them; use as an async context manager."""

    def __init__(self, endpoints: Iterable[Endpoint], proto: str = "tcp", port: int | None = 8080,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if proto not in PROTOCOLS:
            raise LabError(f"--proto must be one of {', '.join(PROTOCOLS)}, not {proto!r}")
        if proto != "icmp" and (port is None or not 1 <= port <= 65535):
            raise LabError(f"--port must be 1-65535 for {proto}, not {port}")
        self.endpoints = {e.name: e for e in endpoints}
        self.proto = proto
        self.port = None if proto == "icmp" else port
        self.timeout = timeout
        self.switch = NetnsSwitch()
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._icmp: dict[str, _IcmpSource] = {}
        self._limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def __aenter__(self) -> Prober:
        raise_fd_limit()
        try:
            await self._listen()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        if self.proto == "icmp":
            return
        assert self.port is not None
        for ep in self.endpoints.values():
            kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
            sock = self.switch.socket(ep.netns, socket.AF_INET, kind)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", self.port))
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise LabError(f"cannot listen on {self.proto}/{self.port} in pod {ep.name}: {exc}") from None
            if self.proto == "tcp":
                sock.listen(256)
                self._servers.append(await asyncio.start_server(_tcp_echo, sock=sock))
            else:
                transport, _ = await loop.create_datagram_endpoint(_UdpEcho, sock=sock)
                self._transports.append(transport)

    async def close(self) -> None:
        """Stop the listeners and readers; close every socket."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(OSError):
                await server.wait_closed()
        for transport in self._transports:
            transport.close()
        for src in self._icmp.values():
            if src.reader is not None:
                src.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await src.reader
            src.sock.close()
        self._servers, self._transports, self._icmp = [], [], {}
        self.switch.close()

    async def probe(self, src: str, dst: str) -> Observation:
        """One connection attempt from pod ``src`` to pod ``dst``."""
        a, b = self.endpoints[src], self.endpoints[dst]
        async with self._limit:
            if self.proto == "tcp":
                allowed, detail = await self._tcp(a, b)
            elif self.proto == "udp":
                allowed, detail = await self._udp(a, b)
            else:
                allowed, detail = await self._ping(a, b)
        return Observation(src, dst, self.proto, self.port, allowed, detail)

    async def probe_all(self, pairs: Iterable[tuple[str, str]]) -> list[Observation]:
        """Probe every pair at once; results in the order of ``pairs``."""
        return list(await asyncio.gather(*(self.probe(s, d) for s, d in pairs)))

    async def _tcp(self, a: Endpoint, b: Endpoint) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        sock = self.switch.socket(a.netns, socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.timeout):
                await loop.sock_connect(sock, (b.ip, self.port))
                await loop.sock_sendall(sock, PAYLOAD)
                got = b""
                while len(got) < len(PAYLOAD):
                    chunk = await loop.sock_recv(sock, 256)
                    if not chunk:
                        break
                    got += chunk
            return (got == PAYLOAD, "echoed" if got == PAYLOAD else "closed without echo")
        except TimeoutError:
            return False, "timeout"
        except ConnectionRefusedError:
            return False, "refused"
        except OSError as exc:
            return False, exc.strerror or str(exc)
        finally:
            sock.close()

    async def _udp(self, a: Endpoint, b: Endpoint) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        sock = self.switch.socket(a.netns, socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        deadline = time.monotonic() + self.timeout
        try:
            for _ in range(64):  # a port another socket holds: take the next one
                try:
                    sock.bind(("0.0.0.0", next_udp_port()))
                    break
                except OSError:
                    continue
            sock.connect((b.ip, self.port))
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, "timeout"
                await loop.sock_sendall(sock, PAYLOAD)
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 256), min(left, self.timeout / 3))
                except TimeoutError:
                    continue
                if data == PAYLOAD:
                    return True, "echoed"
        except ConnectionRefusedError:
            return False, "refused"
        except OSError as exc:
            return False, exc.strerror or str(exc)
        finally:
            sock.close()

    def _icmp_source(self, a: Endpoint) -> _IcmpSource:
        src = self._icmp.get(a.name)
        if src is None:
            sock = self.switch.socket(a.netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            sock.setblocking(False)
            src = _IcmpSource(sock)
            src.reader = asyncio.ensure_future(self._read_replies(src))
            self._icmp[a.name] = src
        return src

    async def _read_replies(self, src: _IcmpSource) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                packet = await loop.sock_recv(src.sock, 2048)
            except OSError:
                return
            got = parse_echo_reply(packet)
            if got is None:
                continue
            fut = src.waiting.get(got)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _ping(self, a: Endpoint, b: Endpoint) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        src = self._icmp_source(a)
        ident = next_icmp_id()
        fut: asyncio.Future[None] = loop.create_future()
        src.waiting[(b.ip, ident)] = fut
        deadline = time.monotonic() + self.timeout
        try:
            for seq in itertools.count(1):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, "timeout"
                try:
                    await loop.sock_sendto(src.sock, echo_request(ident, seq), (b.ip, 0))
                except OSError as exc:
                    return False, exc.strerror or str(exc)
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(left, self.timeout / 3))
                    return True, "reply"
                except TimeoutError:
                    continue
            return False, "timeout"
        finally:
            src.waiting.pop((b.ip, ident), None)
