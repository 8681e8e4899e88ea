"""http: closed-loop GET load on one path (default ``/api/health``): C keep-alive connections
each send the next request as soon as the previous answer arrived, for S seconds after a
discarded warm-up. Engine ``python`` (raw trio sockets; tops out at a few thousand requests/s
on one core, so it measures the client long before a fast server) or ``wrk`` (C, one thread;
what the side-by-side runs use), ``auto`` picks wrk when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from server.bench.conn import HttpConnection
from server.bench.errors import BenchError
from server.bench.stats import CpuMeter, percentiles, rounded

if TYPE_CHECKING:
    from server.bench.scenarios.common import RunContext

ENGINES = ("auto", "python", "wrk")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    path: str = "/api/health"
    conns: int = 50
    seconds: float = 5.0
    warmup_s: float = 1.0
    engine: str = "auto"
    request_timeout_s: float = 5.0


@dataclass(slots=True)
class _Tally:
    latency_ms: list[float]
    errors: int = 0
    non2xx: int = 0
    first_error: str | None = None


async def run(ctx: RunContext, opts: HttpOptions) -> dict[str, Any]:
    engine = opts.engine
    if engine == "auto":
        engine = "wrk" if shutil.which("wrk") else "python"
    if engine == "wrk" and not shutil.which("wrk"):
        raise BenchError("engine wrk: wrk is not installed (apt-get install wrk)")
    measure = _python_run if engine == "python" else _wrk_run
    if opts.warmup_s > 0:
        ctx.progress.stage(f"warm-up {opts.warmup_s:g} s, {opts.conns} connections")
        await measure(ctx, opts, opts.warmup_s)
    ctx.progress.stage(f"GET {opts.path} for {opts.seconds:g} s on {opts.conns} connections")
    meter = CpuMeter(ctx.server_pid)
    result = await measure(ctx, opts, opts.seconds)
    meter.mark()
    cpu = meter.result()
    if engine == "wrk":
        cpu.pop("client_cpu_pct", None)  # the client is wrk, a child we do not meter
    return {
        "engine": engine,
        "path": opts.path,
        "conns": opts.conns,
        "warmup_s": opts.warmup_s,
        **cpu,
        **result,
    }


async def _python_run(ctx: RunContext, opts: HttpOptions, seconds: float) -> dict[str, Any]:
    tally = _Tally([])
    started = trio.current_time()
    end = started + seconds

    async def worker() -> None:
        conn: HttpConnection | None = None
        try:
            while trio.current_time() < end:
                try:
                    with trio.fail_after(opts.request_timeout_s):
                        if conn is None or not conn.open:
                            conn = await HttpConnection.connect(ctx.target)
                        sent = trio.current_time()
                        status, _ = await conn.request("GET", opts.path)
                except (OSError, trio.BrokenResourceError, trio.TooSlowError, BenchError) as exc:
                    tally.errors += 1
                    tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
                    if conn is not None:
                        await conn.aclose()
                    conn = None
                    await trio.sleep(0.01)
                    continue
                if status < 300:
                    tally.latency_ms.append((trio.current_time() - sent) * 1000)
                else:
                    tally.non2xx += 1
        finally:
            if conn is not None:
                await conn.aclose()

    ctx.progress.track(lambda: f"{len(tally.latency_ms)} requests, {tally.errors} errors")
    async with trio.open_nursery() as nursery:
        for _ in range(opts.conns):
            nursery.start_soon(worker)
    ctx.progress.track(None)
    elapsed = trio.current_time() - started
    return {
        "requests": len(tally.latency_ms),
        "seconds": rounded(elapsed),
        "rps": rounded(len(tally.latency_ms) / elapsed, 1),
        "errors": tally.errors,
        "first_error": tally.first_error,
        "non2xx": tally.non2xx,
        "latency_ms": percentiles(tally.latency_ms),
    }


async def _wrk_run(ctx: RunContext, opts: HttpOptions, seconds: float) -> dict[str, Any]:
    url = ctx.target.base_url + opts.path
    command = [
        "wrk",
        "-t1",
        f"-c{opts.conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{opts.request_timeout_s:g}s",
        "--latency",
        url,
    ]
    try:
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"wrk failed: {exc.stderr.decode(errors='replace')[:200]}") from None
    return parse_wrk(done.stdout.decode(errors="replace"))


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m)\b"


def _ms(value: str, unit: str) -> float:
    return rounded(float(value) * _UNIT_MS[unit])


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests, rps, errors and latency percentiles from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in " + _DURATION, text)
    if rps is None or total is None:
        raise BenchError(f"cannot read wrk output: {text[:200]!r}")
    dist = {p: re.search(rf"^\s+{p}%\s+{_DURATION}", text, re.M) for p in ("50", "90", "99")}
    maximum = re.search(rf"Latency\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", text)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    latency: dict[str, float | None] = {
        f"p{p}": _ms(m.group(1), m.group(2)) if m else None for p, m in dist.items()
    }
    latency["max"] = _ms(maximum.group(5), maximum.group(6)) if maximum else None
    return {
        "requests": int(total.group(1)),
        "seconds": _ms(total.group(2), total.group(3)) / 1000,
        "rps": float(rps.group(1)),
        "errors": sum(int(n) for n in socket.groups()) if socket else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "latency_ms": latency,
    }
