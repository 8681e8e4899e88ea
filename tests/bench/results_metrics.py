"""What the README's performance table shows per scenario: the metrics read from a result (a
JSON line of ../shared/bench/load/load.js, ``stretto bench --json`` or startup.py), and the
migration targets some rows are held to (issue 19 and the seed: response time -90 % vs Node,
memory -70 % vs Node, 10x Node's concurrent SSE connections, workflow <= 1.02x the critical
path, SSE <= 15.6 KB per idle connection). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

Result = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """``stretto op value`` (absolute) or ``stretto op value x peer`` (a ratio to a peer)."""

    op: str  # "<=" or ">="
    value: float
    peer: str | None = None  # None: an absolute bound in the metric's unit
    source: str = ""  # where the target comes from

    def text(self, unit: str) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        bound = f"{self.value:g}x {self.peer}" if self.peer else f"{self.value:g} {unit}".strip()
        return f"{sign} {bound}" + (f" ({self.source})" if self.source else "")

    def met(self, ours: float | None, theirs: float | None) -> bool | None:
        """Whether ``ours`` meets it (``theirs``: the peer's value), None when unknown."""
        if ours is None:
            return None
        bound = self.value
        if self.peer is not None:
            if theirs is None:
                return None
            bound = self.value * theirs
        return ours <= bound if self.op == "<=" else ours >= bound


RESPONSE_TIME = Target("<=", 0.10, "node", "-90 % response time")
MEMORY = Target("<=", 0.30, "node", "-70 % memory")
CONNECTIONS = Target(">=", 10, "node", "10x connections")
SSE_MEMORY = Target("<=", 15.6, None, "issue 19")
WORKFLOW = Target("<=", 1.02, None, "issue 19")


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    value: Callable[[Result], float | None]
    better: str = "lower"  # or "higher"
    target: Target | None = None


def get(result: Result, *path: str) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def _mb(result: Result, *path: str) -> float | None:
    kb = get(result, *path)
    return kb / 1024 if kb is not None else None


def _sum(result: Result, *keys: str) -> float | None:
    values = [get(result, key) for key in keys]
    return sum(v for v in values if v is not None) if any(v is not None for v in values) else None


def _ratio(result: Result, top: str, bottom: str) -> float | None:
    a, b = get(result, top), get(result, bottom)
    return a / b if a is not None and b else None


def _max_row(result: Result, key: str) -> float | None:
    rows = result.get("rows")
    if not isinstance(rows, list):
        return None
    values = [get(row, key) for row in rows if isinstance(row, dict)]
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _last_ok_row(result: Result, key: str) -> float | None:
    rows = [r for r in result.get("rows") or [] if isinstance(r, dict) and r.get("ok")]
    return get(rows[-1], key) if rows else None


FANOUT = [
    Metric("lost events", "", lambda r: get(r, "lost")),
    Metric("subscribers dropped", "", lambda r: get(r, "disconnected_by_server")),
    Metric("latency p50", "ms", lambda r: get(r, "latency_ms", "p50")),
    Metric("latency p99", "ms", lambda r: get(r, "latency_ms", "p99")),
    Metric("PUT p50", "ms", lambda r: get(r, "put_ms", "p50")),
    Metric("server CPU", "%", lambda r: get(r, "server_cpu_pct")),
    Metric("RSS connected", "MB", lambda r: _mb(r, "rss_kb", "connected")),
    Metric("RSS peak", "MB", lambda r: _mb(r, "rss_kb", "peak")),
]
IDLE = [
    Metric("RSS per SSE connection", "KB", lambda r: get(r, "rss_per_conn_kb"), target=SSE_MEMORY),
    Metric("process RSS before", "MB", lambda r: _mb(r, "rss_kb", "before"), target=MEMORY),
    Metric(
        "connect failures + closes", "", lambda r: _sum(r, "connect_failed", "closed_by_server")
    ),
    Metric("heartbeats received", "", lambda r: get(r, "pings_received"), better="higher"),
]
HTTP = [
    Metric("requests/s", "", lambda r: get(r, "rps"), better="higher"),
    Metric("latency p50", "ms", lambda r: get(r, "latency_ms", "p50"), target=RESPONSE_TIME),
    Metric("latency p99", "ms", lambda r: get(r, "latency_ms", "p99"), target=RESPONSE_TIME),
    Metric("server CPU", "%", lambda r: get(r, "server_cpu_pct")),
]
WORKFLOW_METRICS = [
    Metric("wall p50", "ms", lambda r: get(r, "wall_ms_p50")),
    Metric("overhead over critical path p50", "ms", lambda r: get(r, "overhead_ms_p50")),
    Metric(
        "wall / critical path",
        "x",
        lambda r: _ratio(r, "wall_ms_p50", "critical_path_ms"),
        target=WORKFLOW,
    ),
    Metric("server CPU per step", "ms", lambda r: get(r, "server_cpu_ms_per_step")),
    Metric("events/s", "", lambda r: get(r, "events_per_s"), better="higher"),
]
CAPACITY = [
    Metric(
        "most streams held",
        "",
        lambda r: get(r, "max_streams"),
        better="higher",
        target=CONNECTIONS,
    ),
    Metric("first failing step", "", lambda r: get(r, "failed_at"), better="higher"),
    Metric("server RSS at most held", "MB", lambda r: _mb(r, "rss_kb", "at_max")),
    Metric("server CPU at most held", "%", lambda r: _last_ok_row(r, "server_cpu_pct")),
    Metric("client CPU, highest step", "%", lambda r: _max_row(r, "client_cpu_pct")),
]
STARTUP = [
    Metric("time to ready", "ms", lambda r: get(r, "ready_ms")),
    Metric("idle RSS", "MB", lambda r: _mb(r, "idle_rss_kb"), target=MEMORY),
]


def metrics(section: str) -> list[Metric]:
    for prefix, found in (
        ("fanout", FANOUT),
        ("idle", IDLE),
        ("http", HTTP),
        ("capacity", CAPACITY),
        ("startup", STARTUP),
    ):
        if section.startswith(prefix):
            return found
    return WORKFLOW_METRICS


def section(result: Result) -> str | None:
    """The table section a result belongs to, or None (errors, unknown scenarios). A label
    variant (``stretto+reconnect``) gets a section of its own."""
    if result.get("error"):
        return None
    scenario = result.get("scenario")
    if scenario == "fanout":
        stall = f", {result['stalled']} stalled" if result.get("stalled") else ""
        name = (
            f"fanout {result.get('subs')} subs x {result.get('events')} events "
            f"@ {result.get('rate_target'):g}/s{stall}"
        )
    elif scenario == "idle":
        name = f"idle {result.get('conns')} SSE connections"
    elif scenario == "http":
        name = f"http {result.get('path')}, {result.get('conns')} conns ({result.get('engine')})"
    elif scenario == "workflow":
        concurrent = result.get("concurrent") or 1
        runs = f", {concurrent} runs at once" if concurrent != 1 else ""
        name = (
            f"workflow {result.get('steps')} steps, width {result.get('width')}{runs} "
            f"(critical path {result.get('critical_path_ms'):g} ms)"
        )
    elif scenario == "capacity":
        name = (
            f"capacity: idle SSE streams, heartbeat {result.get('heartbeat_s'):g} s, "
            f"/api/health p95 ≤ {result.get('health_limit_ms'):g} ms"
        )
    elif scenario == "startup":
        name = "startup: time to ready, idle RSS"
    else:
        return None
    _, plus, variant = str(result.get("label") or "").partition("+")
    return f"{name} [{variant}]" if plus else name
