"""The approval states of a run (option ``approval: "plan"``), as pure transitions.

Like ``transitions.py`` (whose ``Records`` they return): no trio, no I/O, no clock.
- ``awaiting_approval``: planned -> ``awaiting_approval``; the lease is released (nothing
  executes the run while it waits) and ``run.awaiting_approval`` carries the plan, the
  intent and the deadline.
- ``approved``: ``awaiting_approval`` -> ``pending`` (``run.approved``); an edited plan
  replaces the plan and the steps (the caller writes with ``replace_steps``); the prompt and
  intent stay. The executor then starts it as any pending run.
Rejection and the deadline end a waiting run with ``transitions.end_stored`` (endings
``REJECTED`` and ``APPROVAL_TIMED_OUT``). Every one of these is written conditionally on the
status ``awaiting_approval`` (``workflow.hitl``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.events.model import EventType
from server.store.models import RunStatus
from server.timeutil import rfc3339
from server.workflow.events import run_event
from server.workflow.transitions import Records, steps_of

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from server.store.models import Run, RunFields
    from server.workflow.plan import Plan


def awaiting_approval(
    project_id: str,
    run_id: str,
    plan: Plan,
    intent: Mapping[str, Any] | None,
    expires_at: datetime,
    at: datetime,
) -> Records:
    """planned -> awaiting_approval, until ``expires_at``."""
    return Records(
        run={
            "status": RunStatus.AWAITING_APPROVAL,
            "approval_expires_at": expires_at,
            "lease_owner": None,
            "lease_expires_at": None,
        },
        events=[
            run_event(
                EventType.RUN_AWAITING_APPROVAL,
                project_id,
                run_id,
                at,
                plan=plan.to_json(),
                intent=None if intent is None else dict(intent),
                expires_at=rfc3339(expires_at),
            )
        ],
    )


def approved(run: Run, plan: Plan, edited: bool, at: datetime) -> Records:
    """awaiting_approval -> pending; ``edited``: ``plan`` replaces the run's plan and steps."""
    doc = plan.to_json()
    fields: RunFields = {
        "status": RunStatus.PENDING,
        "approved_at": at,
        "approval_expires_at": None,
    }
    if edited:
        fields["plan"] = doc
    event = run_event(EventType.RUN_APPROVED, run.project_id, run.id, at, plan=doc, edited=edited)
    return Records(run=fields, new_steps=steps_of(run.id, plan) if edited else [], events=[event])
