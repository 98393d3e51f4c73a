"""The Typha client: a syncer that reads from Typha instead of the datastore, with the same callbacks.

How it works::

    addresses ─► order (local first, then shuffled) ─► connect (TLS: chain + CN/URI SAN)
        │                                                 │ hello ─► server hello
        │                                                 ▼
        │                     ClientConnection ─► StreamAssembler ─► callbacks (awaited: backpressure)
        │                                                 │
        └── next address / jittered backoff ◄── EOF, error, bye, silence, protocol error

A ``bye`` (rebalance, shutdown, too-slow) makes the client move on to the next
address after a short jittered pause; failing every address backs off
exponentially with jitter. Every reconnect receives a full snapshot again,
which :class:`~libcalico.typha.stream.StreamAssembler` turns into only the
changes, including deletions of keys that vanished while the client was away.

Use::

    client = TyphaClient(["10.0.0.5:5473"], "felix", node="node1", callbacks=cb)
    async with client:      # or: await client.run()
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from libcalico.syncer.backoff import RetryPolicy
from libcalico.syncer.callbacks import (
    SyncerCallbacks,
    SyncStatus,
    Update,
    deliver_status,
    deliver_updates,
)
from libcalico.typha.connection import ClientConnection, ClientState
from libcalico.typha.protocol import DEFAULT_PORT, HANDSHAKE_TIMEOUT, ProtocolError, ServerHello
from libcalico.typha.stream import Output, StreamAssembler
from libcalico.typha.tls import PeerNotAllowed, TLSConfig

log = structlog.get_logger(__name__)

_STOP_ATTEMPTS = 10
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Address:
    """One Typha endpoint; ``local`` marks one on this client's own node (tried first)."""

    host: str
    port: int
    local: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``host:port``, ``[v6]:port`` or a bare host (port 5473); raise ValueError saying what is wrong."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty Typha address")
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed Typha address {text!r}")
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        host, port_text = raw, ""
    if not host:
        raise ValueError(f"Typha address {text!r} has no host")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"Typha address {text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"Typha address {text!r}: port {port} out of range")
    return Address(host, port)


# A discovery callable returns the current addresses, as text or as Address (which may be marked local).
Discovery = Callable[[], Awaitable[Sequence[str | Address]]]


def is_loopback(host: str) -> bool:
    """Whether a host is this machine's loopback (the default notion of a local Typha)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def order_addresses(
    addresses: Sequence[Address], local_hosts: set[str] | None = None, rng: random.Random | None = None
) -> list[Address]:
    """Local addresses first, then the rest; each group shuffled so clients spread over replicas.

    Local: marked so by discovery (on this node), else in ``local_hosts`` when given, else loopback.
    """
    rng = rng or random.Random()

    def local(a: Address) -> bool:
        if a.local:
            return True
        return a.host in local_hosts if local_hosts is not None else is_loopback(a.host)

    near = [a for a in addresses if local(a)]
    far = [a for a in addresses if not local(a)]
    rng.shuffle(near)
    rng.shuffle(far)
    return near + far


class TyphaClient:
    """A syncer fed by Typha: ``run()`` until cancelled, driving the same callbacks as a direct syncer."""

    def __init__(
        self,
        addresses: Sequence[str] | Discovery,
        syncer: str,
        *,
        node: str,
        callbacks: SyncerCallbacks,
        client: str = "calico-py",
        tls: TLSConfig | None = None,
        local_hosts: set[str] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        retry: RetryPolicy | None = None,
        bye_pause: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not callable(addresses):
            parsed = [parse_address(a) for a in addresses]
            if not parsed:
                raise ValueError("no Typha addresses given")
        else:
            parsed = []
        self._static = parsed
        self._discovery = addresses if callable(addresses) else None
        self.syncer = syncer
        self.node = node
        self.client = client
        self.callbacks = callbacks
        self.tls = tls if tls is not None and tls.enabled else None
        self._ssl: ssl.SSLContext | None = self.tls.client_context() if self.tls is not None else None
        self.local_hosts = local_hosts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.handshake_timeout = handshake_timeout
        self.retry = retry or RetryPolicy(initial=0.2, maximum=10.0)
        self.bye_pause = bye_pause
        self._rng = rng or random.Random()
        self.assembler = StreamAssembler()
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # accepted connections so far
        self.server: str | None = None  # replica id of the current server
        self.address: Address | None = None  # address of the current server
        self.last_end: str = ""  # why the last connection ended
        self._avoid: Address | None = None

    @property
    def status(self) -> SyncStatus | None:
        """The last status delivered to the callbacks."""
        return self.assembler.status

    # ------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task[None]:
        """Run in a background task; ``stop()`` ends it."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"typha-client-{self.syncer}")
        return self._task

    async def stop(self) -> None:
        """Cancel a started client and wait for it."""
        task, self._task = self._task, None
        if task is None:
            return
        # Python 3.11's asyncio.wait_for can swallow a cancellation that races with its
        # result, so cancel again until the task is really done (bounded).
        for _ in range(_STOP_ATTEMPTS):
            task.cancel()
            done, _pending = await asyncio.wait({task}, timeout=1.0)
            if done:
                break
        else:
            log.error("typha_client_stop_timed_out", syncer=self.syncer)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> TyphaClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Connect, stream, reconnect, until cancelled."""
        await self._deliver(self.assembler.start())
        failures = 0
        for _ in iter(int, 1):  # until cancelled
            order = await self._addresses()
            if self._avoid in order and len(order) > 1:
                order.remove(self._avoid)  # the replica that just let us go is tried last
                order.append(self._avoid)
            self._avoid = None
            streamed = False
            for addr in order:
                outcome = await self._attempt(addr)
                if outcome == "streamed":
                    streamed = True
                    self._avoid = addr
                    break  # the server went away after streaming: pause, then a fresh order
            if streamed:
                failures = 0
                await asyncio.sleep(self._rng.uniform(0.0, self.bye_pause))
                continue
            failures += 1
            delay = self.retry.delay(failures, self._rng)
            log.info("typha_unreachable", syncer=self.syncer, addresses=[str(a) for a in order],
                     retry_in=round(delay, 3), reason=self.last_end)
            await asyncio.sleep(delay)

    async def _addresses(self) -> list[Address]:
        if self._discovery is not None:
            try:
                found = [a if isinstance(a, Address) else parse_address(a) for a in await self._discovery()]
            except (OSError, ValueError) as exc:
                log.warning("typha_discovery_failed", error=str(exc))
                found = []
        else:
            found = list(self._static)
        return order_addresses(found, self.local_hosts, self._rng)

    # ------------------------------------------------------------ one connection

    async def _attempt(self, addr: Address) -> str:
        """One connection: "refused" when it never streamed, "streamed" when it did."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    addr.host, addr.port, ssl=self._ssl,
                    server_hostname=addr.host if self._ssl else None,
                    ssl_handshake_timeout=self.connect_timeout if self._ssl else None)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.last_end = f"connect to {addr} failed: {exc or type(exc).__name__}"
            return "refused"
        try:
            if self.tls is not None:
                try:
                    self.tls.check_peer(writer.get_extra_info("peercert"))
                except PeerNotAllowed as exc:
                    self.last_end = f"server {addr} not allowed: {exc}"
                    log.warning("typha_server_not_allowed", address=str(addr), error=str(exc))
                    return "refused"
            return await self._stream(addr, reader, writer)
        finally:
            self.assembler.disconnected()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _stream(self, addr: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        conn = ClientConnection(time.monotonic(), syncer=self.syncer, node=self.node, client=self.client,
                                handshake_timeout=self.handshake_timeout, silence_timeout=self.read_timeout)
        writer.write(conn.data_to_send())
        streamed = False
        tick = min(1.0, self.read_timeout / 4, self.handshake_timeout / 4)
        for _ in iter(int, 1):  # until the connection ends
            try:
                async with asyncio.timeout(tick):  # not wait_for: it can swallow a cancel on 3.11
                    data = await reader.read(_READ_SIZE)
            except TimeoutError:
                data = None
            except (OSError, ssl.SSLError) as exc:
                self.last_end = f"read from {addr} failed: {exc}"
                break
            now = time.monotonic()
            if data == b"":
                self.last_end = f"server {addr} closed the connection"
                break
            if data:
                try:
                    msgs = conn.receive(data, now)
                except ProtocolError as exc:
                    self.last_end = f"protocol error from {addr}: {exc}"
                    log.warning("typha_protocol_error", address=str(addr), error=str(exc))
                    break
                out: list[Output] = []
                for msg in msgs:
                    if isinstance(msg, ServerHello):
                        streamed = True
                        self.connections += 1
                        self.server, self.address = msg.server, addr
                        log.info("typha_connected", address=str(addr), server=msg.server, syncer=self.syncer)
                        out.extend(self.assembler.connected())
                    else:
                        out.extend(self.assembler.on_message(msg))
                await self._deliver(out)
            pending = conn.data_to_send()
            if pending:
                writer.write(pending)
            if conn.state is ClientState.CLOSED:
                self.last_end = f"server {addr} refused: {conn.error}"
                log.warning("typha_refused", address=str(addr), reason=conn.error)
                break
            if conn.state is ClientState.CLOSING:
                reason = conn.bye_reason.value if conn.bye_reason else "?"
                self.last_end = f"server {addr} said bye: {reason}"
                log.info("typha_bye", address=str(addr), reason=reason)
                break
            expired = conn.check_timers(now)
            if expired:
                self.last_end = f"{expired} on {addr}"
                log.warning("typha_timeout", address=str(addr), reason=expired)
                break
        return "streamed" if streamed else "refused"

    async def _deliver(self, outputs: list[Output]) -> None:
        batch: list[Update] = []
        for item in outputs:
            if isinstance(item, Update):
                batch.append(item)
                continue
            await deliver_updates(self.callbacks, batch)
            batch = []
            await deliver_status(self.callbacks, item)
        await deliver_updates(self.callbacks, batch)
