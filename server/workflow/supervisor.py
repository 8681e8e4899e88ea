"""The run supervisor: the long-lived service that owns every run of this process.

``run()`` lives in the app's service nursery and owns one nursery; each run gets a task in
it, and that task owns the run's own nursery (``RunExecutor``). HTTP requests only submit
and cancel: a run never lives inside the request that created it. ``run()`` also renews
the leases of the runs it holds and adopts unfinished runs whose lease expired (a dead
process's), so runs survive restarts on both databases. On SQLite (one process per data
directory) the first resume at startup also takes over runs whose lease a killed process
still holds.

The same maintenance ends runs whose approval deadline passed (``hitl.expire_approvals``),
at most ``APPROVAL_SCAN_S`` late, on whichever instance sees them first. A run awaiting
approval holds no lease and is never executed until ``approve``.

Cancelling, here or on the instance that executes the run, is ``workflow.cancelling``; lease
maintenance reads cross-instance cancel marks as the fallback of their notification. A
submitted run (``workflow.submission``) is inserted holding this instance's lease.

Runs in flight per user (``max_runs_per_user``: unfinished runs) are counted by the store in
the transaction that inserts the run, so the bound holds across instances.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import trio

from server.errors import AppError, NotFound, ShuttingDown
from server.store.models import Run, RunChange, RunStatus
from server.timeutil import new_id, utc_now
from server.workflow import cancelling, hitl
from server.workflow.accounting import calls_model
from server.workflow.cancelling import CANCEL_WAIT_S
from server.workflow.endings import USER_CANCELLED
from server.workflow.executor import ExecutorDeps, RunExecutor, RunPlanner
from server.workflow.leases import AdoptionBackoff, RateLimitedLog
from server.workflow.options import validate_options
from server.workflow.plan import parse_plan
from server.workflow.submission import check_request, new_run
from server.workflow.writer import WorkflowObserver, is_transient

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.config import Settings
    from server.events.publisher import Publisher
    from server.store.protocol import Store
    from server.workflow.plan import Plan
    from server.workflow.tools.registry import FileAccess, ToolRegistry

__all__ = ["RunPlanner", "RunSupervisor"]

log = logging.getLogger("stretto.workflow")

ADOPT_SCAN_MAX_S = 1.0
APPROVAL_SCAN_S = 1.0  # how often runs past their approval deadline are looked for


@dataclass
class _Active:
    executor: RunExecutor
    owner_id: str
    claimed: bool = False  # inserted holding this process's lease: no claim needed
    done: trio.Event = field(default_factory=trio.Event)


class RunSupervisor:
    """Submits, runs, cancels and resumes workflow runs. One per process."""

    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        files: FileAccess,
        registry: ToolRegistry,
        settings: Settings,
        planner: RunPlanner | None,
        provider: Any,
        instance_id: str,
        deps: ExecutorDeps | None = None,
        observer: WorkflowObserver | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.registry = registry
        self.settings = settings
        self.planner = planner
        self.instance_id = instance_id
        self.deps = deps or ExecutorDeps(
            store=store,
            publisher=publisher,
            files=files,
            registry=registry,
            settings=settings,
            provider=provider,
            planner=planner,
            observer=observer,
        )
        self._nursery: trio.Nursery | None = None
        self._active: dict[str, _Active] = {}
        self._accepting = True
        self._changed = trio.Event()
        self._resumed_once = False
        self.remote = store.run_control()  # cross-instance cancel, where instances share a DB
        self._adoption = AdoptionBackoff()
        self._cancel_when_back: set[str] = set()
        self._lease_log = RateLimitedLog(log, "lease maintenance")

    # -- the service -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the runs' nursery; renew leases and adopt orphaned runs until cancelled.

        Cancelling it cancels every run (recorded as ``shutdown``, left resumable).
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.remote is not None:
                self.remote.on_cancel_request(self.cancel_local)
            task_status.started()
            try:
                await self._maintain_leases()
            finally:
                if self.remote is not None:
                    self.remote.on_cancel_request(None)
                self._nursery = None
                self._accepting = False

    async def _maintain_leases(self) -> None:
        """Renew our leases every third of a lease; look for expired ones (a dead instance's
        runs) every ``ADOPT_SCAN_MAX_S`` at most, so takeover happens within the lease plus
        that bound. Failures are logged rate-limited; troubled runs back off."""
        lease_s = self.settings.run_lease_s
        renew_every = max(lease_s / 3, 0.05)
        tick = min(renew_every, ADOPT_SCAN_MAX_S)
        renewed_at = expired_at = trio.current_time()
        while True:
            await trio.sleep(tick)
            try:
                if self._active and trio.current_time() - renewed_at >= renew_every - tick / 2:
                    renewed_at = trio.current_time()
                    await self.store.renew_leases(self.instance_id, self._lease_until())
                    if self.remote is not None:
                        for run_id in await self.remote.cancel_requests(self.instance_id):
                            self.cancel_local(run_id)
                if self._accepting:
                    await self.resume_unfinished()
                    if trio.current_time() - expired_at >= APPROVAL_SCAN_S:
                        expired_at = trio.current_time()
                        await hitl.expire_approvals(self)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("lease maintenance failed; retrying")
                self._lease_log.failure(exc, trio.current_time())
            else:
                self._lease_log.success()

    def _lease_until(self) -> Any:
        return utc_now() + timedelta(seconds=self.settings.run_lease_s)

    @property
    def active_runs(self) -> int:
        return len(self._active)

    # -- submitting --------------------------------------------------------------------------
    def check_token_budget(self, owner_id: str) -> None:
        """Raise ``RateLimited`` when ``owner_id``'s daily model token budget is spent."""
        if self.deps.token_budget is not None:
            self.deps.token_budget.check(owner_id)

    async def plan_only(
        self, owner_id: str, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Plan without running (``POST /api/workflow/plan``): (intent, plan JSON). See
        ``hitl.plan_only``."""
        return await hitl.plan_only(self, owner_id, project_id, prompt)

    async def submit(
        self,
        *,
        owner_id: str,
        project_id: str,
        prompt: str | None,
        plan: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> tuple[Run, bool]:
        """Validate, persist (``run.created``), start in the supervisor's nursery; return at once.

        Raises ``ShuttingDown``, ``NotFound`` (project), ``ValidationFailed``, ``InvalidPlan``,
        ``RateLimited`` (the owner's runs in flight, or the owner's daily token budget is
        spent and the run would call a model).
        Returns (run, created); ``created`` is False for a repeated ``Idempotency-Key``.
        """
        self.check_accepting()
        try:
            check_request(prompt, plan, self.planner is not None)
            opts = validate_options(options, self.settings)
            parsed = parse_plan(plan, self.registry, self.settings.max_plan_steps) if plan else None
            model_steps = [s for s in parsed.steps if calls_model(s.tool)] if parsed else []
            if prompt is not None or model_steps:
                self.check_token_budget(owner_id)  # RateLimited (429) before any model call
        except AppError:
            # A missing project answers first (404), as if checked before: the insert checks
            # it on the way that succeeds, so that way reads nothing more.
            if await self.store.get_project(owner_id, project_id) is None:
                raise NotFound("No such project.") from None
            raise
        run, created_event = new_run(
            run_id=new_id(),
            owner_id=owner_id,
            project_id=project_id,
            prompt=prompt,
            plan=parsed,
            options=opts,
            idempotency_key=idempotency_key,
            lease=(self.instance_id, self._lease_until()),  # started here without a claim
            now=utc_now(),
        )
        # Inserted started: run.created, run.started and the first wave's starts in one commit.
        executor = RunExecutor(self.deps, run, parsed)
        try:
            stored, created, events = await self.store.create_run(
                run,
                [created_event],
                max_in_flight=self.settings.max_runs_per_user,
                then=executor.start_with_insert(),
            )
        except BaseException:
            executor.discard()
            raise
        if created and self.deps.observer is not None:
            self.deps.observer.run_status(str(RunStatus.PENDING))
        if created:
            executor.inserted(stored, events)
        self.publisher.publish(events)
        if created:
            self._start(stored, parsed, claimed=True, executor=executor)
        else:
            executor.discard()
        return stored, created

    def check_accepting(self) -> None:
        """Raises ``ShuttingDown`` once the supervisor takes no new work."""
        if not self._accepting or self._nursery is None:
            raise ShuttingDown("The server is not accepting new runs.")

    def start(self, run: Run) -> None:
        """Execute a stored run in this process (nothing for one awaiting approval)."""
        self._start(run)

    def _start(
        self,
        run: Run,
        plan: Plan | None = None,
        *,
        claimed: bool = False,
        executor: RunExecutor | None = None,
    ) -> None:
        """Execute ``run`` in a task of the supervisor's nursery (``executor``: one made for
        it already, e.g. started with its insert; discarded when the run does not start)."""
        if self._nursery is None or run.id in self._active:
            if executor is not None:
                executor.discard()  # shutting down: the run resumes from its lease later
            return
        if run.status is RunStatus.AWAITING_APPROVAL:
            return  # it waits for a person: approve() starts it
        executor = executor or RunExecutor(self.deps, run, plan)
        active = _Active(executor=executor, owner_id=run.owner_id, claimed=claimed)
        self._active[run.id] = active
        self._nursery.start_soon(self._drive, active, name=f"run {run.id}")

    async def _drive(self, active: _Active) -> None:
        executor = active.executor
        run_id = executor.run_id
        try:
            lease = self._lease_until()
            if active.claimed or await self.store.claim_run(run_id, self.instance_id, lease):
                await executor.execute()
            else:
                log.info("run %s is held by another instance", run_id)
        except Exception as exc:
            if not is_transient(exc):
                log.exception("run %s: supervisor caught an error", run_id)
            self._retry_later(run_id, exc)
        else:
            if executor.abandoned:
                if executor.state.ending == USER_CANCELLED:
                    self._cancel_when_back.add(run_id)  # the user's cancel is not lost
                self._retry_later(run_id, None)
            else:
                self._adoption.succeeded(run_id)
        finally:
            del self._active[run_id]
            active.done.set()
            self._changed.set()
            self._changed = trio.Event()

    def _retry_later(self, run_id: str, exc: Exception | None) -> None:
        delay = self._adoption.failed(run_id, trio.current_time())
        cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        log.warning("run %s: store unavailable%s; resuming it in %.1fs", run_id, cause, delay)

    async def wait_finished(self, run_id: str, timeout_s: float = math.inf) -> None:
        """Return once this process no longer executes the run, or after ``timeout_s``."""
        active = self._active.get(run_id)
        if active is not None:
            with trio.move_on_after(timeout_s):
                await active.done.wait()

    # -- cancelling ----------------------------------------------------------------------------
    def cancel_local(self, run_id: str) -> bool:
        """Cancel (reason ``user``) a run this process executes; False if it executes none.
        Called by the event bus when another instance asks; never blocks, never raises."""
        active = self._active.get(run_id)
        if active is None:
            return False
        active.executor.cancel("user")
        return True

    async def cancel(self, run_id: str, owner_id: str) -> Run:
        """Cancel a run of ``owner_id`` wherever it executes; waits (bounded) until it ended
        (``cancelling.cancel``). Raises ``NotFound`` (missing or another user's),
        ``RunFinished``."""
        return await cancelling.cancel(self, run_id, owner_id)

    # -- people in the loop (``workflow.hitl``) --------------------------------------------
    async def approve(self, run_id: str, owner_id: str, plan: Mapping[str, Any] | None) -> Run:
        """Start a run awaiting approval, with an optional edited plan (``hitl.approve``)."""
        return await hitl.approve(self, run_id, owner_id, plan)

    async def reject(self, run_id: str, owner_id: str) -> Run:
        """End a run awaiting approval ``cancelled`` (reason ``rejected``)."""
        return await hitl.reject(self, run_id, owner_id)

    async def retry(self, run_id: str, owner_id: str, *, force: bool) -> Run:
        """A new run reusing a failed/cancelled run's succeeded steps (``hitl.retry``)."""
        return await hitl.retry(self, run_id, owner_id, force)

    async def cancel_project(self, project_id: str) -> None:
        """The project is being deleted: cancel its runs here and wait until they ended."""
        doomed = [a for a in self._active.values() if a.executor.project_id == project_id]
        for active in doomed:
            active.executor.cancel("user")
        with trio.move_on_after(CANCEL_WAIT_S):
            for active in doomed:
                await active.done.wait()

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new runs; give running runs ``grace_s`` to finish, then cancel them with
        reason ``shutdown`` (left resumable) and wait briefly until they recorded it."""
        self._accepting = False
        with trio.move_on_after(grace_s):
            while self._active:
                await self._changed.wait()
        remaining = list(self._active.values())
        for active in remaining:
            active.executor.cancel("shutdown")
        with trio.move_on_after(CANCEL_WAIT_S):
            for active in remaining:
                await active.done.wait()

    async def resume_unfinished(self) -> int:
        """Start every unfinished run whose lease is free or expired (a dead process's):
        succeeded steps keep their outputs, the others run again. Returns how many started."""
        if self._nursery is None or not self._accepting:
            return 0
        takeover = not self._resumed_once and self.store.single_process
        self._resumed_once = True
        started = 0
        for run in await self.store.unfinished_runs(None if takeover else utc_now()):
            if run.id in self._active or not self._adoption.ready(run.id, trio.current_time()):
                continue
            if takeover and run.lease_owner not in (None, self.instance_id):
                # SQLite has one process per data directory: this lease's holder is dead.
                log.info("run %s: taking over from %s", run.id, run.lease_owner)
                await self.store.write_run_state(
                    run=RunChange(run.id, {"lease_owner": None, "lease_expires_at": None})
                )
            full = run if run.steps or run.plan is None else await self.store.get_run(run.id)
            if full is None:
                continue
            self._start(full)
            started += 1
        return started + await self._resume_parked()

    async def _resume_parked(self) -> int:
        """Start again the runs this process left to an unavailable store, once their
        backoff passed (their lease may still be ours, so the scan above does not see them)."""
        started = 0
        for run_id in self._adoption.due(trio.current_time()):
            if run_id in self._active:
                continue
            run = await self.store.get_run(run_id)
            waiting = run is not None and run.status is RunStatus.AWAITING_APPROVAL
            if (
                run is None
                or run.status.finished
                or waiting
                or cancelling.held_elsewhere(run, self.instance_id)
            ):
                self._adoption.succeeded(run_id)  # gone, ended, or another instance has it
                self._cancel_when_back.discard(run_id)
                continue
            if run_id in self._cancel_when_back:
                await cancelling.cancel_orphan(self.store, self.publisher, run)
                self._cancel_when_back.discard(run_id)
                self._adoption.succeeded(run_id)
                continue
            self._start(run)
            started += 1
        return started
