"""Retry from the failed step (issue 17 item 4) through the real server and SSE, on SQLite
and PostgreSQL.

Counting tools registered in the test server tell which steps really ran: ``t.count``
reads a file through the tools' file access and counts its calls per step; ``t.gate`` fails
until the test opens it. A retry reuses the succeeded steps' outputs (no call), runs the
failed, cancelled and skipped ones again, and is refused while a file a reused step read
has changed since (unless ``?force=true``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ToolError
from server.store.models import RunStatus, StepStatus
from server.workflow.plan import parse_plan
from server.workflow.tools.registry import Tool
from server.workflow.transitions import RunState, steps_of
from tests.fixtures.server import create_project, register_user
from tests.workflow.hitl_helpers import (
    get_run,
    kinds,
    put_file,
    read_file,
    run_events,
    submit,
    wait_status,
    whole_log,
)
from tests.workflow.invariants import check_run_log
from tests.workflow.test_plan import REGISTRY, dags, plan_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from server.workflow.tools.registry import ToolContext
    from tests.fixtures.server import AuthedUser, RunningServer

ENDED = {"succeeded", "failed", "cancelled"}
AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Counter:
    calls: dict[str, int] = field(default_factory=dict)
    gate_open: bool = False

    def tools(self) -> list[Tool]:
        async def count(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
            self.calls[ctx.step_id] = self.calls.get(ctx.step_id, 0) + 1
            data = await ctx.files.read(ctx.project_id, args["path"])
            return {"content": data.content.decode()}

        async def gate(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
            self.calls[ctx.step_id] = self.calls.get(ctx.step_id, 0) + 1
            if not self.gate_open:
                raise ToolError("closed", "the gate is closed")
            return {"passed": True}

        async def hold(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
            self.calls[ctx.step_id] = self.calls.get(ctx.step_id, 0) + 1
            await trio.sleep_forever()  # until the run is cancelled

        obj = {"type": "object"}
        path = {**obj, "properties": {"path": {"type": "string"}}, "required": ["path"]}
        return [
            Tool("t.count", "reads and counts", path, obj, timeout_s=30, retries=0, run=count),
            Tool("t.gate", "fails until opened", obj, obj, timeout_s=30, retries=0, run=gate),
            Tool("t.hold", "runs until cancelled", obj, obj, timeout_s=60, retries=0, run=hold),
        ]


PLAN = {
    "steps": [
        {"id": "read_a", "tool": "t.count", "args": {"path": "src/a.txt"}},
        {"id": "read_b", "tool": "t.count", "args": {"path": "src/b.txt"}},
        {  # the run's own write of a file a reused step read: no conflict
            "id": "rewrite",
            "tool": "vfs.write",
            "args": {"path": "src/a.txt", "content": "{{steps.read_a.output.content}}!"},
            "needs": ["read_a"],
        },
        {"id": "gate", "tool": "t.gate", "args": {}, "needs": ["read_b", "rewrite"]},
        {"id": "after", "tool": "t.count", "args": {"path": "src/a.txt"}, "needs": ["gate"]},
    ]
}


async def failed_run(
    server: RunningServer, client: httpx.AsyncClient
) -> tuple[Counter, AuthedUser, str, dict[str, Any]]:
    counter = Counter()
    for tool in counter.tools():
        server.services.tools.register(tool)
    user = await register_user(client)
    pid = await create_project(client, user)
    await put_file(client, user, pid, "src/a.txt", "alpha")
    await put_file(client, user, pid, "src/b.txt", "beta")
    created = await submit(client, user, pid, plan=PLAN)
    run = await wait_status(client, user, created["id"], ENDED)
    assert run["status"] == "failed", run
    steps = {s["id"]: s["status"] for s in run["steps"]}
    assert steps == {
        "read_a": "succeeded",
        "read_b": "succeeded",
        "rewrite": "succeeded",
        "gate": "failed",
        "after": "skipped",
    }
    assert counter.calls == {"read_a": 1, "read_b": 1, "gate": 1}
    return counter, user, pid, run


async def retry(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, **params: str
) -> httpx.Response:
    return await client.post(
        f"/api/workflow/runs/{run_id}/retry", params=params, headers=user.headers
    )


async def test_a_retry_reuses_succeeded_steps_and_runs_the_rest(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    counter, user, pid, source = await failed_run(server, client)
    counter.gate_open = True
    response = await retry(client, user, source["id"])
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["retry_of"] == source["id"]
    assert created["id"] != source["id"]
    assert created["plan"] == source["plan"]
    run = await wait_status(client, user, created["id"], ENDED)
    assert run["status"] == "succeeded", run
    # Only the failed and skipped steps called their tools again.
    assert counter.calls == {"read_a": 1, "read_b": 1, "gate": 2, "after": 1}
    steps = {s["id"]: s for s in run["steps"]}
    old = {s["id"]: s for s in source["steps"]}
    for sid in ("read_a", "read_b", "rewrite"):
        assert steps[sid]["reused"] is True
        assert steps[sid]["attempts"] == 0
        assert steps[sid]["output"] == old[sid]["output"]
    assert steps["gate"]["reused"] is False
    assert steps["gate"]["attempts"] == 1
    assert steps["after"]["output"] == {"content": "alpha!"}  # the rewrite is kept
    assert (await read_file(client, user, pid, "src/a.txt")).text == "alpha!"
    assert run["metrics"]["steps_succeeded"] == 5

    events = await run_events(client, user, pid, run["id"], "run.succeeded")
    created_event = events[0][1]
    assert created_event["retry_of"] == source["id"]
    assert created_event["reused_steps"] == ["read_a", "read_b", "rewrite"]
    reused = [d for k, d in events if k == "step.succeeded" and d.get("reused")]
    assert sorted(d["step_id"] for d in reused) == ["read_a", "read_b", "rewrite"]
    assert all(d["reused_from"] == source["id"] and d["attempt"] == 0 for d in reused)
    started = sorted(d["step_id"] for k, d in events if k == "step.started")
    assert started == ["after", "gate"]
    assert kinds(events).count("run.started") == 1
    # The source run is left as it was.
    assert await get_run(client, user, source["id"]) == source


async def test_a_changed_file_refuses_the_retry_unless_forced(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    counter, user, pid, source = await failed_run(server, client)
    await put_file(client, user, pid, "src/b.txt", "changed")  # read by reused read_b
    refused = await retry(client, user, source["id"])
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "conflict"
    assert error["details"]["paths"] == ["src/b.txt"]
    assert error["details"]["changes"] == [
        {"path": "src/b.txt", "known_versions": [1], "current_version": 2}
    ]
    listed = await client.get(
        "/api/workflow/runs", params={"project_id": pid}, headers=user.headers
    )
    assert [r["id"] for r in listed.json()["items"]] == [source["id"]]  # nothing created
    bad = await retry(client, user, source["id"], force="maybe")
    assert bad.status_code == 400

    counter.gate_open = True
    forced = await retry(client, user, source["id"], force="true")
    assert forced.status_code == 202, forced.text
    run = await wait_status(client, user, forced.json()["id"], ENDED)
    assert run["status"] == "succeeded"
    assert counter.calls == {"read_a": 1, "read_b": 1, "gate": 2, "after": 1}
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["read_b"]["output"] == {"content": "beta"}  # reused as it was


async def test_a_deleted_file_is_a_change_too(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    _counter, user, pid, source = await failed_run(server, client)
    deleted = await client.delete(f"/api/projects/{pid}/files/src/a.txt", headers=user.headers)
    assert deleted.status_code == 204
    refused = await retry(client, user, source["id"])
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["paths"] == ["src/a.txt"]


async def test_only_failed_or_cancelled_runs_are_retried(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    counter, user, pid, source = await failed_run(server, client)
    counter.gate_open = True
    first = await retry(client, user, source["id"])
    done = await wait_status(client, user, first.json()["id"], ENDED)
    assert done["status"] == "succeeded"
    again = await retry(client, user, done["id"])
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_retryable"
    assert again.json()["error"]["details"] == {"status": "succeeded"}

    # A rejected run (cancelled before it ran) is retried as it was: awaiting approval again.
    waiting = await submit(client, user, pid, plan=PLAN, options={"approval": "plan"})
    waiting = await wait_status(client, user, waiting["id"], {"awaiting_approval"})
    busy = await retry(client, user, waiting["id"])
    assert busy.status_code == 409
    assert busy.json()["error"]["details"] == {"status": "awaiting_approval"}
    rejected = await client.post(f"/api/workflow/runs/{waiting['id']}/reject", headers=user.headers)
    assert rejected.json()["status"] == "cancelled"
    retried = await retry(client, user, waiting["id"])
    assert retried.status_code == 202, retried.text
    back = await wait_status(client, user, retried.json()["id"], {"awaiting_approval"} | ENDED)
    assert back["status"] == "awaiting_approval"
    assert back["retry_of"] == waiting["id"]
    assert [s["status"] for s in back["steps"]] == ["pending"] * 5


async def test_a_cancelled_run_is_retried_from_its_cancelled_steps(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    counter = Counter(gate_open=True)
    for tool in counter.tools():
        server.services.tools.register(tool)
    user = await register_user(client)
    pid = await create_project(client, user)
    await put_file(client, user, pid, "in.txt", "x")
    plan = {
        "steps": [
            {"id": "read", "tool": "t.count", "args": {"path": "in.txt"}},
            {"id": "wait", "tool": "t.hold", "args": {}, "needs": ["read"]},
        ]
    }
    created = await submit(client, user, pid, plan=plan)
    await wait_step(client, user, created["id"], "wait", "running")
    cancelled = await client.post(
        f"/api/workflow/runs/{created['id']}/cancel", headers=user.headers
    )
    assert cancelled.json()["status"] == "cancelled"
    response = await retry(client, user, created["id"])
    assert response.status_code == 202, response.text
    # The slow step runs again (and is cancelled again): the read is reused.
    await wait_step(client, user, response.json()["id"], "wait", "running")
    assert counter.calls["read"] == 1
    again = await get_run(client, user, response.json()["id"])
    assert {s["id"]: s["reused"] for s in again["steps"]} == {"read": True, "wait": False}
    await client.post(f"/api/workflow/runs/{again['id']}/cancel", headers=user.headers)


async def wait_step(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, step_id: str, status: str
) -> None:
    with trio.fail_after(20):
        while True:
            run = await get_run(client, user, run_id)
            if any(s["id"] == step_id and s["status"] == status for s in run["steps"]):
                return
            await trio.sleep(0.02)


async def test_another_user_gets_404_on_retry(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    _counter, user, pid, source = await failed_run(server, client)
    other = await register_user(client)
    for params in ({}, {"force": "true"}):
        response = await retry(client, other, source["id"], **params)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert (await retry(client, user, "no-such-run")).status_code == 404
    log = await whole_log(client, user, pid)
    assert {d.get("run_id") for _k, d in log if d.get("run_id")} == {source["id"]}


# -- the pure rules: a retry's first start ---------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_reused_steps_are_announced_once_and_never_dispatched(
    graph: dict[str, list[str]], rnd: Any
) -> None:
    """Whatever succeeded in the source (a set closed under needs) is announced reused at the
    first start, never dispatched; everything else runs; a later resume announces nothing."""
    plan = parse_plan(plan_of(graph), REGISTRY, 100)
    done: set[str] = set()
    for sid in graph:
        if rnd.random() < 0.4 and all(n in done for n in graph[sid]):
            done.add(sid)
    stored = [
        replace(s, status=StepStatus.SUCCEEDED, output={"v": s.id}) if s.id in done else s
        for s in steps_of("r2", plan)
    ]
    state = RunState("p1", "r2")
    records = state.start(plan, stored, True, AT, retry_of="r1")
    log = [json.loads(json.dumps(e.data)) for e in records.events]
    reused = {d["step_id"] for d in log if d["type"] == "step.succeeded"}
    assert reused == done
    assert all(d["reused_from"] == "r1" for d in log if d["type"] == "step.succeeded")
    ran: list[str] = []
    ready = state.dispatch_ready()
    while ready:
        sid = ready.pop(rnd.randrange(len(ready)))
        ran.append(sid)
        log += [json.loads(json.dumps(e.data)) for e in state.step_started(sid, "t", 0, AT).events]
        finished, _ = state.step_succeeded(sid, {"ok": 1}, 1.0, AT)
        log += [json.loads(json.dumps(e.data)) for e in finished.events]
        ready += state.dispatch_ready()
    end, status = state.finish(AT, {"wall_ms": 1.0}, {})
    log += [json.loads(json.dumps(e.data)) for e in end.events]
    assert status is RunStatus.SUCCEEDED
    assert sorted(ran) == sorted(set(graph) - done)
    check_run_log(log)
    resumed = RunState("p1", "r2").start(plan, stored, False, AT, RunStatus.RUNNING, "r1")
    assert not [e for e in resumed.events if e.type == "step.succeeded"]
