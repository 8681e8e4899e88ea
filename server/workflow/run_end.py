"""How a run ends, as records: from the executor's view or from the store's. Pure.

``end_records`` writes the end of a run: its started steps cancelled (or reset to
``pending``, with the lease released, when the ending is resumable: ``shutdown``), its
not-started and waiting steps skipped, and the run's terminal fields and event
(``run.succeeded`` with ``wall_ms``, ``run.awaiting_review``, ``run.failed``,
``run.cancelled``). ``RunState.finish`` calls it with the in-memory view; ``end_stored``
with the run as the store holds it (no executor has it in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.events.model import EventType
from server.store.models import RunStatus, StepStatus
from server.workflow.endings import step_cancelled_error
from server.workflow.events import run_event, step_event
from server.workflow.records import Records

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from server.events.model import NewEvent
    from server.store.models import Run, StepFields
    from server.workflow.endings import Ending


@dataclass(frozen=True, slots=True)
class RunRef:
    """Which run the records are for; ``review``: its success waits in awaiting_review."""

    project_id: str
    run_id: str
    review: bool = False

    def run_event(self, kind: EventType, at: datetime, **fields: Any) -> NewEvent:
        return run_event(kind, self.project_id, self.run_id, at, **fields)

    def step_event(
        self, kind: EventType, step_id: str, attempt: int, at: datetime, **fields: Any
    ) -> NewEvent:
        return step_event(kind, self.project_id, self.run_id, step_id, attempt, at, **fields)


def _public(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics an event carries (without the per-step breakdown)."""
    return {k: v for k, v in metrics.items() if k != "steps"}


def end_records(
    run: RunRef,
    ending: Ending | None,
    *,
    started: Mapping[str, int],
    unstarted: Iterable[str],
    waiting: Iterable[str],
    at: datetime,
    metrics: Mapping[str, Any] | None,
    durations: Mapping[str, float | None],
) -> tuple[Records, RunStatus | None]:
    """The end of a run: started steps cancelled (or reset, on shutdown), not-started ones
    skipped, the run's terminal fields and event. Shared by ``RunState.finish`` and
    ``end_stored``."""
    resumable = ending is not None and ending.resumable
    records = Records(run={"lease_owner": None, "lease_expires_at": None})
    if metrics is not None:
        records.run["metrics"] = dict(metrics)
    for sid, attempt in started.items():
        reason = ending.step_reason if ending is not None else "sibling_failed"
        fields: StepFields = {"status": StepStatus.PENDING if resumable else StepStatus.CANCELLED}
        if sid in durations:
            fields["duration_ms"] = durations[sid]
        if not resumable:
            fields["finished_at"] = at
            fields["error"] = step_cancelled_error(reason)
        records.steps.append((sid, fields))
        records.events.append(
            run.step_event(EventType.STEP_CANCELLED, sid, attempt, at, reason=reason)
        )
    if not resumable:
        for sid in [*unstarted, *waiting]:
            records.steps.append((sid, {"status": StepStatus.SKIPPED}))
            records.events.append(
                run.step_event(EventType.STEP_SKIPPED, sid, 0, at, reason="run_failed")
            )
    extra: dict[str, Any] = {} if metrics is None else {"metrics": _public(metrics)}
    if resumable:
        return records, None
    if ending is None and run.review:
        records.run.update({"status": RunStatus.AWAITING_REVIEW, "finished_at": at})
        records.events.append(run.run_event(EventType.RUN_AWAITING_REVIEW, at, **extra))
        return records, RunStatus.AWAITING_REVIEW
    if ending is None:
        records.run.update({"status": RunStatus.SUCCEEDED, "finished_at": at})
        # ``wall_ms`` at the top too: the shared bench's peers report it there.
        wall = {"wall_ms": metrics.get("wall_ms")} if metrics is not None else {}
        records.events.append(run.run_event(EventType.RUN_SUCCEEDED, at, **extra, **wall))
        return records, RunStatus.SUCCEEDED
    status = RunStatus.CANCELLED if ending.kind == "cancelled" else RunStatus.FAILED
    records.run.update({"status": status, "finished_at": at, "error": ending.error})
    if status is RunStatus.CANCELLED:
        reason = ending.error.get("reason", "user")
        event = run.run_event(
            EventType.RUN_CANCELLED, at, reason=reason, error=ending.error, **extra
        )
    else:
        event = run.run_event(EventType.RUN_FAILED, at, error=ending.error, **extra)
    records.events.append(event)
    return records, status


def end_stored(run: Run, ending: Ending, at: datetime) -> tuple[Records, RunStatus | None]:
    """End a run as the store holds it (no executor has it in memory): steps stored
    ``running`` are cancelled (their ``step.started`` is committed with that status),
    ``pending`` ones skipped, and the run gets its terminal state and event."""
    started = {s.id: s.attempts for s in run.steps if s.status is StepStatus.RUNNING}
    waiting = [s.id for s in run.steps if s.status is StepStatus.PENDING]
    return end_records(
        RunRef(run.project_id, run.id),
        ending,
        started=started,
        unstarted=(),
        waiting=waiting,
        at=at,
        metrics=None,
        durations={},
    )
