"""File history through a real socket and SSE, on both databases: versions, reading one,
restoring one, retention (count, age, quota), a run's revert and its conflict, and
another user's access (404)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema

from server.api.schemas import RESPONSE_SCHEMAS, ref
from tests.api.test_health_and_errors import assert_error
from tests.events.sse_client import open_stream
from tests.fixtures.server import AuthedUser, create_project, register_user
from tests.workflow.test_api import post_run, wait_run

if TYPE_CHECKING:
    from tests.events.sse_client import SSEStream
    from tests.fixtures.server import StartServer


def assert_version_page(body: Any) -> None:
    """The contract checker cannot tell a version page from a file's JSON bytes (both are
    ``application/json`` on one operation): check the schema here."""
    schema = {"$defs": RESPONSE_SCHEMAS, **ref("FileVersionPage")}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    jsonschema.validate(body, json.loads(text))


async def setup(client: httpx.AsyncClient) -> tuple[AuthedUser, str]:
    user = await register_user(client)
    return user, await create_project(client, user)


async def put(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str, text: str) -> Any:
    response = await client.put(
        f"/api/projects/{pid}/files/{path}", content=text.encode(), headers=user.headers
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def versions(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str) -> Any:
    response = await client.get(
        f"/api/projects/{pid}/files/{path}", params={"versions": ""}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_version_page(body)
    return body["items"]


async def file_events(stream: SSEStream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` file.* events' data (run and step events are passed over)."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = await stream.next()
        if message.event.startswith("file."):
            out.append({"event": message.event, **json.loads(message.data)})
    return out


async def test_versions_read_and_restore(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    url = f"/api/projects/{pid}/files/notes/a.txt"
    await put(client, user, pid, "notes/a.txt", "one")
    await put(client, user, pid, "notes/a.txt", "two")
    items = await versions(client, user, pid, "notes/a.txt")
    assert [(v["version"], v["size"], v["deleted"], v["run_id"]) for v in items] == [
        (2, 3, False, None),
        (1, 3, False, None),
    ]
    old = await client.get(url, params={"version": "1"}, headers=user.headers)
    assert (old.status_code, old.content, old.headers["etag"]) == (200, b"one", '"1"')

    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        restored = await client.post(f"{url}/restore", json={"version": 1}, headers=user.headers)
        assert restored.status_code == 200, restored.text
        assert (restored.json()["version"], restored.headers["etag"]) == (3, '"3"')
        [event] = await file_events(stream, 1)
        assert (event["event"], event["path"], event["version"]) == (
            "file.changed",
            "notes/a.txt",
            3,
        )
        assert "run_id" not in event
    assert (await client.get(url, headers=user.headers)).content == b"one"

    # a delete is kept as a version too; a deleted file can be restored
    assert (await client.delete(url, headers=user.headers)).status_code == 204
    items = await versions(client, user, pid, "notes/a.txt")
    assert [(v["version"], v["deleted"]) for v in items] == [
        (4, True),
        (3, False),
        (2, False),
        (1, False),
    ]
    assert_error(
        await client.get(url, params={"version": "4"}, headers=user.headers), 404, "not_found"
    )
    again = await client.post(f"{url}/restore", json={"version": 2}, headers=user.headers)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 5
    assert (await client.get(url, headers=user.headers)).content == b"two"
    recreated = await put(client, user, pid, "notes/a.txt", "six")
    assert recreated["version"] == 6  # numbering goes on across a delete

    # paging, newest first
    first = await client.get(url, params={"versions": "", "limit": "2"}, headers=user.headers)
    page = first.json()
    assert [v["version"] for v in page["items"]] == [6, 5]
    second = await client.get(
        url, params={"versions": "", "limit": "2", "cursor": page["next_cursor"]},
        headers=user.headers,
    )  # fmt: skip
    assert [v["version"] for v in second.json()["items"]] == [4, 3]

    # bad input
    for bad in ("0", "x", "-1"):
        response = await client.get(url, params={"version": bad}, headers=user.headers)
        assert_error(response, 400, "validation_failed")
    assert_error(
        await client.get(url, params={"version": "99"}, headers=user.headers), 404, "not_found"
    )
    for body in ({"version": 0}, {"version": "1"}, {}, {"version": 1, "x": 1}):
        response = await client.post(f"{url}/restore", json=body, headers=user.headers)
        assert_error(response, 400, "validation_failed")
    response = await client.post(f"{url}/restore", json={"version": 99}, headers=user.headers)
    assert_error(response, 404, "not_found")
    response = await client.get(
        f"/api/projects/{pid}/files/a//b", params={"versions": ""}, headers=user.headers
    )
    assert_error(response, 400, "invalid_path")
    assert await versions(client, user, pid, "never/was.txt") == []


async def test_retention_by_count_age_and_quota(start_server: StartServer) -> None:
    server = await start_server(file_history_versions=3)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        for i in range(5):
            await put(client, user, pid, "a.txt", f"v{i + 1}")
        assert [v["version"] for v in await versions(client, user, pid, "a.txt")] == [5, 4, 3]
        url = f"/api/projects/{pid}/files/a.txt"
        assert_error(
            await client.get(url, params={"version": "2"}, headers=user.headers), 404, "not_found"
        )
        assert (
            await client.get(url, params={"version": "3"}, headers=user.headers)
        ).content == b"v3"

    server = await start_server(file_history_days=1e-9)  # every older version is too old
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        for i in range(3):
            await put(client, user, pid, "a.txt", f"v{i + 1}")
        assert [v["version"] for v in await versions(client, user, pid, "a.txt")] == [3]

    server = await start_server(max_project_bytes=10)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        await put(client, user, pid, "a.txt", "12345")
        response = await client.put(
            f"/api/projects/{pid}/files/a.txt", content=b"123456", headers=user.headers
        )  # 5 kept + 6 new > 10: old versions count against the quota
        assert_error(response, 413, "too_large")
        assert response.json()["error"]["details"]["total"] == 11
        current = await client.get(f"/api/projects/{pid}/files/a.txt", headers=user.headers)
        assert current.content == b"12345"


RUN_PLAN = {
    "steps": [
        {"id": "edit", "tool": "vfs.write", "args": {"path": "a.txt", "content": "changed"}},
        {"id": "add", "tool": "vfs.write", "args": {"path": "new.txt", "content": "new"}},
        {"id": "drop", "tool": "vfs.delete", "args": {"path": "b.txt"}},
        {"id": "move", "tool": "vfs.move", "args": {"from": "c.txt", "to": "d.txt"}},
        {
            "id": "again",
            "tool": "vfs.write",
            "args": {"path": "a.txt", "content": "changed twice"},
            "needs": ["edit"],
        },
    ]
}


async def run_plan(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> str:
    for path, text in (("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")):
        await put(client, user, pid, path, text)
    response = await post_run(client, user, {"project_id": pid, "plan": RUN_PLAN})
    assert response.status_code == 202, response.text
    run = await wait_run(client, user, response.json()["id"])
    assert run["status"] == "succeeded", run
    return str(run["id"])


async def read(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str) -> bytes | None:
    response = await client.get(f"/api/projects/{pid}/files/{path}", headers=user.headers)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.content


async def test_revert_undoes_every_change_of_a_run(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        run_id = await run_plan(client, user, pid)
        events = await file_events(stream, 3 + 5)  # the seeds, then the run's five writes
        assert all("run_id" not in e for e in events[:3])
        assert {e["run_id"] for e in events[3:]} == {run_id}
        items = await versions(client, user, pid, "a.txt")
        assert [(v["version"], v["run_id"]) for v in items] == [(3, run_id), (2, run_id), (1, None)]

        response = await client.post(f"/api/workflow/runs/{run_id}/revert", headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "run_id": run_id,
            "paths": ["a.txt", "b.txt", "c.txt", "d.txt", "new.txt"],
        }
        reverted = await file_events(stream, 5)
        assert sorted((e["event"], e["path"]) for e in reverted) == [
            ("file.changed", "a.txt"),
            ("file.changed", "b.txt"),
            ("file.changed", "c.txt"),
            ("file.deleted", "d.txt"),
            ("file.deleted", "new.txt"),
        ]
    assert await read(client, user, pid, "a.txt") == b"alpha"
    assert await read(client, user, pid, "b.txt") == b"beta"
    assert await read(client, user, pid, "c.txt") == b"gamma"
    assert await read(client, user, pid, "d.txt") is None
    assert await read(client, user, pid, "new.txt") is None
    # the revert is history too: the run's version can be restored
    items = await versions(client, user, pid, "a.txt")
    assert [(v["version"], v["run_id"]) for v in items][:2] == [(4, None), (3, run_id)]

    # a second revert finds the run's files changed since (by the revert itself)
    again = await client.post(f"/api/workflow/runs/{run_id}/revert", headers=user.headers)
    assert_error(again, 409, "conflict")
    assert again.json()["error"]["details"]["paths"] == [
        "a.txt", "b.txt", "c.txt", "d.txt", "new.txt",
    ]  # fmt: skip


async def test_revert_after_a_later_edit_is_a_conflict(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    run_id = await run_plan(client, user, pid)
    await put(client, user, pid, "new.txt", "edited by a person")
    response = await client.post(f"/api/workflow/runs/{run_id}/revert", headers=user.headers)
    assert_error(response, 409, "conflict")
    assert response.json()["error"]["details"]["paths"] == ["new.txt"]
    # nothing was applied
    assert await read(client, user, pid, "a.txt") == b"changed twice"
    assert await read(client, user, pid, "b.txt") is None
    assert await read(client, user, pid, "d.txt") == b"gamma"
    assert await read(client, user, pid, "new.txt") == b"edited by a person"


async def test_revert_of_a_run_that_wrote_nothing(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    await put(client, user, pid, "a.txt", "alpha")
    plan = {"steps": [{"id": "r", "tool": "vfs.read", "args": {"path": "a.txt"}}]}
    response = await post_run(client, user, {"project_id": pid, "plan": plan})
    run = await wait_run(client, user, response.json()["id"])
    reverted = await client.post(f"/api/workflow/runs/{run['id']}/revert", headers=user.headers)
    assert reverted.status_code == 200, reverted.text
    assert reverted.json() == {"run_id": run["id"], "paths": []}


async def test_another_users_history_and_runs_are_not_found(client: httpx.AsyncClient) -> None:
    owner, pid = await setup(client)
    run_id = await run_plan(client, owner, pid)
    other = await register_user(client)
    url = f"/api/projects/{pid}/files/a.txt"
    for params in ({"versions": ""}, {"version": "1"}):
        assert_error(await client.get(url, params=params, headers=other.headers), 404, "not_found")
    response = await client.post(f"{url}/restore", json={"version": 1}, headers=other.headers)
    assert_error(response, 404, "not_found")
    response = await client.post(f"/api/workflow/runs/{run_id}/revert", headers=other.headers)
    assert_error(response, 404, "not_found")
    response = await client.post("/api/workflow/runs/nope/revert", headers=owner.headers)
    assert_error(response, 404, "not_found")
    assert (await client.post(f"{url}/restore", json={"version": 1})).status_code == 401
    # nothing changed for the owner
    assert await read(client, owner, pid, "a.txt") == b"changed twice"


async def test_revert_when_the_state_before_the_run_is_gone(start_server: StartServer) -> None:
    server = await start_server(file_history_versions=2)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        run_id = await run_plan(client, user, pid)  # a.txt: v1 seed, v2 and v3 by the run
        assert [v["version"] for v in await versions(client, user, pid, "a.txt")] == [3, 2]
        response = await client.post(f"/api/workflow/runs/{run_id}/revert", headers=user.headers)
        assert_error(response, 409, "conflict")
        assert response.json()["error"]["details"]["paths"] == ["a.txt"]
        assert await read(client, user, pid, "a.txt") == b"changed twice"
        assert await read(client, user, pid, "new.txt") == b"new"  # nothing applied
