"""People in the loop: approve or reject a planned run, end unapproved ones, retry a run.

The supervisor's ``approve``, ``reject``, ``expire_approvals``, ``retry`` and ``plan_only``
(a plan for a person to read before submitting it) delegate here.
Every transition out of ``awaiting_approval`` is a conditional write
(``write_run_state(if_status=AWAITING_APPROVAL)``): of two concurrent approvals, rejections
or deadline scans (on any instance sharing the database), exactly one changes the run and
writes its events; the others get ``NotAwaitingApproval`` (409) or, for the scan, nothing.

Retry: a new run (``retry_of`` names the source) with the source's prompt, intent, plan and
options; the source's succeeded steps are copied ``succeeded`` with their outputs (reused,
not run again), the others start ``pending``. Refused (``FilesChanged``, 409) when a file a
reused step read changed since, unless forced.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from server.errors import Conflict, NotFound, RunStatusChanged, ValidationFailed
from server.events.model import EventType
from server.store.models import Run, RunChange, RunStatus, Step, StepChange, StepStatus
from server.timeutil import new_id, utc_now
from server.workflow.accounting import PLANNING, RunAccounting
from server.workflow.approval import approved
from server.workflow.endings import APPROVAL_TIMED_OUT, REJECTED
from server.workflow.events import run_event
from server.workflow.file_log import changed_reads, paths_to_check
from server.workflow.plan import parse_plan
from server.workflow.transitions import end_stored, steps_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.events.model import StoredEvent
    from server.workflow.endings import Ending
    from server.workflow.supervisor import RunSupervisor
    from server.workflow.transitions import Records

log = logging.getLogger("stretto.workflow")

EXPIRE_BATCH = 100
RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


class NotAwaitingApproval(Conflict):
    code = "not_awaiting_approval"
    default_message = "The run is not awaiting approval."


class NotRetryable(Conflict):
    code = "not_retryable"
    default_message = "Only a failed or cancelled run can be retried."


class FilesChanged(Conflict):
    code = "conflict"
    default_message = "Files that reused steps read have changed since."


async def _write(sup: RunSupervisor, run: Run, records: Records, **kw: Any) -> list[StoredEvent]:
    """Write a transition out of ``awaiting_approval``; raises ``RunStatusChanged``."""
    stored = await sup.store.write_run_state(
        run=RunChange(run.id, records.run),
        new_steps=records.new_steps,
        steps=[StepChange(run.id, sid, f) for sid, f in records.steps],
        events=records.events,
        if_status=RunStatus.AWAITING_APPROVAL,
        **kw,
    )
    sup.publisher.publish(stored)
    if sup.deps.observer is not None and "status" in records.run:
        sup.deps.observer.run_status(str(records.run["status"]))
    return stored


async def _awaiting(sup: RunSupervisor, run_id: str, owner_id: str) -> Run:
    run = await sup.store.get_run(run_id, owner_id)
    if run is None:
        raise NotFound("No such run.")
    if run.status is not RunStatus.AWAITING_APPROVAL:
        raise NotAwaitingApproval(details={"status": str(run.status)})
    return run


async def _fresh(sup: RunSupervisor, run_id: str) -> Run:
    fresh = await sup.store.get_run(run_id)
    if fresh is None:
        raise NotFound("No such run.")
    return fresh


async def approve(
    sup: RunSupervisor, run_id: str, owner_id: str, plan: Mapping[str, Any] | None
) -> Run:
    """awaiting_approval -> pending, then start it here. ``plan``: an edited plan (validated
    like any plan). Raises ``NotFound``, ``NotAwaitingApproval``, ``InvalidPlan``."""
    sup.check_accepting()
    run = await _awaiting(sup, run_id, owner_id)
    max_steps = sup.settings.max_plan_steps
    parsed = parse_plan(plan if plan is not None else run.plan, sup.registry, max_steps)
    edited = plan is not None
    try:
        await _write(sup, run, approved(run, parsed, edited, utc_now()), replace_steps=edited)
    except RunStatusChanged:
        fresh = await _fresh(sup, run_id)
        raise NotAwaitingApproval(details={"status": str(fresh.status)}) from None
    await sup.wait_finished(run_id)  # the executor that parked it, if still winding down
    fresh = await _fresh(sup, run_id)
    sup.start(fresh)
    return fresh


async def end_awaiting(sup: RunSupervisor, run: Run, ending: Ending) -> bool:
    """End a run awaiting approval (``run.cancelled`` with the ending's reason); False when
    it no longer awaited approval (another request or instance changed it first)."""
    records, _status = end_stored(run, ending, utc_now())
    try:
        await _write(sup, run, records)
    except RunStatusChanged:
        return False
    return True


async def reject(sup: RunSupervisor, run_id: str, owner_id: str) -> Run:
    """awaiting_approval -> cancelled (reason ``rejected``). Raises ``NotFound``,
    ``NotAwaitingApproval``."""
    run = await _awaiting(sup, run_id, owner_id)
    if not await end_awaiting(sup, run, REJECTED):
        fresh = await _fresh(sup, run_id)
        raise NotAwaitingApproval(details={"status": str(fresh.status)})
    return await _fresh(sup, run_id)


async def expire_approvals(sup: RunSupervisor) -> int:
    """End the runs whose approval deadline passed (reason ``approval_timeout``); safe to run
    on every instance at once. Returns how many this call ended."""
    ended = 0
    for run in await sup.store.expired_approvals(utc_now(), EXPIRE_BATCH):
        if await end_awaiting(sup, run, APPROVAL_TIMED_OUT):
            log.info("run %s: approval timed out", run.id)
            ended += 1
    return ended


def _retry_steps(run_id: str, source: Run, plan_steps: list[Step]) -> list[Step]:
    """The new run's steps: the source's succeeded ones copied (output and file log kept,
    attempts 0: they do not run here), the others fresh."""
    done = {s.id: s for s in source.steps if s.status is StepStatus.SUCCEEDED}
    out = []
    for step in plan_steps:
        old = done.get(step.id)
        if old is None or (old.tool, dict(old.args)) != (step.tool, dict(step.args)):
            out.append(step)
            continue
        out.append(
            Step(
                run_id=run_id,
                id=step.id,
                position=step.position,
                tool=step.tool,
                args=step.args,
                needs=step.needs,
                status=StepStatus.SUCCEEDED,
                output=old.output,
                started_at=old.started_at,
                finished_at=old.finished_at,
                duration_ms=old.duration_ms,
                reads=old.reads,
            )
        )
    return out


async def _check_files(sup: RunSupervisor, source: Run, reused: list[Step]) -> None:
    paths, unverifiable = paths_to_check(reused)
    current: dict[str, tuple[int, str] | None] = {}
    for path in paths:
        meta = await sup.store.get_file_meta(source.project_id, path)
        current[path] = None if meta is None else (meta.version, meta.sha256)
    changes = changed_reads(source.steps, paths, current)
    if changes or unverifiable:
        raise FilesChanged(
            "Files that reused steps read have changed since; retry with ?force=true to "
            "run anyway.",
            {
                "paths": [c["path"] for c in changes],
                "changes": changes,
                "unverifiable_steps": unverifiable,
            },
        )


async def retry(sup: RunSupervisor, run_id: str, owner_id: str, force: bool) -> Run:
    """A new run from a finished failed/cancelled one, reusing its succeeded steps.

    Raises ``NotFound``, ``NotRetryable``, ``FilesChanged`` (unless ``force``),
    ``InvalidPlan`` (the source's plan no longer validates), ``ShuttingDown``."""
    sup.check_accepting()
    source = await sup.store.get_run(run_id, owner_id)
    if source is None:
        raise NotFound("No such run.")
    if source.status not in RETRYABLE:
        raise NotRetryable(details={"status": str(source.status)})
    new = new_id()
    steps: list[Step] = []
    plan_json = None
    if source.plan is not None:
        plan = parse_plan(source.plan, sup.registry, sup.settings.max_plan_steps)
        plan_json = plan.to_json()
        steps = _retry_steps(new, source, steps_of(new, plan))
    reused = [s for s in steps if s.status is StepStatus.SUCCEEDED]
    if not force:
        await _check_files(sup, source, [s for s in source.steps if s.id in {r.id for r in reused}])
    now = utc_now()
    run = Run(
        id=new,
        project_id=source.project_id,
        owner_id=owner_id,
        status=RunStatus.PENDING,
        prompt=source.prompt,
        intent=source.intent,
        plan=plan_json,
        options=dict(source.options),
        error=None,
        created_at=now,
        steps=tuple(steps),
        retry_of=source.id,
        approved_at=source.approved_at if plan_json is not None else None,
    )
    created = run_event(
        EventType.RUN_CREATED,
        run.project_id,
        run.id,
        now,
        status=str(RunStatus.PENDING),
        prompt=run.prompt,
        plan=run.plan,
        retry_of=source.id,
        reused_steps=[s.id for s in reused],
        forced=force,
    )
    stored, _created, events = await sup.store.create_run(run, [created])
    sup.publisher.publish(events)
    if sup.deps.observer is not None:
        sup.deps.observer.run_status(str(RunStatus.PENDING))
    sup.start(stored)
    return stored


async def plan_only(
    sup: RunSupervisor, owner_id: str, project_id: str, prompt: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan without running (``POST /api/workflow/plan``): (intent, plan JSON), for a person
    to read, edit and submit.

    Raises ``ValidationFailed`` (no planner), ``NotFound`` (project), ``RateLimited`` (token
    budget, before any model call) and the planner's errors. The tokens planning spends count
    against the owner's budget."""
    if sup.planner is None:
        raise ValidationFailed(
            "No planner is configured on this server.", {"prompt": "no planner configured"}
        )
    if await sup.store.get_project(owner_id, project_id) is None:
        raise NotFound("No such project.")
    accounting = RunAccounting(owner_id, sup.deps.token_budget)
    accounting.check()
    with accounting.metered(PLANNING):
        return await sup.planner.analyze_and_plan(project_id, prompt)
