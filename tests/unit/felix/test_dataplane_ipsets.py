"""IP set members → nftables elements: parsing, per-version split, removal of covered members."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.ipsets import IPSetMembers, normalize_element, parse_member
from services.felix.messages import IPSetType


def test_members_split_by_version_and_written_like_nft() -> None:
    members = IPSetMembers(IPSetType.NET, "s")
    members.replace(frozenset({"10.65.0.2/32", "10.65.0.3", "fd00::1/128", "192.168.0.0/16"}))
    assert members.elements(4) == frozenset({"10.65.0.2", "10.65.0.3", "192.168.0.0/16"})
    assert members.elements(6) == frozenset({"fd00::1"})


def test_covered_members_are_left_out_until_the_cover_goes() -> None:
    members = IPSetMembers(IPSetType.NET, "s")
    members.replace(frozenset({"10.65.0.2/32", "10.0.0.0/8", "10.0.0.0/16", "11.0.0.1"}))
    assert members.elements(4) == frozenset({"10.0.0.0/8", "11.0.0.1"})
    members.update(frozenset(), frozenset({"10.0.0.0/8"}))
    assert members.elements(4) == frozenset({"10.0.0.0/16", "10.65.0.2", "11.0.0.1"})
    members.update(frozenset({"10.65.0.9"}), frozenset({"10.0.0.0/16"}))
    assert members.elements(4) == frozenset({"10.65.0.2", "10.65.0.9", "11.0.0.1"})


def test_named_port_members() -> None:
    members = IPSetMembers(IPSetType.IP_AND_PORT, "np")
    members.replace(frozenset({"10.65.0.2,tcp:8080", "fd00::2,udp:53", "10.65.0.3,sctp:9"}))
    assert members.elements(4) == frozenset({"10.65.0.2 . 6 . 8080", "10.65.0.3 . 132 . 9"})
    assert members.elements(6) == frozenset({"fd00::2 . 17 . 53"})
    assert members.set_names()[0].startswith("cali40n-")


@pytest.mark.parametrize(("member", "set_type"), [
    ("10.0.0.300", IPSetType.NET), ("nonsense", IPSetType.NET), ("10.0.0.1,tcp:99999", IPSetType.IP_AND_PORT),
    ("10.0.0.1,icmp:1", IPSetType.IP_AND_PORT), ("10.0.0.1", IPSetType.IP_AND_PORT),
])
def test_bad_members_are_rejected_with_the_set_named(member: str, set_type: IPSetType) -> None:
    with pytest.raises(RenderError) as info:
        parse_member(member, set_type, "IP set s:abc")
    assert "IP set s:abc" in str(info.value) and repr(member) in str(info.value)


def test_normalize_kernel_elements() -> None:
    assert normalize_element("10.0.0.1") == "10.0.0.1"
    assert normalize_element({"prefix": {"addr": "10.0.0.0", "len": 8}}) == "10.0.0.0/8"
    assert normalize_element({"concat": ["10.0.0.1", 6, 80]}) == "10.0.0.1 . 6 . 80"
    assert normalize_element({"elem": {"val": "10.0.0.2", "comment": "x"}}) == "10.0.0.2"
    assert normalize_element({"range": ["10.0.0.1", "10.0.0.9"]}) == "10.0.0.1-10.0.0.9"


nets = st.builds(lambda addr, length: str(ipaddress.ip_network((addr, length), strict=False)),
                 st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
                 st.integers(min_value=8, max_value=32))


@settings(max_examples=200, deadline=None)
@given(st.lists(nets, max_size=40), st.lists(nets, max_size=10))
def test_elements_cover_exactly_the_members_without_overlap(first: list[str], second: list[str]) -> None:
    members = IPSetMembers(IPSetType.NET, "p")
    members.replace(frozenset(first))
    members.update(frozenset(second), frozenset(first[: len(first) // 2]))
    expected = (set(first) - set(first[: len(first) // 2])) | set(second)
    elements = [ipaddress.ip_network(e) for e in members.elements(4)]
    want = list(ipaddress.collapse_addresses(ipaddress.IPv4Network(m) for m in expected))
    assert list(ipaddress.collapse_addresses(ipaddress.IPv4Network(e) for e in elements)) == want  # same addresses
    for i, one in enumerate(elements):  # and no two elements overlap (nft interval sets reject that)
        assert not any(one.overlaps(other) for other in elements[i + 1:])
