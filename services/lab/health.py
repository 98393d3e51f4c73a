"""Health of the lab's services: an HTTP GET made from inside the service's namespace."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.parse
from collections.abc import Callable

from services.lab.errors import LabError
from services.lab.namespaces import NetnsSwitch


async def http_status(switch: NetnsSwitch, netns: str, url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of ``GET url`` made inside ``netns``; None when nothing answers."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = switch.socket(netns, socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            request = f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            await loop.sock_sendall(sock, request.encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = await loop.sock_recv(sock, 1024)
                if not chunk:
                    break
                head += chunk
    except (TimeoutError, OSError):
        return None
    finally:
        sock.close()
    fields = head.split(b"\r\n", 1)[0].split()
    if len(fields) >= 2 and fields[0].startswith(b"HTTP/") and fields[1].isdigit():
        return int(fields[1])
    return None


async def wait_healthy(switch: NetnsSwitch, netns: str, url: str, what: str, timeout: float,
                       alive: Callable[[], str] | None = None) -> float:
    """Poll until ``url`` answers 200; return the seconds it took. Raise LabError at the deadline.

    ``alive`` returns what is wrong with the process behind the URL ("" when nothing), to fail early.
    """
    started = time.monotonic()
    deadline = started + timeout
    interval = 0.05
    last: int | None = None
    while True:
        last = await http_status(switch, netns, url)
        if last == 200:
            return time.monotonic() - started
        if alive is not None:
            problem = alive()
            if problem:
                raise LabError(f"{what} {problem}")
        if time.monotonic() >= deadline:
            answer = f"answered {last}" if last is not None else "did not answer"
            raise LabError(f"{what} not healthy after {timeout:.0f}s: {url} {answer}")
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.5)
