"""What a submitted run is, before it is stored. Pure (no trio, no I/O).

``check_request`` applies the contract's rules to a submission's prompt and plan (exactly
one of them; a prompt needs a planner and must not be blank), raising ``ValidationFailed``.
``new_run`` builds the ``pending`` run row, its steps and its ``run.created`` event; the row
holds the submitting instance's lease, so that instance starts it without a claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import ValidationFailed
from server.events.model import EventType
from server.store.models import Run, RunStatus
from server.workflow.events import run_event
from server.workflow.records import steps_of

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from server.events.model import NewEvent
    from server.workflow.plan import Plan


def check_request(prompt: str | None, plan: object, has_planner: bool) -> None:
    """Raises ``ValidationFailed`` unless the submission names exactly one of prompt and
    plan, and a prompt is non-blank with a planner to turn it into a plan."""
    if (prompt is None) == (plan is None):
        raise ValidationFailed(
            "Send exactly one of prompt and plan.", {"prompt": "exactly one of prompt, plan"}
        )
    if prompt is not None and not has_planner:
        raise ValidationFailed(
            "No planner is configured: send a plan instead of a prompt.",
            {"prompt": "no planner configured; send a plan"},
        )
    if prompt is not None and not prompt.strip():
        raise ValidationFailed("The prompt is empty.", {"prompt": "must not be empty"})


def new_run(
    *,
    run_id: str,
    owner_id: str,
    project_id: str,
    prompt: str | None,
    plan: Plan | None,
    options: Mapping[str, Any],
    idempotency_key: str | None,
    lease: tuple[str, datetime],
    now: datetime,
) -> tuple[Run, NewEvent]:
    """The ``pending`` run (holding ``lease``: instance id, expiry) and its ``run.created``."""
    run = Run(
        id=run_id,
        project_id=project_id,
        owner_id=owner_id,
        status=RunStatus.PENDING,
        prompt=prompt,
        intent=None,
        plan=plan.to_json() if plan else None,
        options=dict(options),
        error=None,
        created_at=now,
        idempotency_key=idempotency_key,
        steps=tuple(steps_of(run_id, plan)) if plan else (),
        lease_owner=lease[0],
        lease_expires_at=lease[1],
    )
    created = run_event(
        EventType.RUN_CREATED,
        project_id,
        run_id,
        now,
        status=str(RunStatus.PENDING),
        prompt=prompt,
        plan=run.plan,
    )
    return run, created
