"""``calicoctl explain``: why is this flow allowed or dropped?

Reads the endpoints, profiles, tiers, policies and network sets from the datastore, runs
libcalico's policy oracle on one flow, and prints the verdict with, per direction, the tier,
policy and rule (or profile, or default) that decided it. The exit status is 0 whenever the
flow could be explained, allowed or not; 1 for bad input or a datastore failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from libcalico.datastore import Client
from libcalico.errors import CalicoError
from libcalico.oracle import Flow, Oracle, OracleError
from libcalico.resources.base import Resource
from services.calicoctl.connection import datastore_env, open_client
from services.calicoctl.errors import CalicoctlError, UsageError

USAGE = """Usage:
  calicoctl explain --from=<SOURCE> --to=<POD> [--namespace=<NS>] [--protocol=<PROTOCOL>]
                    [--port=<PORT>] [--source-port=<PORT>] [--icmp-type=<TYPE>] [--icmp-code=<CODE>]
                    [--ip-version=<VERSION>] [--output=<OUTPUT>] [--config=<CONFIG>]
                    [--context=<context>] [--allow-version-mismatch]

Examples:
  # Why can't node0-pod0 reach node1-pod0 on TCP port 80?
  calicoctl explain --from node0-pod0 --to node1-pod0 --port 80

  # Is ping from an outside address to a pod in namespace shop allowed?
  calicoctl explain --from 192.0.2.10 --to web-0 -n shop --protocol icmp -o json

Options:
  -h --help                    Show this screen.
     --from=<SOURCE>           The source: a pod (its WorkloadEndpoint name or pod name,
                               optionally as <namespace>/<name>), or an IP address or
                               CIDR outside the cluster's endpoints.
     --to=<POD>                The destination pod, named the same way.
  -n --namespace=<NS>          Namespace of pods named without one. [default: default]
     --protocol=<PROTOCOL>     tcp, udp, sctp, icmp, icmpv6, udplite or a number.
                               [default: tcp]
     --port=<PORT>             Destination port (tcp, udp, sctp).
     --source-port=<PORT>      Source port, needed only by rules that match source ports.
     --icmp-type=<TYPE>        ICMP type. [default: echo request: 8, or 128 for ICMPv6]
     --icmp-code=<CODE>        ICMP code.
     --ip-version=<VERSION>    4 or 6, for dual-stack pods. [default: 4 when both have it]
  -o --output=<OUTPUT>         Output format: text or json. [default: text]
  -c --config=<CONFIG>         Path to the file containing connection configuration in
                               YAML or JSON format.
                               [default: /etc/calico/calicoctl.cfg]
     --context=<context>       The name of the kubeconfig context to use.
     --allow-version-mismatch  Allow client and cluster versions mismatch.

Description:
  Explains one new connection the way Calico's dataplane decides it: the source pod's
  egress policy (when the source is a pod) and the destination pod's ingress policy,
  tier by tier, then the pods' profiles. For each direction it prints the tier, policy,
  rule index and action that decided, or the end-of-tier default, the profile, or the
  default deny. Staged policies are not enforced and are ignored.
"""

KINDS = ("WorkloadEndpoint", "HostEndpoint", "Profile", "Tier", "NetworkPolicy", "GlobalNetworkPolicy",
         "NetworkSet", "GlobalNetworkSet")


class _Parser(argparse.ArgumentParser):
    """Reports misuse as calicoctl does instead of exiting."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(prog="calicoctl explain", add_help=False, allow_abbrev=False)
        self.argv = argv

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.argv)


def parse_flow(args: Sequence[str]) -> tuple[Flow, argparse.Namespace]:
    """The flow and the remaining options of a ``calicoctl explain`` command line; raise CalicoctlError."""
    p = _Parser(["explain", *args])
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--to", dest="destination", required=True)
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--protocol", default="tcp")
    p.add_argument("--port", type=int)
    p.add_argument("--source-port", type=int)
    p.add_argument("--icmp-type", type=int)
    p.add_argument("--icmp-code", type=int)
    p.add_argument("--ip-version", type=int, choices=(4, 6))
    p.add_argument("-o", "--output", default="text", choices=("text", "json"))
    p.add_argument("-c", "--config")
    p.add_argument("--context")
    p.add_argument("--allow-version-mismatch", action="store_true")
    ns = p.parse_args(list(args))
    try:
        flow = Flow(ns.source, ns.destination, ns.protocol, port=ns.port, source_port=ns.source_port,
                    icmp_type=ns.icmp_type, icmp_code=ns.icmp_code, ip_version=ns.ip_version)
    except OracleError as exc:
        raise CalicoctlError(f"Invalid flow: {exc}") from None
    return flow, ns


async def load_resources(client: Client) -> list[Resource]:
    """Everything policy depends on, from the datastore."""
    resources: list[Resource] = []
    for kind in KINDS:
        items, _ = await client.list(kind)
        resources.extend(items)
    return resources


async def _load(config: str | None, env: Mapping[str, str]) -> list[Resource]:
    async with open_client(datastore_env(config, env)) as client:
        return await load_resources(client)


def run_explain(args: list[str], env: Mapping[str, str]) -> int:
    """Run ``calicoctl explain <args>``; print the verdict and return the exit status."""
    if "-h" in args or "--help" in args:
        sys.stdout.write(USAGE)
        return 0
    try:
        flow, ns = parse_flow(args)
        if ns.context:
            env = dict(env, K8S_CURRENT_CONTEXT=ns.context)
        resources = asyncio.run(_load(ns.config, env))
    except CalicoctlError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except CalicoError as exc:
        sys.stderr.write(f"Failed to read the datastore: {exc}\n")
        return 1
    try:
        oracle = Oracle.from_resources(resources, default_namespace=ns.namespace)
        verdict = oracle.evaluate(oracle.with_echo_request(flow))
    except OracleError as exc:
        sys.stderr.write(f"Failed to explain the flow: {exc}\n")
        return 1
    if ns.output == "json":
        sys.stdout.write(json.dumps(verdict.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(f"{verdict}\n")
    return 0
