"""The pure run rules (``workflow/transitions.py``) under arbitrary interleavings.

Hypothesis drives a ``RunState`` through random DAGs: steps start when dispatched, retry,
succeed or fail (with or without ``continue_on_error``) in any order, and the run may be
ended at any moment by a user cancel, a timeout or a shutdown. Whatever the order, the
records form a well-formed log: every started attempt ends exactly once, nothing ends that
did not start, one run end comes last (none when left resumable), and every step's final
status is a terminal one (or ``pending`` when resumable).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.store.models import Run, RunStatus, Step, StepStatus
from server.workflow.endings import ENDINGS, USER_CANCELLED
from server.workflow.plan import parse_plan
from server.workflow.transitions import RunState, end_stored, steps_of
from tests.workflow.invariants import check_run_log
from tests.workflow.test_plan import REGISTRY, dags, plan_of

if TYPE_CHECKING:
    from server.workflow.transitions import Records

AT = datetime(2026, 1, 1, tzinfo=UTC)


def apply(records: Records, log: list[dict[str, Any]], status: dict[str, StepStatus]) -> None:
    for event in records.events:
        log.append(json.loads(json.dumps(event.data)))
    for sid, fields in records.steps:
        if "status" in fields:
            status[sid] = StepStatus(fields["status"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(dags(), st.randoms(use_true_random=False), st.sampled_from([None, *ENDINGS]))
def test_any_interleaving_gives_a_well_formed_log(
    graph: dict[str, list[str]], rnd: Any, interrupt: str | None
) -> None:
    plan = parse_plan(plan_of(graph), REGISTRY, 100)
    state = RunState("p1", "r1")
    log: list[dict[str, Any]] = []
    status = {s.id: StepStatus.PENDING for s in plan.steps}
    apply(state.start(plan, steps_of("r1", plan), True, AT), log, status)
    dispatched = state.dispatch_ready()
    running: list[str] = []
    interrupt_at = rnd.randint(0, 3 * len(plan.steps))
    moves = 0
    while (dispatched or running) and state.ending is None:
        moves += 1
        if interrupt is not None and moves >= interrupt_at:
            state.end(ENDINGS[interrupt])
            break
        if dispatched and (not running or rnd.random() < 0.5):
            sid = dispatched.pop(rnd.randrange(len(dispatched)))
            apply(state.step_started(sid, "t", 0.0, AT), log, status)
            running.append(sid)
            continue
        sid = running.pop(rnd.randrange(len(running)))
        roll = rnd.random()
        if roll < 0.2:
            apply(state.step_retrying(sid, {"code": "x"}, 0.5, AT), log, status)
            running.append(sid)
        elif roll < 0.4:
            keep_going = rnd.random() < 0.5
            records = state.step_failed(sid, {"code": "x"}, "x", keep_going, 1.0, AT)
            apply(records, log, status)
        else:
            records, _ready = state.step_succeeded(sid, {"ok": 1}, 1.0, AT)
            apply(records, log, status)
            dispatched.extend(state.dispatch_ready())
    if state.ending is None and not state.completed:
        state.end(ENDINGS["shutdown"])
    records, final = state.finish(AT, {"wall_ms": 1.0}, {})
    apply(records, log, status)
    resumable = state.ending is not None and state.ending.resumable
    check_run_log(log, finished=not resumable)
    if resumable:
        assert final is None
        assert all(
            s in (StepStatus.PENDING, StepStatus.SUCCEEDED) or s.finished for s in status.values()
        )
        assert StepStatus.RUNNING not in status.values()
    else:
        assert final is not None
        assert final.finished
        assert all(s.finished for s in status.values()), status
    if final is RunStatus.SUCCEEDED:
        # Failures with continue_on_error (and their skipped dependents) may remain.
        assert StepStatus.CANCELLED not in status.values()


@settings(deadline=None)
@given(st.lists(st.sampled_from(list(StepStatus)), min_size=0, max_size=8))
def test_a_stored_run_ends_by_the_same_rules(statuses: list[StepStatus]) -> None:
    steps = tuple(
        Step(
            "r1",
            f"s{i}",
            i,
            "t",
            {},
            (),
            status=s,
            attempts=1 if s is not StepStatus.PENDING else 0,
        )
        for i, s in enumerate(statuses)
    )
    run = Run("r1", "p1", "u1", RunStatus.RUNNING, None, None, None, {}, None, AT, steps=steps)
    # The log of the stored run: a step.started for every step the store shows started.
    log = [
        {"type": "step.started", "step_id": s.id, "attempt": s.attempts}
        for s in steps
        if s.status is not StepStatus.PENDING
    ]
    log += [  # and the end of those that ended
        {"type": "step.succeeded", "step_id": s.id, "attempt": s.attempts}
        for s in steps
        if s.status not in (StepStatus.PENDING, StepStatus.RUNNING)
    ]
    records, final = end_stored(run, USER_CANCELLED, AT)
    status = {s.id: s.status for s in steps}
    apply(records, log, status)
    check_run_log(log)
    assert final is RunStatus.CANCELLED
    assert records.run["error"] == USER_CANCELLED.error
    assert all(s.finished for s in status.values())
