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

One transaction per wave. The steps a commit readies are started in that same commit when
their slots are free (``StepSlots.try_take``): their ``step.started`` follows, in the same
transaction, the records that readied them, and their tasks begin once it committed. So a
step never runs before its ``step.started`` (and its needs' success) is stored, and the
first wave starts with ``run.started``; a submitted run with its plan is even inserted
started (``start_with_insert``: ``run.created``, ``run.started`` and the first wave's starts
in the insert's transaction). A step whose slot is taken waits for it in its own
task and records its start then. The run's last records (``run.succeeded``...) go in the
commit of its last step's end when nothing else can happen (``commit_and_dispatch``).

Around it: planning a prompt run and the approval gate are ``workflow.planning``; a step's
attempts (tool context, file log, timeout, retries) ``workflow.attempt``; its slots
``workflow.slots``; fan-out (``for_each``) ``workflow.fanout_run``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from server.errors import StoreUnavailable, ToolError
from server.fairness import acting_as
from server.store.models import RunStatus, StepStatus
from server.workflow.accounting import RunAccounting
from server.workflow.attempt import RunFiles, attempt_until_done, is_store_outage
from server.workflow.deps import ExecutorDeps, RunPlanner
from server.workflow.endings import ENDINGS, NOT_RECORDED, SHUTDOWN
from server.workflow.events import bounded_output
from server.workflow.fanout_run import fanout_end, run_fanout
from server.workflow.monitor import RunClock, RunMonitor
from server.workflow.plan import parse_plan, split_item_id
from server.workflow.planning import awaits, park_for_approval, plan_run
from server.workflow.slots import StepSlots
from server.workflow.transitions import Records, RunState, end_stored, steps_of
from server.workflow.writer import RunWriter, WorkflowObserver, WriteAbandoned

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import StoredEvent
    from server.fairness import FairLimiter
    from server.store.models import Run, StateWrite
    from server.workflow.endings import CancelReason
    from server.workflow.plan import Plan, PlanStep
    from server.workflow.slots import Held
    from server.workflow.tools.registry import Tool

    _Starting = tuple[PlanStep, Tool, Held]  # a dispatched step, its tool, its slots

__all__ = [
    "ExecutorDeps",
    "RunExecutor",
    "RunPlanner",
    "WorkflowObserver",
    "is_store_outage",
    "steps_of",
]

log = logging.getLogger("stretto.workflow")

STORED_READ_DEADLINE_S = 10.0


class RunExecutor:
    """Executes one run, from planning (prompt runs) to its terminal state.

    ``plan``: the run's plan already parsed (by ``submit``), so it is not parsed twice."""

    def __init__(self, deps: ExecutorDeps, run: Run, plan: Plan | None = None) -> None:
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
        self._parsed = plan
        self._plan: Plan | None = None
        self._nursery: trio.Nursery | None = None
        self._final_committed = False  # the run's last records went with its last step's
        # Started with the insert (``start_with_insert``): its records, the steps whose slots
        # it took (released by ``discard`` or spawned by ``execute``) and the waiting ones.
        self._prestart: tuple[Records, list[_Starting], list[PlanStep]] | None = None
        self._prestart_committed = False
        self.outputs: dict[str, Any] = {}
        self.tools: dict[str, str] = {}
        self.item_steps: dict[str, PlanStep] = {}  # fan-out items, by step id
        self.items: dict[str, Any] = {}  # fan-out item step id -> its item
        self.accounting = RunAccounting(run.owner_id, deps.token_budget)
        self.writer = RunWriter(
            deps.store,
            deps.publisher,
            run.id,
            run.project_id,
            policy=deps.write_policy,
            observer=deps.observer,
            tool_of=lambda step_id: self.tools.get(step_id, "unknown"),
            rng=deps.rng,
        )
        settings = deps.settings
        options = run.options or {}
        self.state.review = options.get("changes") == "review"
        self.files = RunFiles(deps, run.id, self.state.review)
        concurrency = int(options.get("concurrency") or settings.run_concurrency)
        limit = max(1, min(concurrency, settings.run_concurrency))
        self._slots = StepSlots(trio.CapacityLimiter(limit), run.owner_id)
        timeout = options.get("timeout_s")
        self._timeout_s: float = float(timeout) if timeout else float("inf")

    @property
    def plan(self) -> Plan:
        assert self._plan is not None
        return self._plan

    # -- control ---------------------------------------------------------------------------
    def cancel(self, reason: CancelReason) -> None:
        """Cancel every running step together; the run ends as ``reason`` says. Idempotent;
        the first cause of an ending wins."""
        ending = ENDINGS.get(reason)
        if ending is not None:
            self.state.end(ending)
        self._scope.cancel()

    async def commit(self, records: Records) -> None:
        """Commit through the run's writer (grouped; raises ``WriteAbandoned``...)."""
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
                    self._plan = await plan_run(self)
                elif self._parsed is not None:
                    self._plan = self._parsed
                else:
                    steps = max(len(self.run.plan.get("steps", [])), 1)
                    self._plan = parse_plan(self.run.plan, self.deps.registry, steps)
                if self._plan is not None and self.state.ending is None and awaits(self.run):
                    self.parked = await park_for_approval(self, self._plan)
                elif self._plan is not None and self.state.ending is None:
                    with trio.move_on_after(self._timeout_s) as timeout_scope:
                        async with trio.open_nursery() as nursery:
                            self._nursery = nursery
                            await self._start_run(self._plan)
                    if timeout_scope.cancelled_caught:
                        self.cancel("timeout")
        except* WriteAbandoned:
            self.abandoned = True
        except* Exception as group:
            log.error("run %s: aborted", self.run_id, exc_info=group)
            failed = True
        finally:
            self.discard()  # started with the insert but never spawned (cancelled first)
            # Shielded: the final write is the one that must happen. Bounded all the same:
            # every write by the writer's window, the one read by its own deadline.
            with trio.CancelScope(shield=True):
                await self._finalize(failed)
            self.finished.set()
        return self.status

    def start_with_insert(self) -> StateWrite | None:
        """A submitted run with its plan, not awaiting approval: start it now, its records
        (``run.started`` and the first wave's ``step.started``, their slots taken) to be
        committed with the run's insert (``store.create_run(then=...)``). Then call
        ``inserted`` (committed) or ``discard`` (not). None: the run starts in ``execute``."""
        plan = self._parsed
        if plan is None or not plan.steps or awaits(self.run) or self.run.started_at is not None:
            return None
        self._plan = plan
        self.tools = {step.id: step.tool for step in plan.steps}
        records = self.state.start(plan, (), True, self.clock.now(), self.run.status)
        self.monitor.run_started()
        starting, waiting = self._dispatch(records)
        self._prestart = (records, starting, waiting)
        return self.writer.state_write(records)

    def inserted(self, run: Run, stored: Sequence[StoredEvent]) -> None:
        """The run (as stored) was inserted with ``start_with_insert``'s records."""
        self.run = run
        if self._prestart is not None:
            self._prestart_committed = True
            self.writer.committed_elsewhere(self._prestart[0], stored)

    def discard(self) -> None:
        """This executor will not run: release the slots ``start_with_insert`` took."""
        prestart, self._prestart = self._prestart, None
        for _step, _tool, held in prestart[1] if prestart is not None else ():
            held.release()

    async def _start_run(self, plan: Plan) -> None:
        """Restore what an earlier process finished, then pending -> running (``run.started``)
        with the first wave's ``step.started`` in the same commit (or, started with the
        insert, start the steps that commit started)."""
        prestart = self._prestart
        if prestart is not None and self._prestart_committed:
            self._prestart = None
            self._spawn(prestart[1], prestart[2])
            return
        self.tools = {step.id: step.tool for step in plan.steps}
        records = self.state.start(
            plan,
            self.run.steps,
            self.run.started_at is None,
            self.clock.now(),
            self.run.status,
            retry_of=self.run.retry_of,
        )
        for step in self.run.steps:
            if step.id in self.tools and step.status.finished:
                if step.status is StepStatus.SUCCEEDED:
                    self.outputs[step.id] = step.output
                self.monitor.restore(step.id, step.duration_ms, step.attempts)
        self.monitor.run_started()
        await self.commit_and_dispatch(records)

    # -- steps -------------------------------------------------------------------------------
    async def commit_and_dispatch(self, records: Records) -> None:
        """Commit ``records`` with the start of every step they ready whose slots are free,
        then start those steps' tasks (and the tasks of the steps that wait for a slot).
        When nothing is left to run, the run's last records go in the same commit."""
        starting: list[_Starting] = []
        waiting: list[PlanStep] = []
        if self._nursery is not None and not self._scope.cancel_called:
            starting, waiting = self._dispatch(records)
        nursery = self._nursery
        finishing = not starting and not waiting and self.state.ending is None
        finishing = finishing and nursery is not None and self.state.completed
        final: RunStatus | None = None
        if finishing:
            final_records, final = self._final_records()
            records.merge(final_records)
        try:
            if records:
                await self.commit(records)
        except BaseException:
            for _step, _tool, slots in starting:
                slots.release()
            raise
        if finishing:
            self._final_committed, self.status = True, final
        if nursery is not None:
            self._spawn(starting, waiting)

    def _dispatch(self, records: Records) -> tuple[list[_Starting], list[PlanStep]]:
        """The steps now ready: those whose slots are free (their starts added to
        ``records``, their slots held) and those that wait for a slot in their own task."""
        starting: list[_Starting] = []
        waiting: list[PlanStep] = []
        for step_id in self.state.dispatch_ready():
            self.monitor.step_ready(step_id)
            step = self.item_steps.get(step_id) or self.plan.step(step_id)
            held = self._try_start(step, records) if step.for_each is None else None
            if held is None:
                waiting.append(step)
            else:
                starting.append((step, held[0], held[1]))
        return starting, waiting

    def _spawn(self, starting: list[_Starting], waiting: list[PlanStep]) -> None:
        """Start the tasks of dispatched steps in the run's nursery."""
        nursery = self._nursery
        assert nursery is not None
        for step, tool, slots in starting:
            nursery.start_soon(self._run_started, step, tool, slots, name=f"step {step.id}")
        for step in waiting:
            if step.for_each is not None:
                nursery.start_soon(run_fanout, self, step, name=f"step {step.id}")
            else:
                nursery.start_soon(self._run_step, step, name=f"step {step.id}")

    def _try_start(self, step: PlanStep, records: Records) -> tuple[Tool, Held] | None:
        """Take the step's slots now and add its ``step.started`` to ``records``; None when
        a slot is taken (its task waits for it)."""
        tool, tool_limiter, process_limiter = self._limits(step)
        held = self._slots.try_take(tool_limiter, process_limiter)
        if held is not None:
            records.merge(self._started_records(step, tool))
            return tool, held
        return None

    def _limits(self, step: PlanStep) -> tuple[Tool, FairLimiter | None, FairLimiter]:
        """The step's tool, its tool's limiter (if any) and the process's."""
        tool = self.deps.registry.get(step.tool)
        process = self.deps.global_limiter
        assert tool is not None
        assert process is not None
        return tool, self.deps.tool_limiter(tool), process

    def _started_records(self, step: PlanStep, tool: Tool) -> Records:
        queue_ms = self.monitor.step_started(step.id)
        self.monitor.attempt(step.id)
        item = split_item_id(step.id)  # an item's events name its fan-out step and index
        extra = {} if item is None else {"parent": item[0], "index": item[1]}
        return self.state.step_started(step.id, tool.name, queue_ms, self.clock.now(), **extra)

    async def _run_step(self, step: PlanStep) -> None:
        """A step whose slots were taken at dispatch: wait for them, then start it."""
        tool, tool_limiter, process_limiter = self._limits(step)
        held = await self._slots.take(tool_limiter, process_limiter)
        try:
            await self.commit(self._started_records(step, tool))
        except BaseException:
            held.release()
            raise
        await self._run_started(step, tool, held)

    async def _run_started(self, step: PlanStep, tool: Tool, held: Held) -> None:
        """Run a step whose ``step.started`` is committed, holding ``held`` until it ended."""
        try:
            try:
                result = await attempt_until_done(self, step, tool)
            finally:
                duration_ms = self.monitor.step_ended(step.id)
        finally:
            held.release()
        await self.record_outcome(step, result, duration_ms)

    async def record_outcome(
        self, step: PlanStep, result: dict[str, Any] | ToolError, duration_ms: float
    ) -> None:
        """Record a step's end with the start of the steps it readied (one commit)."""
        now = self.clock.now()
        reads = self.files.reads(step.id)
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
            self.outputs[step.id] = result
        parent = self.state.item_parent.get(step.id)
        if parent is not None:
            records.merge(fanout_end(self, parent))
        if self.state.ending is not None:
            await self.commit(records)
            self._scope.cancel()
            return
        await self.commit_and_dispatch(records)  # a cancel meanwhile cancelled the scope

    # -- the end -------------------------------------------------------------------------------
    def _final_records(self) -> tuple[Records, RunStatus | None]:
        """The run's last records and status, from what the run did so far."""
        self.monitor.run_ended()
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
        return self.state.finish(self.clock.now(), metrics, durations)

    async def _finalize(self, failed: bool) -> None:
        """Write the run's final state and its steps' last events (shielded by the caller;
        each write bounded by the writer's window). Never raises ``Exception``."""
        if self._final_committed:
            return  # written with the last step's end
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
        records, status = self._final_records()
        try:
            await self.commit(records)
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
