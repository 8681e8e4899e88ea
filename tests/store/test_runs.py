"""Workflow runs and steps: idempotent creation, state writes, listing, leases, restarts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import trio

from server.errors import NotFound
from server.events.model import NewEvent
from server.store.models import (
    Run,
    RunChange,
    RunStatus,
    StateWrite,
    Step,
    StepChange,
    StepStatus,
)
from server.timeutil import new_id, utc_now
from tests.fixtures.postgres import open_migrated_store
from tests.store.helpers import data

if TYPE_CHECKING:
    from server.store.models import Project, User
    from server.store.protocol import Store
    from tests.fixtures.postgres import BackendConfig

PLAN: dict[str, Any] = {
    "steps": [
        {"id": "read", "tool": "vfs.read", "args": {"path": "a.txt"}, "needs": []},
        {"id": "gen", "tool": "ai.generate", "args": {"prompt": "{{steps.read.output}}"},
         "needs": ["read"]},
    ]
}  # fmt: skip


def make_run(project: Project, *, key: str | None = None, status: RunStatus = RunStatus.PENDING
             ) -> Run:  # fmt: skip
    run_id = new_id()
    steps = tuple(
        Step(run_id=run_id, id=s["id"], position=i, tool=s["tool"], args=s["args"],
             needs=tuple(s["needs"]))
        for i, s in enumerate(PLAN["steps"])
    )  # fmt: skip
    return Run(
        id=run_id, project_id=project.id, owner_id=project.owner_id, status=status,
        prompt="add validation", intent={"kind": "edit", "targets": ["src/"]}, plan=PLAN,
        options={"dry_run": False, "n": 1.5}, error=None, created_at=utc_now(),
        idempotency_key=key, steps=steps,
    )  # fmt: skip


def created_event(run: Run) -> NewEvent:
    body = {"type": "run.created", "project_id": run.project_id, "run_id": run.id}
    return NewEvent(run.project_id, "run.created", body)


async def test_create_and_get_run_round_trips(store: Store, project: Project, other: User) -> None:
    run = make_run(project)
    stored, created, events = await store.create_run(run, [created_event(run)])
    assert created
    assert stored == run
    assert [(e.seq, e.type) for e in events] == [(1, "run.created")]
    assert data(events[0])["run_id"] == run.id
    assert await store.get_run(run.id) == run
    assert await store.get_run(run.id, project.owner_id) == run
    assert await store.get_run(run.id, other.id) is None
    assert await store.get_run(new_id()) is None


async def test_create_run_is_idempotent_per_owner(
    store: Store, project: Project, other: User
) -> None:
    first = make_run(project, key="k-1")
    _, created, events = await store.create_run(first, [created_event(first)])
    assert created
    assert len(events) == 1
    retry = make_run(project, key="k-1")
    again, created_again, events_again = await store.create_run(retry, [created_event(retry)])
    assert (created_again, events_again) == (False, [])
    assert again.id == first.id
    assert await store.get_run(retry.id) is None
    # another owner may use the same key
    theirs = await store.create_project(other.id, "theirs", None)
    _, created_other, _ = await store.create_run(make_run(theirs, key="k-1"), [])
    assert created_other
    assert await store.event_bounds(project.id) == (1, 1)


def started_with(run: Run, step_id: str) -> StateWrite:
    """``run.started`` and ``step_id``'s start, as the executor inserts a run started."""
    now = utc_now()
    return StateWrite(
        run=RunChange(run.id, {"status": RunStatus.RUNNING, "started_at": now}),
        steps=[StepChange(run.id, step_id, {"status": StepStatus.RUNNING, "attempts": 1,
                                            "started_at": now})],
        events=[NewEvent(run.project_id, "run.started", {"run_id": run.id}),
                NewEvent(run.project_id, "step.started", {"run_id": run.id, "step_id": step_id})],
    )  # fmt: skip


async def test_a_run_is_inserted_started_in_one_transaction(store: Store, project: Project) -> None:
    run = make_run(project, key="k-start")
    stored, created, events = await store.create_run(
        run, [created_event(run)], max_in_flight=5, then=started_with(run, "read")
    )
    assert created
    assert [(e.seq, e.type) for e in events] == [
        (1, "run.created"), (2, "run.started"), (3, "step.started")
    ]  # fmt: skip
    assert (stored.status, stored.started_at is not None) == (RunStatus.RUNNING, True)
    assert [(s.id, s.status, s.attempts) for s in stored.steps] == [
        ("read", StepStatus.RUNNING, 1), ("gen", StepStatus.PENDING, 0)
    ]  # fmt: skip
    assert await store.get_run(run.id) == stored
    # A repeated key gets the run as it stands; its start is not applied again.
    retry = make_run(project, key="k-start")
    again, created_again, events_again = await store.create_run(
        retry, [created_event(retry)], max_in_flight=5, then=started_with(retry, "read")
    )
    assert (again, created_again, events_again) == (stored, False, [])
    assert await store.event_bounds(project.id) == (1, 3)


async def test_a_run_of_a_missing_or_another_users_project_is_not_inserted(
    store: Store, project: Project, other: User
) -> None:
    theirs = make_run(project)
    for run in (replace(theirs, owner_id=other.id), replace(theirs, project_id=new_id())):
        with pytest.raises(NotFound):
            await store.create_run(run, [created_event(run)], then=started_with(run, "read"))
        assert await store.get_run(run.id) is None
    assert await store.event_bounds(project.id) == (1, 0)


async def test_an_insert_whose_start_fails_writes_nothing(store: Store, project: Project) -> None:
    run = make_run(project)
    start = started_with(run, "no-such-step")
    with pytest.raises(NotFound):
        await store.create_run(run, [created_event(run)], then=start)
    assert await store.get_run(run.id) is None
    assert await store.event_bounds(project.id) == (1, 0)


async def test_concurrent_idempotent_creates_make_one_run(store: Store, project: Project) -> None:
    results: list[tuple[str, bool]] = []

    async def create() -> None:
        run = make_run(project, key="same")
        stored, created, _ = await store.create_run(run, [created_event(run)])
        results.append((stored.id, created))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(create)
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await store.event_bounds(project.id) == (1, 1)


async def test_create_run_for_missing_project(store: Store, project: Project) -> None:
    run = make_run(project)
    orphan = Run(**{**{f: getattr(run, f) for f in Run.__slots__}, "project_id": new_id()})
    with pytest.raises(NotFound):
        await store.create_run(orphan, [])


async def test_write_run_state_round_trip(store: Store, project: Project) -> None:
    run = make_run(project)
    await store.create_run(run, [])
    started = utc_now()
    events = await store.write_run_state(
        run=RunChange(run.id, {"status": RunStatus.RUNNING, "started_at": started}),
        new_steps=[Step(run.id, "extra", 2, "vfs.list", {"prefix": ""}, ("gen",))],
        steps=[StepChange(run.id, "read", {"status": StepStatus.RUNNING, "attempts": 1,
                                            "started_at": started})],
        events=[NewEvent(project.id, "run.started", {"type": "run.started"}),
                NewEvent(project.id, "step.started", {"type": "step.started"})],
    )  # fmt: skip
    assert [e.seq for e in events] == [1, 2]
    finished = started + timedelta(milliseconds=1500)
    await store.write_run_state(
        run=RunChange(run.id, {
            "status": RunStatus.SUCCEEDED, "finished_at": finished,
            "metrics": {"wall_ms": 1500.5, "steps_total": 3}, "error": None,
        }),
        steps=[StepChange(run.id, "read", {
            "status": StepStatus.SUCCEEDED, "output": {"content": "hi", "lines": [1, 2]},
            "finished_at": finished, "duration_ms": 12.25, "queue_ms": 0.5,
        }), StepChange(run.id, "gen", {
            "status": StepStatus.FAILED, "error": {"code": "timeout", "message": "slow"},
            "output": "partial text",
        })],
    )  # fmt: skip
    got = await store.get_run(run.id)
    assert got is not None
    assert got.status is RunStatus.SUCCEEDED
    assert (got.started_at, got.finished_at) == (started, finished)
    assert got.metrics == {"wall_ms": 1500.5, "steps_total": 3}
    assert got.intent == run.intent
    assert got.plan == PLAN
    assert got.options == {"dry_run": False, "n": 1.5}
    assert [s.id for s in got.steps] == ["read", "gen", "extra"]
    read, gen, extra = got.steps
    assert (read.status, read.attempts, read.duration_ms, read.queue_ms) == (
        StepStatus.SUCCEEDED, 1, 12.25, 0.5,
    )  # fmt: skip
    assert read.output == {"content": "hi", "lines": [1, 2]}
    assert (read.started_at, read.finished_at) == (started, finished)
    assert (gen.status, gen.output, gen.error) == (
        StepStatus.FAILED, "partial text", {"code": "timeout", "message": "slow"},
    )  # fmt: skip
    assert gen.needs == ("read",)
    assert (extra.tool, extra.args, extra.needs, extra.status) == (
        "vfs.list", {"prefix": ""}, ("gen",), StepStatus.PENDING,
    )  # fmt: skip


async def test_write_run_state_is_one_transaction(store: Store, project: Project) -> None:
    run = make_run(project)
    await store.create_run(run, [])
    with pytest.raises(NotFound):
        await store.write_run_state(
            run=RunChange(run.id, {"status": RunStatus.RUNNING}),
            steps=[StepChange(run.id, "no-such-step", {"status": StepStatus.RUNNING})],
            events=[NewEvent(project.id, "run.started", {"type": "run.started"})],
        )
    got = await store.get_run(run.id)
    assert got is not None
    assert got.status is RunStatus.PENDING
    assert await store.event_bounds(project.id) == (1, 0)
    with pytest.raises(ValueError, match="cannot set"):
        await store.write_run_state(
            run=RunChange(run.id, {"owner_id": "x"})  # type: ignore[typeddict-unknown-key]
        )


async def test_list_runs_filters_and_pages(
    store: Store, user: User, project: Project, other: User
) -> None:
    second = await store.create_project(user.id, "second", None)
    runs = [make_run(project) for _ in range(3)] + [make_run(second)]
    for run in runs:
        await store.create_run(run, [])
    await store.write_run_state(run=RunChange(runs[0].id, {"status": RunStatus.FAILED}))
    await store.create_run(make_run(await store.create_project(other.id, "x", None)), [])

    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_runs(user.id, None, None, 3, cursor)
        ids.extend(r.id for r in page.items)
        assert all(len(r.steps) == 2 for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids == sorted((r.id for r in runs), reverse=True)
    in_project = await store.list_runs(user.id, project.id, None, 10, None)
    assert {r.id for r in in_project.items} == {r.id for r in runs[:3]}
    failed = await store.list_runs(user.id, None, RunStatus.FAILED, 10, None)
    assert [r.id for r in failed.items] == [runs[0].id]
    assert (await store.list_runs(other.id, project.id, None, 10, None)).items == []


async def test_leases(store: Store, project: Project) -> None:
    now = utc_now()
    free, done = make_run(project), make_run(project, status=RunStatus.SUCCEEDED)
    await store.create_run(free, [])
    await store.create_run(done, [])
    assert [r.id for r in await store.unfinished_runs(None)] == [free.id]
    assert [r.id for r in await store.unfinished_runs(now)] == [free.id]

    assert await store.claim_run(free.id, "a", now + timedelta(seconds=30))
    assert not await store.claim_run(free.id, "b", now + timedelta(seconds=30))
    assert await store.claim_run(free.id, "a", now + timedelta(seconds=60))  # already ours
    assert not await store.claim_run(done.id, "a", now + timedelta(seconds=30))
    assert await store.unfinished_runs(now) == []
    assert [r.id for r in await store.unfinished_runs(None)] == [free.id]
    assert await store.unfinished_runs(now + timedelta(seconds=61)) != []

    await store.renew_leases("a", now + timedelta(seconds=120))
    assert await store.unfinished_runs(now + timedelta(seconds=61)) == []
    got = await store.get_run(free.id)
    assert got is not None
    assert (got.lease_owner, got.lease_expires_at) == ("a", now + timedelta(seconds=120))

    # an expired lease can be taken over
    await store.write_run_state(
        run=RunChange(free.id, {"lease_expires_at": now - timedelta(seconds=1)})
    )
    assert await store.claim_run(free.id, "b", now + timedelta(seconds=30))


async def test_runs_survive_restart(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store:
        user = await store.create_user("r@example.com", None, None)
        project = await store.create_project(user.id, "p", None)
        run = make_run(project)
        await store.create_run(run, [created_event(run)])
        await store.write_run_state(
            run=RunChange(run.id, {"status": RunStatus.RUNNING}),
            steps=[StepChange(run.id, "read", {"status": StepStatus.SUCCEEDED, "output": [1]})],
        )
    async with open_migrated_store(backend) as reopened:
        assert await reopened.pending_migrations() == []
        got = await reopened.get_run(run.id, user.id)
        assert got is not None
        assert got.status is RunStatus.RUNNING
        assert got.steps[0].output == [1]
        assert [r.id for r in await reopened.unfinished_runs(None)] == [run.id]
        assert await reopened.event_bounds(project.id) == (1, 1)
