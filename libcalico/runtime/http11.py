"""A small HTTP/1.1 server for status endpoints: a request parser without I/O and an asyncio driver.

How it works::

    socket bytes ─► RequestParser.feed() ─► next_request() ─► Request ─► handler(Request) ─► Response
                                               │ raises RequestError(status)                 │
                                               ▼                                            ▼
                                   error answer, then close            render_response() ─► transport.write()

One :class:`HTTPConnection` (an ``asyncio.Protocol``) per client. Requests are
answered in order as they complete (pipelining and keep-alive work; HTTP/1.0
closes unless it asks for keep-alive). Everything a client can make the server
hold is bounded (:class:`Limits`): the request line and each header line, the
number of header fields and the whole head, a request body (read and thrown
away), the time to send a whole request head (from the connection, or from the
first byte of a later request), the time a keep-alive connection may sit
idle, the time a client may leave answers unread (reading from it stops while
its answers queue up), and the number of open connections (at the cap the
longest-idle keep-alive connection is closed to make room; when none is idle
the newcomer is answered 503 and closed). A malformed
request is answered 400 (413, 414, 431, 505 where they say more) and the
connection is closed, since its framing can no longer be trusted.

It is the server of ``/liveness``, ``/readiness`` and ``/metrics``
(:mod:`libcalico.runtime.health`); it imports nothing outside the standard
library, so a service starts without an HTTP framework.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import structlog

from libcalico.runtime.errors import ServiceError

log = structlog.get_logger(__name__)

REASONS: dict[int, str] = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Content Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")


class Limits(NamedTuple):
    """What one client may make the server hold (sizes in bytes, times in seconds)."""

    max_line: int = 8190           # request line, and each header line
    max_headers: int = 100         # header fields per request
    max_head: int = 32768          # the whole request head
    max_body: int = 65536          # a request body (read and discarded)
    head_timeout: float = 10.0     # from the first byte of a request to the end of its head
    idle_timeout: float = 75.0     # a keep-alive connection with no request under way
    write_timeout: float = 30.0    # answers queued and unread by the client
    max_connections: int = 100     # open connections; more are answered 503 and closed


class RequestError(ServiceError):
    """A request the server cannot take: the HTTP status to answer and why."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {REASONS.get(status, '')}: {reason}")


class Request(NamedTuple):
    """One parsed request head; header names in lower case, repeated fields joined with ``, ``."""

    method: str
    target: str
    path: str
    version: tuple[int, int]
    headers: dict[str, str]
    keep_alive: bool


class Response(NamedTuple):
    """What a handler answers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


class RequestParser:
    """Request heads from a byte stream, one at a time; no I/O, no clock."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._scan = 0                   # where the search for the next line end resumes
        self._lines: list[bytes] = []    # the head so far (request line first)
        self._head_bytes = 0
        self._body_left = 0              # bytes of the last request's body still to discard
        self._partial = False            # bytes of an unfinished request have arrived

    @property
    def pending(self) -> bool:
        """Whether part of a request (or of its body) has arrived and the rest has not."""
        return self._partial or self._body_left > 0

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        if data:
            self._buf += data
            self._partial = True

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive; raise RequestError."""
        if self._body_left:
            dropped = min(self._body_left, len(self._buf))
            del self._buf[:dropped]
            self._body_left -= dropped
            if self._body_left:
                return None
        limits = self.limits
        for _ in range(limits.max_headers + 2 + len(self._buf)):  # at most one pass per line in the buffer
            end = self._buf.find(b"\n", self._scan)
            if end < 0:
                if len(self._buf) > limits.max_line:
                    raise self._too_long()
                self._scan = len(self._buf)
                self._partial = bool(self._buf or self._lines)
                return None
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limits.max_line:
                raise self._too_long()
            if not self._lines:
                if line:  # empty lines before a request line are ignored (RFC 9112 2.2)
                    self._lines.append(line)
                continue
            if line:
                self._head_bytes += len(line)
                if len(self._lines) > limits.max_headers:
                    raise RequestError(431, f"more than {limits.max_headers} header fields")
                if self._head_bytes > limits.max_head:
                    raise RequestError(431, f"request head longer than {limits.max_head} bytes")
                self._lines.append(line)
                continue
            lines, self._lines, self._head_bytes = self._lines, [], 0
            request = self._parse(lines)
            self._partial = bool(self._buf) or self._body_left > 0
            return request
        raise RequestError(400, "malformed request")  # unreachable: every pass consumes a line

    def _too_long(self) -> RequestError:
        if self._lines:
            return RequestError(431, f"header line longer than {self.limits.max_line} bytes")
        return RequestError(414, f"request line longer than {self.limits.max_line} bytes")

    def _parse(self, lines: list[bytes]) -> Request:
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise RequestError(400, "malformed request line")
        method, raw_target, raw_version = parts
        match = _VERSION.fullmatch(raw_version)
        if match is None:
            raise RequestError(400, "malformed HTTP version")
        version = (int(match.group(1)), int(match.group(2)))
        if version[0] != 1:
            raise RequestError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        target = raw_target.decode("latin-1")
        headers = self._headers(lines[1:])
        return Request(method.decode("ascii"), target, _path_of(target), version, headers,
                       self._framing(version, headers))

    @staticmethod
    def _headers(lines: list[bytes]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                raise RequestError(400, "obsolete header line folding")
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise RequestError(400, "malformed header field")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return headers

    def _framing(self, version: tuple[int, int], headers: dict[str, str]) -> bool:
        """Check Host and the body framing; note the body to discard; return whether to keep the connection."""
        if version >= (1, 1) and "host" not in headers:
            raise RequestError(400, "an HTTP/1.1 request needs a Host header")
        if "transfer-encoding" in headers:
            raise RequestError(400, "request bodies with a Transfer-Encoding are not accepted")
        length_text = headers.get("content-length")
        if length_text is not None:
            lengths = {part.strip() for part in length_text.split(",")}
            text = next(iter(lengths))
            if len(lengths) != 1 or not (text.isascii() and text.isdigit()):
                raise RequestError(400, "malformed Content-Length")
            if len(text) > 18 or int(text) > self.limits.max_body:
                raise RequestError(413, f"request body longer than {self.limits.max_body} bytes")
            self._body_left = int(text)
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens


def _path_of(target: str) -> str:
    if target.startswith(("http://", "https://")):  # absolute form: drop scheme and authority
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    elif not target.startswith("/") and target != "*":
        raise RequestError(400, "malformed request target")
    return target.split("?", 1)[0].split("#", 1)[0]


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: tuple[int, str] = (0, "")


def http_date(now: float | None = None) -> str:
    """The IMF-fixdate of ``now`` (default: the current second), as the Date header wants it."""
    global _date_cache
    second = int(time.time() if now is None else now)
    if _date_cache[0] != second:
        t = time.gmtime(second)
        _date_cache = (second, f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                               f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
    return _date_cache[1]


def render_response(response: Response, *, keep_alive: bool, version: tuple[int, int] = (1, 1),
                    head_only: bool = False) -> bytes:
    """Status line, headers and body of an answer."""
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
             f"Date: {http_date()}",
             f"Content-Type: {response.content_type}",
             f"Content-Length: {len(response.body)}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close")
    elif version < (1, 1):
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def error_response(status: int, reason: str) -> Response:
    """A plain-text error answer."""
    return Response(status, f"{status} {REASONS.get(status, '')}: {reason}\n".encode())


Handler = Callable[[Request], Response]


class HTTPConnection(asyncio.Protocol):
    """One client connection: parse, answer in order, enforce the limits and deadlines."""

    def __init__(self, handler: Handler, limits: Limits, connections: set[HTTPConnection]) -> None:
        self.handler = handler
        self.limits = limits
        self.connections = connections
        self.parser = RequestParser(limits)
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._idle_since = 0.0
        self._writing_paused = False
        self._closing = False

    @property
    def idle(self) -> bool:
        """Kept alive between requests: nothing received, nothing waiting to be written."""
        return self._timer_kind == "idle" and not self._closing

    # asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        if len(self.connections) >= self.limits.max_connections:
            idle = [c for c in self.connections if c.idle]
            if not idle:
                log.warning("status_connection_refused", reason="too many connections",
                            limit=self.limits.max_connections)
                self._finish(error_response(503, "too many connections"))
                return
            min(idle, key=lambda c: c._idle_since).close()  # the longest-idle keep-alive makes room
        self.connections.add(self)
        self._arm("head", self.limits.head_timeout)  # the first request is due within the head timeout

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.parser.feed(data)
        self._answer()

    def eof_received(self) -> bool:
        return False  # the client is done sending: close once our answers are written

    def pause_writing(self) -> None:
        assert self.transport is not None
        self._writing_paused = True
        self.transport.pause_reading()
        self._arm("write", self.limits.write_timeout)

    def resume_writing(self) -> None:
        assert self.transport is not None
        self._writing_paused = False
        if self._closing:
            return
        self.transport.resume_reading()
        self._disarm()
        self._answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._disarm()
        self.connections.discard(self)

    # ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection once what is queued is written."""
        self._closing = True
        self._disarm()
        self.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def _answer(self) -> None:
        """Answer every complete request buffered, then set the deadline that applies now."""
        assert self.transport is not None
        for _ in range(10_000):  # bounded; each pass answers one request
            if self._closing or self._writing_paused:
                return
            try:
                request = self.parser.next_request()
            except RequestError as exc:
                self._finish(error_response(exc.status, exc.reason))
                return
            if request is None:
                break
            response = self._handle(request)
            self._timer_kind = ""  # the next request gets its own head deadline
            self.transport.write(render_response(response, keep_alive=request.keep_alive, version=request.version,
                                                 head_only=request.method == "HEAD"))
            if not request.keep_alive:
                self.close()
                return
        if self._writing_paused:
            return
        if self.parser.pending:
            if self._timer_kind != "head":
                self._arm("head", self.limits.head_timeout)
        elif not self._timer_kind:  # an answer went out (or writing resumed): idle until the next request
            self._arm("idle", self.limits.idle_timeout)

    def _handle(self, request: Request) -> Response:
        try:
            return self.handler(request)
        except Exception:  # a request is a root of its own: log it, answer 500, keep serving
            log.exception("status_request_failed", method=request.method, path=request.path)
            return error_response(500, "the handler failed")

    def _finish(self, response: Response) -> None:
        assert self.transport is not None
        self.transport.write(render_response(response, keep_alive=False))
        self.close()

    def _arm(self, kind: str, seconds: float) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer_kind = kind
        self._idle_since = loop.time()
        self._timer = loop.call_later(seconds, self._expired, kind)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_kind = ""

    def _expired(self, kind: str) -> None:
        self._timer = None
        if self._closing or self.transport is None:
            return
        if kind == "head":
            self._finish(error_response(408, f"request not complete within {self.limits.head_timeout:g}s"))
        elif kind == "write":
            self._closing = True
            self.transport.abort()  # the client does not read its answers
        else:
            self.close()


class HTTPServer:
    """A listening socket whose connections are :class:`HTTPConnection` s answering through ``handler``."""

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.connections: set[HTTPConnection] = set()
        self._server: asyncio.Server | None = None

    async def listen(self, host: str | None, port: int) -> int:
        """Listen on ``host:port`` (None: every address); return the bound port. OSError when it cannot."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HTTPConnection(self.handler, self.limits, self.connections), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self.connections):
            conn.close()
        await server.wait_closed()
