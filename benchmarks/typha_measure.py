"""Measurements for the Typha fan-out benchmark: CPU per process and machine, etcd and Prometheus metrics, profiles."""

from __future__ import annotations

import collections
import os
import subprocess
import urllib.request
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
PY_SPY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / _TICK, total / _TICK


class CpuMeter:
    """CPU used by named groups of processes, and by the whole machine, over a window."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start = {name: sum(proc_cpu(p) for p in pids) for name, pids in groups.items()}
        self._machine = machine_cpu()

    def stop(self, seconds: float) -> dict[str, float]:
        """Percent of one core per group over ``seconds``, plus the machine (of 100% × cores) and the rest."""
        out = {name: round(100 * (sum(proc_cpu(p) for p in pids) - self._start[name]) / seconds, 1)
               for name, pids in self.groups.items()}
        busy, total = machine_cpu()
        cores = os.cpu_count() or 1
        machine = 100 * (busy - self._machine[0]) / ((total - self._machine[1]) / cores)
        out["machine_busy"] = round(machine, 1)
        out["other_processes"] = round(machine - sum(v for k, v in out.items() if k != "machine_busy"), 1)
        out["machine_capacity"] = 100.0 * cores
        return out


def etcd_metrics(url: str) -> dict[str, float]:
    """The etcd counters that show datastore load."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as rsp:
        text = rsp.read().decode()
    wanted = {"etcd_network_client_grpc_sent_bytes_total": "sent_bytes",
              "etcd_network_client_grpc_received_bytes_total": "received_bytes",
              "etcd_debugging_mvcc_watcher_total": "watchers"}
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if name in wanted:
            out[wanted[name]] += float(value)
        elif name == "grpc_server_handled_total" and 'grpc_method="Range"' in head:
            out["range_requests"] += float(value)
    return dict(out)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counter differences."""
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def prometheus_histogram(text: str, name: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) buckets of one histogram series from a /metrics page."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "_bucket{"):
            continue
        head, _, value = line.rpartition(" ")
        if not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        le = head.split('le="', 1)[1].split('"', 1)[0]
        out.append((float(le), float(value)))
    return sorted(out)


def bucket_percentile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None when empty)."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return buckets[-1][0]


def hist_percentile(hist: collections.Counter[int], q: float) -> float | None:
    """Quantile ``q`` of a millisecond histogram, in seconds (None when empty)."""
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return ms / 1000
    return None


def percentile(values: list[float], q: float) -> float | None:
    """Quantile ``q`` of a list (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_profile(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Sample a Python process with py-spy for ``seconds`` into a collapsed-stacks file."""
    if not PY_SPY.exists():
        raise RuntimeError(f"--profile needs py-spy at {PY_SPY} (pip install py-spy)")
    return subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` → ``name file.py`` (samples of one function added up)."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.rsplit('/', 1)[-1].split(':', 1)[0]}" if where else name


def summarise_profile(path: Path, top: int = 25) -> list[str]:
    """Self and inclusive sample shares of the hottest functions in a collapsed-stacks file.

    uvloop's loop is C code: time in it (its own work and the socket system calls it makes)
    shows as the self time of ``Runner.run``.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples; self% / inclusive% per function"]
    for name, count in own.most_common(top):
        lines.append(f"self {100 * count / total:5.1f}%  incl {100 * inclusive[name] / total:5.1f}%  {name}")
    lines.append("-- inclusive")
    for name, count in inclusive.most_common(top):
        lines.append(f"incl {100 * count / total:5.1f}%  {name}")
    return lines
