"""The CNI plugins' pure core: request validation with the spec's codes, names Calico derives, results."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from services.cni.errors import CniError
from services.cni.request import SUPPORTED_VERSIONS, parse_cni_args, parse_request
from services.cni.result import Interface, Result, error_json, ipam_result, version_json
from services.cni.workload import Workload, resolve_workload, veth_name_for_workload

CONF: dict[str, Any] = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico",
                        "ipam": {"type": "calico-ipam"}, "nodename": "node-1"}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
       "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1"}


def request(env: dict[str, str] | None = None, conf: Any = None, raw: bytes | None = None) -> Any:
    body = raw if raw is not None else json.dumps(CONF if conf is None else conf).encode()
    return parse_request(ENV if env is None else env, body)


def code_of(**kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(CniError) as info:
        request(**kwargs)
    return info.value.code, info.value.msg, info.value.details


def test_good_add_request() -> None:
    req = request()
    assert (req.command, req.version, req.container_id, req.ifname) == ("ADD", "1.0.0", "abc123", "eth0")
    assert req.args["K8S_POD_NAME"] == "web-1"
    assert req.path == ("/opt/cni/bin",)


@pytest.mark.parametrize("drop, missing", [
    ("CNI_COMMAND", "[CNI_COMMAND]"), ("CNI_NETNS", "[CNI_NETNS]"), ("CNI_IFNAME", "[CNI_IFNAME]"),
    ("CNI_CONTAINERID", "[CNI_CONTAINERID]"), ("CNI_PATH", "[CNI_PATH]"),
])
def test_missing_variables_are_code_4_and_named(drop: str, missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != drop}
    code, msg, _ = code_of(env=env)
    assert code == 4
    assert missing in msg


def test_del_does_not_need_a_netns() -> None:
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"}
    env["CNI_COMMAND"] = "DEL"
    assert request(env=env).netns == ""


@pytest.mark.parametrize("change, code, text", [
    ({"CNI_COMMAND": "FROB"}, 4, "unknown CNI_COMMAND"),
    ({"CNI_CONTAINERID": "-bad"}, 4, "invalid characters in CNI_CONTAINERID"),
    ({"CNI_IFNAME": "a" * 16}, 4, "invalid CNI_IFNAME"),
    ({"CNI_IFNAME": "e/0"}, 4, "invalid CNI_IFNAME"),
    ({"CNI_ARGS": "novalue"}, 4, "invalid CNI_ARGS"),
])
def test_bad_environment(change: dict[str, str], code: int, text: str) -> None:
    got = code_of(env={**ENV, **change})
    assert got[0] == code
    assert text in got[1]


def test_bad_stdin_and_config() -> None:
    assert code_of(raw=b"{not json")[0] == 6
    code, msg, details = code_of(conf={**CONF, "cniVersion": "9.9.9"})
    assert (code, msg) == (1, "incompatible CNI versions")
    assert "9.9.9" in details
    code, _, details = code_of(conf={k: v for k, v in CONF.items() if k != "name"})
    assert code == 7 and details == "name: field is required"
    code, _, details = code_of(conf={**CONF, "mtu": -1})
    assert code == 7 and "mtu: must not be negative" in details
    code, _, details = code_of(conf={**CONF, "ipam": {"type": "calico-ipam", "assign_ipv6": "maybe"}})
    assert code == 7 and "ipam.assign_ipv6" in details
    assert code_of(raw=b"[1, 2]")[0] == 7
    assert code_of(env={**ENV, "CNI_COMMAND": "CHECK"}, conf={**CONF, "cniVersion": "0.3.1"})[0] == 1


def test_version_command_needs_no_config() -> None:
    req = parse_request({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert version_json(req.version) == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert parse_request({"CNI_COMMAND": "VERSION"}, b"").version == "1.1.0"


def test_kubernetes_workload_names_follow_calico() -> None:
    w = resolve_workload(request(), "node-1")
    assert w.wep_name == "node--1-k8s-web--1-eth0"
    # sha1("prod.web-1"), first 11 hex digits, checked with `printf prod.web-1 | sha1sum`.
    assert w.host_veth == "cali91bef8fbcc9" == veth_name_for_workload("prod", "web-1")
    assert veth_name_for_workload("default", "web-1") == "cali0761ccbeace"
    assert w.handle == "k8s-pod-network.abc123"
    assert w.status_filename == "k8s prod%2Fweb-1 eth0"
    doc = w.endpoint_doc([ipaddress.ip_interface("10.0.0.5/26")], "aa:bb:cc:dd:ee:ff")
    assert doc["metadata"] == {"name": "node--1-k8s-web--1-eth0", "namespace": "prod", "labels": {
        "projectcalico.org/namespace": "prod", "projectcalico.org/orchestrator": "k8s"}}
    assert doc["spec"]["ipNetworks"] == ["10.0.0.5/32"]
    assert doc["spec"]["profiles"] == ["kns.prod"]


def test_plain_cni_workload_and_labels() -> None:
    env = {**ENV, "CNI_ARGS": "CALICO_LABELS=pod:web,host:node-1"}
    conf = {**CONF, "args": {"cni": {"labels": [{"key": "pod", "value": "ignored"}, {"key": "tier", "value": "x"}]}}}
    w = resolve_workload(request(env=env, conf=conf), "node-1")
    assert isinstance(w, Workload)
    assert w.wep_name == "node--1-cni-abc123-eth0"
    assert w.host_veth == "caliabc123"
    assert w.labels == {"pod": "web", "tier": "x", "host": "node-1"}
    assert w.status_filename == "cni default%2Fabc123 eth0"
    with pytest.raises(CniError) as info:
        resolve_workload(request(env={**ENV, "CNI_ARGS": "CALICO_LABELS=bad label:x"}), "n")
    assert info.value.code == 7


def test_cni_args_parsing() -> None:
    assert parse_cni_args("A=1;;B=x=y") == {"A": "1", "B": "x=y"}


def test_results_in_each_version() -> None:
    res = Result(ips=[("10.0.0.5/32", 1, None), ("fd00::5/128", 1, None)],
                 interfaces=[Interface("cali1", "ee:ee:ee:ee:ee:ee"), Interface("eth0", "aa:aa", "/ns")],
                 routes=[("0.0.0.0/0", "169.254.1.1")])
    v1 = res.to_json("1.0.0")
    assert v1["ips"][0] == {"address": "10.0.0.5/32", "interface": 1}
    assert v1["interfaces"][1] == {"name": "eth0", "mac": "aa:aa", "sandbox": "/ns"}
    assert res.to_json("0.3.1")["ips"][1] == {"version": "6", "address": "fd00::5/128", "interface": 1}
    legacy = res.to_json("0.2.0")
    assert legacy["ip4"] == {"ip": "10.0.0.5/32", "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]}
    assert legacy["ip6"] == {"ip": "fd00::5/128"}
    assert Result.from_json(v1).addresses() == res.addresses()
    assert ipam_result([ipaddress.ip_interface("10.0.0.5/26")]).to_json("1.0.0") == {
        "cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/32"}], "dns": {}}


def test_error_document() -> None:
    assert error_json(CniError(7, "invalid network config", "name: field is required"), "0.4.0") == {
        "cniVersion": "0.4.0", "code": 7, "msg": "invalid network config", "details": "name: field is required"}
    assert error_json(CniError(4, "x"), "7.7.7") == {"cniVersion": "1.1.0", "code": 4, "msg": "x"}
