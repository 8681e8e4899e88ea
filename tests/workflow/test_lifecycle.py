"""Prompt runs through a planner, shutdown leaving runs resumable, and resume."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import trio

from server.errors import InvalidPlan
from server.store.models import RunStatus, StepStatus
from tests.workflow.conftest import build_harness
from tests.workflow.invariants import check_run_log

if TYPE_CHECKING:
    from pathlib import Path

    from trio.testing import MockClock


class FakePlanner:
    def __init__(self, plan: dict[str, Any] | None) -> None:
        self.plan = plan

    async def analyze_and_plan(
        self, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        if self.plan is None:
            raise InvalidPlan("The model's plan is not valid.", {"steps.x.tool": "unknown tool"})
        return {"kind": "test", "prompt": prompt}, self.plan


async def submit_prompt(h: Any, prompt: str) -> Any:
    run, _ = await h.supervisor.submit(
        owner_id="u1", project_id="p1", prompt=prompt, plan=None, options={}, idempotency_key=None
    )
    await h.supervisor.wait_finished(run.id)
    return await h.fetch(run.id)


async def test_a_prompt_run_is_planned_then_executed(tmp_path: Path, nursery: trio.Nursery) -> None:
    plan = {"steps": [{"id": "a", "tool": "t.echo", "args": {"value": 1}}]}
    h = build_harness(tmp_path, planner=FakePlanner(plan))
    await nursery.start(h.supervisor.run)
    run = await submit_prompt(h, "do it")
    assert run.status is RunStatus.SUCCEEDED
    assert run.intent == {"kind": "test", "prompt": "do it"}
    assert run.plan == {"steps": [{**plan["steps"][0], "needs": []}]}
    kinds = [t for t, s in h.store.event_types(run.id) if s is None]
    assert kinds == ["run.created", "run.planning", "run.planned", "run.started", "run.succeeded"]


async def test_a_planner_failure_fails_the_run_with_reasons(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    h = build_harness(tmp_path, planner=FakePlanner(None))
    await nursery.start(h.supervisor.run)
    run = await submit_prompt(h, "do it")
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "planning_failed"
    assert run.error["details"] == {"steps.x.tool": "unknown tool"}
    (failed,) = h.store.event_data(run.id, "run.failed")
    assert failed["error"]["code"] == "planning_failed"


async def test_shutdown_leaves_runs_resumable_and_resume_finishes_them(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    plan = [
        {"id": "quick", "tool": "t.echo", "args": {"value": "v"}},
        {"id": "slow", "tool": "t.sleep", "args": {"seconds": 50}, "needs": ["quick"]},
    ]
    first = build_harness(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.supervisor.run)
        run = await first.submit(plan)
        while "slow" not in first.log.started:  # noqa: ASYNC110 - the tools report by list
            await trio.sleep(0.1)
        await first.supervisor.shutdown(grace_s=1)
        nursery.cancel_scope.cancel()
    left = await first.fetch(run.id)
    assert left.status is RunStatus.RUNNING  # not finished: resumable
    assert left.lease_owner is None
    steps = {s.id: s for s in left.steps}
    assert steps["quick"].status is StepStatus.SUCCEEDED
    assert steps["slow"].status is StepStatus.PENDING
    assert first.log.cancelled == ["slow"]
    reasons = [d["reason"] for d in first.store.event_data(run.id, "step.cancelled")]
    assert reasons == ["shutdown"]
    assert first.store.event_data(run.id, "run.cancelled") == []

    second = build_harness(tmp_path, store=first.store)
    async with trio.open_nursery() as nursery:
        await nursery.start(second.supervisor.run)
        assert await second.supervisor.resume_unfinished() == 1
        await second.supervisor.wait_finished(run.id)
        nursery.cancel_scope.cancel()
    done = await second.fetch(run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert second.log.started == ["slow"]  # the succeeded step kept its output, not re-run
    slow = next(s for s in done.steps if s.id == "slow")
    assert slow.attempts == 2
    assert len(first.store.event_data(run.id, "run.started")) == 1
    assert len(first.store.event_data(run.id, "run.succeeded")) == 1


async def test_cancelling_a_dead_process_run_follows_the_same_rules(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """A run whose process died mid-step (its store state copied at that moment) is
    cancelled by another process through ``transitions.end_stored``: the running attempt
    gets exactly one ``step.cancelled`` (reason ``user``), the rest is skipped."""
    plan = [
        {"id": "quick", "tool": "t.echo", "args": {"value": "v"}},
        {"id": "slow", "tool": "t.sleep", "args": {"seconds": 50}, "needs": ["quick"]},
        {"id": "after", "tool": "t.echo", "args": {"value": "w"}, "needs": ["slow"]},
    ]
    first = build_harness(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.supervisor.run)
        run = await first.submit(plan)
        while "slow" not in first.log.started:  # noqa: ASYNC110 - the tools report by list
            await trio.sleep(0.1)
        dead = copy.deepcopy(first.store)  # what the store held when the process died
        nursery.cancel_scope.cancel()
    second = build_harness(tmp_path, store=dead)
    async with trio.open_nursery() as nursery:
        await nursery.start(second.supervisor.run)
        cancelled = await second.supervisor.cancel(run.id, "u1")
        nursery.cancel_scope.cancel()
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error == {
        "code": "cancelled",
        "message": "Cancelled by the user.",
        "reason": "user",
    }
    steps = {s.id: s for s in cancelled.steps}
    assert steps["quick"].status is StepStatus.SUCCEEDED
    assert steps["slow"].status is StepStatus.CANCELLED
    assert steps["slow"].error is not None
    assert steps["slow"].error["reason"] == "user"
    assert steps["after"].status is StepStatus.SKIPPED
    assert [d["reason"] for d in dead.event_data(run.id, "step.cancelled")] == ["user"]
    check_run_log(d for d in (json.loads(e.data) for e in dead.events) if d.get("run_id") == run.id)
