"""Pools, nodes, host endpoints and Felix configuration read through model views give the same graph.

The graph's handlers for these kinds read the model's fields; for a value the fast path
vouches for, the dispatcher hands them a :mod:`libcalico.syncer.fastview` view instead. Both
ways must give identical messages, at the cold start and for every later change, and the
cold start of a cluster holding these kinds must not import the models.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from libcalico.syncer import SyncStatus, Update
from libcalico.syncer.fastpath import accepts
from services.felix import messages as m
from services.felix.calc import CalcGraph
from services.felix.calc.dispatcher import VIEW_KINDS
from tests.unit.felix.test_calc_builders import (
    API,
    HOST,
    block,
    delete,
    felixconfig,
    hep,
    ns_profile,
    policy,
    pool,
    put,
    rkey,
    wep,
)
from tests.unit.felix.test_calc_builders import node as plain_node


def node(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> Update:
    value: dict[str, Any] = {"apiVersion": API, "kind": "Node", "metadata": {"name": name}, "spec": spec}
    if status is not None:
        value["status"] = status
    return put(rkey("nodes", name), value)


def raw_pool(name: str, spec: dict[str, Any]) -> Update:
    return put(rkey("ippools", name), {"apiVersion": API, "kind": "IPPool", "metadata": {"name": name},
                                       "spec": spec})


def host_endpoint(name: str, spec: dict[str, Any], labels: dict[str, str]) -> Update:
    return put(rkey("hostendpoints", name), {"apiVersion": API, "kind": "HostEndpoint",
                                             "metadata": {"name": name, "labels": labels}, "spec": spec})


CONFIG = {"logSeverityScreen": "Info", "reportingInterval": "0s", "vxlanEnabled": True, "vxlanVNI": 4096,
          "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}, {"port": 179, "net": ""}],
          "kubeNodePortRanges": ["30000:32767", "8080", "9000:9000"], "natPortRange": "032768:65535",
          "routeTableRange": {"min": 1, "max": 250}, "bpfConntrackTimeouts": {"tcpEstablished": "1h"},
          "defaultEndpointToHostAction": "accept", "healthPort": None}


def world() -> list[Update]:
    """A cluster with every kind the views serve, in forms that exercise the models' defaults."""
    return [
        ns_profile("default"),
        raw_pool("v4", {"cidr": "10.65.0.0/16", "vxlanMode": "CrossSubnet", "ipipMode": "", "natOutgoing": True,
                        "nodeSelector": ""}),
        raw_pool("v4-small", {"cidr": "10.65.1.0/24", "blockSize": 26, "vxlanMode": "Always"}),
        raw_pool("ipip", {"cidr": "10.66.0.0/16", "ipipMode": "Always", "blockSize": 0, "allowedUses": []}),
        raw_pool("v6", {"cidr": "fd00:0::/48"}),
        node(HOST, {"bgp": {"ipv4Address": "192.0.2.1/24", "asNumber": "1.10"},
                    "ipv4VXLANTunnelAddr": "10.65.0.1", "vxlanTunnelMACAddr": "66:1d:29:5a:3b:01"}),
        node("node2", {"bgp": {"ipv4Address": "192.0.2.2/24"}, "ipv4VXLANTunnelAddr": "10.65.1.1",
                       "orchRefs": [{"nodeName": "node2", "orchestrator": "k8s"}]},
             {"podCIDRs": ["10.65.1.0/24"]}),
        node("node3", {"addresses": [{"address": "198.51.100.3/24", "type": "InternalIP"}, {"address": "fd01::3"}],
                       "ipv4VXLANTunnelAddr": "10.66.0.1"}),
        plain_node("node4", "192.0.2.4/24", "10.66.1.1"),
        block("10.65.1.0/26", "node2"), block("10.66.0.0/26", "node3", [0, None, 1],
                                              [{"handle_id": "a"}, {"secondary": {"node": "node4"}}]),
        block("10.65.0.0/26", HOST),
        felixconfig("default", CONFIG),
        felixconfig(f"node.{HOST}", {"interfacePrefix": "cali", "bpfLogFilters": {"eth0": "tcp"}}),
        felixconfig("node.node2", {"interfacePrefix": "tap"}),
        host_endpoint("gw-eth0", {"node": HOST, "interfaceName": "eth0", "expectedIPs": ["192.0.2.1", "fd00::1"],
                                  "profiles": ["kns.default"],
                                  "ports": [{"name": "ssh", "protocol": "TCP", "port": 22},
                                            {"name": "dns", "protocol": 17, "port": 53}]}, {"role": "gw"}),
        host_endpoint("all-ifaces", {"node": HOST, "interfaceName": "*"}, {"role": "host"}),
        hep("remote", "node2", None, ("192.0.2.2",), {"role": "gw"}),
        wep("a", labels={"app": "x"}),
        policy("hosts", None, "has(role)", ingress=[
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'gw'"},
             "destination": {"ports": ["ssh"]}}], applyOnForward=True),
        policy("to-gw", None, "app == 'x'", egress=[
            {"action": "Allow", "protocol": "UDP", "destination": {"selector": "role == 'gw'", "ports": ["dns"]}}]),
    ]


CHANGES: list[list[Update]] = [
    [raw_pool("v4", {"cidr": "10.65.0.0/16", "vxlanMode": "Never", "natOutgoing": False})],
    [delete(rkey("nodes", "node3")), felixconfig("default", {**CONFIG, "vxlanVNI": 4097})],
    [host_endpoint("gw-eth0", {"node": HOST, "interfaceName": "eth1"}, {"role": "gw"})],
    [pool("v5", "10.70.0.0/16", "Always", True), node("node2", {"bgp": {"ipv4Address": "192.0.2.22/24"}})],
    [delete(rkey("felixconfigurations", f"node.{HOST}")), delete(rkey("hostendpoints", "remote"))],
]


def run(accepts_fn: Any) -> list[list[m.Message]]:
    graph = CalcGraph(HOST, accepts=accepts_fn)
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates(world())
    graph.on_status(SyncStatus.IN_SYNC)
    out = [graph.flush()]
    for batch in CHANGES:
        graph.on_updates(batch)
        out.append(graph.flush())
    return out


def test_views_and_models_give_the_same_messages() -> None:
    vouched: set[str] = set()

    def recording(kind: str, value: dict[str, Any]) -> bool:
        answer = accepts(kind, value)
        if answer:
            vouched.add(kind)
        return answer

    fast, slow = run(recording), run(None)
    assert fast == slow
    assert VIEW_KINDS <= vouched  # every view kind took the fast path
    first = fast[0]
    assert {type(x) for x in first} >= {m.IPAMPoolUpdate, m.RouteUpdate, m.VXLANTunnelEndpointUpdate,
                                        m.HostEndpointUpdate, m.ConfigUpdate}
    pools = {x.id: x for x in first if isinstance(x, m.IPAMPoolUpdate)}
    assert pools["v6"].cidr == "fd00::/48" and pools["v4"].vxlan_mode == "CrossSubnet"
    assert pools["ipip"].ipip_mode == "Always" and pools["v4"].masquerade
    config = next(x for x in first if isinstance(x, m.ConfigUpdate)).config
    assert config["natPortRange"] == "32768:65535" and config["kubeNodePortRanges"] == ["30000:32767", 8080, 9000]
    assert "healthPort" not in config and config["interfacePrefix"] == "cali"
    assert all(fast[1:]), "every change produced messages"


def fresh(code: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_a_cold_start_with_pools_nodes_host_endpoints_and_config_imports_no_models() -> None:
    got = fresh("""
        import json, sys
        from libcalico.syncer import SyncStatus
        from services.felix.calc import CalcGraph
        from tests.unit.felix.test_calc_model_views import world

        graph = CalcGraph("node1")
        graph.on_updates(world())
        graph.on_status(SyncStatus.IN_SYNC)
        kinds = sorted({type(m).__name__ for m in graph.flush()})
        print(json.dumps({"kinds": kinds, "loaded": [m for m in ("pydantic", "libcalico.resources")
                                                     if m in sys.modules]}))
    """)
    assert got["loaded"] == []
    assert {"IPAMPoolUpdate", "RouteUpdate", "VXLANTunnelEndpointUpdate", "HostEndpointUpdate",
            "ConfigUpdate"} <= set(got["kinds"])
