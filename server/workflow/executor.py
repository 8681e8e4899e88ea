"""The executor: runs one run's plan inside one nursery.

Ownership: ``RunExecutor.execute`` owns the run's nursery; each step is one task in it. A step
starts the moment all its needs succeeded (``DependencyAnalyzer``), bounded by the run's,
the process's and the tool's ``trio.CapacityLimiter``. Each attempt runs under
``trio.fail_after`` inside the step task; ``ToolError(retryable=True)`` and timeouts are
retried with exponential backoff and jitter, each retry recorded (``step.retrying``).

Every state change is committed with its event in one ``store.write_run_state`` call under
a shield (so the in-memory view never runs ahead of or behind the store) and published after
commit. How a run ends (API.md):
- a step fails without ``continue_on_error``: the run's cancel scope is cancelled, running
  steps end ``cancelled`` (``sibling_failed``), not-started steps ``skipped`` (``run_failed``),
  the run ``failed``;
- a step fails with ``continue_on_error``: only its dependents are skipped
  (``dependency_failed``); the run goes on and can succeed;
- ``cancel("user")``: running steps ``cancelled`` (``user``), the run ``cancelled``;
- ``options.timeout_s`` elapses: running steps ``cancelled`` (``timeout``), the run ``failed``;
- ``cancel("shutdown")`` or an outer cancellation: running steps ``cancelled`` (``shutdown``)
  and reset to ``pending``; the run stays unfinished with its lease released, resumable.
The final state is written under a shielded cancel scope with a deadline.
"""

from __future__ import annotations

import logging
import random
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import trio

from server.errors import AppError, InvalidPlan, StoreUnavailable, ToolError
from server.events.model import EventType
from server.store.models import RunChange, RunStatus, Step, StepChange, StepStatus
from server.workflow.analyzer import DependencyAnalyzer, Slot
from server.workflow.events import bounded_output, run_event, step_event
from server.workflow.monitor import RunClock, RunMonitor
from server.workflow.plan import parse_plan
from server.workflow.templates import TemplateError, render_args
from server.workflow.tools.registry import ToolContext, args_validator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from server.config import Settings
    from server.events.publisher import Publisher
    from server.store.models import NewEvent, Run
    from server.store.protocol import Store
    from server.workflow.plan import Plan, PlanStep
    from server.workflow.tools.registry import FileAccess, Tool, ToolRegistry

log = logging.getLogger("stretto.workflow")

FINAL_WRITE_DEADLINE_S = 10.0
CancelReason = Literal["user", "timeout", "shutdown", "sibling_failed"]


class RunPlanner(Protocol):
    """Turns a prompt into (intent, plan JSON). Implemented by ``server.ai.planner.Planner``."""

    async def analyze_and_plan(
        self, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...


class WorkflowObserver(Protocol):
    """Told of every committed status change (``server.observability.metrics.Metrics``)."""

    def run_status(self, status: str) -> None: ...

    def step_finished(self, tool: str, status: str, seconds: float | None = None) -> None: ...


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
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
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

    def backoff_s(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter in [50%, 100%], never below ``retry_after``."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        delay = ceiling * (0.5 + 0.5 * self.rng.random())
        return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class _Ending:
    """Why the run ends early: the first cause wins."""

    kind: Literal["failed", "cancelled", "timeout", "shutdown"]
    error: dict[str, Any]


@dataclass
class _Batch:
    """Changes written together in one ``write_run_state`` (see ``RunExecutor._commit``)."""

    run: dict[str, Any] = field(default_factory=dict)
    new_steps: list[Step] = field(default_factory=list)
    steps: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    parts: list[tuple[Mapping[str, Any] | None, Sequence[tuple[str, Mapping[str, Any]]]]] = field(
        default_factory=list
    )
    done: trio.Event = field(default_factory=trio.Event)
    error: Exception | None = None

    def add(
        self,
        run: Mapping[str, Any] | None,
        new_steps: Sequence[Step],
        steps: Sequence[tuple[str, Mapping[str, Any]]],
        events: Sequence[NewEvent],
    ) -> None:
        if run:
            self.run.update(run)  # the same run: later fields win, as separate writes would
        self.new_steps.extend(new_steps)
        self.steps.extend(steps)
        self.events.extend(events)
        self.parts.append((run, steps))


def steps_of(run_id: str, plan: Plan) -> list[Step]:
    """Fresh ``pending`` step records for a plan."""
    return [
        Step(
            run_id=run_id,
            id=s.id,
            position=i,
            tool=s.tool,
            args=dict(s.args),
            needs=s.needs,
        )
        for i, s in enumerate(plan.steps)
    ]


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
        self._scope = trio.CancelScope()
        self._ending: _Ending | None = None
        self._plan: Plan | None = None
        self._analyzer: DependencyAnalyzer | None = None
        self._nursery: trio.Nursery | None = None
        self._outputs: dict[str, Any] = {}
        self._attempts: dict[str, int] = {s.id: s.attempts for s in run.steps}
        self._started: dict[str, int] = {}  # step id -> attempt, for steps running now
        self._first_started_at: dict[str, Any] = {}
        self._succeeded = 0
        self._batch: _Batch | None = None  # changes waiting for the next group commit
        self._writing = False  # a task is writing batches
        settings = deps.settings
        options = run.options or {}
        concurrency = int(options.get("concurrency") or settings.run_concurrency)
        self._run_limiter = trio.CapacityLimiter(max(1, min(concurrency, settings.run_concurrency)))
        timeout = options.get("timeout_s")
        self._timeout_s: float = float(timeout) if timeout else float("inf")

    # -- control ---------------------------------------------------------------------------
    def cancel(self, reason: CancelReason) -> None:
        """Cancel every running step together; the run ends as ``reason`` says. Idempotent;
        the first cause of an ending wins."""
        if reason == "user":
            self._end(
                _Ending(
                    "cancelled",
                    {"code": "cancelled", "message": "Cancelled by the user.", "reason": "user"},
                )
            )
        elif reason == "shutdown":
            self._end(
                _Ending(
                    "shutdown",
                    {"code": "shutdown", "message": "The server shut down.", "reason": "shutdown"},
                )
            )
        elif reason == "timeout":
            self._end(
                _Ending(
                    "timeout",
                    {"code": "timeout", "message": "The run timed out.", "reason": "timeout"},
                )
            )
        self._scope.cancel()

    def _end(self, ending: _Ending) -> None:
        if self._ending is None:
            self._ending = ending
        self._scope.cancel()

    # -- persistence -----------------------------------------------------------------------
    async def _commit(
        self,
        *,
        run: Mapping[str, Any] | None = None,
        new_steps: Sequence[Step] = (),
        steps: Sequence[tuple[str, Mapping[str, Any]]] = (),
        events: Sequence[NewEvent] = (),
    ) -> None:
        """Commit a state change with its events, shielded so a cancelled step never leaves
        it half-known; then publish. Raises ``AppError`` from the store.

        Group commit: changes asked for while another is being written (steps started or
        finished together) are written together in the next transaction, in the order
        asked, and published in that order. One failing write fails every change in it.
        """
        with trio.CancelScope(shield=True):
            batch = self._batch or _Batch()
            self._batch = batch
            batch.add(run, new_steps, steps, events)
            if self._writing:
                await batch.done.wait()  # the writing task writes this batch next
            else:
                self._writing = True
                try:
                    # Let the steps woken in this scheduler tick join the first batch.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    while self._batch is not None:
                        current, self._batch = self._batch, None
                        await self._write(current)
                finally:
                    self._writing = False
        if batch.error is not None:
            raise batch.error

    async def _write(self, batch: _Batch) -> None:
        """Write one batch, publish it, wake its callers (errors recorded on the batch)."""
        try:
            stored = await self.deps.store.write_run_state(
                run=RunChange(self.run_id, batch.run) if batch.run else None,
                new_steps=batch.new_steps,
                steps=[StepChange(self.run_id, sid, f) for sid, f in batch.steps],
                events=batch.events,
            )
        except Exception as exc:
            batch.error = exc
        else:
            self.deps.publisher.publish(stored)
            if self.deps.observer is not None:
                for run, steps in batch.parts:
                    self._observe(run, steps)
        finally:
            batch.done.set()

    def _observe(
        self, run: Mapping[str, Any] | None, steps: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> None:
        observer = self.deps.observer
        assert observer is not None
        if run is not None and "status" in run:
            observer.run_status(str(run["status"]))
        for step_id, fields in steps:
            status = fields.get("status")
            if status is None or not StepStatus(status).finished:
                continue
            tool = self._tool_names().get(step_id, "unknown")
            duration_ms = fields.get("duration_ms")
            seconds = duration_ms / 1000 if duration_ms is not None else None
            observer.step_finished(tool, str(status), seconds)

    def _tool_names(self) -> dict[str, str]:
        if self._plan is None:
            return {}
        return {step.id: step.tool for step in self._plan.steps}

    def _run_event(self, kind: EventType, **fields: Any) -> NewEvent:
        return run_event(kind, self.project_id, self.run_id, self.clock.now(), **fields)

    def _step_event(self, kind: EventType, step_id: str, attempt: int, **fields: Any) -> NewEvent:
        return step_event(
            kind, self.project_id, self.run_id, step_id, attempt, self.clock.now(), **fields
        )

    # -- the run -----------------------------------------------------------------------------
    async def execute(self) -> RunStatus | None:
        """Run to the end. Returns the terminal status, or None when left resumable (shutdown).

        Re-raises an outer cancellation after recording the shutdown state.
        """
        try:
            with self._scope:
                if self.run.plan is None:
                    await self._plan_run()
                else:
                    self._plan = parse_plan(
                        self.run.plan,
                        self.deps.registry,
                        max(len(self.run.plan.get("steps", [])), 1),
                    )
                if self._plan is not None and self._ending is None:
                    await self._start_run(self._plan)
                    with trio.move_on_after(self._timeout_s) as timeout_scope:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            assert self._analyzer is not None
                            self._dispatch(self._analyzer.ready_steps())
                    if timeout_scope.cancelled_caught:
                        self.cancel("timeout")
        except* Exception as group:
            log.error("run %s: aborted", self.run_id, exc_info=group)
            self._end(
                _Ending(
                    "failed",
                    {"code": "internal_error", "message": "The run could not be recorded."},
                )
            )
        finally:
            if self._ending is None and not self._completed():
                # Cancelled from outside (the supervisor's nursery is going away).
                self._ending = _Ending(
                    "shutdown",
                    {"code": "shutdown", "message": "The server shut down.", "reason": "shutdown"},
                )
            with trio.CancelScope(shield=True) as final:
                final.deadline = trio.current_time() + FINAL_WRITE_DEADLINE_S
                try:
                    await self._finalize()
                except AppError as exc:
                    log.error("run %s: final state not recorded: %s", self.run_id, exc)
            self.finished.set()
        return self.status

    def _completed(self) -> bool:
        if self._analyzer is None:
            return False
        return self._analyzer.finished

    async def _plan_run(self) -> None:
        """pending -> planning -> planned, through the planner. A failure ends the run."""
        planner = self.deps.planner
        prompt = self.run.prompt or ""
        await self._commit(
            run={"status": RunStatus.PLANNING},
            events=[self._run_event(EventType.RUN_PLANNING, prompt=prompt)],
        )
        if planner is None:
            self._end(
                _Ending(
                    "failed", {"code": "planning_failed", "message": "No planner is configured."}
                )
            )
            return
        try:
            intent, plan_json = await planner.analyze_and_plan(self.project_id, prompt)
            plan = parse_plan(plan_json, self.deps.registry, self.deps.settings.max_plan_steps)
        except InvalidPlan as exc:
            self._end(
                _Ending(
                    "failed",
                    {"code": "planning_failed", "message": exc.message, "details": exc.details},
                )
            )
            return
        except (AppError, ToolError) as exc:
            self._end(_Ending("failed", {"code": "planning_failed", "message": str(exc)}))
            return
        plan_doc = plan.to_json()
        await self._commit(
            run={"intent": intent, "plan": plan_doc},
            new_steps=steps_of(self.run_id, plan),
            events=[self._run_event(EventType.RUN_PLANNED, intent=intent, plan=plan_doc)],
        )
        self.run = _with_plan(self.run, intent, plan_doc, steps_of(self.run_id, plan))
        self._plan = plan

    async def _start_run(self, plan: Plan) -> None:
        """Restore what an earlier process finished, then pending -> running (``run.started``)."""
        analyzer = DependencyAnalyzer(plan)
        resets: list[tuple[str, Mapping[str, Any]]] = []
        events: list[NewEvent] = []
        for step in self.run.steps:
            if step.id not in analyzer:  # plan and stored steps disagree: ignore the stray
                continue
            if step.status is StepStatus.SUCCEEDED:
                analyzer.restore(step.id, Slot.SUCCEEDED)
                self._outputs[step.id] = step.output
                self._succeeded += 1
                self.monitor.restore(step.id, step.duration_ms, step.attempts)
            elif step.status in (StepStatus.FAILED, StepStatus.SKIPPED):
                analyzer.restore(
                    step.id, Slot.FAILED if step.status is StepStatus.FAILED else Slot.SKIPPED
                )
                self.monitor.restore(step.id, step.duration_ms, step.attempts)
            elif step.status in (StepStatus.RUNNING, StepStatus.CANCELLED):
                # Left running by a process that died: that attempt ended with it.
                if step.status is StepStatus.RUNNING:
                    events.append(
                        self._step_event(
                            EventType.STEP_CANCELLED, step.id, step.attempts, reason="shutdown"
                        )
                    )
                resets.append((step.id, {"status": StepStatus.PENDING}))
        self._analyzer = analyzer
        run_fields: dict[str, Any] = {"status": RunStatus.RUNNING}
        if self.run.started_at is None:
            run_fields["started_at"] = self.clock.now()
            events.append(self._run_event(EventType.RUN_STARTED, steps_total=len(plan.steps)))
        await self._commit(run=run_fields, steps=resets, events=events)
        self.monitor.run_started()

    # -- steps -------------------------------------------------------------------------------
    def _dispatch(self, step_ids: Sequence[str]) -> None:
        assert self._analyzer is not None
        assert self._plan is not None
        if self._nursery is None or self._scope.cancel_called:
            return
        for step_id in step_ids:
            self._analyzer.dispatch(step_id)
            self.monitor.step_ready(step_id)
            self._nursery.start_soon(
                self._run_step, self._plan.step(step_id), name=f"step {step_id}"
            )

    async def _run_step(self, step: PlanStep) -> None:
        tool = self.deps.registry.get(step.tool)
        assert tool is not None
        assert self._analyzer is not None
        async with AsyncExitStack() as limits:
            await limits.enter_async_context(self._run_limiter)
            tool_limiter = self.deps.tool_limiter(tool)
            if tool_limiter is not None:
                await limits.enter_async_context(tool_limiter)
            assert self.deps.global_limiter is not None
            await limits.enter_async_context(self.deps.global_limiter)
            attempt = self._attempts.get(step.id, 0) + 1
            queue_ms = self.monitor.step_started(step.id)
            self.monitor.attempt(step.id)
            started_at = self.clock.now()
            self._started[step.id] = attempt
            await self._commit(
                steps=[
                    (
                        step.id,
                        {
                            "status": StepStatus.RUNNING,
                            "attempts": attempt,
                            "started_at": started_at,
                            "queue_ms": queue_ms,
                        },
                    )
                ],
                events=[self._step_event(EventType.STEP_STARTED, step.id, attempt, tool=tool.name)],
            )
            self._attempts[step.id] = attempt
            try:
                result = await self._attempt_loop(step, tool, attempt)
            finally:
                duration_ms = self.monitor.step_ended(step.id)
            await self._record_outcome(step, result, duration_ms)

    async def _attempt_loop(
        self, step: PlanStep, tool: Tool, attempt: int
    ) -> dict[str, Any] | ToolError:
        """Attempts until success, a permanent error or the retries are spent."""
        timeout = step.timeout_s if step.timeout_s is not None else tool.timeout_s
        retries = step.retries if step.retries is not None else tool.retries
        first = attempt
        while True:
            outcome = await self._attempt(step, tool, attempt, timeout)
            if not isinstance(outcome, ToolError):
                return outcome
            if not outcome.retryable or attempt - first >= retries:
                return outcome
            delay = self.deps.backoff_s(attempt - first + 1, outcome.retry_after)
            await self._commit(
                steps=[(step.id, {"attempts": attempt + 1})],
                events=[
                    self._step_event(
                        EventType.STEP_RETRYING,
                        step.id,
                        attempt,
                        error=outcome.to_json(),
                        next_attempt=attempt + 1,
                        delay_ms=round(delay * 1000, 3),
                    )
                ],
            )
            attempt += 1
            self._attempts[step.id] = attempt
            self._started[step.id] = attempt
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
            files=deps.files,
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
        assert self._analyzer is not None
        attempt = self._attempts[step.id]
        finished_at = self.clock.now()
        if not isinstance(result, ToolError):
            stored = bounded_output(result, self.deps.settings.step_output_max_bytes)
            await self._commit(
                steps=[
                    (
                        step.id,
                        {
                            "status": StepStatus.SUCCEEDED,
                            "output": stored,
                            "finished_at": finished_at,
                            "duration_ms": duration_ms,
                        },
                    )
                ],
                events=[
                    self._step_event(
                        EventType.STEP_SUCCEEDED,
                        step.id,
                        attempt,
                        duration_ms=duration_ms,
                        output=stored,
                    )
                ],
            )
            self._started.pop(step.id, None)
            self._outputs[step.id] = result
            self._succeeded += 1
            self._dispatch(self._analyzer.succeeded(step.id))
            return
        error = result.to_json()
        changes: list[tuple[str, Mapping[str, Any]]] = [
            (
                step.id,
                {
                    "status": StepStatus.FAILED,
                    "error": error,
                    "finished_at": finished_at,
                    "duration_ms": duration_ms,
                },
            )
        ]
        events = [
            self._step_event(
                EventType.STEP_FAILED, step.id, attempt, error=error, duration_ms=duration_ms
            )
        ]
        doomed = self._analyzer.failed(step.id)
        reason = "dependency_failed" if step.continue_on_error else "run_failed"
        for sid in doomed:
            changes.append((sid, {"status": StepStatus.SKIPPED}))
            events.append(
                self._step_event(EventType.STEP_SKIPPED, sid, 0, reason=reason, failed_step=step.id)
            )
        await self._commit(steps=changes, events=events)
        self._started.pop(step.id, None)
        if not step.continue_on_error:
            self._end(
                _Ending(
                    "failed",
                    {
                        "code": "step_failed",
                        "message": f"Step {step.id!r} failed: {result.message}",
                        "step_id": step.id,
                        "step_error": error,
                    },
                )
            )

    # -- the end -------------------------------------------------------------------------------
    async def _finalize(self) -> None:
        """Write the run's final state, its steps' last events, and publish them."""
        ending = self._ending
        analyzer = self._analyzer
        self.monitor.run_ended()
        now = self.clock.now()
        changes: list[tuple[str, Mapping[str, Any]]] = []
        events: list[NewEvent] = []
        resumable = ending is not None and ending.kind == "shutdown"
        cancel_reason = {
            "failed": "sibling_failed",
            "cancelled": "user",
            "timeout": "timeout",
            "shutdown": "shutdown",
        }
        if analyzer is not None and ending is not None:
            for sid in analyzer.in_flight():
                if sid in self._started:
                    attempt = self._started.pop(sid)
                    fields: dict[str, Any] = {
                        "status": StepStatus.PENDING if resumable else StepStatus.CANCELLED,
                        "duration_ms": self.monitor.step_ended(sid),
                    }
                    if not resumable:
                        fields["finished_at"] = now
                        fields["error"] = {
                            "code": "cancelled",
                            "message": "The step was cancelled.",
                            "reason": cancel_reason[ending.kind],
                        }
                    changes.append((sid, fields))
                    events.append(
                        self._step_event(
                            EventType.STEP_CANCELLED,
                            sid,
                            attempt,
                            reason=cancel_reason[ending.kind],
                        )
                    )
                    analyzer.cancelled(sid)
                elif not resumable:
                    analyzer.cancelled(sid)
                    changes.append((sid, {"status": StepStatus.SKIPPED}))
                    events.append(
                        self._step_event(EventType.STEP_SKIPPED, sid, 0, reason="run_failed")
                    )
            if not resumable:
                for sid in analyzer.skip_waiting():
                    changes.append((sid, {"status": StepStatus.SKIPPED}))
                    events.append(
                        self._step_event(EventType.STEP_SKIPPED, sid, 0, reason="run_failed")
                    )
        plan = self._plan
        metrics = self.monitor.metrics(
            plan.needs if plan is not None else {},
            len(plan.steps) if plan is not None else 0,
            self._succeeded,
        )
        run_fields: dict[str, Any] = {
            "metrics": metrics,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if resumable:
            self.status = None
        elif ending is None:
            self.status = RunStatus.SUCCEEDED
            run_fields.update(status=self.status, finished_at=now)
            # ``wall_ms`` at the top too: the shared bench's peers report it there.
            events.append(
                self._run_event(
                    EventType.RUN_SUCCEEDED,
                    metrics=_public(metrics),
                    wall_ms=metrics.get("wall_ms"),
                )
            )
        elif ending.kind == "cancelled":
            self.status = RunStatus.CANCELLED
            run_fields.update(status=self.status, finished_at=now, error=ending.error)
            events.append(
                self._run_event(
                    EventType.RUN_CANCELLED,
                    reason="user",
                    error=ending.error,
                    metrics=_public(metrics),
                )
            )
        else:
            self.status = RunStatus.FAILED
            run_fields.update(status=self.status, finished_at=now, error=ending.error)
            events.append(
                self._run_event(EventType.RUN_FAILED, error=ending.error, metrics=_public(metrics))
            )
        await self._commit(run=run_fields, steps=changes, events=events)


def _public(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics an event carries (without the per-step breakdown)."""
    return {k: v for k, v in metrics.items() if k != "steps"}


def _with_plan(
    run: Run, intent: Mapping[str, Any], plan: Mapping[str, Any], steps: list[Step]
) -> Run:
    from dataclasses import replace

    return replace(run, intent=intent, plan=plan, steps=tuple(steps))
