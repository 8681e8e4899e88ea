"""Builders of the run and step events of API.md, and the run/step JSON views.

Pure. Every event ``data`` carries ``type``, ``project_id``, ``at``, ``run_id`` and, for step
events, ``step_id`` and ``attempt``. The executor commits them with the state change they
describe (``store.write_run_state``) and publishes them after commit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from server.events.model import EventType, new_event
from server.store.models import StepStatus
from server.timeutil import rfc3339
from server.workflow.plan import split_item_id

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from server.events.model import NewEvent
    from server.store.models import Run, Step

TRUNCATED_MARKER = "_truncated"


def run_event(
    event_type: EventType, project_id: str, run_id: str, at: datetime, **fields: Any
) -> NewEvent:
    return new_event(event_type, project_id, at=rfc3339(at), run_id=run_id, **fields)


def step_event(
    event_type: EventType,
    project_id: str,
    run_id: str,
    step_id: str,
    attempt: int,
    at: datetime,
    **fields: Any,
) -> NewEvent:
    return new_event(
        event_type,
        project_id,
        at=rfc3339(at),
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        **fields,
    )


def bounded_output(output: Any, max_bytes: int) -> Any:
    """The output as stored: unchanged when its JSON fits ``max_bytes``, else a marker object
    ``{"_truncated": true, "original_bytes": n, "preview": "<start of the JSON text>"}``."""
    text = json.dumps(output, separators=(",", ":"), ensure_ascii=False, default=str)
    size = len(text.encode())
    if size <= max_bytes:
        return output
    budget = max(0, max_bytes - 128)
    preview = text.encode()[:budget].decode("utf-8", errors="ignore")
    return {TRUNCATED_MARKER: True, "original_bytes": size, "preview": preview}


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def step_json(step: Step) -> dict[str, Any]:
    """The Step object of API.md."""
    return {
        "id": step.id,
        "tool": step.tool,
        "args": dict(step.args),
        "needs": list(step.needs),
        "status": str(step.status),
        "attempts": step.attempts,
        "output": step.output,
        "error": None if step.error is None else dict(step.error),
        "started_at": _time(step.started_at),
        "finished_at": _time(step.finished_at),
        "duration_ms": step.duration_ms,
        # A retry's step whose output came from the source run (it did not run here).
        "reused": step.status is StepStatus.SUCCEEDED and step.attempts == 0,
    }


_EMPTY_METRICS: Mapping[str, Any] = {
    "wall_ms": None,
    "critical_path_ms": None,
    "steps_total": 0,
    "steps_succeeded": 0,
    "max_parallelism": 0,
}


def _step_order(step: Step) -> tuple[int, int]:
    """Plan order; a fan-out step's items (same position) follow it by index."""
    item = split_item_id(step.id)
    return step.position, -1 if item is None else item[1]


def run_json(run: Run) -> dict[str, Any]:
    """The Run object of API.md, steps in plan order (fan-out items after their step)."""
    metrics = (
        dict(run.metrics) if run.metrics else {**_EMPTY_METRICS, "steps_total": len(run.steps)}
    )
    return {
        "id": run.id,
        "project_id": run.project_id,
        "status": str(run.status),
        "prompt": run.prompt,
        "intent": None if run.intent is None else dict(run.intent),
        "plan": None if run.plan is None else dict(run.plan),
        "steps": [step_json(s) for s in sorted(run.steps, key=_step_order)],
        "error": None if run.error is None else dict(run.error),
        "created_at": rfc3339(run.created_at),
        "started_at": _time(run.started_at),
        "finished_at": _time(run.finished_at),
        "metrics": metrics,
        "retry_of": run.retry_of,
        "approval": _approval(run),
    }


def _approval(run: Run) -> dict[str, Any] | None:
    """``{"mode": "plan", "expires_at", "approved_at"}`` for runs with that option."""
    mode = (run.options or {}).get("approval")
    if mode is None:
        return None
    return {
        "mode": mode,
        "expires_at": _time(run.approval_expires_at),
        "approved_at": _time(run.approved_at),
    }
