"""Typha wire format: length-prefixed msgpack frames and the message types.

How it works::

    frame  = uint32 big-endian length N | N bytes of one msgpack map
    map    = {"type": <str>, ...fields}

:class:`FrameDecoder` turns a byte stream into maps, enforcing the receiver's
frame-size limit; :func:`parse_message` turns a map into a frozen message
dataclass, checking every field's type; :func:`encode` does the reverse.
Nothing here does I/O, logs or looks at the clock.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from libcalico.errors import CalicoError

# One SyncStatus for the wire and for syncer callbacks: the same three states, by their wire names.
from libcalico.syncer.callbacks import SyncStatus as SyncStatus

PROTOCOL_VERSION = 1
DEFAULT_PORT = 5473
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
_HEADER = struct.Struct(">I")


class ProtocolError(CalicoError):
    """The peer broke the protocol; the connection must be closed."""


class ByeReason(enum.Enum):
    REBALANCE = "rebalance"
    SHUTDOWN = "shutdown"
    TOO_SLOW = "too-slow"


class Sender(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


# ---------------------------------------------------------------- messages


def _need(raw: Mapping[str, Any], field: str, kind: type | tuple[type, ...], what: str) -> Any:
    if field not in raw:
        raise ProtocolError(f"{what}: missing field {field!r}")
    value = raw[field]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(f"{what}: field {field!r} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise ProtocolError(f"{what}: field {field!r} has the wrong type ({type(value).__name__})")
    return value


@dataclass(frozen=True, slots=True)
class ClientHello:
    """client → server, first message: which syncer stream, for which node."""

    TYPE: ClassVar[str] = "hello"
    syncer: str
    node: str
    client: str = ""
    version: int = PROTOCOL_VERSION

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "version": self.version, "syncer": self.syncer, "node": self.node,
                "client": self.client}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> ClientHello:
        what = "client hello"
        return cls(
            version=_need(raw, "version", int, what),
            syncer=_need(raw, "syncer", str, what),
            node=_need(raw, "node", str, what),
            client=_need(raw, "client", str, what) if "client" in raw else "",
        )


@dataclass(frozen=True, slots=True)
class ServerHello:
    """server → client: the hello was accepted."""

    TYPE: ClassVar[str] = "hello"
    server: str
    syncer: str
    version: int = PROTOCOL_VERSION

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "version": self.version, "server": self.server, "syncer": self.syncer}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> ServerHello:
        what = "server hello"
        return cls(
            version=_need(raw, "version", int, what),
            server=_need(raw, "server", str, what),
            syncer=_need(raw, "syncer", str, what),
        )


@dataclass(frozen=True, slots=True)
class Error:
    """server → client: refused; the server closes after sending it."""

    TYPE: ClassVar[str] = "error"
    reason: str

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "reason": self.reason}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> Error:
        return cls(reason=_need(raw, "reason", str, "error"))


@dataclass(frozen=True, slots=True)
class Status:
    """server → client: the sync state of the stream."""

    TYPE: ClassVar[str] = "status"
    status: SyncStatus

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "status": self.status.value}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> Status:
        value = _need(raw, "status", str, "status")
        try:
            return cls(status=SyncStatus(value))
        except ValueError:
            raise ProtocolError(f"status: unknown status {value!r}") from None


@dataclass(frozen=True, slots=True)
class KVUpdate:
    """One key's new value (None for a deletion) at a datastore revision."""

    key: str
    value: dict[str, Any] | None
    revision: int


@dataclass(frozen=True, slots=True)
class KVs:
    """server → client: updates in revision order."""

    TYPE: ClassVar[str] = "kvs"
    kvs: tuple[KVUpdate, ...]

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "kvs": [[u.key, u.value, u.revision] for u in self.kvs]}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> KVs:
        items = _need(raw, "kvs", list, "kvs")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, list) or len(item) != 3:
                raise ProtocolError(f"kvs[{i}]: must be [key, value, revision]")
            key, value, revision = item
            if not isinstance(key, str):
                raise ProtocolError(f"kvs[{i}]: key must be a string")
            if value is not None and not isinstance(value, dict):
                raise ProtocolError(f"kvs[{i}]: value must be a map or nil")
            if isinstance(revision, bool) or not isinstance(revision, int):
                raise ProtocolError(f"kvs[{i}]: revision must be an integer")
            out.append(KVUpdate(key, value, revision))
        return cls(kvs=tuple(out))


@dataclass(frozen=True, slots=True)
class Ping:
    """either way: liveness probe; answered by a pong with the same ts."""

    TYPE: ClassVar[str] = "ping"
    ts: float

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "ts": self.ts}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> Ping:
        return cls(ts=float(_need(raw, "ts", (int, float), "ping")))


@dataclass(frozen=True, slots=True)
class Pong:
    """either way: the answer to a ping."""

    TYPE: ClassVar[str] = "pong"
    ts: float

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "ts": self.ts}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> Pong:
        return cls(ts=float(_need(raw, "ts", (int, float), "pong")))


@dataclass(frozen=True, slots=True)
class Bye:
    """server → client: the server is about to close this connection."""

    TYPE: ClassVar[str] = "bye"
    reason: ByeReason

    def to_map(self) -> dict[str, Any]:
        return {"type": self.TYPE, "reason": self.reason.value}

    @classmethod
    def from_map(cls, raw: Mapping[str, Any]) -> Bye:
        value = _need(raw, "reason", str, "bye")
        try:
            return cls(reason=ByeReason(value))
        except ValueError:
            # An unknown reason from a newer server still means "about to close".
            return cls(reason=ByeReason.SHUTDOWN)


Message = ClientHello | ServerHello | Error | Status | KVs | Ping | Pong | Bye

_FROM_CLIENT: dict[str, Any] = {"hello": ClientHello, "ping": Ping, "pong": Pong}
_FROM_SERVER: dict[str, Any] = {
    "hello": ServerHello, "error": Error, "status": Status, "kvs": KVs, "ping": Ping, "pong": Pong,
    "bye": Bye,
}


def parse_message(raw: Any, sender: Sender) -> Message | None:
    """Check one decoded map and build its message; None for an unknown server message type."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"frame holds a {type(raw).__name__}, not a map")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("message has no string 'type'")
    table = _FROM_CLIENT if sender is Sender.CLIENT else _FROM_SERVER
    cls = table.get(kind)
    if cls is None:
        if sender is Sender.SERVER:
            return None  # newer servers may send types we do not know; ignore them
        raise ProtocolError(f"unknown message type {kind!r} from client")
    msg: Message = cls.from_map(raw)
    return msg


# ---------------------------------------------------------------- framing


def encode_map(raw: Mapping[str, Any]) -> bytes:
    """One frame holding ``raw``."""
    body = msgpack.packb(raw, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def encode(msg: Message) -> bytes:
    """One frame holding ``msg``."""
    return encode_map(msg.to_map())


class FrameDecoder:
    """Splits a byte stream into decoded msgpack maps, enforcing a frame-size limit."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return every complete frame's decoded payload."""
        self._buf += data
        out = []
        while len(self._buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buf)
            if length > self.max_frame:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            body = bytes(self._buf[_HEADER.size : end])
            del self._buf[:end]
            try:
                out.append(msgpack.unpackb(body, raw=False, strict_map_key=True))
            except Exception as exc:  # msgpack raises several unrelated types
                raise ProtocolError(f"bad msgpack in frame: {exc}") from exc
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)
