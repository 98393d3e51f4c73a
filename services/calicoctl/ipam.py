"""``calicoctl ipam``: show, check, release and configure Calico IPAM, with Calico's flags and wording.

The checks themselves live in :mod:`libcalico.ipam.report`; this module parses
the command line, runs one subcommand against the datastore and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from libcalico.errors import CalicoError, NotFound, RevisionConflict
from libcalico.ipam import IPAM, IPAMSettings, ReleaseRequest
from libcalico.ipam.keys import handle_key
from libcalico.ipam.report import CheckReport, Scan, check, cluster_info, scan, utilization
from services.calicoctl.commands import client_version
from services.calicoctl.connection import datastore_env, open_client
from services.calicoctl.errors import CalicoctlError

USAGE = """Usage:
  calicoctl ipam <command> [<args>...]

    release      Release a Calico assigned IP address.
    show         Show details of a Calico configuration,
                 assigned IP address, or of overall IP usage.
    configure    Configure IPAM
    check        Check the integrity of the IPAM datastructures.

Options:
  -h --help      Show this screen.

Description:
  IP address management commands for Calico.

  See 'calicoctl ipam <command> --help' to read about a specific subcommand.
"""

_CONFIG = """  -c --config=<CONFIG>         Path to the file containing connection configuration in
                               YAML or JSON format.
                               [default: /etc/calico/calicoctl.cfg]
     --allow-version-mismatch  Allow client and cluster versions mismatch.
"""

HELP = {
    "show": """Usage:
  calicoctl ipam show [--ip=<IP> | --show-blocks | --show-borrowed | --show-configuration]
                      [--config=<CONFIG>] [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
     --ip=<IP>                 Report whether this specific IP address is in use.
     --show-blocks             Show detailed information for IP blocks as well as pools.
     --show-borrowed           Show detailed information for "borrowed" IP addresses.
     --show-configuration      Show current Calico IPAM configuration.
""" + _CONFIG + """
Description:
  The ipam show command prints information about a given IP address, or about
  overall IP usage.
""",
    "check": """Usage:
  calicoctl ipam check [--config=<CONFIG>] [--show-all-ips] [--show-problem-ips] [-o <FILE>]
                       [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
  -o --output=<FILE>           Path to output report file.
     --show-all-ips            Print all IPs that are checked.
     --show-problem-ips        Print all IPs that are leaked or not allocated properly.
""" + _CONFIG + """
Description:
  The ipam check command checks the integrity of the IPAM datastructures against
  the workload endpoints and nodes in the datastore.
""",
    "release": """Usage:
  calicoctl ipam release [--ip=<IP>] [--from-report=<REPORT>]... [--config=<CONFIG>] [--force]
                         [--allow-version-mismatch]

Options:
  -h --help                    Show this screen.
     --ip=<IP>                 IP address to release.
     --from-report=<REPORT>    Release all leaked addresses from the report.  If multiple reports are
                               specified then only leaked IPs common to all reports will be released.
     --force                   Force release of leaked addresses.
""" + _CONFIG + """
Description:
  The ipam release command releases an IP address from the Calico IP Address
  Manager that was been previously assigned to an endpoint.  When an IP address
  is released, it becomes available for assignment to any endpoint.

  Note that this does not remove the IP from any existing endpoints that may be
  using it, so only use this command to clean up addresses from endpoints that
  were not cleanly removed from Calico.
""",
    "configure": """Usage:
  calicoctl ipam configure [--strictaffinity=<true/false>] [--max-blocks-per-host=<number>]
                           [--config=<CONFIG>] [--allow-version-mismatch]

Options:
  -h --help                        Show this screen.
     --strictaffinity=<true/false>  Set StrictAffinity to true/false. When StrictAffinity
                                    is true, borrowing IP addresses is not allowed.
     --max-blocks-per-host=<number> Set the maximum number of blocks that can be affine to a host.
""" + _CONFIG + """
Description:
 Modify configuration for Calico IP address management.
""",
}


class _Parser(argparse.ArgumentParser):
    def __init__(self, argv: list[str]) -> None:
        super().__init__(add_help=False, allow_abbrev=False, prog="calicoctl ipam")
        self.argv = argv

    def error(self, message: str) -> NoReturn:
        raise CalicoctlError(f"Invalid option: 'calicoctl ipam {' '.join(self.argv)}'. "
                             "Use flag '--help' to read about a specific subcommand.")


def _parse(command: str, args: list[str]) -> argparse.Namespace:
    p = _Parser([command, *args])
    p.add_argument("-c", "--config")
    p.add_argument("--allow-version-mismatch", action="store_true")
    if command == "show":
        group = p.add_mutually_exclusive_group()
        group.add_argument("--ip")
        group.add_argument("--show-blocks", action="store_true")
        group.add_argument("--show-borrowed", action="store_true")
        group.add_argument("--show-configuration", action="store_true")
    elif command == "check":
        p.add_argument("-o", "--output")
        p.add_argument("--show-all-ips", action="store_true")
        p.add_argument("--show-problem-ips", action="store_true")
    elif command == "release":
        p.add_argument("--ip")
        p.add_argument("--from-report", action="append", default=[])
        p.add_argument("--force", action="store_true")
    elif command == "configure":
        p.add_argument("--strictaffinity")
        p.add_argument("--max-blocks-per-host")
    return p.parse_args(args)


def run_ipam(args: list[str], env: Mapping[str, str]) -> int:
    """Run ``calicoctl ipam <args>``; print results and return the exit status."""
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 1
    command, rest = args[0], args[1:]
    if command not in HELP:
        sys.stderr.write(f'unknown ipam command: "{command}"\n{USAGE}')
        return 1
    if "-h" in rest or "--help" in rest:
        sys.stdout.write(HELP[command])
        return 0
    try:
        ns = _parse(command, rest)
        out = asyncio.run(_execute(command, ns, env))
    except (CalicoctlError, CalicoError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(out)
    return 0


async def _execute(command: str, ns: argparse.Namespace, env: Mapping[str, str]) -> str:
    strict, max_blocks = _configure_values(ns) if command == "configure" else (None, None)
    async with open_client(datastore_env(ns.config, env)) as client:
        ipam = IPAM(client.backend)
        if command == "show":
            if ns.ip:
                return await _show_ip(ipam, ns.ip)
            if ns.show_borrowed:
                return _borrowed(await scan(client.backend))
            if ns.show_configuration:
                return _show_configuration(await ipam.settings())
            return _usage_table(await utilization(client.backend), ns.show_blocks)
        if command == "check":
            report = await check(client.backend)
            text = check_text(report, ns.show_all_ips, ns.show_problem_ips or ns.show_all_ips)
            if ns.output:
                with open(ns.output, "w", encoding="utf-8") as fh:
                    json.dump(report.to_json(client_version()), fh, indent=2)
            return text
        if command == "release":
            if ns.from_report:
                return await _release_from_reports(ipam, ns.from_report, ns.force)
            if ns.ip:
                return await _release_ip(ipam, ns.ip)
            return ""
        current = await ipam.settings()
        wanted = IPAMSettings(strict_affinity=current.strict_affinity if strict is None else strict,
                              auto_allocate_blocks=current.auto_allocate_blocks,
                              max_blocks_per_host=current.max_blocks_per_host if max_blocks is None else max_blocks)
        await ipam.configure(wanted)
        out = ""
        if strict is not None:
            out += f"Successfully set StrictAffinity to: {str(strict).lower()}\n"
        if max_blocks is not None:
            out += f"Successfully set MaxBlocksPerHost to: {max_blocks}\n"
        return out


def _configure_values(ns: argparse.Namespace) -> tuple[bool | None, int | None]:
    strict: bool | None = None
    max_blocks: int | None = None
    if ns.strictaffinity:
        value = ns.strictaffinity.lower()
        if value not in ("true", "false", "1", "0", "t", "f"):
            raise CalicoctlError("invalid value. Use true or false to set strictaffinity")
        strict = value in ("true", "1", "t")
    if ns.max_blocks_per_host:
        try:
            max_blocks = int(ns.max_blocks_per_host)
        except ValueError:
            raise CalicoctlError("invalid value for maxblockhost. Use a valid number") from None
        if max_blocks < 0:
            raise CalicoctlError("invalid value for maxblockhost. Use a valid number")
    if strict is None and max_blocks is None:
        raise CalicoctlError("at least one configuration option must be specified")
    return strict, max_blocks


def _ip_arg(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise CalicoctlError(f"Invalid IP address specified: {text}") from None


async def _show_ip(ipam: IPAM, text: str) -> str:
    ip = _ip_arg(text)
    info = await ipam.allocation(ip)
    if info is None:
        return f"{ip} is not assigned\n"
    out = f"IP {ip} is in use\nHandle ID: {info.handle or '<none>'}\n"
    if info.attrs:
        out += "Attributes:\n" + "".join(f"  {k}: {v}\n" for k, v in sorted(info.attrs.items()))
    else:
        out += "No attributes defined\n"
    return out


async def _release_ip(ipam: IPAM, text: str) -> str:
    ip = _ip_arg(text)
    if not await ipam.release_ips([ReleaseRequest(ip)]):
        raise CalicoctlError(f"IP address {ip} is not assigned")
    return f"Successfully released IP address {ip}\n"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A bordered table as calicoctl prints its ipam tables."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def line(cells: Sequence[str], head: bool) -> str:
        parts = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            text = cell.center(w) if head else (cell.rjust(w) if i in right else cell.ljust(w))
            parts.append(f" {text} ")
        return "|" + "|".join(parts) + "|\n"

    return rule + line(header, True) + rule + "".join(line(r, False) for r in rows) + (rule if rows else "")


def _share(n: int, total: int) -> str:
    return f"{n:.5g} ({100 * n / total:.0f}%)" if total else f"{n}"


def _usage_table(groups: list[Any], show_blocks: bool) -> str:
    rows = []
    for pool, blocks in groups:
        if pool.cidr:
            rows.append([pool.kind, pool.cidr, f"{pool.total:.5g}", _share(pool.in_use, pool.total),
                         _share(pool.free, pool.total)])
        if show_blocks:
            rows.extend([b.kind, b.cidr, f"{b.total:.5g}", _share(b.in_use, b.total), _share(b.free, b.total)]
                        for b in blocks)
    return table(["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"], rows, right=(2,))


def _borrowed(found: Scan) -> str:
    rows = []
    unclassified = 0
    for a in found.allocations:
        node = a.attrs.get("node")
        if not node:
            unclassified += 1
            continue
        if node == (a.block_host or ""):
            continue
        if a.attrs.get("pod"):
            kind, to = "pod", f"{a.attrs.get('namespace', '')}/{a.attrs['pod']}"
        else:
            kind, to = a.attrs.get("type", ""), ""
        rows.append([a.ip, node, str(a.block), a.block_host or "", kind, to])
    out = table(["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"], rows)
    if unclassified:
        out += (f"\nNote: found {unclassified} IP allocations without an explicit node association. "
                "Unable to determine if they are borrowed.\n")
    return out


def _show_configuration(settings: IPAMSettings) -> str:
    rows = [["StrictAffinity", str(settings.strict_affinity).lower()],
            ["AutoAllocateBlocks", str(settings.auto_allocate_blocks).lower()],
            ["MaxBlocksPerHost", str(settings.max_blocks_per_host)]]
    return table(["PROPERTY", "VALUE"], rows)


def check_text(r: CheckReport, show_all: bool, show_problems: bool) -> str:
    """Calico's ``ipam check`` narrative for a report."""
    s = r.scan
    lines = ["Checking IPAM for inconsistencies...", "", "Loading all IPAM blocks...",
             f"Found {len(s.blocks)} IPAM blocks."]
    for cidr, block in sorted(s.blocks.items(), key=lambda kv: (kv[0].version, int(kv[0].network_address))):
        lines.append(f" IPAM block {cidr} affinity={block.affinity or '<none>'}:")
        if show_all:
            lines.extend(f"  {a.ip} allocated; attrs Main:{a.handle or '<none>'} Extra:"
                         + ",".join(f"{k}={v}" for k, v in sorted(a.attrs.items()))
                         for a in s.allocations if a.block == cidr)
    lines += [f"IPAM blocks record {len(s.allocations)} allocations.", "", "Loading all IPAM pools..."]
    lines += [f"  {p}" for p in r.active_pools]
    lines += [f"Found {len(r.active_pools)} active IP pools.", "", "Loading all nodes and workload endpoints.",
              f"Workloads and nodes are using {len(r.owners.by_ip)} IPs.", "",
              "Scanning for IPs that are allocated but not actually in use..."]
    if show_problems:
        for a in s.allocations:
            if a.ip in r.leaked_ips:
                lines.append(f"  {a.ip} leaked; attrs Main:{a.handle or '<none>'} Extra:"
                             + ",".join(f"{k}={v}" for k, v in sorted(a.attrs.items())))
    lines += [f"Found {len(r.leaked_ips)} IPs that are allocated in IPAM but not actually in use.",
              "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."]
    if show_problems:
        for ip in r.non_calico_ips:
            lines += [f"  {ip} in use by {o} is not in any active IP pool." for o in r.owners.by_ip[ip]]
        for ip in r.unallocated_in_use:
            lines += [f"  {ip} in use by {o} and in active IPAM pool but has no IPAM allocation."
                      for o in r.owners.by_ip[ip]]
    lines += [f"Found {len(r.non_calico_ips)} in-use IPs that are not in active IP pools.",
              f"Found {len(r.unallocated_in_use)} in-use IPs that are in active IP pools but have no "
              "corresponding IPAM allocation.", "", "Scanning for IPAM handles with no matching IPs..."]
    if show_all:
        lines += [f"  {h} doesn't have any active IPs." for h in r.leaked_handles]
    good = len(s.handles) - len(r.leaked_handles)
    lines += [f"Found {len(r.leaked_handles)} handles with no matching IPs (and {good} handles with matches).",
              "Scanning for IPs with missing handle..."]
    if show_problems:
        lines += [f"  {h} is in use in a block but doesn't exist." for h in r.missing_handles]
    lines += [f"Found {len(r.missing_handles)} handles mentioned in blocks with no matching handle resource.",
              "Scanning for handles whose counts do not match their blocks..."]
    if show_problems:
        lines += [f"  {h} records {rec} addresses in block {b} but the block holds {act}."
                  for h, b, rec, act in r.miscounted_handles]
    lines += [f"Found {len(r.miscounted_handles)} handle counts that do not match their blocks.",
              f"Check complete; found {r.problems} problems."]
    return "\n".join(lines) + "\n"


async def _release_from_reports(ipam: IPAM, paths: list[str], force: bool) -> str:
    info = await cluster_info(ipam.client)
    reports = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                reports.append((path, json.load(fh)))
        except OSError as exc:
            raise CalicoctlError(f"open {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CalicoctlError(f"{path}: not a report (invalid JSON at line {exc.lineno})") from None
    out = ""
    found_current = False
    for path, r in reports:
        if not isinstance(r, dict) or not isinstance(r.get("allocations"), dict):
            raise CalicoctlError(f"{path}: not an IPAM check report (no allocations map)")
        if r.get("clusterGUID", "") != info.get("clusterGUID", ""):
            raise CalicoctlError(f"cluster does not match the provided report ({path}): mismatched cluster GUID. "
                                 "Refusing to release")
        if r.get("version") != client_version():
            if not force:
                raise CalicoctlError(f"the provided report ({path}) was produced using a different version "
                                     f"({r.get('version')}) of calicoctl. Refusing to release")
            out += "WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option\n"
        if r.get("clusterInformationRevision", "") == info.get("revision", ""):
            found_current = True
    if not found_current:
        raise CalicoctlError("the provided reports are all stale - at least one should be up-to-date. Please "
                             "generate a new report while the data store is locked and try again")
    if not info.get("datastoreLocked"):
        if not force:
            raise CalicoctlError("data store is not locked. Either lock the data store, or re-run with --force")
        out += "WARNING: Data store is not locked. Ignoring due to --force option\n"
    ips: dict[str, ReleaseRequest] | None = None
    handles: dict[str, str] | None = None
    for _, r in reports:
        merged: dict[str, ReleaseRequest] = {}
        for ip, allocs in r["allocations"].items():
            for a in allocs or []:
                if a.get("inUse") or (ips is not None and ip not in ips):
                    continue
                merged[ip] = ReleaseRequest(ipaddress.ip_address(ip), a.get("handle"), a.get("sequenceNumber"))
        ips = merged
        leaked = {h["ID"]: str(h.get("Revision", "")) for h in r.get("leakedHandles") or []}
        handles = leaked if handles is None else {h: rev for h, rev in leaked.items() if handles.get(h) == rev}
    if ips:
        out += f"Releasing {len(ips)} old IPs...\n"
        released = await ipam.release_ips(list(ips.values()))
        out += f"Released {len(released)} IPs successfully\n"
        if len(released) != len(ips):
            out += f"{len(ips) - len(released)} addresses marked as leaked in the report had already been cleaned up.\n"
    else:
        out += "Report didn't contain any leaked IPs to clean up.\n"
    if handles:
        out += f"Deleting {len(handles)} handles...\n"
        ok = skipped = 0
        for handle, revision in sorted(handles.items()):
            try:
                await ipam.backend.delete(handle_key(handle), revision=int(revision))
                ok += 1
            except (NotFound, RevisionConflict, ValueError):
                skipped += 1
        out += f"Released {ok} handles; {skipped} skipped; 0 errors.\n"
    else:
        out += "Report didn't contain any handles to clean up.\n"
    return out + "You may now unlock the data store.\n"
