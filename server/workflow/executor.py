"""The executor: runs one run's plan inside one nursery, under its limits and timeouts.

Ownership: ``RunExecutor.execute`` owns the run's nursery; each step is one task in it. A step
starts the moment all its needs succeeded, bounded by the run's ``trio.CapacityLimiter`` and
the tool's and the process's ``FairLimiter`` (their slots shared fairly between the runs'
owners: ``server.fairness``). The run executes ``acting_as`` its owner, so model
calls made for it queue fairly too. Each attempt runs under ``trio.fail_after`` inside the
step task; ``ToolError(retryable=True)`` and timeouts are retried with backoff (``server.backoff``).

What the run's state becomes is decided by ``workflow/transitions.py`` (pure); the records
it returns are committed by ``workflow/writer.py`` (grouped, shielded with a deadline,
transient store errors retried) and published after commit. So the in-memory view never
runs ahead of the store by more than the write in flight.

How a run ends is written in ``transitions``. Store failures never decide it: when the store
stays unavailable past the writer's window, the executor stops (``abandoned``) and the run is
resumed later from what the store holds. Any other failure to record ends the run ``failed``
(``internal_error``), written from the store's view of the run (``transitions.end_stored``).
Cancelling the run's scope (``cancel``) cancels every running step together.

Fan-out: a ``for_each`` step resolves its list (at most ``settings.max_fanout_items`` items,
else it fails ``fanout_too_large``), and its items (``edit[0]``...) are dispatched as steps of
their own in the same nursery, under the same limiters, timeout and retries. The fan-out step
itself holds no limiter; it succeeds with the list of its items' outputs once all succeeded,
and fails (``item_failed``) as soon as one fails (with ``continue_on_error``: once all ended).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import trio

from server.errors import AppError, InvalidPlan, ModelRequired, StoreUnavailable, ToolError
from server.fairness import acting_as
from server.store.models import RunStatus, StepStatus
from server.workflow import fanout
from server.workflow.accounting import PLANNING, RunAccounting, calls_model
from server.workflow.approval import awaiting_approval
from server.workflow.deps import ExecutorDeps, RunPlanner
from server.workflow.endings import ENDINGS, NOT_RECORDED, SHUTDOWN, planning_failed
from server.workflow.events import bounded_output
from server.workflow.file_log import FileLog, RecordingFiles
from server.workflow.monitor import RunClock, RunMonitor
from server.workflow.plan import parse_plan, split_item_id
from server.workflow.templates import NO_ITEM, TemplateError, render_args
from server.workflow.tools.changeset import ChangesetFiles
from server.workflow.tools.registry import ToolContext, args_validator
from server.workflow.transitions import Records, RunState, end_stored, steps_of
from server.workflow.writer import RunWriter, WorkflowObserver, WriteAbandoned

if TYPE_CHECKING:
    from server.store.models import Run
    from server.workflow.endings import CancelReason
    from server.workflow.plan import Plan, PlanStep
    from server.workflow.tools.registry import Tool

__all__ = ["ExecutorDeps", "RunExecutor", "RunPlanner", "WorkflowObserver", "steps_of"]

log = logging.getLogger("stretto.workflow")

STORED_READ_DEADLINE_S = 10.0


def is_store_outage(error: ToolError) -> bool:
    """A tool's call failed because the database could not answer (a retryable
    ``StoreUnavailable``): not the tool's fault, and not the step's."""
    return error.retryable and error.code == StoreUnavailable.code


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
        self.parked = False  # awaiting approval: nothing runs until someone approves
        self.state = RunState(run.project_id, run.id)
        self._scope = trio.CancelScope()
        self._plan: Plan | None = None
        self._nursery: trio.Nursery | None = None
        self._outputs: dict[str, Any] = {}
        self._files: dict[str, FileLog] = {}  # step id -> the files its attempts used
        self._tools: dict[str, str] = {}
        self._item_steps: dict[str, PlanStep] = {}  # fan-out items, by step id
        self._items: dict[str, Any] = {}  # fan-out item step id -> its item
        self.accounting = RunAccounting(run.owner_id, deps.token_budget)
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
            with self._scope, acting_as(self.run.owner_id):
                if self.run.plan is None:
                    await self._plan_run()
                else:
                    steps = max(len(self.run.plan.get("steps", [])), 1)
                    self._plan = parse_plan(self.run.plan, self.deps.registry, steps)
                if self._plan is not None and self.state.ending is None and self._awaits():
                    await self._await_approval(self._plan)
                elif self._plan is not None and self.state.ending is None:
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
            self.accounting.check()  # RateLimited: the owner's token budget is spent
            with self.accounting.metered(PLANNING):
                intent, plan_json = await planner.analyze_and_plan(self.project_id, prompt)
            plan = parse_plan(plan_json, self.deps.registry, self.deps.settings.max_plan_steps)
        except InvalidPlan as exc:
            self.state.end(planning_failed(exc.message, exc.details))
            return
        except ModelRequired as exc:  # the offline provider cannot do it: say so by its code
            self.state.end(planning_failed(exc.message, exc.details, code=exc.code))
            return
        except (AppError, ToolError) as exc:
            self.state.end(planning_failed(str(exc)))
            return
        usage = self.accounting.usage_of(PLANNING)
        await self._commit(self.state.planned(intent, plan, self.clock.now(), usage))
        steps = tuple(steps_of(self.run_id, plan))
        self.run = replace(self.run, intent=intent, plan=plan.to_json(), steps=steps)
        self._plan = plan

    def _awaits(self) -> bool:
        """The run waits for a person before it starts (option ``approval: "plan"``)."""
        approval = (self.run.options or {}).get("approval") == "plan"
        return self.run.status is RunStatus.AWAITING_APPROVAL or (
            approval and self.run.approved_at is None
        )

    async def _await_approval(self, plan: Plan) -> None:
        """planned -> awaiting_approval (lease released); the executor's work ends here."""
        if self.run.status is not RunStatus.AWAITING_APPROVAL:
            now = self.clock.now()
            expires = now + timedelta(seconds=self.deps.settings.approval_timeout_s)
            records = awaiting_approval(
                self.project_id, self.run_id, plan, self.run.intent, expires, now
            )
            await self._commit(records)
        self.parked = True

    async def _start_run(self, plan: Plan) -> None:
        """Restore what an earlier process finished, then pending -> running (``run.started``)."""
        self._tools = {step.id: step.tool for step in plan.steps}
        records = self.state.start(
            plan,
            self.run.steps,
            self.run.started_at is None,
            self.clock.now(),
            self.run.status,
            retry_of=self.run.retry_of,
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
            step = self._item_steps.get(step_id) or self._plan.step(step_id)
            run = self._run_fanout if step.for_each is not None else self._run_step
            self._nursery.start_soon(run, step, name=f"step {step_id}")

    # -- fan-out (server.workflow.fanout) -------------------------------------------------------
    async def _run_fanout(self, step: PlanStep) -> None:
        """Start the fan-out step and expand it into its items (dispatched at once)."""
        assert self._plan is not None
        settings = self.deps.settings
        try:
            items: list[Any] | ToolError = fanout.fanout_items(
                step, self._outputs, settings.max_fanout_items
            )
        except ToolError as exc:
            items = exc
        extra = {} if isinstance(items, ToolError) else {"items": len(items)}
        queue_ms = self.monitor.step_started(step.id, counted=False)
        self.monitor.attempt(step.id)
        await self._commit(
            self.state.step_started(step.id, step.tool, queue_ms, self.clock.now(), **extra)
        )
        if isinstance(items, ToolError):
            await self._record_outcome(step, items, self.monitor.step_ended(step.id))
            return
        built = fanout.item_steps(step, items, settings.max_template_arg_bytes)
        for (item_step, _shown), item in zip(built, items, strict=True):
            self._item_steps[item_step.id] = item_step
            self._items[item_step.id] = item
            self._tools[item_step.id] = step.tool
        position = self._plan.steps.index(step)
        records, done = fanout.expand(
            self.state, step.id, position, [shown for _, shown in built], step.tool
        )
        for item_id in done:
            self._outputs[item_id] = self.state.stored_items[item_id].output
        records.merge(self._fanout_end(step.id))
        await self._commit(records)
        self._dispatch()

    def _fanout_end(self, parent: str) -> Records:
        """The fan-out step's end, when its items decided it (else nothing)."""
        assert self._plan is not None
        step = self._plan.step(parent)
        decided = fanout.outcome(self.state, parent, step.continue_on_error)
        if decided is None:
            return Records()
        return fanout.end_records(
            self.state,
            step,
            decided,
            self._outputs,
            self.monitor.step_ended(parent),
            self.clock.now(),
            self.deps.settings.step_output_max_bytes,
        )

    async def _run_step(self, step: PlanStep) -> None:
        tool = self.deps.registry.get(step.tool)
        assert tool is not None
        async with AsyncExitStack() as limits:
            await limits.enter_async_context(self._run_limiter)
            tool_limiter = self.deps.tool_limiter(tool)
            if tool_limiter is not None:
                await limits.enter_async_context(tool_limiter.slot(self.run.owner_id))
            assert self.deps.global_limiter is not None
            await limits.enter_async_context(self.deps.global_limiter.slot(self.run.owner_id))
            queue_ms = self.monitor.step_started(step.id)
            self.monitor.attempt(step.id)
            item = split_item_id(step.id)  # an item's events name its fan-out step and index
            extra = {} if item is None else {"parent": item[0], "index": item[1]}
            await self._commit(
                self.state.step_started(step.id, tool.name, queue_ms, self.clock.now(), **extra)
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
        outage_began: float | None = None
        outage_failures = 0
        while True:
            outcome = await self._attempt(step, tool, self.state.started[step.id], timeout)
            if not isinstance(outcome, ToolError):
                return outcome
            if is_store_outage(outcome):
                # The database failed, not the tool: retried within the run writer's window
                # whatever the step's retries, so an outage does not decide the run.
                now = trio.current_time()
                outage_began = now if outage_began is None else outage_began
                if now - outage_began >= self.deps.write_policy.window_s:
                    return outcome
                outage_failures += 1
                policy = self.deps.write_policy
                delay = policy.backoff.delay(outage_failures, None, self.deps.rng)
            elif not outcome.retryable or retried >= retries:
                return outcome
            else:
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
            files=RecordingFiles(
                (
                    ChangesetFiles(deps.store, deps.files.limits, self.run_id)
                    if self.state.review
                    else deps.files
                ),
                self._files.setdefault(step.id, FileLog()),
            ),
            publisher=deps.publisher,
            provider=deps.provider,
            settings=deps.settings,
        )
        try:
            args = render_args(
                step.args,
                self._outputs,
                deps.settings.max_template_arg_bytes,
                item=self._items.get(step.id, NO_ITEM),
            )
        except TemplateError as exc:
            return ToolError(exc.code, str(exc))
        problems = sorted(args_validator(tool).iter_errors(args), key=str)
        if problems:
            return ToolError("invalid_args", f"arguments after substitution: {problems[0].message}")
        try:
            if calls_model(tool.name):
                self.accounting.check()
            with trio.fail_after(limit_s), self.accounting.metered(step.id):
                output: object = await tool.run(ctx, args)
        except trio.TooSlowError:
            return ToolError("timeout", f"The step timed out after {limit_s:g}s.", retryable=True)
        except ToolError as exc:
            return exc
        except AppError as exc:
            return ToolError(
                exc.code, exc.message, retryable=isinstance(exc, StoreUnavailable) and exc.retryable
            )
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
        log_ = self._files.get(step.id)
        reads = None if log_ is None else log_.to_json()
        usage = self.accounting.usage_of(step.id)
        if isinstance(result, ToolError):
            error = result.to_json()
            records = self.state.step_failed(
                step.id,
                error,
                result.message,
                step.continue_on_error,
                duration_ms,
                now,
                reads,
                usage,
            )
        else:
            stored = bounded_output(result, self.deps.settings.step_output_max_bytes)
            records, _ready = self.state.step_succeeded(
                step.id, stored, duration_ms, now, reads, usage
            )
            self._outputs[step.id] = result
        parent = self.state.item_parent.get(step.id)
        if parent is not None:
            records.merge(self._fanout_end(parent))
        await self._commit(records)
        if self.state.ending is not None:
            self._scope.cancel()
            return
        self._dispatch()

    # -- the end -------------------------------------------------------------------------------
    async def _finalize(self, failed: bool) -> None:
        """Write the run's final state and its steps' last events (shielded by the caller;
        each write bounded by the writer's window). Never raises ``Exception``."""
        self.monitor.run_ended()
        if self.abandoned or self.parked:
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
        items = sum(len(ids) for ids in self.state.items.values())
        metrics = self.monitor.metrics(
            plan.needs if plan is not None else {},
            len(plan.steps) + items if plan is not None else 0,
            self.state.succeeded,
        )
        run_usage = self.accounting.run_usage()
        if run_usage is not None:
            metrics["usage"] = run_usage
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
