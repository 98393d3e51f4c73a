"""Routes, VXLAN tunnel endpoints, IP pools and Felix configuration out of the calculation graph."""

from __future__ import annotations

from services.felix import messages as m
from tests.unit.felix.test_calc_builders import (
    Harness,
    block,
    block_key,
    delete,
    felixconfig,
    node,
    of_type,
    pool,
    rkey,
)

NODES = (
    node("node1", "192.168.1.1/24", "10.0.0.0", "ee:00:00:00:00:01"),
    node("node2", "192.168.1.2/24", "10.0.1.0", "ee:00:00:00:00:02"),
    node("node3", "192.168.7.3/24", "10.0.2.0", "ee:00:00:00:00:03"),
)


def test_remote_blocks_become_vxlan_routes_and_local_blocks_do_not() -> None:
    h = Harness()
    h.start(*NODES, pool("p", "10.0.0.0/16", "Always", nat=True),
            block("10.0.0.0/26", "node1"), block("10.0.1.0/26", "node2"), block("10.0.2.0/26", "node3"))
    assert set(h.dp.routes) == {"10.0.1.0/26", "10.0.2.0/26"}
    r = h.dp.routes["10.0.1.0/26"]
    assert (r.type, r.dst_node_name, r.dst_node_ip, r.ip_pool_type, r.nat_outgoing) == (
        m.RouteType.REMOTE_WORKLOAD, "node2", "192.168.1.2", "vxlan", True)
    assert r.same_subnet and not h.dp.routes["10.0.2.0/26"].same_subnet


def test_vteps_for_every_node_with_a_tunnel_address() -> None:
    h = Harness()
    out = h.start(*NODES, node("node4", "192.168.1.4/24"), node("node5", "192.168.1.5/24", "10.0.4.0"))
    # node4 has no tunnel address; node5 has one but no MAC: it still gets a VTEP, and the
    # dataplane uses Calico's generated MAC for it, as every other node will.
    assert set(h.dp.vteps) == {"node1", "node2", "node3", "node5"}
    assert h.dp.vteps["node5"].mac == ""
    assert h.dp.vteps["node2"] == m.VXLANTunnelEndpointUpdate("node2", "ee:00:00:00:00:02", "10.0.1.0",
                                                              "192.168.1.2")
    kinds = [type(x) for x in out]
    assert kinds.index(m.VXLANTunnelEndpointUpdate) < kinds.index(m.InSync)


def test_local_vtep_is_sent_without_a_mac() -> None:
    h = Harness()
    h.start(node("node1", "192.168.1.1/24", "10.0.0.0"))
    assert h.dp.vteps["node1"].mac == ""


def test_vteps_come_before_routes_and_go_after() -> None:
    h = Harness()
    h.start(pool("p", "10.0.0.0/16", "Always"))
    out = h.send(*NODES, block("10.0.1.0/26", "node2"))
    kinds = [type(x) for x in out]
    assert kinds.index(m.VXLANTunnelEndpointUpdate) < kinds.index(m.RouteUpdate)
    out = h.send(delete(rkey("nodes", "node2")), delete(block_key("10.0.1.0/26")))
    assert [type(x) for x in out] == [m.RouteRemove, m.VXLANTunnelEndpointRemove]


def test_pool_modes_and_removal() -> None:
    h = Harness()
    h.start(*NODES, pool("p", "10.0.0.0/16"), block("10.0.1.0/26", "node2"))
    assert h.dp.pools["p"] == m.IPAMPoolUpdate("p", "10.0.0.0/16", False, "Never", "Never")
    assert h.dp.routes["10.0.1.0/26"].ip_pool_type == "none"
    out = h.send(pool("p", "10.0.0.0/16", "CrossSubnet", nat=True))
    assert out[0] == m.IPAMPoolUpdate("p", "10.0.0.0/16", True, "Never", "CrossSubnet")
    assert h.dp.routes["10.0.1.0/26"].ip_pool_type == "vxlan"
    out = h.send(delete(rkey("ippools", "p")))
    assert out[-1] == m.IPAMPoolRemove("p")
    assert h.dp.routes["10.0.1.0/26"].ip_pool_type == "none"


def test_borrowed_addresses_get_host_routes() -> None:
    h = Harness()
    attrs = [{"handle_id": "h1", "secondary": {"node": "node3"}}, {"handle_id": "h2", "secondary": {"node": "node1"}},
             {"handle_id": "h3", "secondary": {"node": "node2"}}]
    h.start(*NODES, pool("p", "10.0.0.0/16", "Always"), block("10.0.1.0/26", "node2", [0, 1, 2], attrs))
    assert set(h.dp.routes) == {"10.0.1.0/26", "10.0.1.0/32"}
    assert h.dp.routes["10.0.1.0/32"].dst_node_name == "node3"


def test_block_affinity_change_and_deletion() -> None:
    h = Harness()
    h.start(*NODES, block("10.0.1.0/26", "node2"))
    out = h.send(block("10.0.1.0/26", "node3"))
    assert out == [m.RouteUpdate(m.RouteType.REMOTE_WORKLOAD, "10.0.1.0/26", "node3", "192.168.7.3",
                                 ip_pool_type="none")]
    assert h.send(block("10.0.1.0/26", "node1")) == [m.RouteRemove("10.0.1.0/26")]
    assert h.send(block("10.0.1.0/26", "node1")) == []


# ---------------------------------------------------------------- config


def test_config_merges_default_and_this_node_only() -> None:
    h = Harness()
    out = h.start(felixconfig("default", {"logSeverityScreen": "Info", "bpfEnabled": False}),
                  felixconfig("node.node1", {"logSeverityScreen": "Debug"}),
                  felixconfig("node.node2", {"logSeverityScreen": "Error"}))
    assert out[0] == m.ConfigUpdate({"logSeverityScreen": "Debug", "bpfEnabled": False})


def test_config_changes_are_sent_once_and_deletion_falls_back() -> None:
    h = Harness()
    h.start(felixconfig("default", {"logSeverityScreen": "Info"}),
            felixconfig("node.node1", {"logSeverityScreen": "Debug"}))
    assert h.send(felixconfig("node.node2", {"logSeverityScreen": "Error"})) == []
    assert h.send(felixconfig("default", {"logSeverityScreen": "Info"})) == []
    assert h.send(delete(rkey("felixconfigurations", "node.node1"))) == [
        m.ConfigUpdate({"logSeverityScreen": "Info"})]
    out = h.send(felixconfig("default", {"logSeverityScreen": "Warning", "healthPort": 9199}))
    assert of_type(out, m.ConfigUpdate) == [m.ConfigUpdate({"logSeverityScreen": "Warning", "healthPort": 9199})]
