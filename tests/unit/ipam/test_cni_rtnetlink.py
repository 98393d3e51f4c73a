"""The CNI plugin's rtnetlink codec: golden bytes for requests, decoding of replies (no kernel)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from services.cni.rtnetlink import (
    IFA_ADDRESS,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    NetlinkError,
    attr,
    attr_ip,
    attr_str,
    attr_u32,
    format_mac,
    ifaddrmsg,
    ifinfomsg,
    message,
    parse,
    parse_attrs,
    rtmsg,
)


def test_attributes_are_padded_to_four_bytes() -> None:
    # len 9 (4 header + "eth0\0"), type 3, then 3 bytes of padding
    assert attr_str(IFLA_IFNAME, "eth0").hex() == "09000300" + "6574683000" + "000000"
    assert attr_u32(RTA_OIF, 7).hex() == "08000400" + "07000000"
    assert attr(IFLA_INFO_KIND, b"veth").hex() == "08000100" + "76657468"
    assert attr_ip(RTA_DST, "10.66.0.5").hex() == "08000100" + "0a420005"
    assert attr_ip(RTA_GATEWAY, "fe80::ecee:eeff:feee:eeee").hex() == "14000500" + "fe80" + "00" * 6 + "eceeeefffeeeeeee"


def test_headers_have_the_kernels_layout() -> None:
    assert ifinfomsg(5, IFF_UP, IFF_UP).hex() == "00" "00" "0000" "05000000" "01000000" "01000000"
    assert ifaddrmsg(socket.AF_INET6, 128, 3).hex() == "0a" "80" "00" "00" "03000000"
    # family, dst_len, src_len, tos, table main, proto static, scope link, unicast, flags
    assert rtmsg(socket.AF_INET, 32, 253).hex() == "02" "20" "00" "00" "fe" "04" "fd" "01" "00000000"


def test_message_header_counts_itself() -> None:
    body = ifinfomsg(2, IFF_UP, IFF_UP)
    raw = message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 9, body)
    assert struct.unpack_from("=IHHII", raw) == (16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 9, 0)
    assert raw[16:] == body


def test_a_veth_request_nests_the_peer() -> None:
    peer = ifinfomsg() + attr_str(IFLA_IFNAME, "eth0")
    info = attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA, attr(1, peer))
    body = ifinfomsg() + attr_str(IFLA_IFNAME, "cali0123456789a") + attr(IFLA_LINKINFO, info)
    decoded = parse(message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 1, body))[0]
    linkinfo = parse_attrs(decoded.attrs[IFLA_LINKINFO])
    assert linkinfo[IFLA_INFO_KIND] == b"veth"
    peer_attrs = parse_attrs(parse_attrs(linkinfo[IFLA_INFO_DATA])[1][16:])
    assert peer_attrs[IFLA_IFNAME] == b"eth0\0"
    assert decoded.attrs[IFLA_IFNAME] == b"cali0123456789a\0"


def test_replies_decode_header_fields_and_attributes() -> None:
    link = message(RTM_NEWLINK, NLM_F_MULTI, 4, ifinfomsg(12, IFF_UP | 0x1000, 0)
                   + attr_str(IFLA_IFNAME, "cali1") + attr(IFLA_ADDRESS, bytes.fromhex("eeeeeeeeeeee")))
    addr = message(RTM_NEWADDR, NLM_F_MULTI, 4, ifaddrmsg(socket.AF_INET, 32, 12) + attr_ip(IFA_ADDRESS, "10.0.0.5"))
    route = message(RTM_NEWROUTE, NLM_F_MULTI, 4, rtmsg(socket.AF_INET6, 0) + attr_ip(RTA_GATEWAY, "fe80::1")
                    + attr_u32(RTA_OIF, 12))
    done = message(NLMSG_DONE, NLM_F_MULTI, 4, struct.pack("=i", 0))
    got = parse(link + addr + route + done)
    assert [m.kind for m in got] == [RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, NLMSG_DONE]
    assert got[0].header[2] == 12 and got[0].header[3] & IFF_UP
    assert format_mac(got[0].attrs[IFLA_ADDRESS]) == "ee:ee:ee:ee:ee:ee"
    assert got[1].header[1] == 32 and got[1].header[4] == 12 and got[1].ip(IFA_ADDRESS) == "10.0.0.5"
    assert got[2].ip(RTA_GATEWAY) == "fe80::1" and got[2].u32(RTA_OIF) == 12 and got[2].ip(RTA_DST) is None
    assert got[3].error == 0


def test_an_error_reply_carries_the_errno() -> None:
    original = message(RTM_NEWLINK, NLM_F_REQUEST, 3, ifinfomsg())
    reply = message(NLMSG_ERROR, 0, 3, struct.pack("=i", -errno.EEXIST) + original[:16])
    (got,) = parse(reply)
    assert got.kind == NLMSG_ERROR and got.seq == 3 and got.error == errno.EEXIST
    err = NetlinkError(got.error)
    assert err.code == errno.EEXIST and isinstance(err, OSError) and "exists" in str(err)


@pytest.mark.parametrize("raw", [
    struct.pack("=IHHII", 64, RTM_NEWLINK, 0, 1, 0) + bytes(16),  # says 64 bytes, has 32
    struct.pack("=IHHII", 8, RTM_NEWLINK, 0, 1, 0),  # shorter than its own header
])
def test_truncated_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(NetlinkError) as info:
        parse(raw)
    assert info.value.code == errno.EBADMSG


def test_a_malformed_attribute_is_refused() -> None:
    with pytest.raises(NetlinkError) as info:
        parse_attrs(struct.pack("=HH", 40, IFLA_IFNAME) + b"eth0")
    assert info.value.code == errno.EBADMSG
