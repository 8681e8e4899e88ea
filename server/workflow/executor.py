"""The executor: runs one run's plan inside one nursery, under its limits and timeouts.

Ownership: ``RunExecutor.execute`` owns the run's nursery; each step is one task in it. A step
starts the moment all its needs succeeded, bounded by the run's, the process's and the tool's
``trio.CapacityLimiter``. Each attempt runs under ``trio.fail_after`` inside the step task;
``ToolError(retryable=True)`` and timeouts are retried with backoff (``server.backoff``).

What the run's state becomes is decided by ``workflow/transitions.py`` (pure); the records
it returns are committed by ``workflow/writer.py`` (grouped, shielded with a deadline,
transient store errors retried) and published after commit. So the in-memory view never
runs ahead of the store by more than the write in flight.

How a run ends is written in ``transitions``. Store failures never decide it: when the store
stays unavailable past the writer's window, the executor stops (``abandoned``) and the run is
resumed later from what the store holds. Any other failure to record ends the run ``failed``
(``internal_error``), written from the store's view of the run (``transitions.end_stored``).
Cancelling the run's scope (``cancel``) cancels every running step together.
"""

from __future__ import annotations

import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import trio

from server.backoff import Backoff
from server.errors import AppError, InvalidPlan, StoreUnavailable, ToolError
from server.store.models import StepStatus
from server.workflow.endings import ENDINGS, NOT_RECORDED, SHUTDOWN, planning_failed
from server.workflow.events import bounded_output
from server.workflow.monitor import RunClock, RunMonitor
from server.workflow.plan import parse_plan
from server.workflow.templates import TemplateError, render_args
from server.workflow.tools.changeset import ChangesetFiles
from server.workflow.tools.registry import ToolContext, args_validator
from server.workflow.transitions import Records, RunState, end_stored, steps_of
from server.workflow.writer import RunWriter, WorkflowObserver, WriteAbandoned, WritePolicy

if TYPE_CHECKING:
    from server.config import Settings
    from server.events.publisher import Publisher
    from server.store.models import Run, RunStatus
    from server.store.protocol import Store
    from server.workflow.endings import CancelReason
    from server.workflow.plan import Plan, PlanStep
    from server.workflow.tools.registry import FileAccess, Tool, ToolRegistry

__all__ = ["ExecutorDeps", "RunExecutor", "RunPlanner", "WorkflowObserver", "steps_of"]

log = logging.getLogger("stretto.workflow")

STORED_READ_DEADLINE_S = 10.0
STEP_BACKOFF = Backoff(0.5, 30.0)  # jitter in [50%, 100%], never below a Retry-After


class RunPlanner(Protocol):
    """Turns a prompt into (intent, plan JSON). Implemented by ``workflow.planner.Planner``."""

    async def analyze_and_plan(
        self, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...


@dataclass
class ExecutorDeps:
    """What every run shares: the store, the publisher, the tools and the process limits."""

    store: Store
    publisher: Publisher
    files: FileAccess
    registry: ToolRegistry
    settings: Settings
    provider: Any = None
    planner: RunPlanner | None = None
    global_limiter: trio.CapacityLimiter | None = None
    tool_limiters: dict[str, trio.CapacityLimiter] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    step_backoff: Backoff = STEP_BACKOFF
    write_policy: WritePolicy = field(default_factory=WritePolicy)
    observer: WorkflowObserver | None = None

    def __post_init__(self) -> None:
        if self.global_limiter is None:
            self.global_limiter = trio.CapacityLimiter(self.settings.global_concurrency)

    def tool_limiter(self, tool: Tool) -> trio.CapacityLimiter | None:
        if tool.max_concurrency is None:
            return None
        limiter = self.tool_limiters.get(tool.name)
        if limiter is None:
            limiter = self.tool_limiters[tool.name] = trio.CapacityLimiter(tool.max_concurrency)
        return limiter


class RunExecutor:
    """Executes one run, from planning (prompt runs) to its terminal state."""

    def __init__(self, deps: ExecutorDeps, run: Run) -> None:
        self.deps = deps
        self.run = run
        self.run_id = run.id
        self.project_id = run.project_id
        self.clock = RunClock()
        self.monitor = RunMonitor(self.clock)
        self.finished = trio.Event()
        self.status: RunStatus | None = None  # terminal status once finished (None: resumable)
        self.abandoned = False  # the store stayed unavailable: nothing more was written
        self.state = RunState(run.project_id, run.id)
        self._scope = trio.CancelScope()
        self._plan: Plan | None = None
        self._nursery: trio.Nursery | None = None
        self._outputs: dict[str, Any] = {}
        self._tools: dict[str, str] = {}
        self.writer = RunWriter(
            deps.store,
            deps.publisher,
            run.id,
            run.project_id,
            policy=deps.write_policy,
            observer=deps.observer,
            tool_of=lambda step_id: self._tools.get(step_id, "unknown"),
            rng=deps.rng,
        )
        settings = deps.settings
        options = run.options or {}
        self.state.review = options.get("changes") == "review"
        concurrency = int(options.get("concurrency") or settings.run_concurrency)
        self._run_limiter = trio.CapacityLimiter(max(1, min(concurrency, settings.run_concurrency)))
        timeout = options.get("timeout_s")
        self._timeout_s: float = float(timeout) if timeout else float("inf")

    # -- control ---------------------------------------------------------------------------
    def cancel(self, reason: CancelReason) -> None:
        """Cancel every running step together; the run ends as ``reason`` says. Idempotent;
        the first cause of an ending wins."""
        ending = ENDINGS.get(reason)
        if ending is not None:
            self.state.end(ending)
        self._scope.cancel()

    async def _commit(self, records: Records) -> None:
        await self.writer.commit(records)

    # -- the run -----------------------------------------------------------------------------
    async def execute(self) -> RunStatus | None:
        """Run to the end. Returns the terminal status, or None when left resumable (shutdown,
        or ``abandoned`` to a store that stayed unavailable).

        Re-raises an outer cancellation after recording the shutdown state.
        """
        failed = False
        try:
            with self._scope:
                if self.run.plan is None:
                    await self._plan_run()
                else:
                    steps = max(len(self.run.plan.get("steps", [])), 1)
                    self._plan = parse_plan(self.run.plan, self.deps.registry, steps)
                if self._plan is not None and self.state.ending is None:
                    await self._start_run(self._plan)
                    with trio.move_on_after(self._timeout_s) as timeout_scope:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            self._dispatch()
                    if timeout_scope.cancelled_caught:
                        self.cancel("timeout")
        except* WriteAbandoned:
            self.abandoned = True
        except* Exception as group:
            log.error("run %s: aborted", self.run_id, exc_info=group)
            failed = True
        finally:
            # Shielded: the final write is the one that must happen. Bounded all the same:
            # every write by the writer's window, the one read by its own deadline.
            with trio.CancelScope(shield=True):
                await self._finalize(failed)
            self.finished.set()
        return self.status

    async def _plan_run(self) -> None:
        """pending -> planning -> planned, through the planner. A failure ends the run."""
        planner = self.deps.planner
        prompt = self.run.prompt or ""
        await self._commit(self.state.planning(prompt, self.clock.now()))
        if planner is None:
            self.state.end(planning_failed("No planner is configured."))
            return
        try:
            intent, plan_json = await planner.analyze_and_plan(self.project_id, prompt)
            plan = parse_plan(plan_json, self.deps.registry, self.deps.settings.max_plan_steps)
        except InvalidPlan as exc:
            self.state.end(planning_failed(exc.message, exc.details))
            return
        except (AppError, ToolError) as exc:
            self.state.end(planning_failed(str(exc)))
            return
        await self._commit(self.state.planned(intent, plan, self.clock.now()))
        steps = tuple(steps_of(self.run_id, plan))
        self.run = replace(self.run, intent=intent, plan=plan.to_json(), steps=steps)
        self._plan = plan

    async def _start_run(self, plan: Plan) -> None:
        """Restore what an earlier process finished, then pending -> running (``run.started``)."""
        self._tools = {step.id: step.tool for step in plan.steps}
        records = self.state.start(
            plan, self.run.steps, self.run.started_at is None, self.clock.now(), self.run.status
        )
        for step in self.run.steps:
            if step.id in self._tools and step.status.finished:
                if step.status is StepStatus.SUCCEEDED:
                    self._outputs[step.id] = step.output
                self.monitor.restore(step.id, step.duration_ms, step.attempts)
        if records:
            await self._commit(records)
        self.monitor.run_started()

    # -- steps -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        assert self._plan is not None
        if self._nursery is None or self._scope.cancel_called:
            return
        for step_id in self.state.dispatch_ready():
            self.monitor.step_ready(step_id)
            self._nursery.start_soon(
                self._run_step, self._plan.step(step_id), name=f"step {step_id}"
            )

    async def _run_step(self, step: PlanStep) -> None:
        tool = self.deps.registry.get(step.tool)
        assert tool is not None
        async with AsyncExitStack() as limits:
            await limits.enter_async_context(self._run_limiter)
            tool_limiter = self.deps.tool_limiter(tool)
            if tool_limiter is not None:
                await limits.enter_async_context(tool_limiter)
            assert self.deps.global_limiter is not None
            await limits.enter_async_context(self.deps.global_limiter)
            queue_ms = self.monitor.step_started(step.id)
            self.monitor.attempt(step.id)
            await self._commit(
                self.state.step_started(step.id, tool.name, queue_ms, self.clock.now())
            )
            try:
                result = await self._attempt_loop(step, tool)
            finally:
                duration_ms = self.monitor.step_ended(step.id)
            await self._record_outcome(step, result, duration_ms)

    async def _attempt_loop(self, step: PlanStep, tool: Tool) -> dict[str, Any] | ToolError:
        """Attempts until success, a permanent error or the retries are spent."""
        timeout = step.timeout_s if step.timeout_s is not None else tool.timeout_s
        retries = step.retries if step.retries is not None else tool.retries
        retried = 0
        while True:
            outcome = await self._attempt(step, tool, self.state.started[step.id], timeout)
            if not isinstance(outcome, ToolError):
                return outcome
            if not outcome.retryable or retried >= retries:
                return outcome
            retried += 1
            delay = self.deps.step_backoff.delay(retried, outcome.retry_after, self.deps.rng)
            await self._commit(
                self.state.step_retrying(step.id, outcome.to_json(), delay, self.clock.now())
            )
            await trio.sleep(delay)
            self.monitor.attempt(step.id)

    async def _attempt(
        self, step: PlanStep, tool: Tool, attempt: int, limit_s: float
    ) -> dict[str, Any] | ToolError:
        """One call of the tool under ``fail_after``; errors become a ``ToolError`` value."""
        deps = self.deps
        ctx = ToolContext(
            project_id=self.project_id,
            run_id=self.run_id,
            step_id=step.id,
            attempt=attempt,
            files=(
                ChangesetFiles(deps.store, deps.files.limits, self.run_id)
                if self.state.review
                else deps.files
            ),
            publisher=deps.publisher,
            provider=deps.provider,
            settings=deps.settings,
        )
        try:
            args = render_args(step.args, self._outputs, deps.settings.max_template_arg_bytes)
        except TemplateError as exc:
            return ToolError(exc.code, str(exc))
        problems = sorted(args_validator(tool).iter_errors(args), key=str)
        if problems:
            return ToolError("invalid_args", f"arguments after substitution: {problems[0].message}")
        try:
            with trio.fail_after(limit_s):
                output: object = await tool.run(ctx, args)
        except trio.TooSlowError:
            return ToolError("timeout", f"The step timed out after {limit_s:g}s.", retryable=True)
        except ToolError as exc:
            return exc
        except AppError as exc:
            return ToolError(exc.code, exc.message, retryable=isinstance(exc, StoreUnavailable))
        except Exception as exc:
            log.exception("tool %s crashed in run %s step %s", tool.name, self.run_id, step.id)
            return ToolError("tool_crashed", f"{type(exc).__name__}: {exc}")
        if not isinstance(output, dict):
            return ToolError("invalid_output", "The tool returned something other than an object.")
        return output

    async def _record_outcome(
        self, step: PlanStep, result: dict[str, Any] | ToolError, duration_ms: float
    ) -> None:
        now = self.clock.now()
        if isinstance(result, ToolError):
            records = self.state.step_failed(
                step.id, result.to_json(), result.message, step.continue_on_error, duration_ms, now
            )
            await self._commit(records)
            if self.state.ending is not None:
                self._scope.cancel()
            return
        stored = bounded_output(result, self.deps.settings.step_output_max_bytes)
        records, _ready = self.state.step_succeeded(step.id, stored, duration_ms, now)
        await self._commit(records)
        self._outputs[step.id] = result
        self._dispatch()

    # -- the end -------------------------------------------------------------------------------
    async def _finalize(self, failed: bool) -> None:
        """Write the run's final state and its steps' last events (shielded by the caller;
        each write bounded by the writer's window). Never raises ``Exception``."""
        self.monitor.run_ended()
        if self.abandoned:
            return  # the store holds the last committed state; the run resumes from it
        if failed:
            self.state.end(NOT_RECORDED)
        elif self.state.ending is None and not self.state.completed:
            self.state.end(SHUTDOWN)  # cancelled from outside: the supervisor is going away
        if self.writer.broken is not None:
            await self._finalize_stored()
            return
        durations = {sid: self.monitor.step_ended(sid) for sid in self.state.started}
        plan = self._plan
        metrics = self.monitor.metrics(
            plan.needs if plan is not None else {},
            len(plan.steps) if plan is not None else 0,
            self.state.succeeded,
        )
        records, status = self.state.finish(self.clock.now(), metrics, durations)
        try:
            await self._commit(records)
        except WriteAbandoned:
            self.abandoned = True
        except Exception:
            log.exception("run %s: final state not recorded", self.run_id)
        else:
            self.status = status

    async def _finalize_stored(self) -> None:
        """The in-memory view is not the store's (a write failed for good): end the run as
        the store holds it."""
        ending = self.state.ending
        assert ending is not None
        try:
            with trio.fail_after(STORED_READ_DEADLINE_S):
                stored = await self.deps.store.get_run(self.run_id)
            if stored is None or stored.status.finished:
                return
            records, status = end_stored(stored, ending, self.clock.now())
            await RunWriter(
                self.deps.store, self.deps.publisher, self.run_id, self.project_id
            ).commit(records)
        except (WriteAbandoned, StoreUnavailable, trio.TooSlowError) as exc:
            log.error("run %s: final state not recorded: %s", self.run_id, exc)
            self.abandoned = True
        except Exception:
            log.exception("run %s: final state not recorded", self.run_id)
        else:
            self.status = status
