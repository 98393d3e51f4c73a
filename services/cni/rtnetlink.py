"""Just enough rtnetlink (linux/rtnetlink.h, RFC 3549) for a pod's interface: links, addresses, routes.

The CNI plugin is a process per pod and the runtime waits for it, so it cannot
afford pyroute2's import (about 100 ms of CPU, most of it for IPDB/NDB and
socket families it never uses) for the dozen requests one ADD makes. Felix, a
long-lived daemon, keeps pyroute2.

How it works::

    message    nlmsghdr (len u32, type u16, flags u16, seq u32, pid u32)
               + family header (ifinfomsg | ifaddrmsg | rtmsg) + attributes
    attribute  rtattr (len u16, type u16) + payload, padded to 4 bytes;
               a nested attribute's payload is more attributes

The codec (``attr``, ``message``, ``parse`` and the header builders) is pure:
values in, bytes out, and back. :class:`Rtnl` is the driver: one NETLINK_ROUTE
socket, opened in this network namespace or in the one at a path (a short-lived
thread enters it with setns(2), makes the socket and exits; the socket stays in
that namespace). ``call`` sends one request with NLM_F_ACK (or a dump) and
gathers the replies up to the ACK or NLMSG_DONE; a negative errno raises
:class:`NetlinkError`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1
CLONE_NEWNET = 0x40000000
RECV_SIZE = 1 << 16
TIMEOUT = 10.0

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")
_HEADERS = {
    RTM_NEWLINK: _IFINFOMSG, RTM_DELLINK: _IFINFOMSG, RTM_GETLINK: _IFINFOMSG,
    RTM_NEWADDR: _IFADDRMSG, RTM_DELADDR: _IFADDRMSG, RTM_GETADDR: _IFADDRMSG,
    RTM_NEWROUTE: _RTMSG, RTM_DELROUTE: _RTMSG, RTM_GETROUTE: _RTMSG,
}


class NetlinkError(OSError):
    """The kernel refused a request (``code`` is the errno), or its answer could not be read."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or os.strerror(code))
        self.code = code


# ---------------------------------------------------------------- codec (pure)


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    """A 32-bit unsigned attribute."""
    return attr(kind, _U32.pack(value))


def attr_str(kind: int, text: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, text.encode() + b"\0")


def attr_ip(kind: int, address: str) -> bytes:
    """An address attribute (4 or 16 bytes)."""
    return attr(kind, ipaddress.ip_address(address).packed)


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """The link header."""
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(family: int, prefixlen: int, index: int) -> bytes:
    """The address header (global scope)."""
    return _IFADDRMSG.pack(family, prefixlen, 0, 0, index)


def rtmsg(family: int, dst_len: int = 0, scope: int = 0, table: int = RT_TABLE_MAIN,
          protocol: int = RTPROT_STATIC, kind: int = RTN_UNICAST) -> bytes:
    """The route header."""
    return _RTMSG.pack(family, dst_len, 0, 0, table, protocol, scope, kind, 0)


def dump_rtmsg(family: int) -> bytes:
    """The route header of a dump request (no filter: every table)."""
    return _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message."""
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


@dataclass
class Message:
    """One decoded message: its family header's fields and its top-level attributes."""

    kind: int
    flags: int
    seq: int
    header: tuple[int, ...] = ()
    attrs: dict[int, bytes] = field(default_factory=dict)
    error: int = 0  # NLMSG_ERROR: the errno (0 is an ACK)

    def u32(self, kind: int) -> int | None:
        """A 32-bit attribute, or None."""
        value = self.attrs.get(kind)
        return _U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else None

    def ip(self, kind: int) -> str | None:
        """An address attribute as text, or None."""
        value = self.attrs.get(kind)
        return str(ipaddress.ip_address(value)) if value is not None and len(value) in (4, 16) else None


def parse_attrs(buf: bytes) -> dict[int, bytes]:
    """Top-level attributes by type (the nested and byte-order flags dropped)."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(buf):
        length, kind = _RTATTR.unpack_from(buf, offset)
        if length < _RTATTR.size or offset + length > len(buf):
            raise NetlinkError(errno.EBADMSG, f"malformed attribute at offset {offset}")
        out[kind & 0x3FFF] = buf[offset + _RTATTR.size: offset + length]
        offset += _align(length)
    return out


def parse(buf: bytes) -> list[Message]:
    """Every message in one datagram."""
    out: list[Message] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(buf):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if length < _NLMSGHDR.size or offset + length > len(buf):
            raise NetlinkError(errno.EBADMSG, f"truncated netlink message at offset {offset}")
        body = buf[offset + _NLMSGHDR.size: offset + length]
        if kind in (NLMSG_ERROR, NLMSG_DONE):  # an errno (a dump's DONE carries its status)
            code = -_ERRNO.unpack_from(body)[0] if len(body) >= _ERRNO.size else 0
            out.append(Message(kind, flags, seq, error=code))
        elif (header := _HEADERS.get(kind)) is not None and len(body) >= header.size:
            out.append(Message(kind, flags, seq, header.unpack_from(body), parse_attrs(body[header.size:])))
        else:
            out.append(Message(kind, flags, seq))
        offset += _align(length)
    return out


def format_mac(raw: bytes) -> str:
    """``ee:ee:ee:ee:ee:ee``."""
    return ":".join(f"{b:02x}" for b in raw)


# ---------------------------------------------------------------- driver


def _setns(fd: int) -> None:
    import ctypes  # only namespace switches need it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread that has entered the network namespace at path ``netns``."""
    box: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=work, name="netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        sock.settimeout(TIMEOUT)
    except OSError:
        sock.close()
        raise
    return sock


class Rtnl:
    """A NETLINK_ROUTE socket in this network namespace, or in the one at path ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = _new_socket() if netns is None else in_netns(netns, _new_socket)
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def call(self, kind: int, flags: int, body: bytes) -> list[Message]:
        """Send one request (NLM_F_ACK unless a dump); return the replies; raise NetlinkError."""
        self._seq += 1
        seq = self._seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        flags |= NLM_F_REQUEST if dump else NLM_F_REQUEST | NLM_F_ACK
        out: list[Message] = []
        deadline = time.monotonic() + TIMEOUT
        try:
            self._sock.send(message(kind, flags, seq, body))
            while time.monotonic() < deadline:
                data, _, msg_flags, _ = self._sock.recvmsg(RECV_SIZE)
                if msg_flags & socket.MSG_TRUNC:
                    raise NetlinkError(errno.EMSGSIZE, "netlink reply larger than the receive buffer")
                for msg in parse(data):
                    if msg.seq != seq:
                        continue
                    if msg.kind in (NLMSG_ERROR, NLMSG_DONE):
                        if msg.error:
                            raise NetlinkError(msg.error)
                        return out
                    out.append(msg)
        except TimeoutError:
            pass
        raise NetlinkError(errno.ETIMEDOUT, f"no netlink answer within {TIMEOUT} s")
