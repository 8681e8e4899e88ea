"""``stretto bench compare``: the same workload against two running servers (A/B), for the
migration: stretto beside the legacy Node server, or two stretto builds.

Each scenario runs against A, then against B (never both at once: they would share the
machine's cores), with the same sizes. The output is one side-by-side table of the figures
that decide a cutover (latency percentiles, throughput, errors and losses, memory and CPU
where a PID is given) with the ratio B/A, or one JSON line with ``--json``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from server.bench.errors import BenchError
from server.bench.progress import Progress
from server.bench.report import format_json
from server.bench.scenarios import fanout, http, workflow
from server.bench.scenarios.common import RunContext
from server.bench.stats import raise_fd_limit
from server.bench.target import parse_target

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence

SCENARIOS = ("http", "fanout", "workflow")

# (label, path into the scenario's result, better when "lower" or "higher")
Row = tuple[str, tuple[str, ...], str]
ROWS: dict[str, list[Row]] = {
    "http": [
        ("requests/s", ("rps",), "higher"),
        ("latency p50 ms", ("latency_ms", "p50"), "lower"),
        ("latency p99 ms", ("latency_ms", "p99"), "lower"),
        ("errors", ("errors",), "lower"),
        ("non-2xx", ("non2xx",), "lower"),
        ("server CPU %", ("server_cpu_pct",), "lower"),
    ],
    "fanout": [
        ("delivered", ("delivered",), "higher"),
        ("lost", ("lost",), "lower"),
        ("duplicates", ("duplicates",), "lower"),
        ("latency p50 ms", ("latency_ms", "p50"), "lower"),
        ("latency p99 ms", ("latency_ms", "p99"), "lower"),
        ("PUT p50 ms", ("put_ms", "p50"), "lower"),
        ("PUT errors", ("put_errors",), "lower"),
        ("server CPU %", ("server_cpu_pct",), "lower"),
        ("RSS peak KB", ("rss_kb", "peak"), "lower"),
    ],
    "workflow": [
        ("wall p50 ms", ("wall_ms_p50",), "lower"),
        ("overhead p50 ms", ("overhead_ms_p50",), "lower"),
        ("failed runs", ("failed_runs",), "lower"),
        ("events complete", ("events_complete",), "higher"),
    ],
}


@dataclass(frozen=True, slots=True)
class Side:
    label: str
    url: str | None
    pid: int | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``stretto bench compare`` (sizes are small and bounded by default)."""
    for side in ("a", "b"):
        upper = side.upper()
        parser.add_argument(f"--{side}", required=True, help=f"Base URL of server {upper}.")
        parser.add_argument(f"--{side}-pid", type=int, default=None, help=f"PID of {upper}.")
        parser.add_argument(f"--{side}-label", default=upper, help=f"Name of {upper}.")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"Comma-separated, from {', '.join(SCENARIOS)}.",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="http: measuring window.")
    parser.add_argument("--conns", type=int, default=50, help="http: connections.")
    parser.add_argument("--path", default="/api/health", help="http: the path to GET.")
    parser.add_argument("--subs", type=int, default=100, help="fanout: subscribers.")
    parser.add_argument("--events", type=int, default=100, help="fanout: file writes.")
    parser.add_argument("--rate", type=float, default=50.0, help="fanout: writes per second.")
    parser.add_argument("--steps", type=int, default=10, help="workflow: steps per run.")
    parser.add_argument("--width", type=int, default=5, help="workflow: independent chains.")
    parser.add_argument("--runs", type=int, default=2, help="workflow: runs.")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=100.0,
        help="workflow: the servers' simulated model latency (for the critical path).",
    )


def _scenario_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise BenchError(f"--scenarios: choose from {', '.join(SCENARIOS)} (got {text!r})")
    return names


def _workload(
    name: str, args: argparse.Namespace
) -> tuple[Callable[[RunContext, Any], Awaitable[dict[str, Any]]], Any]:
    if name == "http":
        return http.run, http.HttpOptions(
            path=args.path, conns=args.conns, seconds=args.seconds, warmup_s=0.5, engine="auto"
        )
    if name == "fanout":
        return fanout.run, fanout.FanoutOptions(
            subs=args.subs,
            events=args.events,
            rate=args.rate,
            ramp=100,
            drain_s=5.0,
            size=128,
            stall=0,
            pad=0,
            reconnect=False,
        )
    return workflow.run, workflow.WorkflowOptions(
        steps=args.steps, width=args.width, runs=args.runs, latency_ms=args.latency_ms
    )


def dig(result: dict[str, Any], path: Sequence[str]) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, bool) or isinstance(b, bool):
        return "=" if a == b else "differs"
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return "-"
    if a == b:
        return "="
    if a == 0:
        return "-"
    return f"{b / a:.2f}x"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_comparison(a: Side, b: Side, results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Markdown table: scenario, metric, A, B, B/A; an ``error`` row where a side failed."""
    lines = [
        f"| scenario | metric | {a.label} | {b.label} | {b.label}/{a.label} |",
        "|---|---|---|---|---|",
    ]
    for name, by_side in results.items():
        first = True
        for side in (a, b):
            error = by_side[side.label].get("error")
            if error:
                lines.append(f"| {name} | error ({side.label}) | {error} | | |")
        for label, path, better in ROWS[name]:
            va, vb = dig(by_side[a.label], path), dig(by_side[b.label], path)
            title = name if first else ""
            first = False
            lines.append(
                f"| {title} | {label} ({better} is better) | {_cell(va)} | {_cell(vb)} "
                f"| {ratio(va, vb)} |"
            )
    return "\n".join(lines)


async def _measure(
    side: Side, name: str, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    scenario, options = _workload(name, args)
    target = parse_target(side.url, allow_remote=args.allow_remote)
    progress.stage(f"{name} against {side.label} ({target.base_url})")
    try:
        with trio.move_on_after(args.max_s or 600) as scope:
            return await scenario(RunContext(target, progress, side.pid), options)
    except BenchError as exc:
        return {"error": str(exc)}
    except BaseExceptionGroup as group:
        benign = group.subgroup(BenchError)
        if benign is None or group.split(BenchError)[1] is not None:
            raise
        return {"error": "; ".join(str(error) for error in benign.exceptions)}
    assert scope.cancelled_caught
    return {"error": "hard time limit reached"}


async def run_compare(args: argparse.Namespace) -> int:
    """Run every chosen scenario against A then B; print the table. Exit 0 when both sides
    measured every scenario, 1 when one failed, 2 on a usage error."""
    a = Side(args.a_label, args.a, args.a_pid)
    b = Side(args.b_label, args.b, args.b_pid)
    try:
        names = _scenario_names(args.scenarios)
        for side in (a, b):
            parse_target(side.url, allow_remote=args.allow_remote)
        if a.label == b.label:
            raise BenchError("--a-label and --b-label must differ")
    except BenchError as exc:
        print(f"stretto bench compare: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()
    progress = Progress(enabled=not args.quiet)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(progress.run)
        for name in names:
            results[name] = {
                side.label: await _measure(side, name, args, progress) for side in (a, b)
            }
        nursery.cancel_scope.cancel()
    if args.json:
        print(format_json({"scenario": "compare", "a": a.label, "b": b.label, **results}))
    else:
        print(format_comparison(a, b, results), flush=True)
    failed = any(result.get("error") for by_side in results.values() for result in by_side.values())
    return 1 if failed else 0
