"""Typha's listener: accepts connections, runs one session task each, enforces limits, sheds and drains.

How it works::

    accept loop (asyncio.Server) ── over the limit? close at once ── else: Session task (TLS, hello, stream)
    housekeeping (every tick)    ── per session: ping due / pong timeout / handshake deadline,
                                    lag and backlog bounds ──► drop (bye: too-slow)
    shedding (ConnectionDropIntervalSecs, jittered) ── more streaming sessions than the limit?
                                    drop one at random with bye: rebalance
    drain (on stop)              ── stop accepting; bye: shutdown to one session at a time,
                                    paced to finish inside ShutdownTimeoutSecs

Nothing slow runs in the accept loop (a stalled handshake in the accept loop
was Calico's CVE-2023-41378). With TLS the listener accepts plain sockets and
hands each to its own task, which wraps it (``connect_accepted_socket``) and
runs the handshake under the handshake deadline; the session starts only when
it is done. A failed or timed-out handshake closes only that connection and
leaves one log line, ``tls_handshake_failed``, with the peer and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from dataclasses import dataclass

import structlog

from libcalico.typha.protocol import ByeReason
from libcalico.typha.tls import TLSConfig
from services.typha.metrics import TyphaMetrics
from services.typha.pipeline import Pipeline
from services.typha.session import Session

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The server's timing and size bounds (from the settings)."""

    handshake_timeout: float = 10.0
    ping_interval: float = 10.0
    pong_timeout: float = 60.0
    max_fall_behind: float = 300.0
    new_client_grace: float = 300.0
    max_backlog_bytes: int = 64 * 1024 * 1024
    max_inbound_frame: int = 64 * 1024
    drop_interval: float = 1.0


class TyphaServer:
    """Client sessions of every pipeline, behind one listener."""

    def __init__(
        self,
        pipelines: dict[str, Pipeline],
        *,
        replica: str,
        config: ServerConfig,
        metrics: TyphaMetrics,
        max_connections: int,
        tls: TLSConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.replica = replica
        self.config = config
        self.metrics = metrics
        self.tls = tls if tls is not None and tls.enabled else None
        self.ssl_context: ssl.SSLContext | None = self.tls.server_context() if self.tls is not None else None
        self.max_connections = max_connections
        self.sessions: set[Session] = set()
        self.tick = max(0.05, min(1.0, config.ping_interval / 2, config.handshake_timeout / 4))
        self._rng = rng or random.Random()
        self._listener: asyncio.Server | None = None
        self._tls_socket: socket.socket | None = None
        self._tls_accept: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._accepting = False
        self.port = 0
        metrics.max_connections.set(max_connections)

    # ------------------------------------------------------------ listening

    async def listen(self, host: str, port: int) -> int:
        """Start accepting on ``host:port`` (empty host: every address); return the bound port."""
        if self.ssl_context is None:
            self._listener = await asyncio.start_server(self._accept, host or None, port, backlog=1024,
                                                        reuse_address=True)
            self.port = int(self._listener.sockets[0].getsockname()[1])
        else:
            self._tls_socket = _listen_socket(host, port)
            self.port = int(self._tls_socket.getsockname()[1])
            self._tls_accept = asyncio.create_task(self._accept_tls(self._tls_socket), name="typha-accept")
        self._accepting = True
        log.info("typha_listening", host=host or "*", port=self.port, tls=self.tls is not None,
                 replica=self.replica, max_connections=self.max_connections)
        return self.port

    def stop_accepting(self) -> None:
        """Close the listener; sessions already open carry on."""
        self._accepting = False
        if self._listener is not None:
            self._listener.close()
        if self._tls_accept is not None:
            self._tls_accept.cancel()
        if self._tls_socket is not None:
            self._tls_socket.close()

    def _admit(self) -> bool:
        """Count an accepted connection; False (and counted as dropped) when at the limit or stopping."""
        self.metrics.connections_accepted.inc()
        if not self._accepting or len(self.sessions) >= self.max_connections:
            self.metrics.connections_dropped.inc()
            return False
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            # At the limit (or stopping): close at once, so the client moves on.
            writer.transport.abort()
            return
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        session.task = asyncio.current_task()
        self.sessions.add(session)
        await session.run()

    async def _accept_tls(self, sock: socket.socket) -> None:
        """The TLS accept loop: admit or refuse each connection, then hand it to its own task."""
        loop = asyncio.get_running_loop()
        for _ in iter(int, 1):  # until cancelled (stop_accepting)
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: pause instead of spinning
                log.warning("typha_accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            if not self._admit():
                conn.close()  # before any TLS work, so the client moves on
                continue
            task = asyncio.create_task(self._tls_connection(conn, addr), name=f"typha-tls-{_peer(addr)}")
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _tls_connection(self, conn: socket.socket, addr: object) -> None:
        """One connection's TLS handshake under the deadline, then its session; a failure is logged once."""
        assert self.ssl_context is not None
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        reader = asyncio.StreamReader(limit=2**20)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.ssl_context, ssl_handshake_timeout=self.config.handshake_timeout)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError and the handshake timeout are OSErrors
            self.metrics.connections_dropped.inc()
            log.info("tls_handshake_failed", peer=_peer(addr), reason=_tls_reason(exc),
                     error=str(exc) or type(exc).__name__)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._serve(reader, writer)

    def forget(self, session: Session) -> None:
        """A session ended."""
        self.sessions.discard(session)

    def set_max_connections(self, limit: int) -> None:
        """A new connection limit (from rebalancing)."""
        self.max_connections = limit
        self.metrics.max_connections.set(limit)

    def streaming_sessions(self, syncer: str | None = None) -> list[Session]:
        """Sessions past their hello, optionally of one syncer."""
        return [s for s in self.sessions
                if s.streaming and (syncer is None or s.pipeline is not None and s.pipeline.name == syncer)]

    # ------------------------------------------------------------ background duties

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Every tick: timers, pings and too-slow bounds of every session, until ``stop`` is set."""
        while not stop.is_set():
            now = time.monotonic()
            for session in list(self.sessions):
                if session.ending is not None:
                    continue
                reason = session.housekeeping(now)
                if reason is None:
                    continue
                log.info("client_dropped", peer=session.peer, node=session.node or None, reason=reason,
                         lag=round(session.lag(now), 3), backlog=session.backlog())
                session.end(reason, ByeReason.TOO_SLOW if reason == "too-slow" else None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick):
                    await stop.wait()

    async def shed(self, stop: asyncio.Event) -> None:
        """Drop one connection at a time, jittered, while there are more than the limit."""
        while not stop.is_set():
            interval = self.config.drop_interval * self._rng.uniform(0.5, 1.5)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
            if stop.is_set():
                return
            streaming = self.streaming_sessions()
            if len(streaming) > self.max_connections:
                victim = self._rng.choice(streaming)
                log.info("client_shed", peer=victim.peer, node=victim.node, connections=len(streaming),
                         limit=self.max_connections)
                victim.end("rebalance", ByeReason.REBALANCE)

    async def drain(self, timeout: float, max_interval: float) -> None:
        """Graceful stop: no new clients; bye the open ones one at a time within ``timeout``."""
        self.stop_accepting()
        started = time.monotonic()
        deadline = started + timeout
        count = len(self.sessions)
        interval = min(max_interval, timeout * 0.9 / count) if count else 0.0
        log.info("typha_draining", clients=count, timeout=timeout, interval=round(interval, 3))
        for _ in range(count + 1000):  # every session, plus any still handshaking when we began
            open_sessions = [s for s in self.sessions if s.ending is None]
            if not open_sessions:
                break
            if time.monotonic() >= deadline:
                for s in open_sessions:
                    s.end("shutdown", ByeReason.SHUTDOWN)
                break
            victim = self._rng.choice(open_sessions)
            victim.end("shutdown", ByeReason.SHUTDOWN)
            if interval > 0:
                await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        await self._wait_sessions(max(0.5, deadline - time.monotonic()))
        log.info("typha_drained", seconds=round(time.monotonic() - started, 3), left=len(self.sessions))

    async def _wait_sessions(self, timeout: float) -> None:
        tasks = {s.task for s in self.sessions if s.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self) -> None:
        """End every session and the listener (after a drain, or on a hard stop)."""
        self.stop_accepting()
        for task in list(self._handshakes):
            task.cancel()
        for s in list(self.sessions):
            s.end("shutdown", ByeReason.SHUTDOWN)
        await self._wait_sessions(2.0)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._listener.wait_closed()


def _listen_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (empty host: every address, IPv6 too if we can)."""
    if not host:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=1024)
        else:
            sock = socket.create_server(("0.0.0.0", port), backlog=1024)
    else:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.create_server(address[:2], family=family, backlog=1024)
    sock.setblocking(False)
    return sock


def _peer(addr: object) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


def _tls_reason(exc: BaseException) -> str:
    """A short reason for a failed handshake: OpenSSL's reason code, or what else happened."""
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.library or "ssl-error")
    if isinstance(exc, TimeoutError) or "longer than" in str(exc):  # the transport's deadline message
        return "handshake-timeout"
    if isinstance(exc, ConnectionError):
        return "connection-lost"
    return type(exc).__name__
