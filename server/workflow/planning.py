"""Before a run's steps: planning a prompt run, and the approval gate.

``plan_run`` takes a prompt run pending -> planning -> planned through the planner
(``run.planning``, ``run.planned`` with the tokens planning spent); any failure of the
planner or of the plan it made ends the run (``planning_failed``, recorded by the
executor's end) and returns None. ``awaits`` says whether a run waits for a person (option
``approval: "plan"``); ``park_for_approval`` records planned -> awaiting_approval (lease
released). Both raise what the run's writer raises.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from server.errors import AppError, InvalidPlan, ModelRequired, ToolError
from server.store.models import RunStatus
from server.workflow.accounting import PLANNING
from server.workflow.approval import awaiting_approval
from server.workflow.endings import planning_failed
from server.workflow.plan import parse_plan
from server.workflow.records import steps_of

if TYPE_CHECKING:
    from server.store.models import Run
    from server.workflow.executor import RunExecutor
    from server.workflow.plan import Plan


async def plan_run(ex: RunExecutor) -> Plan | None:
    """pending -> planning -> planned, through the planner. None: planning ended the run."""
    planner = ex.deps.planner
    prompt = ex.run.prompt or ""
    await ex.commit(ex.state.planning(prompt, ex.clock.now()))
    if planner is None:
        ex.state.end(planning_failed("No planner is configured."))
        return None
    try:
        ex.accounting.check()  # RateLimited: the owner's token budget is spent
        with ex.accounting.metered(PLANNING):
            intent, plan_json = await planner.analyze_and_plan(ex.project_id, prompt)
        plan = parse_plan(plan_json, ex.deps.registry, ex.deps.settings.max_plan_steps)
    except InvalidPlan as exc:
        ex.state.end(planning_failed(exc.message, exc.details))
        return None
    except ModelRequired as exc:  # the offline provider cannot do it: say so by its code
        ex.state.end(planning_failed(exc.message, exc.details, code=exc.code))
        return None
    except (AppError, ToolError) as exc:
        ex.state.end(planning_failed(str(exc)))
        return None
    usage = ex.accounting.usage_of(PLANNING)
    await ex.commit(ex.state.planned(intent, plan, ex.clock.now(), usage))
    steps = tuple(steps_of(ex.run_id, plan))
    ex.run = replace(ex.run, intent=intent, plan=plan.to_json(), steps=steps)
    return plan


def awaits(run: Run) -> bool:
    """The run waits for a person before it starts (option ``approval: "plan"``)."""
    approval = (run.options or {}).get("approval") == "plan"
    return run.status is RunStatus.AWAITING_APPROVAL or (approval and run.approved_at is None)


async def park_for_approval(ex: RunExecutor, plan: Plan) -> bool:
    """planned -> awaiting_approval (lease released); the executor's work ends here.
    Returns True (the run is parked)."""
    run = ex.run
    if run.status is not RunStatus.AWAITING_APPROVAL:
        now = ex.clock.now()
        expires = now + timedelta(seconds=ex.deps.settings.approval_timeout_s)
        await ex.commit(awaiting_approval(ex.project_id, ex.run_id, plan, run.intent, expires, now))
    return True
