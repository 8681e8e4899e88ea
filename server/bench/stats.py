"""Numbers a bench run reports: latency percentiles, a process's RSS and CPU, machine CPU.

Pure functions over values plus small readers of ``/proc`` (Linux); readers return ``None``
where ``/proc`` is missing or the process is gone, never raise.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

Percentiles = dict[str, float | None]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rounded(value: float, digits: int = 2) -> float:
    return round(value, digits)


def percentiles(values: Iterable[float]) -> Percentiles:
    """p50/p95/p99/max by the nearest-rank method (the load generator's definition), in the
    values' unit; every field is None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}

    def at(p: float) -> float:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return rounded(ordered[min(len(ordered), rank) - 1])

    return {"p50": at(50), "p95": at(95), "p99": at(99), "max": rounded(ordered[-1])}


def proc_field(pid: int | None, file: str, prefix: str, column: int) -> int | None:
    """The integer in ``column`` of the line of ``/proc/<pid>/<file>`` starting with
    ``prefix``, or None (no process, no such line, not a number)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/{file}", encoding="ascii") as lines:
            for line in lines:
                if line.startswith(prefix):
                    value = line.split()[column]
                    return int(value) if value.isdigit() else None
    except (OSError, IndexError):
        return None
    return None


def rss_kb(pid: int | None) -> int | None:
    """Resident set size of a process in KiB (VmRSS), or None."""
    return proc_field(pid, "status", "VmRSS:", 1)


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds a process used so far, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine (user+nice+system, all cores), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        return (int(fields[1]) + int(fields[2]) + int(fields[3])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class _CpuSnapshot:
    at: float
    client: float
    server: float | None
    machine: float | None


class CpuMeter:
    """CPU shares (percent of one core) over a measuring window: this client, the server
    (``pid``), and everything else on the machine. Start at construction, ``mark()`` at the
    end of the window (may be called repeatedly), ``result()`` to read."""

    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid
        self._start = self._snap()
        self._last = self._start

    def _snap(self) -> _CpuSnapshot:
        times = os.times()
        server = process_cpu_s(self._pid) if self._pid is not None else None
        return _CpuSnapshot(time.monotonic(), times.user + times.system, server, machine_busy_s())

    def mark(self) -> None:
        self._last = self._snap()

    def result(self) -> dict[str, float]:
        elapsed = max(self._last.at - self._start.at, 1e-9)

        def pct(seconds: float) -> float:
            return rounded(seconds * 100 / elapsed, 1)

        client = self._last.client - self._start.client
        out = {"client_cpu_pct": pct(client)}
        server = 0.0
        if self._start.server is not None and self._last.server is not None:
            server = self._last.server - self._start.server
            out["server_cpu_pct"] = pct(server)
        if self._start.machine is not None and self._last.machine is not None:
            other = self._last.machine - self._start.machine - client - server
            out["other_cpu_pct"] = pct(max(0.0, other))
        return out


def raise_fd_limit() -> int:
    """Lift this process's open-file soft limit to the hard limit (SSE runs hold thousands of
    sockets); returns the limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Linux
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
