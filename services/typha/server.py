"""Typha's listener: accepts connections, runs one session task each, enforces limits, sheds and drains.

How it works::

    accept loop (asyncio.Server) ── over the limit? close at once ── else: Session task (TLS, hello, stream)
    housekeeping (every tick)    ── per session: ping due / pong timeout / handshake deadline,
                                    lag and backlog bounds ──► drop (bye: too-slow)
    shedding (ConnectionDropIntervalSecs, jittered) ── more streaming sessions than the limit?
                                    drop one at random with bye: rebalance
    drain (on stop)              ── stop accepting; bye: shutdown to one session at a time,
                                    paced to finish inside ShutdownTimeoutSecs

Nothing slow runs in the accept loop: each TLS handshake is driven by that
connection's own transport under the handshake deadline, and the session
starts only when it is done (a stalled handshake in the accept loop was
Calico's CVE-2023-41378). A failed or timed-out handshake closes only that
connection; the transport does not hand it to a session, so it is not logged
per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
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
        self._accepting = False
        self.port = 0
        metrics.max_connections.set(max_connections)

    # ------------------------------------------------------------ listening

    async def listen(self, host: str, port: int) -> int:
        """Start accepting on ``host:port`` (empty host: every address); return the bound port."""
        tls = self.ssl_context is not None
        # With TLS, the transport does each handshake for its own connection, under the handshake
        # deadline, before the session starts: the accept loop never waits for one.
        self._listener = await asyncio.start_server(
            self._accept, host or None, port, backlog=1024, reuse_address=True, ssl=self.ssl_context,
            ssl_handshake_timeout=self.config.handshake_timeout if tls else None)
        self._accepting = True
        self.port = int(self._listener.sockets[0].getsockname()[1])
        log.info("typha_listening", host=host or "*", port=self.port, tls=self.tls is not None,
                 replica=self.replica, max_connections=self.max_connections)
        return self.port

    def stop_accepting(self) -> None:
        """Close the listener; sessions already open carry on."""
        self._accepting = False
        if self._listener is not None:
            self._listener.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.metrics.connections_accepted.inc()
        if not self._accepting or len(self.sessions) >= self.max_connections:
            # At the limit (or stopping): close at once, before any TLS work, so the client moves on.
            self.metrics.connections_dropped.inc()
            writer.transport.abort()
            return
        session = Session(self, reader, writer)
        session.task = asyncio.current_task()
        self.sessions.add(session)
        await session.run()

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
                await asyncio.wait_for(stop.wait(), self.tick)

    async def shed(self, stop: asyncio.Event) -> None:
        """Drop one connection at a time, jittered, while there are more than the limit."""
        while not stop.is_set():
            interval = self.config.drop_interval * self._rng.uniform(0.5, 1.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
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
        for s in list(self.sessions):
            s.end("shutdown", ByeReason.SHUTDOWN)
        await self._wait_sessions(2.0)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.wait_closed(), 2.0)
