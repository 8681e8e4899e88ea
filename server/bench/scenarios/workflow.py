"""workflow: K ``ai.generate`` steps in W independent chains (step i needs step i-W), in
``runs`` rounds of ``concurrent`` runs submitted at once, while one SSE stream watches the
project. Wall time per run = POST sent -> terminal run event read; the critical path =
ceil(K/W) x the provider's latency. Checks that each step started only after its needs
succeeded and that every step reported both events.

Scale rows (how the cost grows with steps and with runs): ``--steps 1000 --width 100`` and
``--steps 20 --concurrent 100``. They need a server that lets them run at full width:
``--max-plan-steps 1000 --run-concurrency 100 --ai-concurrency 1000 --global-concurrency 1000
--max-runs-per-user 100`` (else its limits, not its overhead, set the wall time). With
``--pid`` the server's CPU time over the rounds is reported (per run and per step), and the
events the stream received per second of the rounds. With ``--trace``, ``phases_ms``: the
median time of each phase of a run (``workflow_trace``: POST -> first step start, per wave
the ends' spread and the hand-off to the next wave, last end -> terminal event), from the
events' server timestamps and the client's clock."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from server.bench.api import ApiClient
from server.bench.errors import BenchError
from server.bench.scenarios.workflow_trace import Seen, phase_medians, run_phases, server_time
from server.bench.sse import SseRequest, hold_with_reconnect
from server.bench.stats import percentiles, process_cpu_s, rounded
from server.bench.wire import last_event_id, parse_events

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.bench.scenarios.common import RunContext

TERMINAL = ("run.succeeded", "run.failed", "run.cancelled")


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    steps: int = 20
    width: int = 10
    runs: int = 3
    latency_ms: float = 100.0
    run_timeout_s: float = 60.0
    concurrent: int = 1  # runs submitted at once per round
    trace: bool = False  # report the phase breakdown (``workflow_trace``)


@dataclass(slots=True)
class _RunTrace:
    events: list[tuple[str, str | None]] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    terminal: str | None = None
    done_at: float = 0.0
    server_wall_ms: float | None = None
    posted: float = 0.0  # wall clock when its POST was sent
    seen: list[Seen] = field(default_factory=list)


def build_plan(steps: int, width: int) -> dict[str, Any]:
    """W chains: step i is link i // W of chain i % W."""
    return {
        "steps": [
            {
                "id": f"s{i}",
                "tool": "ai.generate",
                "args": {"prompt": f"step {i}"},
                "needs": [f"s{i - width}"] if i >= width else [],
            }
            for i in range(steps)
        ]
    }


def check_order(
    plan: dict[str, Any], events: Sequence[tuple[str, str | None]]
) -> tuple[bool, bool]:
    """(every step reported started and succeeded, every step started after all its needs
    succeeded), from the order of the run's events."""
    position = {f"{name}:{step}": i for i, (name, step) in enumerate(events)}
    complete = order_ok = True
    for step in plan["steps"]:
        started = position.get(f"step.started:{step['id']}")
        if started is None or f"step.succeeded:{step['id']}" not in position:
            complete = False
            continue
        for need in step["needs"]:
            done = position.get(f"step.succeeded:{need}")
            if done is None or done > started:
                order_ok = False
    return complete, order_ok


def max_parallelism(events: Sequence[tuple[str, str | None]]) -> int:
    running = peak = 0
    for name, _ in events:
        if name == "step.started":
            running += 1
            peak = max(peak, running)
        elif name in ("step.succeeded", "step.failed", "step.cancelled"):
            running = max(0, running - 1)
    return peak


async def run(ctx: RunContext, opts: WorkflowOptions) -> dict[str, Any]:
    api = ApiClient(ctx.target)
    try:
        return await _run(ctx, opts, api)
    finally:
        await api.aclose()


async def _run(ctx: RunContext, opts: WorkflowOptions, api: ApiClient) -> dict[str, Any]:
    project_id = await api.setup_project()
    assert api.token is not None
    traces: dict[str, _RunTrace] = {}
    last_id: list[str | None] = [None]
    server_closes = [0]

    wall_offset = time.time() - trio.current_time()  # trio clock -> wall clock

    def on_frames(frames: bytes, at: float) -> None:
        last_id[0] = last_event_id(frames) or last_id[0]
        for event in parse_events(frames):
            data = event.data if isinstance(event.data, dict) else {}
            run_id = data.get("run_id")
            if not isinstance(run_id, str):
                continue
            trace = traces.setdefault(run_id, _RunTrace())
            step = data.get("step_id")
            step_id = step if isinstance(step, str) else None
            trace.events.append((event.event, step_id))
            if opts.trace:
                trace.seen.append(Seen(event.event, step_id, server_time(data), at + wall_offset))
            if event.event in TERMINAL and trace.terminal is None:
                trace.terminal = event.event
                trace.done_at = at
                wall = data.get("wall_ms")
                trace.server_wall_ms = float(wall) if isinstance(wall, int | float) else None
                trace.done.set()

    plan = build_plan(opts.steps, opts.width)
    chain_len = math.ceil(opts.steps / opts.width)
    critical_ms = chain_len * opts.latency_ms
    walls: list[float] = []
    round_walls: list[float] = []
    server_walls: list[float | None] = []
    server_critical: list[float | None] = []
    parallelism: list[int] = []
    phases: list[dict[str, float]] = []
    complete = order_ok = True
    failed_runs = 0
    first_accept_ms: float | None = None
    events_seen = 0
    rounds_s = 0.0
    cpu_s = 0.0
    pid = ctx.server_pid

    async def start_one(index: int, t0: float, ids: list[str | None]) -> None:
        nonlocal first_accept_ms
        body = {"project_id": project_id, "plan": plan}
        posted = time.time()
        created = await api.call("POST", "/api/workflow/runs", body, 202, "create run")
        if first_accept_ms is None:
            first_accept_ms = (trio.current_time() - t0) * 1000
        run_id = ids[index] = str(created["id"])
        trace = traces.setdefault(run_id, _RunTrace())
        trace.posted = posted
        with trio.move_on_after(opts.run_timeout_s):
            await trace.done.wait()
        if not trace.done.is_set():
            raise BenchError(f"run {created['id']} did not finish in {opts.run_timeout_s:g} s")

    async with trio.open_nursery() as streams:
        # A subscriber too slow for the event rate is closed by the server: reconnect with
        # Last-Event-ID, like EventSource (the run and step events replay; deltas do not).
        await streams.start(
            partial(
                hold_with_reconnect,
                SseRequest(ctx.target, project_id, api.token),
                on_frames,
                reconnect=True,
                last_id=lambda: last_id[0],
                on_server_close=lambda: server_closes.__setitem__(0, server_closes[0] + 1),
                on_reconnect_failed=lambda: None,
            )
        )
        for index in range(opts.runs):
            ctx.progress.stage(
                f"round {index + 1}/{opts.runs}: {opts.concurrent} x {opts.steps} steps, "
                f"width {opts.width}"
            )
            ids: list[str | None] = [None] * opts.concurrent
            seen_before = sum(len(t.events) for t in traces.values())
            cpu_before = process_cpu_s(pid) if pid is not None else None
            t0 = trio.current_time()
            async with trio.open_nursery() as runs:
                for slot in range(opts.concurrent):
                    runs.start_soon(start_one, slot, t0, ids)
            rounds_s += trio.current_time() - t0
            cpu_after = process_cpu_s(pid) if pid is not None else None
            if cpu_before is not None and cpu_after is not None:
                cpu_s += cpu_after - cpu_before
            events_seen += sum(len(t.events) for t in traces.values()) - seen_before
            round_walls.append((max(traces[i].done_at for i in ids if i is not None) - t0) * 1000)
            for run_id in ids:
                assert run_id is not None
                trace = traces[run_id]
                if trace.terminal != "run.succeeded":
                    failed_runs += 1
                walls.append((trace.done_at - t0) * 1000)
                run_complete, run_order_ok = check_order(plan, trace.events)
                complete, order_ok = complete and run_complete, order_ok and run_order_ok
                parallelism.append(max_parallelism(trace.events))
                if opts.trace:
                    phases.append(
                        run_phases(
                            trace.seen, trace.posted, opts.steps, opts.width, opts.latency_ms
                        )
                    )
                metrics = await _server_metrics(api, run_id)
                server_walls.append(trace.server_wall_ms or metrics.get("wall_ms"))
                server_critical.append(metrics.get("critical_path_ms"))
        streams.cancel_scope.cancel()

    wall_p50 = percentiles(walls)["p50"]
    total_runs = opts.runs * opts.concurrent
    cpu: dict[str, float | None] = {}
    if pid is not None:
        cpu = {
            "server_cpu_ms_per_run": rounded(cpu_s * 1000 / total_runs, 2),
            "server_cpu_ms_per_step": rounded(cpu_s * 1000 / (total_runs * opts.steps), 3),
            "server_cpu_pct": rounded(cpu_s * 100 / rounds_s, 1) if rounds_s else None,
        }
    return {
        "steps": opts.steps,
        "width": opts.width,
        "chain_len": chain_len,
        "runs": opts.runs,
        "concurrent": opts.concurrent,
        "latency_ms_assumed": opts.latency_ms,
        "critical_path_ms": critical_ms,
        "wall_ms": [rounded(wall, 1) for wall in walls],
        "wall_ms_p50": wall_p50,
        "overhead_ms_p50": rounded(wall_p50 - critical_ms, 1) if wall_p50 is not None else None,
        "wall_over_critical_path": (
            rounded(wall_p50 / critical_ms, 3) if wall_p50 is not None and critical_ms else None
        ),
        "round_wall_ms": [rounded(wall, 1) for wall in round_walls],
        "events_per_s": rounded(events_seen / rounds_s, 1) if rounds_s else None,
        "stream_reconnects": server_closes[0],
        **cpu,
        "server_wall_ms": server_walls,
        "server_critical_path_ms": server_critical,
        "max_parallelism": max(parallelism, default=0),
        "post_202_ms_first": rounded(first_accept_ms) if first_accept_ms is not None else None,
        "failed_runs": failed_runs,
        **({"phases_ms": phase_medians(phases)} if opts.trace else {}),
        "events_complete": complete,
        "dag_order_ok": order_ok,
    }


async def _server_metrics(api: ApiClient, run_id: str) -> dict[str, float | None]:
    """The run's own metrics (stretto's run resource has them; the peers' has none)."""
    try:
        status, body = await api.request("GET", f"/api/workflow/runs/{run_id}")
    except BenchError:
        return {}
    if status != 200:
        return {}
    try:
        metrics = json.loads(body).get("metrics") or {}
    except (ValueError, AttributeError):
        return {}
    return {
        key: float(metrics[key]) if isinstance(metrics.get(key), int | float) else None
        for key in ("wall_ms", "critical_path_ms")
    }
