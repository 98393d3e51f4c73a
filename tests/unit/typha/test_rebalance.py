"""Connection limits as Calico's CalculateMaxConnLimit computes them, and the client's address order."""

from __future__ import annotations

import random

import pytest

from libcalico.typha.client import Address, order_addresses, parse_address
from services.typha.rebalance import calculate_max_conn_limit


@pytest.mark.parametrize(
    ("replicas", "nodes", "expected", "reason"),
    [
        # Calico's own table (lower 11, upper 101, 3 syncer types).
        (1, 10, 101, "lone typha"),
        (10, 10, 11, "configured lower limit"),
        (10, 500, 101, "configured upper limit"),
        (2, 500, 101, "configured upper limit"),
        # In between: 3 × (1 + 40·120/100/3) = 3 × 17 = 51.
        (4, 40, 51, "fraction+20%"),
        (0, 40, 101, "lone typha"),
    ],
)
def test_calico_connection_limit_table(replicas: int, nodes: int, expected: int, reason: str) -> None:
    assert calculate_max_conn_limit(11, 101, replicas, nodes, 3) == (expected, reason)


def test_limits_leave_one_replica_free_and_twenty_percent_headroom() -> None:
    for replicas in range(2, 12):
        for nodes in (10, 100, 1000):
            limit, _ = calculate_max_conn_limit(1, 10**9, replicas, nodes, 1)
            # Every replica but one can carry every node, with at least 20% to spare.
            assert limit * (replicas - 1) >= nodes * 1.2
            assert limit <= 1 + nodes * 1.2 / (replicas - 1)


@pytest.mark.parametrize(
    ("text", "address"),
    [("10.0.0.5:5473", Address("10.0.0.5", 5473)), ("typha.kube-system", Address("typha.kube-system", 5473)),
     ("[fd00::5]:6000", Address("fd00::5", 6000)), ("fd00::5", Address("fd00::5", 5473))],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(("text", "match"), [("", "empty"), (":5473", "no host"), ("h:x", "not a number"),
                                             ("h:70000", "out of range"), ("[fd00::1", "malformed")])
def test_parse_address_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_address(text)


def test_local_addresses_come_first_then_the_rest_shuffled() -> None:
    addrs = [Address(f"10.0.0.{i}", 5473) for i in range(1, 9)] + [Address("127.0.0.1", 5473)]
    orders = {tuple(order_addresses(addrs, rng=random.Random(seed))) for seed in range(30)}
    assert all(order[0] == Address("127.0.0.1", 5473) for order in orders)
    assert len({order[1] for order in orders}) > 3  # the remote ones are spread
    chosen = order_addresses(addrs, local_hosts={"10.0.0.3", "10.0.0.4"}, rng=random.Random(1))
    assert {a.host for a in chosen[:2]} == {"10.0.0.3", "10.0.0.4"}
