"""``stretto bench``: measure a running server with the scenarios fanout, idle, workflow,
http and capacity; a table on stdout (or one JSON line with ``--json``), progress on stderr.

Bounded: every size has a ceiling and every run a hard time limit (``--max-s``). Loopback
only, unless the URL is given explicitly together with ``--allow-remote``.
Exit status: 0 measured, 1 the run failed or hit its time limit (the output says why),
2 a usage error (bad or refused target).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from server.bench import compare
from server.bench.errors import BenchError
from server.bench.progress import Progress
from server.bench.report import format_json, format_table
from server.bench.scenarios import capacity, fanout, http, idle, workflow
from server.bench.scenarios.common import RunContext
from server.bench.stats import raise_fd_limit
from server.bench.target import DEFAULT_URL, parse_target

DESCRIPTION = """\
Measure a running server: fanout (SSE delivery latency and loss under file writes), idle
(streams held, server memory per stream), workflow (parallel steps: wall time vs critical
path), http (requests/s) and capacity (the most idle streams held while heartbeats flow and
/api/health answers within 1 s). A table on stdout, or one JSON line with --json; progress on
stderr. Every size is bounded and every run has a hard time limit (--max-s). Only loopback
targets, unless --url names another host explicitly and --allow-remote is given.
Exit status: 0 measured, 1 the run failed or hit its time limit, 2 usage error.

  stretto bench fanout --url http://127.0.0.1:8080 --subs 1000 --events 200 --rate 20 --pid PID
  stretto bench idle --conns 10000 --hold-s 30 --pid PID
  stretto bench workflow --steps 20 --width 10 --latency-ms 100   # server: --offline-latency-ms 100
  stretto bench workflow --steps 1000 --width 100 --runs 1 --pid PID  # scale rows: see
  stretto bench workflow --steps 20 --concurrent 100 --runs 1 --pid PID  # workflow --help
  stretto bench http --path /api/health --conns 50 --seconds 5
  stretto bench capacity --steps 1000,5000,10000,20000 --pid PID
  stretto bench compare --a http://127.0.0.1:3000 --a-label node --b http://127.0.0.1:8080 \
      --b-label stretto --scenarios http,fanout,workflow
"""

Scenario = Callable[[RunContext, Any], Awaitable[dict[str, Any]]]


def _bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _count(high: int, low: int = 1) -> Callable[[str], Any]:
    return _bounded(int, low, high)


def _seconds(high: float, low: float = 0.0) -> Callable[[str], Any]:
    return _bounded(float, low, high)


def add_parser(subparsers: Any) -> None:
    """Register ``bench`` (with one sub-command per scenario) on the CLI's subparsers."""
    bench = subparsers.add_parser(
        "bench",
        help="Measure a running stretto server (fanout, idle, workflow, http, capacity).",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=None,
        help=f"Server to measure [default {DEFAULT_URL}]; loopback only unless --allow-remote.",
    )
    common.add_argument(
        "--allow-remote",
        action="store_true",
        help="Allow a non-loopback host given with --url (it will get real load).",
    )
    common.add_argument(
        "--pid",
        type=int,
        default=None,
        help="PID of the server process: adds its RSS and CPU share.",
    )
    common.add_argument("--json", action="store_true", help="Print one JSON line, no table.")
    common.add_argument("--label", default=None, help="Copied into the result.")
    common.add_argument(
        "--max-s",
        type=_seconds(3600, 1),
        default=None,
        help="Hard time limit of the whole run, in seconds.",
    )
    common.add_argument("--quiet", action="store_true", help="No progress on stderr.")
    scenarios = bench.add_subparsers(dest="bench_scenario", metavar="SCENARIO", required=True)

    p = scenarios.add_parser(
        "fanout",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="N subscribers, M file writes at R/s: delivery latency, loss.",
    )
    p.add_argument("--subs", type=_count(20_000), default=100, help="Subscribers (SSE streams).")
    p.add_argument("--events", type=_count(100_000), default=100, help="File writes (events).")
    p.add_argument(
        "--rate",
        type=_bounded(float, 0.1, 10_000),
        default=100.0,
        help="Writes per second (open loop).",
    )
    p.add_argument("--ramp", type=_count(1000), default=100, help="SSE handshakes in flight.")
    p.add_argument(
        "--drain-s",
        type=_seconds(300),
        default=10.0,
        help="Wait this long after the last write for deliveries.",
    )
    p.add_argument("--size", type=_count(1_000_000, 0), default=128, help="Bytes per file.")
    p.add_argument(
        "--stall",
        type=_count(1000, 0),
        default=0,
        help="Extra subscribers that stop reading (slow clients).",
    )
    p.add_argument(
        "--pad",
        type=_count(900, 0),
        default=0,
        help="Extra bytes in each event's path (bigger frames).",
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="Reconnect closed streams with Last-Event-ID, like EventSource.",
    )

    p = scenarios.add_parser(
        "idle",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Hold N idle SSE streams: heartbeats, server RSS per stream.",
    )
    p.add_argument("--conns", type=_count(50_000), default=100, help="SSE streams to hold.")
    p.add_argument("--hold-s", type=_seconds(3600), default=5.0, help="Seconds to hold them.")
    p.add_argument("--ramp", type=_count(1000), default=100, help="SSE handshakes in flight.")

    p = scenarios.add_parser(
        "workflow",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Runs of K ai.generate steps, width W: wall vs critical path.",
        description=(
            "Rounds of C runs (submitted at once) of K ai.generate steps in W chains, one SSE "
            "stream watching: wall time vs the critical path ceil(K/W) x latency, and with --pid "
            "the server's CPU per run and per step, and events/s. Scale rows: --steps 1000 "
            "--width 100 (cost vs steps) and --steps 20 --concurrent 100 (cost vs runs); "
            "start the server with --max-plan-steps 1000 --run-concurrency 100 "
            "--ai-concurrency 1000 --global-concurrency 1000 --max-runs-per-user 100 so its "
            "limits do not set the wall time."
        ),
    )
    p.add_argument(
        "--steps",
        type=_count(1000),
        default=20,
        help="Steps per run (past 100: start the server with --max-plan-steps).",
    )
    p.add_argument(
        "--width",
        type=_count(100),
        default=10,
        help="Independent chains (past 16: the server's --run-concurrency and --ai-concurrency).",
    )
    p.add_argument("--runs", type=_count(100), default=3, help="Rounds, one after another.")
    p.add_argument(
        "--concurrent",
        type=_count(200),
        default=1,
        help="Runs submitted at once per round (past 20: the server's --max-runs-per-user).",
    )
    p.add_argument(
        "--latency-ms",
        type=_seconds(60_000),
        default=100.0,
        help="The server's offline-provider latency (STRETTO_OFFLINE_LATENCY_MS).",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help=(
            "Also report phases_ms: the median of each phase of a run (POST -> first step "
            "start, per wave the ends' spread and the hand-off to the next wave, last end -> "
            "terminal event), from the events' server timestamps and this client's clock."
        ),
    )

    p = scenarios.add_parser(
        "http",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Closed-loop GET load on one path: requests/s, latency.",
    )
    p.add_argument("--path", default="/api/health", help="Path to GET.")
    p.add_argument("--conns", type=_count(10_000), default=50, help="Keep-alive connections.")
    p.add_argument("--seconds", type=_seconds(600, 0.1), default=5.0, help="Measuring window.")
    p.add_argument("--warmup-s", type=_seconds(60), default=1.0, help="Discarded warm-up.")
    p.add_argument(
        "--engine",
        choices=http.ENGINES,
        default="auto",
        help="python (raw sockets), wrk, or auto (wrk when installed).",
    )

    p = scenarios.add_parser(
        "capacity",
        parents=[common],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Idle SSE streams in steps until heartbeats or /api/health fail: the most held.",
        description=capacity.__doc__,
    )
    capacity.add_arguments(p)
    scenarios.add_parser("capacity-shard", help=argparse.SUPPRESS)  # capacity's child process

    shared = argparse.ArgumentParser(add_help=False)
    for name in ("--allow-remote", "--json", "--quiet"):
        shared.add_argument(name, action="store_true")
    shared.add_argument("--max-s", type=_seconds(3600, 1), default=None)
    p = scenarios.add_parser(
        "compare",
        parents=[shared],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="A/B: the same http, fanout and workflow load against two servers, side by side.",
        description=compare.__doc__,
    )
    compare.add_arguments(p)


def _scenario(args: argparse.Namespace) -> tuple[Scenario, Any, float]:
    """The scenario function, its options and its default hard time limit."""
    name = args.bench_scenario
    if name == "fanout":
        fo = fanout.FanoutOptions(
            subs=args.subs,
            events=args.events,
            rate=args.rate,
            ramp=args.ramp,
            drain_s=args.drain_s,
            size=args.size,
            stall=args.stall,
            pad=args.pad,
            reconnect=args.reconnect,
        )
        return fanout.run, fo, 120 + fo.events / fo.rate + fo.drain_s
    if name == "idle":
        io = idle.IdleOptions(conns=args.conns, hold_s=args.hold_s, ramp=args.ramp)
        return idle.run, io, 120 + io.hold_s + io.conns / 100
    if name == "workflow":
        wo = workflow.WorkflowOptions(
            steps=args.steps,
            width=args.width,
            runs=args.runs,
            latency_ms=args.latency_ms,
            concurrent=args.concurrent,
            trace=args.trace,
        )
        return workflow.run, wo, 60 + 61 * wo.runs
    if name == "capacity":
        co, max_s = capacity.options(args)
        return capacity.run, co, max_s
    if name == "http":
        if not args.path.startswith("/"):
            raise BenchError("--path must start with /")
        ho = http.HttpOptions(
            path=args.path,
            conns=args.conns,
            seconds=args.seconds,
            warmup_s=args.warmup_s,
            engine=args.engine,
        )
        return http.run, ho, 60 + ho.seconds + ho.warmup_s
    raise BenchError(f"unknown scenario {name!r}")


def _bench_errors(group: BaseExceptionGroup[BaseException]) -> list[BenchError] | None:
    """The BenchErrors of a group when it holds nothing else, else None."""
    errors: list[BenchError] = []
    for error in group.exceptions:
        if isinstance(error, BenchError):
            errors.append(error)
        elif isinstance(error, BaseExceptionGroup):
            inner = _bench_errors(error)
            if inner is None:
                return None
            errors += inner
        else:
            return None
    return errors


async def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen scenario and print its result; returns the exit status."""
    try:
        target = parse_target(args.url, allow_remote=args.allow_remote)
        scenario, options, default_max_s = _scenario(args)
    except BenchError as exc:
        print(f"stretto bench: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()
    max_s = args.max_s if args.max_s is not None else default_max_s
    progress = Progress(enabled=not args.quiet)
    ctx = RunContext(target, progress, args.pid)
    result: dict[str, Any] = {"error": f"hard time limit of {max_s:g} s reached"}
    async with trio.open_nursery() as nursery:
        await nursery.start(progress.run)
        with trio.move_on_after(max_s):
            try:
                result = await scenario(ctx, options)
            except BenchError as exc:
                result = {"error": str(exc)}
            except BaseExceptionGroup as group:  # raised inside a scenario's nursery
                errors = _bench_errors(group)
                if errors is None:
                    raise
                result = {"error": "; ".join(str(error) for error in errors)}
        nursery.cancel_scope.cancel()
    full = {"scenario": args.bench_scenario, "label": args.label, "url": target.base_url, **result}
    print(format_json(full) if args.json else format_table(full), flush=True)
    if result.get("error"):
        print(f"stretto bench: {result['error']}", file=sys.stderr)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    """Entry point from ``stretto bench ...`` (the parsed arguments of ``add_parser``)."""
    try:
        if args.bench_scenario == "capacity-shard":
            from server.bench import capacity_shard

            return capacity_shard.main()
        if args.bench_scenario == "compare":
            return trio.run(compare.run_compare, args)
        return trio.run(run_bench, args)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """A parser holding only ``bench`` (``python -m server.bench``)."""
    parser = argparse.ArgumentParser(prog="stretto")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser
