"""Per-connection state machines of the Typha protocol, for both ends, without I/O.

How it works: a driver feeds received bytes to :meth:`receive` with the current
time and gets back checked messages; it asks :meth:`data_to_send` for the bytes
to write and calls :meth:`check_timers` now and then to learn whether a
deadline passed. Every state change goes through one transition table per
side; a pair missing from the table is a :class:`ProtocolError` that names the
state and the event::

    server:  AWAIT_HELLO ──hello──► HELLO_RECEIVED ──accept──► STREAMING ──bye──► CLOSING
                                         └──reject──► CLOSED          (any) ──close──► CLOSED
    client:  AWAIT_HELLO ──hello──► STREAMING ──bye──► CLOSING
             AWAIT_HELLO ──error──► CLOSED            (any) ──close──► CLOSED
"""

from __future__ import annotations

import enum

from libcalico.typha.protocol import (
    HANDSHAKE_TIMEOUT,
    Bye,
    ByeReason,
    ClientHello,
    Error,
    FrameDecoder,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Sender,
    ServerHello,
    encode,
    parse_message,
)

# Clients only ever send hello, ping and pong: small frames. A server that
# accepted a hello still bounds what a client may send.
DEFAULT_MAX_CLIENT_FRAME = 64 * 1024


class ServerState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    HELLO_RECEIVED = "hello-received"
    STREAMING = "streaming"
    CLOSING = "closing"
    CLOSED = "closed"


class ClientState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    STREAMING = "streaming"
    CLOSING = "closing"
    CLOSED = "closed"


S, C = ServerState, ClientState

SERVER_TRANSITIONS: dict[tuple[ServerState, str], ServerState] = {
    (S.AWAIT_HELLO, "hello"): S.HELLO_RECEIVED,
    (S.HELLO_RECEIVED, "accept"): S.STREAMING,
    (S.HELLO_RECEIVED, "reject"): S.CLOSED,
    (S.HELLO_RECEIVED, "ping"): S.HELLO_RECEIVED,
    (S.HELLO_RECEIVED, "pong"): S.HELLO_RECEIVED,
    (S.STREAMING, "ping"): S.STREAMING,
    (S.STREAMING, "pong"): S.STREAMING,
    (S.STREAMING, "bye"): S.CLOSING,
    (S.CLOSING, "ping"): S.CLOSING,
    (S.CLOSING, "pong"): S.CLOSING,
}

CLIENT_TRANSITIONS: dict[tuple[ClientState, str], ClientState] = {
    (C.AWAIT_HELLO, "hello"): C.STREAMING,
    (C.AWAIT_HELLO, "error"): C.CLOSED,
    (C.AWAIT_HELLO, "ping"): C.AWAIT_HELLO,
    (C.STREAMING, "status"): C.STREAMING,
    (C.STREAMING, "kvs"): C.STREAMING,
    (C.STREAMING, "ping"): C.STREAMING,
    (C.STREAMING, "pong"): C.STREAMING,
    (C.STREAMING, "error"): C.CLOSED,
    (C.STREAMING, "bye"): C.CLOSING,
}


def _step(table: dict, state: enum.Enum, event: str) -> enum.Enum:
    if event == "close":
        return type(state)("closed")
    try:
        return table[(state, event)]
    except KeyError:
        raise ProtocolError(f"message {event!r} not allowed in state {state.value}") from None


class ServerConnection:
    """The server's view of one client connection."""

    def __init__(
        self,
        now: float,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        ping_interval: float = 10.0,
        pong_timeout: float = 60.0,
        max_frame: int = DEFAULT_MAX_CLIENT_FRAME,
    ) -> None:
        self.state = ServerState.AWAIT_HELLO
        self.hello: ClientHello | None = None
        self._decoder = FrameDecoder(max_frame)
        self._out: list[bytes] = []
        self._opened = now
        self._handshake_timeout = handshake_timeout
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout
        self._last_ping_sent: float | None = None
        self._last_pong = now
        self.ping_latency: float | None = None

    def _move(self, event: str) -> None:
        self.state = _step(SERVER_TRANSITIONS, self.state, event)  # type: ignore[assignment]

    def receive(self, data: bytes, now: float) -> list[Message]:
        """Feed bytes from the client; return its messages. Raises ProtocolError."""
        if self.state is ServerState.CLOSED:
            return []
        out: list[Message] = []
        for raw in self._decoder.feed(data):
            msg = parse_message(raw, Sender.CLIENT)
            assert msg is not None  # unknown client types raise
            self._move(msg.TYPE)
            if isinstance(msg, ClientHello):
                self.hello = msg
                self._last_pong = now
            elif isinstance(msg, Ping):
                self._out.append(encode(Pong(msg.ts)))
            elif isinstance(msg, Pong):
                self._last_pong = now
                if self._last_ping_sent is not None and msg.ts == self._last_ping_sent:
                    self.ping_latency = now - msg.ts
            out.append(msg)
        return out

    def accept(self, server: str, syncer: str) -> None:
        """Accept the client's hello."""
        self._move("accept")
        self._out.append(encode(ServerHello(server=server, syncer=syncer)))

    def reject(self, reason: str) -> None:
        """Refuse the client's hello; the connection is then closed."""
        self._move("reject")
        self._out.append(encode(Error(reason)))

    def bye(self, reason: ByeReason) -> None:
        """Say goodbye before closing (rebalance, shutdown, too-slow)."""
        self._move("bye")
        self._out.append(encode(Bye(reason)))

    def close(self) -> None:
        self._move("close")

    def data_to_send(self) -> bytes:
        """Bytes the protocol wants written (pongs, hellos, pings, bye)."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def check_timers(self, now: float) -> str | None:
        """Queue a ping when one is due; return a reason to close when a deadline passed."""
        if self.state is ServerState.AWAIT_HELLO:
            if now - self._opened > self._handshake_timeout:
                return "handshake-timeout"
            return None
        if self.state not in (ServerState.STREAMING, ServerState.HELLO_RECEIVED):
            return None
        if now - self._last_pong > self._pong_timeout:
            return "ping-timeout"
        if self._last_ping_sent is None or now - self._last_ping_sent >= self._ping_interval:
            self._last_ping_sent = now
            self._out.append(encode(Ping(now)))
        return None


class ClientConnection:
    """The client's view of its connection to a Typha server."""

    def __init__(
        self,
        now: float,
        *,
        syncer: str,
        node: str,
        client: str = "",
        max_frame: int | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        silence_timeout: float = 90.0,
    ) -> None:
        self.state = ClientState.AWAIT_HELLO
        self.server_hello: ServerHello | None = None
        self.bye_reason: ByeReason | None = None
        self.error: str | None = None
        self._decoder = FrameDecoder() if max_frame is None else FrameDecoder(max_frame)
        self._out: list[bytes] = [encode(ClientHello(syncer=syncer, node=node, client=client))]
        self._opened = now
        self._last_heard = now
        self._handshake_timeout = handshake_timeout
        self._silence_timeout = silence_timeout
        self.syncer = syncer

    def receive(self, data: bytes, now: float) -> list[Message]:
        """Feed bytes from the server; return its messages (unknown types dropped)."""
        if self.state is ClientState.CLOSED:
            return []
        out: list[Message] = []
        for raw in self._decoder.feed(data):
            self._last_heard = now
            msg = parse_message(raw, Sender.SERVER)
            if msg is None:
                continue
            self.state = _step(CLIENT_TRANSITIONS, self.state, msg.TYPE)  # type: ignore[assignment]
            if isinstance(msg, ServerHello):
                if msg.syncer != self.syncer:
                    raise ProtocolError(f"server answered for syncer {msg.syncer!r}, asked {self.syncer!r}")
                self.server_hello = msg
            elif isinstance(msg, Ping):
                self._out.append(encode(Pong(msg.ts)))
            elif isinstance(msg, Bye):
                self.bye_reason = msg.reason
            elif isinstance(msg, Error):
                self.error = msg.reason
            out.append(msg)
        return out

    def close(self) -> None:
        self.state = ClientState.CLOSED

    def data_to_send(self) -> bytes:
        """Bytes the protocol wants written (the hello, pongs)."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def check_timers(self, now: float) -> str | None:
        """Return a reason to give up on the server when a deadline passed."""
        if self.state is ClientState.AWAIT_HELLO and now - self._opened > self._handshake_timeout:
            return "handshake-timeout"
        if self.state is ClientState.STREAMING and now - self._last_heard > self._silence_timeout:
            return "server-silent"
        return None
