"""Plan approval (issue 17 item 1) through the real server and SSE, on SQLite and PostgreSQL.

A run with ``options.approval = "plan"`` is planned, then waits ``awaiting_approval``
(``run.awaiting_approval`` carries the plan); ``approve`` starts it (optionally with an
edited plan), ``reject`` and the approval deadline end it ``cancelled``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from server.errors import RunStatusChanged
from server.events.model import NewEvent
from server.store.models import Run, RunChange, RunStatus, Step
from server.timeutil import new_id, utc_now
from server.workflow.supervisor import ADOPT_SCAN_MAX_S, APPROVAL_SCAN_S
from tests.fixtures.postgres import open_migrated_store
from tests.fixtures.server import create_project, register_user
from tests.workflow.hitl_helpers import (
    get_run,
    kinds,
    read_file,
    run_events,
    submit,
    wait_status,
    whole_log,
)

if TYPE_CHECKING:
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser, RunningServer, StartServer

APPROVAL = {"approval": "plan"}
WRITE_PLAN = {
    "steps": [{"id": "write", "tool": "vfs.write", "args": {"path": "out.txt", "content": "one"}}]
}
EDITED_PLAN = {
    "steps": [
        {"id": "first", "tool": "vfs.write", "args": {"path": "edited.txt", "content": "two"}},
        {"id": "list", "tool": "vfs.list", "args": {"prefix": ""}, "needs": ["first"]},
    ]
}


async def awaiting_run(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, **body: Any
) -> dict[str, Any]:
    created = await submit(client, user, project_id, options=APPROVAL, **body)
    run = await wait_status(client, user, created["id"], {"awaiting_approval", "succeeded"})
    assert run["status"] == "awaiting_approval", run
    return run


async def post(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, action: str, **kw: Any
) -> httpx.Response:
    return await client.post(f"/api/workflow/runs/{run_id}/{action}", headers=user.headers, **kw)


async def test_a_prompt_run_waits_for_approval_then_runs_keeping_prompt_and_intent(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    prompt = 'Create notes/todo.md containing "buy milk"'
    run = await awaiting_run(client, user, pid, prompt=prompt)
    assert run["prompt"] == prompt
    assert run["intent"]["intent"] == "create_file"
    assert run["approval"]["mode"] == "plan"
    assert run["approval"]["expires_at"] is not None
    assert run["approval"]["approved_at"] is None
    assert {s["status"] for s in run["steps"]} == {"pending"}
    assert run["started_at"] is None
    assert (await read_file(client, user, pid, "notes/todo.md")).status_code == 404
    events = await run_events(client, user, pid, run["id"], "run.awaiting_approval")
    assert kinds(events) == ["run.created", "run.planning", "run.planned", "run.awaiting_approval"]
    awaiting = events[-1][1]
    assert awaiting["plan"] == run["plan"]
    assert awaiting["intent"] == run["intent"]
    assert awaiting["expires_at"] == run["approval"]["expires_at"]
    listed = await client.get(
        "/api/workflow/runs", params={"status": "awaiting_approval"}, headers=user.headers
    )
    assert [r["id"] for r in listed.json()["items"]] == [run["id"]]

    approved = await post(client, user, run["id"], "approve")
    assert approved.status_code == 202, approved.text
    assert approved.json()["approval"]["approved_at"] is not None
    done = await wait_status(client, user, run["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    assert done["prompt"] == prompt
    assert done["intent"] == run["intent"]
    assert done["plan"] == run["plan"]
    assert (await read_file(client, user, pid, "notes/todo.md")).text == "buy milk\n"
    events = await run_events(client, user, pid, run["id"], "run.succeeded")
    run_kinds = [k for k in kinds(events) if k.startswith("run.")]
    assert run_kinds == [
        "run.created",
        "run.planning",
        "run.planned",
        "run.awaiting_approval",
        "run.approved",
        "run.started",
        "run.succeeded",
    ]
    assert next(d for k, d in events if k == "run.approved")["edited"] is False
    again = await post(client, user, run["id"], "approve")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_awaiting_approval"


async def test_an_edited_plan_is_validated_and_replaces_the_steps(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    assert [s["id"] for s in run["steps"]] == ["write"]

    bad = {"steps": [{"id": "x", "tool": "no.such.tool", "args": {}}]}
    refused = await post(client, user, run["id"], "approve", json={"plan": bad})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_plan"
    assert "steps.x.tool" in refused.json()["error"]["details"]
    unknown = await post(client, user, run["id"], "approve", json={"plan": EDITED_PLAN, "x": 1})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "validation_failed"
    assert (await get_run(client, user, run["id"]))["status"] == "awaiting_approval"

    approved = await post(client, user, run["id"], "approve", json={"plan": EDITED_PLAN})
    assert approved.status_code == 202, approved.text
    done = await wait_status(client, user, run["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done
    assert [s["id"] for s in done["steps"]] == ["first", "list"]
    assert done["plan"]["steps"][0]["args"]["path"] == "edited.txt"
    assert (await read_file(client, user, pid, "edited.txt")).text == "two"
    assert (await read_file(client, user, pid, "out.txt")).status_code == 404
    events = await run_events(client, user, pid, run["id"], "run.succeeded")
    approved_event = next(d for k, d in events if k == "run.approved")
    assert approved_event["edited"] is True
    assert [s["id"] for s in approved_event["plan"]["steps"]] == ["first", "list"]


async def test_reject_and_cancel_end_an_awaiting_run(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    rejected = await post(client, user, run["id"], "reject")
    assert rejected.status_code == 200, rejected.text
    body = rejected.json()
    assert body["status"] == "cancelled"
    assert body["error"]["reason"] == "rejected"
    assert [s["status"] for s in body["steps"]] == ["skipped"]
    events = await run_events(client, user, pid, run["id"], "run.cancelled")
    assert kinds(events) == [
        "run.created",
        "run.awaiting_approval",
        "step.skipped",
        "run.cancelled",
    ]
    assert events[-1][1]["reason"] == "rejected"
    for action in ("approve", "reject"):
        late = await post(client, user, run["id"], action)
        assert late.status_code == 409, late.text
        assert late.json()["error"]["code"] == "not_awaiting_approval"
        assert late.json()["error"]["details"] == {"status": "cancelled"}
    assert (await post(client, user, run["id"], "cancel")).status_code == 409

    other = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    cancelled = await post(client, user, other["id"], "cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["reason"] == "user"
    assert (await read_file(client, user, pid, "out.txt")).status_code == 404


async def test_bad_requests_and_runs_not_awaiting(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    bad = await client.post(
        "/api/workflow/runs",
        json={"project_id": pid, "plan": WRITE_PLAN, "options": {"approval": "always"}},
        headers=user.headers,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["details"] == {"options.approval": 'must be "plan"'}
    plain = await submit(client, user, pid, plan=WRITE_PLAN)
    assert plain["approval"] is None
    await wait_status(client, user, plain["id"], {"succeeded"})
    for action in ("approve", "reject"):
        response = await post(client, user, plain["id"], action)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "not_awaiting_approval"
    run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    untyped = await post(client, user, run["id"], "approve", content=b"plan")
    assert untyped.status_code == 415
    text = await client.post(
        f"/api/workflow/runs/{run['id']}/approve",
        content=b"plan",
        headers={**user.headers, "Content-Type": "text/plain"},
    )
    assert text.status_code == 415
    assert (await get_run(client, user, run["id"]))["status"] == "awaiting_approval"


async def test_another_user_gets_404_on_approve_and_reject(client: httpx.AsyncClient) -> None:
    owner = await register_user(client)
    other = await register_user(client)
    pid = await create_project(client, owner)
    run = await awaiting_run(client, owner, pid, plan=WRITE_PLAN)
    for action in ("approve", "reject", "cancel"):
        response = await post(client, other, run["id"], action)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    missing = await post(client, owner, "no-such-run", "approve")
    assert missing.status_code == 404
    assert (await get_run(client, owner, run["id"]))["status"] == "awaiting_approval"


async def test_concurrent_approvals_one_wins(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    statuses: list[int] = []
    codes: list[str] = []

    async def approve() -> None:
        response = await post(client, user, run["id"], "approve")
        statuses.append(response.status_code)
        if response.status_code == 409:
            codes.append(response.json()["error"]["code"])

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(approve)
    assert sorted(statuses) == [202, 409, 409, 409]
    assert codes == ["not_awaiting_approval"] * 3
    done = await wait_status(client, user, run["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded"
    log = await whole_log(client, user, pid)
    events = [(k, d) for k, d in log if d.get("run_id") == run["id"]]
    assert kinds(events).count("run.approved") == 1
    assert kinds(events).count("run.started") == 1
    assert kinds(events).count("step.started") == 1
    assert kinds(events)[-1] == "run.succeeded"


async def test_the_approval_deadline_cancels_the_run(start_server: StartServer) -> None:
    server = await start_server(approval_timeout_s=0.3)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        created = await submit(client, user, pid, plan=WRITE_PLAN, options=APPROVAL)
        done = await wait_status(client, user, created["id"], {"cancelled", "succeeded"})
        assert done["status"] == "cancelled"
        assert done["error"]["reason"] == "approval_timeout"
        events = await run_events(client, user, pid, created["id"], "run.cancelled")
        assert kinds(events) == [
            "run.created",
            "run.awaiting_approval",
            "step.skipped",
            "run.cancelled",
        ]
        assert events[-1][1]["reason"] == "approval_timeout"
        late = await post(client, user, created["id"], "approve")
        assert late.status_code == 409
        assert (await read_file(client, user, pid, "out.txt")).status_code == 404


async def test_a_restart_keeps_the_run_awaiting_then_approvable(
    start_server: StartServer,
) -> None:
    first = await start_server()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    await first.stop()
    second = await start_server()
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        await trio.sleep(2 * ADOPT_SCAN_MAX_S)  # the new supervisor has scanned for runs
        after = await get_run(client, user, run["id"])
        assert after["status"] == "awaiting_approval"
        assert after["approval"] == run["approval"]
        assert second.services.supervisor.active_runs == 0
        approved = await post(client, user, run["id"], "approve")
        assert approved.status_code == 202, approved.text
        done = await wait_status(client, user, run["id"], {"succeeded", "failed", "cancelled"})
        assert done["status"] == "succeeded", done
        events = await run_events(client, user, pid, run["id"], "run.succeeded")
        assert kinds(events).count("run.awaiting_approval") == 1
        assert (await read_file(client, user, pid, "out.txt")).text == "one"


async def test_a_deadline_that_passed_while_down_is_enforced_after_restart(
    start_server: StartServer, backend: BackendConfig
) -> None:
    first = await start_server()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run = await awaiting_run(client, user, pid, plan=WRITE_PLAN)
    await first.stop()
    async with open_migrated_store(backend) as store:  # the deadline passes while down
        await store.write_run_state(run=RunChange(run["id"], {"approval_expires_at": utc_now()}))
    second = await start_server()
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        done = await wait_status(client, user, run["id"], {"cancelled", "succeeded"})
        assert done["error"]["reason"] == "approval_timeout"
        events = await run_events(client, user, pid, run["id"], "run.cancelled")
        assert kinds(events).count("run.cancelled") == 1


POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _two_instances(start_server: StartServer, **settings: Any) -> list[RunningServer]:
    """Two servers on one PostgreSQL database."""
    return [
        await start_server(instance_id="a", **settings),
        await start_server(instance_id="b", **settings),
    ]


@POSTGRES_ONLY
async def test_concurrent_approvals_on_two_instances_one_wins(start_server: StartServer) -> None:
    a, b = await _two_instances(start_server)
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        user = await register_user(on_a)
        pid = await create_project(on_a, user)
        run = await awaiting_run(on_a, user, pid, plan=WRITE_PLAN)
        statuses: list[int] = []

        async def approve(client: httpx.AsyncClient) -> None:
            statuses.append((await post(client, user, run["id"], "approve")).status_code)

        async with trio.open_nursery() as nursery:
            for client in (on_a, on_b, on_a, on_b):
                nursery.start_soon(approve, client)
        assert sorted(statuses) == [202, 409, 409, 409]
        done = await wait_status(on_b, user, run["id"], {"succeeded", "failed", "cancelled"})
        assert done["status"] == "succeeded", done
        log = await whole_log(on_b, user, pid)
        events = [(k, d) for k, d in log if d.get("run_id") == run["id"]]
        assert kinds(events).count("run.approved") == 1
        assert kinds(events).count("step.started") == 1
        assert kinds(events)[-1] == "run.succeeded"


@POSTGRES_ONLY
async def test_two_instances_end_an_expired_run_once(start_server: StartServer) -> None:
    a, _b = await _two_instances(start_server, approval_timeout_s=0.3)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
        user = await register_user(on_a)
        pid = await create_project(on_a, user)
        runs = [await submit(on_a, user, pid, plan=WRITE_PLAN, options=APPROVAL) for _ in range(3)]
        for run in runs:
            done = await wait_status(on_a, user, run["id"], {"cancelled", "succeeded"})
            assert done["error"]["reason"] == "approval_timeout"
        await trio.sleep(2 * APPROVAL_SCAN_S)  # both scanned again: nothing more is written
        log = await whole_log(on_a, user, pid)
        for run in runs:
            events = [(k, d) for k, d in log if d.get("run_id") == run["id"]]
            assert kinds(events) == [
                "run.created",
                "run.awaiting_approval",
                "step.skipped",
                "run.cancelled",
            ]
        last = await on_a.get(
            "/api/workflow/runs", params={"project_id": pid}, headers=user.headers
        )
        assert {r["status"] for r in last.json()["items"]} == {"cancelled"}


# -- the store's side: the conditional transition, on both databases ------------------------
async def test_of_two_conditional_transitions_exactly_one_writes(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store:
        user = await store.create_user("approver@example.com", None, None)
        project = await store.create_project(user.id, "demo", None)
        run_id = new_id()
        past = utc_now() - timedelta(seconds=1)
        old_step = Step(run_id, "old", 0, "vfs.list", {"prefix": ""}, ())
        run = Run(
            id=run_id, project_id=project.id, owner_id=user.id,
            status=RunStatus.AWAITING_APPROVAL, prompt=None, intent=None, plan={"steps": []},
            options=APPROVAL, error=None, created_at=utc_now(), steps=(old_step,),
            approval_expires_at=past,
        )  # fmt: skip
        await store.create_run(run, [])
        assert run_id not in {r.id for r in await store.unfinished_runs(None)}
        assert [r.id for r in await store.expired_approvals(utc_now(), 10)] == [run_id]
        assert await store.expired_approvals(past - timedelta(seconds=1), 10) == []
        won: list[int] = []
        lost: list[int] = []

        async def approve(i: int) -> None:
            step = Step(run_id, f"s{i}", 0, "vfs.list", {"prefix": ""}, ())
            event = NewEvent(project.id, "run.approved", {"type": "run.approved", "i": i})
            try:
                await store.write_run_state(
                    run=RunChange(run_id, {"status": RunStatus.PENDING}),
                    new_steps=[step],
                    events=[event],
                    if_status=RunStatus.AWAITING_APPROVAL,
                    replace_steps=True,
                )
            except RunStatusChanged:
                lost.append(i)
            else:
                won.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(approve, i)
        assert len(won) == 1
        assert sorted(won + lost) == [0, 1, 2, 3]
        after = await store.get_run(run_id)
        assert after is not None
        assert after.status is RunStatus.PENDING
        assert [s.id for s in after.steps] == [f"s{won[0]}"]  # the old steps were replaced
        events = await store.events_after(project.id, 0, 100)
        assert [e.type for e in events] == ["run.approved"]
        assert await store.expired_approvals(utc_now(), 10) == []
