"""Workflow runs through the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from tests.fixtures.server import create_project, register_user
from tests.workflow.doubles import ToolLog, tool_doubles

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import AuthedUser, RunningServer, StartServer

FINISHED = {"succeeded", "failed", "cancelled"}


async def wait_run(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in FINISHED:
                return body
            await trio.sleep(0.02)


async def post_run(
    client: httpx.AsyncClient, user: AuthedUser, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post("/api/workflow/runs", json=body, headers={**user.headers, **headers})


PARALLEL_PLAN = {
    "steps": [
        {"id": "read_a", "tool": "vfs.read", "args": {"path": "src/a.txt"}},
        {"id": "read_b", "tool": "vfs.read", "args": {"path": "src/b.txt"}},
        {
            "id": "join",
            "tool": "vfs.write",
            "args": {
                "path": "out/joined.txt",
                "content": "{{steps.read_a.output.content}}+{{steps.read_b.output.content}}",
            },
            "needs": ["read_a", "read_b"],
        },
        {"id": "search", "tool": "vfs.search", "args": {"pattern": "^al", "prefix": "src/"}},
        {"id": "list", "tool": "vfs.list", "args": {"prefix": "out/"}, "needs": ["join"]},
    ]
}


async def seed_files(client: httpx.AsyncClient, user: AuthedUser, project_id: str) -> None:
    for path, text in (("src/a.txt", "alpha"), ("src/b.txt", "beta")):
        response = await client.put(
            f"/api/projects/{project_id}/files/{path}", content=text.encode(), headers=user.headers
        )
        assert response.status_code == 201, response.text


async def test_a_parallel_plan_runs_to_success(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    await seed_files(client, user, project_id)
    response = await post_run(client, user, {"project_id": project_id, "plan": PARALLEL_PLAN})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] in ("pending", "running", "succeeded")
    assert [s["id"] for s in created["steps"]] == ["read_a", "read_b", "join", "search", "list"]
    run = await wait_run(client, user, created["id"])
    assert run["status"] == "succeeded", run
    assert set(run) == {
        "id", "project_id", "status", "prompt", "intent", "plan", "steps", "error",
        "created_at", "started_at", "finished_at", "metrics", "retry_of", "approval",
    }  # fmt: skip
    steps = {s["id"]: s for s in run["steps"]}
    assert set(steps["join"]) == {
        "id", "tool", "args", "needs", "status", "attempts", "output", "error",
        "started_at", "finished_at", "duration_ms", "reused",
    }  # fmt: skip
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps.values())
    assert steps["read_a"]["output"]["content"] == "alpha"
    assert steps["search"]["output"]["matches"] == [
        {"path": "src/a.txt", "line": 1, "text": "alpha"}
    ]
    assert [f["path"] for f in steps["list"]["output"]["files"]] == ["out/joined.txt"]
    # join started only after both reads finished
    assert steps["join"]["started_at"] >= max(
        steps["read_a"]["finished_at"], steps["read_b"]["finished_at"]
    )
    metrics = run["metrics"]
    assert metrics["steps_total"] == metrics["steps_succeeded"] == 5
    assert metrics["max_parallelism"] >= 2
    assert metrics["wall_ms"] >= metrics["critical_path_ms"] > 0
    joined = await client.get(
        f"/api/projects/{project_id}/files/out/joined.txt", headers=user.headers
    )
    assert joined.content == b"alpha+beta"


async def test_invalid_plans_get_400_naming_the_step(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    cases = [
        ({"steps": [{"id": "a", "tool": "nope", "args": {}}]}, "steps.a.tool"),
        ({"steps": [{"id": "a", "tool": "vfs.read", "args": {"path": 1}}]}, "steps.a.args.path"),
        (
            {
                "steps": [
                    {"id": "a", "tool": "vfs.read", "args": {"path": "x"}, "needs": ["b"]},
                    {"id": "b", "tool": "vfs.read", "args": {"path": "x"}, "needs": ["a"]},
                ]
            },
            "cycle",
        ),
        (
            {
                "steps": [
                    {"id": "a", "tool": "vfs.read", "args": {"path": "x"}},
                    {"id": "b", "tool": "vfs.read", "args": {"path": "{{steps.a.output.content}}"}},
                ]
            },
            "steps.b.args.path",
        ),
    ]
    for plan, key in cases:
        response = await post_run(client, user, {"project_id": project_id, "plan": plan})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_plan"
        assert key in error["details"], error
    response = await post_run(client, user, {"project_id": project_id})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_failed"


async def test_another_user_cannot_read_list_or_cancel(client: httpx.AsyncClient) -> None:
    owner = await register_user(client)
    other = await register_user(client)
    project_id = await create_project(client, owner)
    await seed_files(client, owner, project_id)
    response = await post_run(client, owner, {"project_id": project_id, "plan": PARALLEL_PLAN})
    run_id = response.json()["id"]
    await wait_run(client, owner, run_id)
    got = await client.get(f"/api/workflow/runs/{run_id}", headers=other.headers)
    assert got.status_code == 404
    assert got.json()["error"]["code"] == "not_found"
    cancel = await client.post(f"/api/workflow/runs/{run_id}/cancel", headers=other.headers)
    assert cancel.status_code == 404
    listed = await client.get(
        "/api/workflow/runs", params={"project_id": project_id}, headers=other.headers
    )
    assert listed.status_code == 200
    assert listed.json()["items"] == []
    mine = await client.get(
        "/api/workflow/runs", params={"status": "succeeded"}, headers=owner.headers
    )
    assert [r["id"] for r in mine.json()["items"]] == [run_id]
    submit = await post_run(client, other, {"project_id": project_id, "plan": PARALLEL_PLAN})
    assert submit.status_code == 404
    assert submit.json()["error"]["message"] == "No such project."
    # Another user's project is not found before the plan is judged (as when it was read
    # first; the insert checks it on the way that succeeds).
    bad = {"project_id": project_id, "plan": {"steps": [{"id": "x", "tool": "nope"}]}}
    assert (await post_run(client, other, bad)).status_code == 404
    assert (await post_run(client, owner, bad)).status_code == 400
    finished = await client.post(f"/api/workflow/runs/{run_id}/cancel", headers=owner.headers)
    assert finished.status_code == 409
    assert finished.json()["error"]["code"] == "run_finished"


async def test_cancel_through_the_api(server: RunningServer, client: httpx.AsyncClient) -> None:
    log = ToolLog()
    for tool in tool_doubles(log):
        server.services.tools.register(tool)
    user = await register_user(client)
    project_id = await create_project(client, user)
    plan = {
        "steps": [{"id": f"s{i}", "tool": "t.sleep", "args": {"seconds": 60}} for i in range(3)]
    }
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    run_id = response.json()["id"]
    with trio.fail_after(10):
        while len(log.started) < 3:  # noqa: ASYNC110 - the tool doubles report by list
            await trio.sleep(0.01)
    cancel = await client.post(f"/api/workflow/runs/{run_id}/cancel", headers=user.headers)
    assert cancel.status_code == 202
    run = cancel.json()
    assert run["status"] == "cancelled"
    assert {s["status"] for s in run["steps"]} == {"cancelled"}
    assert sorted(log.cancelled) == ["s0", "s1", "s2"]


async def test_idempotency_key_and_tool_catalog(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    await seed_files(client, user, project_id)
    body = {"project_id": project_id, "plan": PARALLEL_PLAN}
    first = await post_run(client, user, body, **{"Idempotency-Key": "abc"})
    again = await post_run(client, user, body, **{"Idempotency-Key": "abc"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    await wait_run(client, user, first.json()["id"])
    tools = await client.get("/api/workflow/tools", headers=user.headers)
    names = {t["name"] for t in tools.json()["items"]}
    assert {"vfs.read", "vfs.write", "vfs.list", "vfs.delete", "vfs.move", "vfs.search"} <= names
    assert (await client.get("/api/workflow/tools")).status_code == 401


async def test_runs_survive_a_restart(start_server: StartServer) -> None:
    import httpx

    first = await start_server()
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        user = await register_user(client)
        project_id = await create_project(client, user)
        await seed_files(client, user, project_id)
        response = await post_run(client, user, {"project_id": project_id, "plan": PARALLEL_PLAN})
        before = await wait_run(client, user, response.json()["id"])
    await first.stop()
    second = await start_server()
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        after = await client.get(f"/api/workflow/runs/{before['id']}", headers=user.headers)
        assert after.status_code == 200
        assert after.json() == before
