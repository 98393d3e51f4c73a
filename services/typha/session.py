"""One client connection on the server: TLS and hello under a deadline, then snapshot and deltas.

How it works::

    accept ─► [TLS handshake in the transport, under the deadline] ─► CN/URI SAN check ─► hello (deadline)
                                                      │
                   reader task: pings/pongs ◄─────────┤
                                                      ▼
        writer (this task): snapshot frames of the joined breadcrumb, status, then
        catch up: walk the chain, every breadcrumb's bytes for this node, batched, one write
                  per turn, waiting for this socket only
        follow:   once caught up, join the pipeline's fast path: the publisher writes each new
                  breadcrumb straight to this socket (take()); this task sleeps until the socket's
                  buffers fill (then it catches up again) or the session ends

Every session is its own task, so a slow handshake or a client that stops
reading holds up nobody else. A session's writes wait for its own socket only
(``drain``); the server's housekeeping measures its lag and backlog and drops
it with ``bye: too-slow`` when either passes its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ssl
import struct
import termios
import time
from typing import TYPE_CHECKING

import structlog

from libcalico.typha.connection import ServerConnection, ServerState
from libcalico.typha.protocol import (
    PROTOCOL_VERSION,
    ByeReason,
    ClientHello,
    Error,
    Pong,
    ProtocolError,
    Status,
    encode,
)
from libcalico.typha.tls import PeerNotAllowed
from services.typha.pipeline import Pipeline
from services.typha.snapcache import Breadcrumb

if TYPE_CHECKING:
    from services.typha.server import TyphaServer

log = structlog.get_logger(__name__)

_READ_SIZE = 64 * 1024
_WRITE_HIGH_WATER = 256 * 1024
_MAX_BATCH_BYTES = 4 * 1024 * 1024
_ABORT_GRACE = 5.0


class SessionEnded(Exception):
    """The session is over; ``reason`` says why (for logs and the dropped-connections metric)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Session:
    """The server's side of one client connection."""

    def __init__(self, server: TyphaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.opened = time.monotonic()
        cfg = server.config
        self.conn = ServerConnection(self.opened, handshake_timeout=cfg.handshake_timeout,
                                     ping_interval=cfg.ping_interval, pong_timeout=cfg.pong_timeout,
                                     max_frame=cfg.max_inbound_frame)
        self.pipeline: Pipeline | None = None
        self.node = ""
        self.position: Breadcrumb | None = None
        self.snapshot_done = False
        self.bytes_sent = 0
        self.task: asyncio.Task[None] | None = None
        self.ending: str | None = None
        self._wake = asyncio.Event()  # set when this session leaves the fast path
        self._transport = writer.transport

    @property
    def streaming(self) -> bool:
        """Whether the hello was accepted and the session is not ending."""
        return self.pipeline is not None and self.ending is None

    # ------------------------------------------------------------ task root

    async def run(self) -> None:
        """Serve the connection until it ends; never raises (a task root)."""
        reason, detail = "closed", ""
        try:
            await self._handshake()
            await self._serve()
        except SessionEnded as exc:
            reason, detail = exc.reason, exc.detail
        except ProtocolError as exc:
            reason, detail = "protocol-error", str(exc)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            reason, detail = "connection-lost", str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = self.ending or "cancelled"
        except Exception:  # the session's task root: log it, close this one connection only
            log.exception("session_failed", peer=self.peer)
            reason = "internal-error"
        finally:
            self._finish(reason, detail)

    def _finish(self, reason: str, detail: str) -> None:
        self.ending = self.ending or reason
        if self.pipeline is not None:
            self.pipeline.unfollow(self)
            self.server.metrics.connections_active.labels(self.pipeline.name).dec()
        if self.ending not in ("closed",):
            self.server.metrics.connections_dropped.inc()
        self.server.forget(self)
        transport = self.writer.transport
        if not transport.is_closing():
            transport.close()
        log.info("client_gone", peer=self.peer, node=self.node or None,
                 syncer=self.pipeline.name if self.pipeline else None, reason=self.ending,
                 detail=detail or None, bytes_sent=self.bytes_sent,
                 seconds=round(time.monotonic() - self.opened, 3))

    # ------------------------------------------------------------ handshake

    async def _handshake(self) -> None:
        deadline = self.opened + self.server.config.handshake_timeout
        if self.server.ssl_context is not None:
            self._check_identity()
        while self.conn.hello is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionEnded("handshake-timeout", "no hello in time")
            try:
                async with asyncio.timeout(remaining):  # (wait_for can swallow a cancellation in 3.11)
                    data = await self.reader.read(_READ_SIZE)
            except TimeoutError:
                raise SessionEnded("handshake-timeout", "no hello in time") from None
            if not data:
                raise SessionEnded("closed", "closed before hello")
            self.conn.receive(data, time.monotonic())
            self._flush()
        hello: ClientHello = self.conn.hello
        self.node = hello.node
        pipeline = self.server.pipelines.get(hello.syncer)
        refusal = None
        if hello.version != PROTOCOL_VERSION:
            refusal = f"unsupported protocol version {hello.version}; this server speaks {PROTOCOL_VERSION}"
        elif pipeline is None:
            refusal = f"unknown syncer {hello.syncer!r}; known: {', '.join(sorted(self.server.pipelines))}"
        if refusal is not None:
            self.conn.reject(refusal)
            self._flush()
            raise SessionEnded("refused", refusal)
        assert pipeline is not None
        self.conn.accept(self.server.replica, pipeline.name)
        self._flush()
        self.pipeline = pipeline
        self.server.metrics.connections_active.labels(pipeline.name).inc()
        log.info("client_accepted", peer=self.peer, node=self.node, syncer=pipeline.name, client=hello.client)

    def _check_identity(self) -> None:
        """The TLS handshake is done (by the listener's transport, under the deadline): check who it is."""
        assert self.server.tls is not None
        try:
            self.server.tls.check_peer(self.writer.get_extra_info("peercert"))
        except PeerNotAllowed as exc:
            self.writer.write(encode(Error(f"identity not allowed: {exc}")))
            raise SessionEnded("identity-refused", str(exc)) from None

    # ------------------------------------------------------------ streaming

    async def _serve(self) -> None:
        reader = asyncio.create_task(self._read_loop(), name=f"typha-read-{self.peer}")
        try:
            await self._write_loop()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read_loop(self) -> None:
        assert self.pipeline is not None
        latency = self.server.metrics.ping_latency.labels(self.pipeline.name)
        for _ in iter(int, 1):  # until EOF, an error or cancellation
            data = await self.reader.read(_READ_SIZE)
            if not data:
                self._end_from_reader("closed", "client closed the connection")
                return
            try:
                msgs = self.conn.receive(data, time.monotonic())
            except ProtocolError as exc:
                self._end_from_reader("protocol-error", str(exc))
                return
            for msg in msgs:
                if isinstance(msg, Pong) and self.conn.ping_latency is not None:
                    latency.observe(self.conn.ping_latency)
            self._flush()

    def _end_from_reader(self, reason: str, detail: str) -> None:
        if self.ending is None:
            self.ending = reason
            log.info("client_read_ended", peer=self.peer, reason=reason, detail=detail)
        if self.task is not None:
            self.task.cancel()

    async def _write_loop(self) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        started = time.monotonic()
        crumb = pipeline.join(started)
        self.position = crumb
        for frame in crumb.snapshot_frames(self.node):
            self._write(frame)
            await self._drain()
        self._write(encode(Status(crumb.status)))
        await self._drain()
        self.snapshot_done = True
        pipeline_metrics = self.server.metrics
        pipeline_metrics.snapshot_send_secs.labels(pipeline.name).observe(time.monotonic() - started)
        latency = pipeline_metrics.client_latency_secs
        for _ in iter(int, 1):  # until the session is ended from outside
            position = self.position
            if position.next is None:
                # Caught up: from now on the publisher writes each breadcrumb to us directly. No await
                # between the check above and joining, so no breadcrumb can slip in between.
                self._wake.clear()
                pipeline.follow(self)
                await self._wake.wait()
                pipeline.unfollow(self)
                if self._transport.is_closing():
                    raise SessionEnded(self.ending or "connection-lost", "transport closing")
                await self._drain()
                continue
            oldest = position.next.published
            parts: list[bytes] = []
            size = 0
            while position.next is not None and size < _MAX_BATCH_BYTES:
                position = position.next
                chunk = position.delta_bytes(self.node)
                if chunk:
                    parts.append(chunk)
                    size += len(chunk)
            self.position = position
            if parts:
                self._write(b"".join(parts))
            latency.observe(pipeline.name, max(0.0, time.monotonic() - oldest))
            await self._drain()

    def take(self, crumb: Breadcrumb) -> bool:
        """Fast path (called by the publisher): write ``crumb``; False when this session must leave it."""
        transport = self._transport
        if self.ending is not None or transport.is_closing():
            self._wake.set()
            return False
        position = self.position
        if position is not None and position.next is not crumb:
            # A breadcrumb was published without reaching us (never expected): leave the fast path and
            # walk the chain from where we are, so nothing is skipped.
            self._wake.set()
            return False
        data = crumb.delta_bytes(self.node)
        if data:
            transport.write(data)
            self.bytes_sent += len(data)
        self.position = crumb
        if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            self._wake.set()  # the socket is full: catch up on our own, waiting for this socket only
            return False
        return True

    # ------------------------------------------------------------ output

    def _write(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise SessionEnded(self.ending or "connection-lost", "transport closing")
        self.writer.write(data)
        self.bytes_sent += len(data)

    def _flush(self) -> None:
        """Write whatever the protocol state machine queued (hello answers, pongs, pings, bye)."""
        data = self.conn.data_to_send()
        if data and not self.writer.transport.is_closing():
            self.writer.write(data)
            self.bytes_sent += len(data)

    async def _drain(self) -> None:
        if self.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await self.writer.drain()

    # ------------------------------------------------------------ called by the server

    def backlog(self) -> int:
        """Bytes this client has not taken yet: kernel send queue, transport buffer and the chain ahead."""
        buffered = self.writer.transport.get_write_buffer_size() + _unacked(self.writer)
        if self.position is None or self.pipeline is None:
            return buffered
        return buffered + (self.pipeline.cache.latest.total_bytes - self.position.total_bytes)

    def lag(self, now: float) -> float:
        """Seconds the oldest update not yet taken by this client has been waiting."""
        if self.position is None or self.position.next is None:
            return 0.0
        return max(0.0, now - self.position.next.published)

    def housekeeping(self, now: float) -> str | None:
        """Timers, pings and the too-slow bounds; return a reason to drop the session, if any."""
        expired = self.conn.check_timers(now)
        if expired is not None:
            return expired
        self._flush()
        if self.pipeline is None:
            return None
        cfg = self.server.config
        allowed = cfg.max_fall_behind + (0.0 if self.snapshot_done else cfg.new_client_grace)
        if self.lag(now) > allowed:
            return "too-slow"
        if self.backlog() > cfg.max_backlog_bytes:
            return "too-slow"
        return None

    def end(self, reason: str, bye: ByeReason | None = None) -> None:
        """End the session from outside: say bye (when streaming), close, and stop its task."""
        if self.ending is not None:
            return
        self.ending = reason
        transport = self.writer.transport
        if bye is not None and self.conn.state is ServerState.STREAMING and not transport.is_closing():
            self.conn.bye(bye)
            self._flush()
        if not transport.is_closing():
            transport.close()  # flushes what is buffered, then closes
        if bye is ByeReason.TOO_SLOW or bye is None:
            asyncio.get_running_loop().call_later(_ABORT_GRACE, _abort, transport)
        if self.task is not None:
            self.task.cancel()


def _unacked(writer: asyncio.StreamWriter) -> int:
    """Bytes in the kernel's send queue that the peer has not acknowledged (Linux SIOCOUTQ)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


def _abort(transport: asyncio.BaseTransport) -> None:
    """Give up on a connection whose peer does not read what is left."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
