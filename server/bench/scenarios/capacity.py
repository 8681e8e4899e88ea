"""capacity: the most idle SSE streams a server holds before a client stops getting its
heartbeats (or its stream) or ``/api/health`` gets slow.

The streams are opened in steps (``--steps``, totals); each step is held ``hold_s`` (longer
than the heartbeat interval plus grace, so every stream must see a heartbeat in it) while
``/api/health`` is probed every ``probe_every_s`` on a fresh connection, as a load balancer
would. A step passes when every stream asked for connected, none was closed by the server,
none went ``heartbeat_s + grace_s`` without a frame, and the probes' p95 is at most
``health_limit_ms`` (a failed or timed-out probe counts as over). The run stops at the first
step that fails; ``max_streams`` is the last step that passed.

The streams live in shard processes (``capacity_shard``), ``per_shard`` each, since one
process may hold only ``ulimit -n`` sockets; each connection has a source address out of
``sources`` (127.0.0.x), so ephemeral ports do not run out. The shards' CPU and RSS are
reported (``client_*``) to show the client was not the limit. With ``--pid`` the server's
RSS, CPU and open-files limit are read for its whole process group (supervisor and workers).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from server.bench.api import ApiClient
from server.bench.capacity_shard import LineReader
from server.bench.conn import HttpConnection
from server.bench.errors import BenchError
from server.bench.procs import group_cpu_s, group_rss_kb, open_files_limit, server_processes
from server.bench.stats import machine_busy_s, percentiles, rounded

if TYPE_CHECKING:
    from collections.abc import Callable

    from server.bench.scenarios.common import RunContext

DEFAULT_STEPS = (1000, 2000, 5000, 10000, 15000, 19000, 25000, 30000, 39000, 50000, 65000)
MAX_STREAMS = 500_000
DEFAULT_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 10))


@dataclass(frozen=True, slots=True)
class CapacityOptions:
    steps: tuple[int, ...] = DEFAULT_STEPS
    heartbeat_s: float = 15.0  # the server's heartbeat interval (the peers': 15 s)
    grace_s: float = 5.0
    hold_s: float | None = None  # None: heartbeat_s + grace_s + 2
    health_limit_ms: float = 1000.0
    probe_every_s: float = 0.5
    ramp: int = 200
    per_shard: int = 15000
    sources: tuple[str, ...] = DEFAULT_SOURCES
    connect_timeout_s: float = 10.0
    settle_s: float = 0.5

    @property
    def hold(self) -> float:
        return self.hold_s if self.hold_s is not None else self.heartbeat_s + self.grace_s + 2


def shard_command() -> list[str]:
    """How to start a shard: the executable itself when frozen (PyInstaller), else this
    Python with ``-m server.bench``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "bench", "capacity-shard"]
    return [sys.executable, "-m", "server.bench", "capacity-shard"]


class ShardProcess:
    """One shard child process and its command channel. Owned by ``ShardPool``."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._reader = LineReader(process.stdout)
        self.quota = 0

    async def close_stdin(self) -> None:
        """The end of the shard's commands: it closes its streams and exits."""
        await self._stdin.aclose()

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command, read its answer. Raises BenchError when the shard died or erred."""
        try:
            await self._stdin.send_all(json.dumps(command).encode() + b"\n")
            line = await self._reader.readline()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise BenchError(f"capacity shard died: {exc}") from None
        if line is None:
            raise BenchError(f"capacity shard exited (status {self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"capacity shard: {answer['error']}")
        return answer


@dataclass
class ShardPool:
    """The shards of a run, started as needed; ``aclose`` ends them (closing their stdin,
    then killing any that lingers)."""

    config: dict[str, Any]
    per_shard: int
    shards: list[ShardProcess] = field(default_factory=list)

    async def spawn(self) -> ShardProcess:
        process = await trio.lowlevel.open_process(
            shard_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        shard = ShardProcess(process)
        self.shards.append(shard)
        await shard.ask({"op": "config", **self.config})
        return shard

    async def hold(self, total: int) -> dict[str, Any]:
        """Fill shards in order up to ``total`` streams asked for in all."""
        while len(self.shards) * self.per_shard < total:
            await self.spawn()
        answers: list[dict[str, Any]] = []

        async def one(shard: ShardProcess, quota: int) -> None:
            shard.quota = quota
            answers.append(await shard.ask({"op": "hold", "n": quota}))

        async with trio.open_nursery() as nursery:
            for i, shard in enumerate(self.shards):
                quota = min(self.per_shard, max(0, total - i * self.per_shard))
                if quota > shard.quota:
                    nursery.start_soon(one, shard, quota)
        errors = [a["first_error"] for a in answers if a.get("first_error")]
        return {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "skipped": sum(a.get("skipped", 0) for a in answers),
            "first_error": errors[0] if errors else None,
        }

    async def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []

        async def one(shard: ShardProcess) -> None:
            answers.append(await shard.ask(command))

        async with trio.open_nursery() as nursery:
            for shard in self.shards:
                nursery.start_soon(one, shard)
        return answers

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for shard in self.shards:
                await shard.close_stdin()
            with trio.move_on_after(10):
                for shard in self.shards:
                    await shard.process.wait()
            for shard in self.shards:
                if shard.process.poll() is None:
                    shard.process.kill()
                    await shard.process.wait()


async def probe_health(ctx: RunContext, timeout_s: float) -> float:
    """One GET /api/health on a fresh connection: its time in ms, or ``math.inf`` when it
    failed, timed out or did not answer 200."""
    started = time.perf_counter()
    conn: HttpConnection | None = None
    try:
        with trio.fail_after(timeout_s):
            conn = await HttpConnection.connect(ctx.target)
            status, _ = await conn.request("GET", "/api/health")
    except (OSError, BenchError, trio.TooSlowError, trio.BrokenResourceError):
        return math.inf
    finally:
        if conn is not None:
            await conn.aclose()
    return (time.perf_counter() - started) * 1000 if status == 200 else math.inf


async def _probe_loop(ctx: RunContext, opts: CapacityOptions, out: list[float]) -> None:
    timeout = max(5.0, opts.health_limit_ms / 1000 * 2)
    while True:
        next_at = trio.current_time() + opts.probe_every_s
        out.append(await probe_health(ctx, timeout))
        await trio.sleep_until(next_at)


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def _step(
    ctx: RunContext, opts: CapacityOptions, pool: ShardPool, total: int, pids: list[int]
) -> dict[str, Any]:
    started = trio.current_time()
    ctx.progress.stage(f"opening streams up to {total}")
    opened = await pool.hold(total)
    ramp_s = trio.current_time() - started
    await pool.all({"op": "mark"})
    ctx.progress.stage(f"holding {total} streams for {opts.hold:g} s")
    probes: list[float] = []
    before = _costs(pool, pids)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_probe_loop, ctx, opts, probes)
        await trio.sleep(opts.hold)
        nursery.cancel_scope.cancel()
    reports = await pool.all({"op": "report", "limit_s": opts.heartbeat_s + opts.grace_s})
    after = _costs(pool, pids)
    finite = [p for p in probes if math.isfinite(p)]
    health_p95 = _p95(probes)
    row: dict[str, Any] = {
        "streams": total,
        "connect_failed": opened["failed"],  # skipped ones included
        "connect_skipped": opened["skipped"],
        "connect_error": opened["first_error"],
        "alive": sum(r["alive"] for r in reports),
        "closed_by_server": sum(r["closed_by_server"] for r in reports),
        "starved": sum(r["starved"] for r in reports),
        "max_gap_s": max((r["max_gap_s"] or 0 for r in reports), default=None),
        "ramp_s": rounded(ramp_s, 1),
        "health_ms": {
            **percentiles(finite),
            "failed": len(probes) - len(finite),
            "probes": len(probes),
        },
        # A failed probe counts as infinitely slow; JSON has no infinity: null, and the count.
        "health_p95_ms": (
            rounded(health_p95, 1) if health_p95 is not None and math.isfinite(health_p95) else None
        ),
        "health_over_limit": sum(1 for p in probes if p > opts.health_limit_ms),
        **_shares(before, after),
        "server_rss_kb": group_rss_kb(pids),
        "client_rss_kb": sum(r["rss_kb"] or 0 for r in reports),
    }
    reasons = []
    if row["connect_failed"]:
        reasons.append(f"{row['connect_failed']} streams failed to connect")
    if row["closed_by_server"]:
        reasons.append(f"{row['closed_by_server']} streams closed by the server")
    if row["starved"]:
        reasons.append(
            f"{row['starved']} streams without a heartbeat for over "
            f"{opts.heartbeat_s + opts.grace_s:g} s"
        )
    if health_p95 is None or health_p95 > opts.health_limit_ms:
        reasons.append(f"/api/health p95 over {opts.health_limit_ms:g} ms")
    row["ok"] = not reasons
    row["failure"] = "; ".join(reasons) or None
    return row


def _costs(pool: ShardPool, pids: list[int]) -> dict[str, float | None]:
    """CPU seconds so far: the server group, the client (this process and its shards), all."""
    own = os.times()
    shards = [shard.process.pid for shard in pool.shards]
    return {
        "at": time.monotonic(),
        "server": group_cpu_s(pids) if pids else None,
        "client": own.user + own.system + (group_cpu_s(shards) or 0.0),
        "machine": machine_busy_s(),
    }


def _shares(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    """Percent of one core over the window, as ``CpuMeter`` reports them."""
    at0, at1 = before["at"], after["at"]
    assert at0 is not None
    assert at1 is not None
    elapsed = max(at1 - at0, 1e-9)

    def used(key: str) -> float | None:
        start, end = before[key], after[key]
        return end - start if start is not None and end is not None else None

    out: dict[str, float] = {}
    client = used("client") or 0.0
    server = used("server")
    out["client_cpu_pct"] = rounded(client * 100 / elapsed, 1)
    if server is not None:
        out["server_cpu_pct"] = rounded(server * 100 / elapsed, 1)
    machine = used("machine")
    if machine is not None:
        other = max(0.0, machine - client - (server or 0.0))
        out["other_cpu_pct"] = rounded(other * 100 / elapsed, 1)
    return out


async def run(ctx: RunContext, opts: CapacityOptions) -> dict[str, Any]:
    """Step up until a step fails (or the steps end); one result with a row per step."""
    token, project_id = await ApiClient.project_for(ctx.target)
    await trio.sleep(opts.settle_s)
    pids = server_processes(ctx.server_pid)
    rss_before = group_rss_kb(pids)
    pool = ShardPool(
        {
            "url": ctx.target.base_url,
            "project_id": project_id,
            "token": token,
            "sources": list(opts.sources),
            "ramp": opts.ramp,
            "connect_timeout_s": opts.connect_timeout_s,
        },
        opts.per_shard,
    )
    rows: list[dict[str, Any]] = []
    try:
        for total in sorted(set(opts.steps)):
            row = await _step(ctx, opts, pool, total, pids)
            rows.append(row)
            ctx.progress.stage(f"step {total}: {'ok' if row['ok'] else row['failure']}")
            if not row["ok"]:
                break
    finally:
        await pool.aclose()
    passed = [row for row in rows if row["ok"]]
    best = passed[-1] if passed else None
    failed = rows[-1] if rows and not rows[-1]["ok"] else None
    return {
        "steps": [row["streams"] for row in rows],
        "heartbeat_s": opts.heartbeat_s,
        "grace_s": opts.grace_s,
        "hold_s": opts.hold,
        "health_limit_ms": opts.health_limit_ms,
        "max_streams": best["streams"] if best else 0,
        "failed_at": failed["streams"] if failed else None,
        "failure": failed["failure"] if failed else None,
        "alive_at_failure": failed["alive"] - failed["starved"] if failed else None,
        "server_processes": len(pids) or None,
        # The busiest step's neighbours: how loaded the machine was (percent of one core).
        "other_cpu_pct": max((row.get("other_cpu_pct", 0.0) for row in rows), default=None),
        "server_fd_limit": open_files_limit(ctx.server_pid),
        "client_shards": len(pool.shards),
        "rss_kb": (
            {"before": rss_before, "at_max": best["server_rss_kb"] if best else None}
            if pids
            else None
        ),
        "rss_per_conn_kb": (
            rounded((best["server_rss_kb"] - rss_before) / best["streams"], 1)
            if best and best["server_rss_kb"] is not None and rss_before is not None
            else None
        ),
        "rows": rows,
    }


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not steps or any(not 1 <= step <= MAX_STREAMS for step in steps):
        raise argparse.ArgumentTypeError(f"counts must be between 1 and {MAX_STREAMS}")
    return steps


def _positive(high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be above 0 and at most {high:g}")
        return value

    return parse


def _sources(text: str) -> tuple[str, ...]:
    sources = tuple(part.strip() for part in text.split(",") if part.strip())
    for source in sources:
        try:
            if not ipaddress.ip_address(source).is_loopback:
                raise argparse.ArgumentTypeError(f"not a loopback address: {source}")
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address: {source!r}") from None
    return sources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``stretto bench capacity``."""
    d = CapacityOptions()
    add = parser.add_argument
    add("--steps", type=_steps, default=d.steps, help="Stream totals to step through (a,b,c).")
    add("--heartbeat-s", type=_positive(600), default=d.heartbeat_s, help="Server's interval.")
    add("--grace-s", type=_positive(600), default=d.grace_s, help="Lateness allowed.")
    add("--hold-s", type=_positive(3600), default=None, help="Per step [heartbeat+grace+2].")
    add("--health-limit-ms", type=_positive(60_000), default=d.health_limit_ms, help="p95.")
    add("--probe-every-s", type=_positive(60), default=d.probe_every_s, help="Health probes.")
    add("--ramp", type=_positive(5000), default=d.ramp, help="Handshakes in flight per shard.")
    add("--per-shard", type=_positive(MAX_STREAMS), default=d.per_shard, help="Streams/process.")
    add("--sources", type=_sources, default=d.sources, help="Source addresses (127.0.0.x,...).")
    add("--connect-timeout-s", type=_positive(300), default=d.connect_timeout_s, help="Per stream.")


def options(args: argparse.Namespace) -> tuple[CapacityOptions, float]:
    """The options from parsed arguments, and the run's default hard time limit."""
    opts = CapacityOptions(
        steps=args.steps,
        heartbeat_s=args.heartbeat_s,
        grace_s=args.grace_s,
        hold_s=args.hold_s,
        health_limit_ms=args.health_limit_ms,
        probe_every_s=args.probe_every_s,
        ramp=int(args.ramp),
        per_shard=int(args.per_shard),
        sources=args.sources,
        connect_timeout_s=args.connect_timeout_s,
    )
    per_step = opts.hold + opts.connect_timeout_s * 3 + max(opts.steps) / 500
    return opts, 120 + per_step * len(opts.steps)
