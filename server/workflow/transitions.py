"""The rules of a run's life, as pure transitions: (state, event) -> (state, records).

No trio, no I/O, no clock: every moment and duration comes in with the event. ``RunState``
is the in-memory view of one run that the executor drives (as Temporal's
``WorkflowInstance.activate(activation) -> completion``); each method applies one event and
returns the ``Records`` (run fields, step fields, events) to commit in one transaction.
``end_stored`` (``run_end.py``, with the records of every run's end) applies the same
end-of-run rules to a run as the store holds it (the supervisor cancelling a run no
executor holds; the executor failing a run whose in-memory view can no longer be trusted).

How a run ends (API.md; the endings and their error objects are in ``endings.py``), the
first cause wins:
- a step fails without ``continue_on_error``: running steps end ``cancelled``
  (``sibling_failed``), not-started steps ``skipped`` (``run_failed``), the run ``failed``;
- a step fails with ``continue_on_error``: only its dependents are skipped
  (``dependency_failed``);
- ``user``: running steps ``cancelled`` (``user``), the run ``cancelled``;
- ``timeout``: running steps ``cancelled`` (``timeout``), the run ``failed``;
- ``shutdown``: running steps ``cancelled`` (``shutdown``) and reset to ``pending``; the run
  stays unfinished with its lease released, resumable.
Approval (option ``approval: "plan"``): the waiting state and its way out are in
``approval.py``; rejection and the approval deadline end a waiting run through
``end_stored`` (``run.cancelled`` with the ending's reason). A retry's reused steps (stored
``succeeded`` at its first start) get ``step.succeeded`` with ``reused: true``, attempt 0.
A step is "started" only once its ``step.started`` is in the records: every started attempt
gets exactly one terminal event, and no step gets ``step.cancelled`` without ``step.started``.

Fan-out (``for_each``): the step starts, then ``fanout.expand`` adds its items as steps of
their own (``edit[0]``...), each with its own started/terminal events; ``items``,
``item_parent`` and ``stored_items`` (item rows an earlier process wrote) are its state.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from server.events.model import EventType
from server.store.models import RunStatus, Step, StepStatus
from server.workflow.analyzer import DependencyAnalyzer, Slot
from server.workflow.endings import step_failed_ending
from server.workflow.events import run_event, step_event
from server.workflow.plan import split_item_id
from server.workflow.records import Records, StepUpdate, steps_of
from server.workflow.run_end import RunRef, end_records, end_stored

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from server.events.model import NewEvent
    from server.store.models import StepFields
    from server.workflow.endings import Ending
    from server.workflow.plan import Plan

__all__ = ["Records", "RunState", "StepUpdate", "end_stored", "steps_of"]


class RunState:
    """The in-memory view of one run: which steps wait, run, ended; how the run ends.

    Methods apply one event each and return what to commit. They raise ``ValueError`` for an
    event the rules do not allow (a bug in the caller, never a user's doing).
    """

    def __init__(self, project_id: str, run_id: str) -> None:
        self.project_id = project_id
        self.run_id = run_id
        self.ending: Ending | None = None
        self.analyzer: DependencyAnalyzer | None = None
        self.started: dict[str, int] = {}  # step id -> attempt whose step.started is recorded
        self.attempts: dict[str, int] = {}  # step id -> last attempt number
        self.succeeded = 0
        self.items: dict[str, list[str]] = {}  # fan-out step -> its items' step ids
        self.item_parent: dict[str, str] = {}  # item step id -> its fan-out step
        self.stored_items: dict[str, Step] = {}  # item rows an earlier process wrote
        self.review = False  # options.changes == "review": success waits in awaiting_review

    # -- event builders --------------------------------------------------------------------
    def _run_event(self, kind: EventType, at: datetime, **fields: Any) -> NewEvent:
        return run_event(kind, self.project_id, self.run_id, at, **fields)

    def _step_event(
        self, kind: EventType, step_id: str, attempt: int, at: datetime, **fields: Any
    ) -> NewEvent:
        return step_event(kind, self.project_id, self.run_id, step_id, attempt, at, **fields)

    # -- the run ---------------------------------------------------------------------------
    def end(self, ending: Ending) -> bool:
        """The run ends early; the first cause wins. True when this one won."""
        if self.ending is None:
            self.ending = ending
            return True
        return False

    def planning(self, prompt: str, at: datetime) -> Records:
        return Records(
            run={"status": RunStatus.PLANNING},
            events=[self._run_event(EventType.RUN_PLANNING, at, prompt=prompt)],
        )

    def planned(
        self,
        intent: Mapping[str, Any],
        plan: Plan,
        at: datetime,
        usage: Mapping[str, Any] | None = None,
    ) -> Records:
        """``usage``: the tokens planning spent (on ``run.planned``), when it called a model."""
        doc = plan.to_json()
        extra = {} if usage is None else {"usage": dict(usage)}
        return Records(
            run={"intent": dict(intent), "plan": doc},
            new_steps=steps_of(self.run_id, plan),
            events=[self._run_event(EventType.RUN_PLANNED, at, intent=intent, plan=doc, **extra)],
        )

    def start(
        self,
        plan: Plan,
        stored: Iterable[Step],
        first_start: bool,
        at: datetime,
        status: RunStatus = RunStatus.PENDING,
        retry_of: str | None = None,
    ) -> Records:
        """Restore what an earlier process finished, then ``status`` -> running.

        A step stored ``running`` was left so by a process that died: that attempt ends with
        ``step.cancelled`` (``shutdown``) and the step runs again. A run already ``running``
        (resumed) is not written again unless something changed: each write of the run row
        costs its whole size (SQLite rewrites the row), which matters on a full disk."""
        analyzer = DependencyAnalyzer(plan)
        records = Records(run={} if status is RunStatus.RUNNING else {"status": RunStatus.RUNNING})
        reused: list[NewEvent] = []
        for step in stored:
            if step.id not in analyzer:
                if split_item_id(step.id) is not None:  # a fan-out item: see ``expand``
                    self._restore_item(step, records, at)
                continue  # else plan and stored steps disagree: ignore the stray
            self.attempts[step.id] = step.attempts
            if step.status is StepStatus.SUCCEEDED:
                analyzer.restore(step.id, Slot.SUCCEEDED)
                self.succeeded += 1
                if first_start and retry_of is not None:
                    reused.append(
                        self._step_event(
                            EventType.STEP_SUCCEEDED,
                            step.id,
                            0,
                            at,
                            reused=True,
                            reused_from=retry_of,
                            duration_ms=None,
                            output=step.output,
                        )
                    )
            elif step.status is StepStatus.FAILED:
                analyzer.restore(step.id, Slot.FAILED)
            elif step.status is StepStatus.SKIPPED:
                analyzer.restore(step.id, Slot.SKIPPED)
            elif step.status in (StepStatus.RUNNING, StepStatus.CANCELLED):
                if step.status is StepStatus.RUNNING:
                    records.events.append(
                        self._step_event(
                            EventType.STEP_CANCELLED, step.id, step.attempts, at, reason="shutdown"
                        )
                    )
                records.steps.append((step.id, {"status": StepStatus.PENDING}))
        self.analyzer = analyzer
        if first_start:
            records.run["started_at"] = at
            records.events.append(
                self._run_event(EventType.RUN_STARTED, at, steps_total=len(plan.steps))
            )
            records.events.extend(reused)
        return records

    def _restore_item(self, step: Step, records: Records, at: datetime) -> None:
        """Keep a stored item row for its parent's ``expand``; end an attempt left running."""
        self.stored_items[step.id] = step
        self.attempts[step.id] = step.attempts
        if step.status is StepStatus.RUNNING:
            records.events.append(
                self._step_event(
                    EventType.STEP_CANCELLED, step.id, step.attempts, at, reason="shutdown"
                )
            )
        if step.status in (StepStatus.RUNNING, StepStatus.CANCELLED):
            records.steps.append((step.id, {"status": StepStatus.PENDING}))
            self.stored_items[step.id] = replace(step, status=StepStatus.PENDING)

    def _analyzer(self) -> DependencyAnalyzer:
        if self.analyzer is None:
            raise ValueError("the run has not started")
        return self.analyzer

    def dispatch_ready(self) -> list[str]:
        """Mark every ready step dispatched (its task may start it); none once ending."""
        if self.ending is not None:
            return []
        analyzer = self._analyzer()
        ready = analyzer.ready_steps()
        for step_id in ready:
            analyzer.dispatch(step_id)
        return ready

    @property
    def completed(self) -> bool:
        return self.analyzer is not None and self.analyzer.finished

    # -- steps -----------------------------------------------------------------------------
    def step_started(
        self, step_id: str, tool: str, queue_ms: float | None, at: datetime, **extra: Any
    ) -> Records:
        if self._analyzer().slot(step_id) is not Slot.DISPATCHED or step_id in self.started:
            raise ValueError(f"step {step_id!r} cannot start")
        attempt = self.attempts.get(step_id, 0) + 1
        self.attempts[step_id] = attempt
        self.started[step_id] = attempt
        return Records(
            steps=[
                (
                    step_id,
                    {
                        "status": StepStatus.RUNNING,
                        "attempts": attempt,
                        "started_at": at,
                        "queue_ms": queue_ms,
                    },
                )
            ],
            events=[
                self._step_event(EventType.STEP_STARTED, step_id, attempt, at, tool=tool, **extra)
            ],
        )

    def _running(self, step_id: str) -> int:
        attempt = self.started.get(step_id)
        if attempt is None:
            raise ValueError(f"step {step_id!r} is not running")
        return attempt

    def step_retrying(
        self, step_id: str, error: Mapping[str, Any], delay_s: float, at: datetime
    ) -> Records:
        """The attempt failed with a retryable error; the next one starts after ``delay_s``."""
        attempt = self._running(step_id)
        self.attempts[step_id] = self.started[step_id] = attempt + 1
        return Records(
            steps=[(step_id, {"attempts": attempt + 1})],
            events=[
                self._step_event(
                    EventType.STEP_RETRYING,
                    step_id,
                    attempt,
                    at,
                    error=dict(error),
                    next_attempt=attempt + 1,
                    delay_ms=round(delay_s * 1000, 3),
                )
            ],
        )

    def step_succeeded(
        self,
        step_id: str,
        stored_output: Any,
        duration_ms: float | None,
        at: datetime,
        reads: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> tuple[Records, list[str]]:
        """Returns the records and the steps that became ready (dispatched by the caller
        with ``dispatch_ready``). ``reads``: the files the step used (``file_log``);
        ``usage``: the step's model tokens, on its terminal event."""
        attempt = self._running(step_id)
        del self.started[step_id]
        self.succeeded += 1
        ready = self._analyzer().succeeded(step_id)
        fields: StepFields = {
            "status": StepStatus.SUCCEEDED,
            "output": stored_output,
            "finished_at": at,
            "duration_ms": duration_ms,
        }
        if reads is not None:
            fields["reads"] = dict(reads)
        event = self._step_event(
            EventType.STEP_SUCCEEDED,
            step_id,
            attempt,
            at,
            duration_ms=duration_ms,
            output=stored_output,
            **({} if usage is None else {"usage": dict(usage)}),
        )
        return Records(steps=[(step_id, fields)], events=[event]), ready

    def step_failed(
        self,
        step_id: str,
        error: Mapping[str, Any],
        message: str,
        continue_on_error: bool,
        duration_ms: float | None,
        at: datetime,
        reads: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> Records:
        """The step failed for good: its dependents are skipped; without
        ``continue_on_error`` the run ends ``failed`` (``step_failed``). ``usage`` as in
        ``step_succeeded``."""
        attempt = self._running(step_id)
        del self.started[step_id]
        fields: StepFields = {
            "status": StepStatus.FAILED,
            "error": dict(error),
            "finished_at": at,
            "duration_ms": duration_ms,
        }
        if reads is not None:
            fields["reads"] = dict(reads)
        records = Records(
            steps=[(step_id, fields)],
            events=[
                self._step_event(
                    EventType.STEP_FAILED,
                    step_id,
                    attempt,
                    at,
                    error=dict(error),
                    duration_ms=duration_ms,
                    **({} if usage is None else {"usage": dict(usage)}),
                )
            ],
        )
        reason = "dependency_failed" if continue_on_error else "run_failed"
        for sid in self._analyzer().failed(step_id):
            records.steps.append((sid, {"status": StepStatus.SKIPPED}))
            records.events.append(
                self._step_event(
                    EventType.STEP_SKIPPED, sid, 0, at, reason=reason, failed_step=step_id
                )
            )
        if not continue_on_error:
            self.end(step_failed_ending(step_id, message, error))
        return records

    # -- the end ---------------------------------------------------------------------------
    def finish(
        self,
        at: datetime,
        metrics: Mapping[str, Any] | None,
        durations: Mapping[str, float | None],
    ) -> tuple[Records, RunStatus | None]:
        """The run's final records and status (None: left resumable). ``durations`` gives the
        duration of each running step's last attempt."""
        analyzer = self.analyzer
        dispatched = analyzer.in_flight() if analyzer is not None else []
        waiting = analyzer.skip_waiting() if analyzer is not None and _skips(self.ending) else []
        if _skips(self.ending):  # stored items whose fan-out step never expanded again
            waiting += [
                sid
                for sid, step in self.stored_items.items()
                if (analyzer is None or sid not in analyzer) and not step.status.finished
            ]
        records, status = end_records(
            RunRef(self.project_id, self.run_id, self.review),
            self.ending,
            started={sid: self.started[sid] for sid in dispatched if sid in self.started},
            unstarted=[sid for sid in dispatched if sid not in self.started],
            waiting=waiting,
            at=at,
            metrics=metrics,
            durations=durations,
        )
        if analyzer is not None:
            for sid in dispatched:
                analyzer.cancelled(sid)
        self.started.clear()
        return records, status


def _skips(ending: Ending | None) -> bool:
    return ending is not None and not ending.resumable
