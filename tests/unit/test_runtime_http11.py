"""The status HTTP server: the request parser on its own, then the server over real loopback sockets."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcalico.runtime.http11 import (
    HTTPServer,
    Limits,
    Request,
    RequestError,
    RequestParser,
    Response,
    http_date,
    render_response,
)

GET = b"GET /readiness HTTP/1.1\r\nHost: x\r\n\r\n"


def parse_all(data: bytes, limits: Limits | None = None) -> list[Request]:
    parser = RequestParser(limits)
    parser.feed(data)
    out: list[Request] = []
    for _ in range(100):
        request = parser.next_request()
        if request is None:
            return out
        out.append(request)
    raise AssertionError("parser never ran dry")


def parse_error(data: bytes, limits: Limits | None = None) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_all(data, limits)
    return info.value


# --------------------------------------------------------------------------- parser

def test_request_line_headers_and_keep_alive() -> None:
    (req,) = parse_all(b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/plain\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (req.method, req.target, req.path, req.version) == ("GET", "/metrics?x=1", "/metrics", (1, 1))
    assert req.headers == {"host": "h", "accept": "text/plain", "x-a": "1, 2"}
    assert req.keep_alive is True
    assert parse_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n")[0].keep_alive is False
    assert parse_all(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive is False
    assert parse_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].keep_alive is True


def test_bare_lf_lines_leading_blank_lines_and_absolute_form() -> None:
    (req,) = parse_all(b"\r\n\nGET http://node:9099/liveness HTTP/1.1\nHost: node\n\n")
    assert (req.path, req.headers) == ("/liveness", {"host": "node"})


def test_pipelined_requests_and_a_discarded_body() -> None:
    data = b"POST /readiness HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + GET
    first, second = parse_all(data)
    assert (first.method, second.method, second.path) == ("POST", "GET", "/readiness")


def test_incomplete_request_waits_and_is_pending() -> None:
    parser = RequestParser()
    assert not parser.pending
    parser.feed(GET[:10])
    assert parser.next_request() is None and parser.pending
    parser.feed(GET[10:])
    assert parser.next_request() is not None and not parser.pending


STREAM = GET + b"GET /liveness HTTP/1.1\r\nHost: y\r\nContent-Length: 2\r\n\r\nab" + GET


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=8))
def test_any_split_of_a_stream_gives_the_same_requests(cuts: list[int]) -> None:
    data = STREAM
    parser = RequestParser()
    got: list[str] = []
    edges = [0, *sorted(set(cuts)), len(data)]
    for start, end in zip(edges, edges[1:], strict=False):
        parser.feed(data[start:end])
        for _ in range(10):
            request = parser.next_request()
            if request is None:
                break
            got.append(request.path)
    assert got == [r.path for r in parse_all(data)] == ["/readiness", "/liveness", "/readiness"]


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_give_requests_or_a_request_error_only(data: bytes, chunk: int) -> None:
    parser = RequestParser(Limits(max_line=200, max_headers=5, max_head=400, max_body=100))
    try:
        for start in range(0, len(data), chunk):
            parser.feed(data[start:start + chunk])
            for _ in range(len(data) + 1):
                if parser.next_request() is None:
                    break
    except RequestError as exc:
        assert 400 <= exc.status < 600


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"GET /\r\n\r\n", 400, "request line"),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request line"),
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request line"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP/1.0"),
    (b"GET / HTTQ/1.1\r\nHost: h\r\n\r\n", 400, "version"),
    (b"GET nowhere HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400, "folding"),
    (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "header field"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400, "header field"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n", 413, "body"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413, "body"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: \xb2\r\n\r\n", 400, "Content-Length"),
])
def test_malformed_requests_are_refused_with_a_reason(data: bytes, status: int, words: str) -> None:
    err = parse_error(data)
    assert err.status == status and words in err.reason


def test_size_limits() -> None:
    limits = Limits(max_line=64, max_headers=3, max_head=100)
    assert parse_error(b"GET /" + b"a" * 80 + b" HTTP/1.1\r\n", limits).status == 414
    assert parse_error(b"GET /" + b"a" * 80, limits).status == 414  # no line end yet, already too long
    assert parse_error(b"GET / HTTP/1.1\r\nX: " + b"a" * 80 + b"\r\n", limits).status == 431
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(5))
    assert "header fields" in parse_error(b"GET / HTTP/1.1\r\n" + headers + b"\r\n", limits).reason
    big = b"".join(b"X%d: " % i + b"a" * 40 + b"\r\n" for i in range(3))
    assert "head longer" in parse_error(b"GET / HTTP/1.1\r\n" + big + b"\r\n", limits).reason


def test_response_rendering() -> None:
    rsp = Response(200, b"ok", "text/plain", headers=(("Allow", "GET"),))
    text = render_response(rsp, keep_alive=True).decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n") and text.endswith("\r\n\r\nok")
    assert "Content-Length: 2\r\n" in text and "Allow: GET\r\n" in text and "Connection" not in text
    assert "Connection: close" in render_response(rsp, keep_alive=False).decode()
    assert "Connection: keep-alive" in render_response(rsp, keep_alive=True, version=(1, 0)).decode()
    head = render_response(rsp, keep_alive=True, head_only=True)
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 2" in head
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1_700_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT"


# --------------------------------------------------------------------------- server

def echo_path(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return Response(200, request.path.encode())


Start = Callable[..., Awaitable[tuple[HTTPServer, int]]]


@pytest.fixture
async def server() -> AsyncIterator[Start]:
    started: list[HTTPServer] = []

    async def start(limits: Limits | None = None) -> tuple[HTTPServer, int]:
        srv = HTTPServer(echo_path, limits)
        port = await srv.listen("127.0.0.1", 0)
        started.append(srv)
        return srv, port

    yield start
    for srv in started:
        await srv.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    async with asyncio.timeout(timeout):
        return await reader.read() == b""


async def test_keep_alive_pipelining_head_and_a_failing_handler(server: Start) -> None:
    _, port = await server()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                 b"HEAD /c HTTP/1.1\r\nHost: h\r\n\r\nGET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await read_answer(reader))[2] == b"/a"
    assert (await read_answer(reader))[2] == b"/b"
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert b"Content-Length: 2" in head  # HEAD: the length of the body it does not send
    status, _, body = await read_answer(reader)
    assert status == 500 and b"handler failed" in body
    writer.write(b"GET /still HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    status, headers, body = await read_answer(reader)
    assert (status, body, headers["connection"]) == (200, b"/still", "close")
    assert await closed_by_server(reader)
    writer.close()


async def test_garbage_gets_400_and_the_connection_closed(server: Start) -> None:
    _, port = await server()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    status, headers, _ = await read_answer(reader)
    assert (status, headers["connection"]) == (400, "close")
    assert await closed_by_server(reader)
    writer.close()


async def test_slow_head_gets_408_and_idle_connections_are_closed(server: Start) -> None:
    _, port = await server(Limits(head_timeout=0.2, idle_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost")  # ... and nothing more
    status, _, _ = await read_answer(reader)
    assert status == 408
    assert await closed_by_server(reader)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    assert (await read_answer(reader))[0] == 200
    assert await closed_by_server(reader, timeout=3.0)  # idle after its answer
    writer.close()


async def test_connection_cap_evicts_the_longest_idle_else_refuses_with_503(server: Start) -> None:
    srv, port = await server(Limits(max_connections=2))
    busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _, writer in busy:
        writer.write(GET[:12])  # a request under way: not idle
    async with asyncio.timeout(5):
        while len(srv.connections) < 2:
            await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await read_answer(reader))[0] == 503
    assert await closed_by_server(reader)
    writer.close()
    for reader, writer in busy:  # both finish their request and become idle keep-alives
        writer.write(GET[12:])
        assert (await read_answer(reader))[0] == 200
    newcomer = await asyncio.open_connection("127.0.0.1", port)
    newcomer[1].write(GET)
    assert (await read_answer(newcomer[0]))[0] == 200
    assert await closed_by_server(busy[0][0])  # the longest idle made room
    busy[1][1].write(GET)
    assert (await read_answer(busy[1][0]))[0] == 200
    for _, writer in (*busy, newcomer):
        writer.close()


async def test_a_connection_that_never_sends_is_closed_after_the_head_timeout(server: Start) -> None:
    _, port = await server(Limits(head_timeout=0.2, idle_timeout=60))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\r\n\r\n")  # blank lines do not count as a request
    status, _, _ = await read_answer(reader)
    assert status == 408
    assert await closed_by_server(reader)
    writer.close()


async def test_client_that_never_reads_is_dropped_and_others_are_served(server: Start) -> None:
    srv, port = await server(Limits(write_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(high=1 << 22)
    request = b"GET /" + b"x" * 4000 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    writer.write(request * 2000)  # ~8 MB of answers it never reads
    loop = asyncio.get_running_loop()
    other = await loop.run_in_executor(None, _plain_get, port)
    assert other == (200, b"/plain")
    async with asyncio.timeout(10):
        while srv.connections:  # the reader-less client is aborted after the write timeout
            await asyncio.sleep(0.02)
    writer.close()


def _plain_get(port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/plain")
        rsp = conn.getresponse()
        return rsp.status, rsp.read()
    finally:
        conn.close()


def test_serves_under_uvloop() -> None:
    """Typha runs on uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def exchange() -> tuple[int, bytes]:
        srv = HTTPServer(echo_path)
        port = await srv.listen("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET + b"GET /two HTTP/1.0\r\n\r\n")
            assert (await read_answer(reader))[2] == b"/readiness"
            status, _, body = await read_answer(reader)
            assert await closed_by_server(reader)
            writer.close()
            return status, body
        finally:
            await srv.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(exchange()) == (200, b"/two")


async def test_close_ends_open_connections(server: Start) -> None:
    srv, port = await server()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET)
    assert (await read_answer(reader))[0] == 200
    await srv.close()
    assert await closed_by_server(reader)
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
