"""The event model: event types, how an event's ``data`` object is built, what is retained.

Pure: no trio, no I/O. Every event ``data`` is a JSON object carrying at least ``type``,
``project_id`` and ``at`` (RFC 3339), plus ``run_id`` for run and step events and
``step_id`` / ``attempt`` for step events (see API.md, "Server-Sent Events").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from server.timeutil import rfc3339, utc_now

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to a project's log in the same transaction as its change.

    ``data`` is the full JSON object of the SSE ``data`` line (it carries ``type``,
    ``project_id``, ``at`` and the rest); the store serializes it once.
    """

    project_id: str
    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as committed: ``seq`` is gap-free per project; ``data`` is JSON text."""

    project_id: str
    seq: int
    type: str
    data: str
    created_at: datetime


class EventType(StrEnum):
    RUN_CREATED = "run.created"
    RUN_PLANNING = "run.planning"
    RUN_PLANNED = "run.planned"
    RUN_AWAITING_APPROVAL = "run.awaiting_approval"
    RUN_APPROVED = "run.approved"
    RUN_STARTED = "run.started"
    STEP_STARTED = "step.started"
    STEP_DELTA = "step.delta"
    STEP_RETRYING = "step.retrying"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_FAILED = "step.failed"
    STEP_CANCELLED = "step.cancelled"
    STEP_SKIPPED = "step.skipped"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    RUN_AWAITING_REVIEW = "run.awaiting_review"
    FILE_CHANGED = "file.changed"
    FILE_MOVED = "file.moved"
    FILE_DELETED = "file.deleted"
    PROJECT_UPDATED = "project.updated"
    PROJECT_DELETED = "project.deleted"
    RESET = "reset"


# Delivered live only, never written to the event log (no ``id:`` line on the wire).
TRANSIENT_TYPES = frozenset({EventType.STEP_DELTA, EventType.PROJECT_DELETED, EventType.RESET})


def is_run_event(event_type: str) -> bool:
    """Run and step events carry a ``run_id``; the ``?run_id=`` filter keeps only these."""
    return event_type.startswith(("run.", "step."))


def is_retained(event_type: str) -> bool:
    return event_type not in TRANSIENT_TYPES


def event_data(
    event_type: str, project_id: str, /, at: str | None = None, **fields: Any
) -> dict[str, Any]:
    """The ``data`` object of an event: ``type``, ``project_id``, ``at`` first, then ``fields``."""
    data: dict[str, Any] = {
        "type": str(event_type),
        "project_id": project_id,
        "at": at or rfc3339(utc_now()),
    }
    data.update(fields)
    return data


def new_event(event_type: str, project_id: str, /, **fields: Any) -> NewEvent:
    """A ``NewEvent`` to commit with its change (``store.append_events`` and friends)."""
    if not is_retained(event_type):
        raise ValueError(f"{event_type} is transient: publish it, do not store it")
    return NewEvent(
        project_id=project_id,
        type=str(event_type),
        data=event_data(event_type, project_id, **fields),
    )


def dumps(data: Mapping[str, Any]) -> str:
    """Compact JSON on one line (``json.dumps`` escapes newlines inside strings)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def run_id_of(event_type: str, data: str | Mapping[str, Any]) -> str | None:
    """The ``run_id`` of a run or step event (``None`` for other types or when absent)."""
    if not is_run_event(event_type):
        return None
    if isinstance(data, str):
        try:
            parsed = json.loads(data)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        data = parsed
    value = data.get("run_id")
    return value if isinstance(value, str) else None
