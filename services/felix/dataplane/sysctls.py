"""Felix's sysctls: the host's forwarding switches and each workload interface's settings.

How it works: these run in the namespace thread (``/proc/sys/net`` shows the
calling thread's namespace). A workload interface's settings come in two parts:
those that only restrict it (``accept_ra=0``, strict ``rp_filter``) or wait on
another (``proxy_delay``) may be written before its rules are in, so the first
apply writes them while nft loads the rules; those that let traffic through
(``proxy_arp``, ``forwarding``, ``route_localnet``, ``proxy_ndp``, loose
``rp_filter``) only after the rules, with the routes.
"""

from __future__ import annotations

import os

from services.felix.dataplane.namespace import write_sysctl


def harden_workload_iface(name: str, rp_filter: str) -> None:
    """The sysctls of a workload interface that only restrict it, or wait on others: safe before its
    rules are in (run in the namespace thread)."""
    v6_dir = f"/proc/sys/net/ipv6/conf/{name}"
    if os.path.isdir(v6_dir):
        write_sysctl(f"{v6_dir}/accept_ra", "0")  # CVE-2020-13597: pods must not steer host IPv6 routing
    write_sysctl(f"/proc/sys/net/ipv4/neigh/{name}/proxy_delay", "0")  # (matters once proxy_arp is on)
    if rp_filter == "1":
        write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/rp_filter", rp_filter)


def open_workload_iface(name: str, ipv6: bool, rp_filter: str) -> None:
    """The sysctls that let a workload's traffic through: only once its rules are in."""
    v4 = f"/proc/sys/net/ipv4/conf/{name}"
    write_sysctl(f"{v4}/route_localnet", "1")
    write_sysctl(f"{v4}/proxy_arp", "1")
    write_sysctl(f"{v4}/forwarding", "1")
    if rp_filter != "1":
        write_sysctl(f"{v4}/rp_filter", rp_filter)
    v6_dir = f"/proc/sys/net/ipv6/conf/{name}"
    if ipv6 and os.path.isdir(v6_dir):
        write_sysctl(f"{v6_dir}/proxy_ndp", "1")
        write_sysctl(f"{v6_dir}/forwarding", "1")


def configure_workload_iface(name: str, ipv6: bool, rp_filter: str, hardened: bool = False) -> None:
    """Felix's sysctls for a workload interface (``hardened``: the restricting ones are written already)."""
    if not hardened:
        harden_workload_iface(name, rp_filter)
    open_workload_iface(name, ipv6, rp_filter)


def configure_workload_ifaces(ifaces: list[tuple[str, str, bool]], ipv6: bool) -> dict[str, str]:
    """:func:`configure_workload_iface` for each ``(name, rp_filter, hardened)``; the errors of those that
    failed."""
    failed: dict[str, str] = {}
    for name, rp_filter, hardened in ifaces:
        try:
            configure_workload_iface(name, ipv6, rp_filter, hardened)
        except OSError as exc:
            failed[name] = str(exc)
    return failed


def harden_workload_ifaces(ifaces: list[tuple[str, str]]) -> set[str]:
    """:func:`harden_workload_iface` for each ``(name, rp_filter)``; the names of those that failed."""
    failed: set[str] = set()
    for name, rp_filter in ifaces:
        try:
            harden_workload_iface(name, rp_filter)
        except OSError:
            failed.add(name)
    return failed


def configure_host_forwarding(ipv6: bool) -> None:
    """``ip_forward`` (and IPv6 forwarding) for the namespace."""
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    if ipv6 and os.path.exists("/proc/sys/net/ipv6/conf/all/forwarding"):
        write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
