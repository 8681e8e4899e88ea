"""Review before changes land (``options.changes = "review"``), through the real server
and SSE, on SQLite and PostgreSQL: staging, steps reading their own staged writes, the
``awaiting_review`` state across a restart, the listing with diffs, apply (all, some, the
conflict), discard, and another user's access (404)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.api.test_health_and_errors import assert_error
from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user
from tests.workflow.test_api import post_run

if TYPE_CHECKING:
    from tests.events.sse_client import SSEStream
    from tests.fixtures.server import AuthedUser, StartServer

SETTLED = {"awaiting_review", "succeeded", "failed", "cancelled"}

REVIEW_PLAN = {
    "steps": [
        {"id": "edit", "tool": "vfs.write", "args": {"path": "a.txt", "content": "alpha\nmore\n"}},
        {"id": "reread", "tool": "vfs.read", "args": {"path": "a.txt"}, "needs": ["edit"]},
        {"id": "add", "tool": "vfs.write", "args": {"path": "new.txt", "content": "new\n"}},
        {"id": "drop", "tool": "vfs.delete", "args": {"path": "b.txt"}},
        {"id": "move", "tool": "vfs.move", "args": {"from": "c.txt", "to": "d.txt"}},
        {"id": "list", "tool": "vfs.list", "args": {}, "needs": ["edit", "add", "drop", "move"]},
    ]
}


async def wait_settled(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in SETTLED:
                return body
            await trio.sleep(0.02)


async def put(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str, text: str) -> None:
    response = await client.put(
        f"/api/projects/{pid}/files/{path}", content=text.encode(), headers=user.headers
    )
    assert response.status_code in (200, 201), response.text


async def read(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str) -> bytes | None:
    response = await client.get(f"/api/projects/{pid}/files/{path}", headers=user.headers)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.content


async def seeded(client: httpx.AsyncClient) -> tuple[AuthedUser, str]:
    user = await register_user(client)
    pid = await create_project(client, user)
    for path, text in (("a.txt", "alpha\n"), ("b.txt", "beta\n"), ("c.txt", "gamma\n")):
        await put(client, user, pid, path, text)
    return user, pid


async def review_run(
    client: httpx.AsyncClient, user: AuthedUser, pid: str, plan: dict[str, Any] = REVIEW_PLAN
) -> dict[str, Any]:
    body = {"project_id": pid, "plan": plan, "options": {"changes": "review"}}
    response = await post_run(client, user, body)
    assert response.status_code == 202, response.text
    run = await wait_settled(client, user, response.json()["id"])
    assert run["status"] == "awaiting_review", run
    return run


async def events_until(stream: SSEStream, last_type: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not out or out[-1]["type"] != last_type:
        message = await stream.next()
        out.append(json.loads(message.data))
    return out


async def changes(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> list[Any]:
    response = await client.get(f"/api/workflow/runs/{run_id}/changes", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_review_stages_lists_and_applies_everything(client: httpx.AsyncClient) -> None:
    user, pid = await seeded(client)
    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        run = await review_run(client, user, pid)
        during = await events_until(stream, "run.awaiting_review")
        assert not [e for e in during if e["type"].startswith("file.")]  # nothing landed
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["reread"]["output"]["content"] == "alpha\nmore\n"  # its own staged write
        listed = [item["path"] for item in steps["list"]["output"]["files"]]
        assert listed == ["a.txt", "d.txt", "new.txt"]
        for path, text in (("a.txt", b"alpha\n"), ("b.txt", b"beta\n"), ("c.txt", b"gamma\n")):
            assert await read(client, user, pid, path) == text
        assert await read(client, user, pid, "new.txt") is None

        items = {c["path"]: c for c in await changes(client, user, run["id"])}
        assert {p: c["kind"] for p, c in items.items()} == {
            "a.txt": "modify", "b.txt": "delete", "d.txt": "move", "new.txt": "create",
        }  # fmt: skip
        a = items["a.txt"]
        assert (a["base_version"], a["size_before"], a["size_after"]) == (1, 6, 11)
        assert a["diff"].startswith("--- a/a.txt\n+++ b/a.txt\n")
        assert "+more\n" in a["diff"]
        assert (a["binary"], a["diff_truncated"]) == (False, False)
        assert items["d.txt"]["from"] == "c.txt"
        assert items["b.txt"]["size_after"] is None
        assert "+new\n" in items["new.txt"]["diff"]

        applied = await client.post(f"/api/workflow/runs/{run['id']}/apply", headers=user.headers)
        assert applied.status_code == 200, applied.text
        body = applied.json()
        assert (body["remaining"], body["run"]["status"]) == (0, "succeeded")
        assert sorted(body["applied"]) == ["a.txt", "b.txt", "c.txt", "d.txt", "new.txt"]
        after = await events_until(stream, "run.succeeded")
        files = [e for e in after if e["type"].startswith("file.")]
        assert len(files) == 5
        assert {e["run_id"] for e in files} == {run["id"]}
    assert await read(client, user, pid, "a.txt") == b"alpha\nmore\n"
    assert await read(client, user, pid, "b.txt") is None
    assert await read(client, user, pid, "c.txt") is None
    assert await read(client, user, pid, "d.txt") == b"gamma\n"
    assert await read(client, user, pid, "new.txt") == b"new\n"
    assert await changes(client, user, run["id"]) == []
    again = await client.post(f"/api/workflow/runs/{run['id']}/apply", headers=user.headers)
    assert_error(again, 409, "conflict")
    # an applied review run can be reverted like any other
    reverted = await client.post(f"/api/workflow/runs/{run['id']}/revert", headers=user.headers)
    assert reverted.status_code == 200, reverted.text
    assert await read(client, user, pid, "c.txt") == b"gamma\n"
    assert await read(client, user, pid, "new.txt") is None


async def test_conflict_partial_apply_and_discard(client: httpx.AsyncClient) -> None:
    user, pid = await seeded(client)
    plan = {
        "steps": [
            {"id": "edit", "tool": "vfs.write", "args": {"path": "a.txt", "content": "run\n"}},
            {"id": "add", "tool": "vfs.write", "args": {"path": "new.txt", "content": "new\n"}},
        ]
    }
    run = await review_run(client, user, pid, plan)
    url = f"/api/workflow/runs/{run['id']}"
    await put(client, user, pid, "a.txt", "edited by a person\n")

    conflict = await client.post(f"{url}/apply", headers=user.headers)
    assert_error(conflict, 409, "conflict")
    assert conflict.json()["error"]["details"]["paths"] == ["a.txt"]
    assert await read(client, user, pid, "new.txt") is None  # nothing applied

    bad = await client.post(f"{url}/apply", json={"paths": ["nope.txt"]}, headers=user.headers)
    assert_error(bad, 400, "validation_failed")
    bodies: list[dict[str, Any]] = [{"paths": []}, {"paths": "a.txt"}, {"other": 1}]
    for body in bodies:
        response = await client.post(f"{url}/apply", json=body, headers=user.headers)
        assert_error(response, 400, "validation_failed")

    some = await client.post(f"{url}/apply", json={"paths": ["new.txt"]}, headers=user.headers)
    assert some.status_code == 200, some.text
    assert (some.json()["applied"], some.json()["remaining"]) == (["new.txt"], 1)
    assert some.json()["run"]["status"] == "awaiting_review"
    assert await read(client, user, pid, "new.txt") == b"new\n"
    assert [c["path"] for c in await changes(client, user, run["id"])] == ["a.txt"]

    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        discarded = await client.post(f"{url}/discard", headers=user.headers)
        assert discarded.status_code == 200, discarded.text
        assert discarded.json()["status"] == "cancelled"
        [event] = await events_until(stream, "run.cancelled")
        assert event["reason"] == "discarded"
    assert await changes(client, user, run["id"]) == []
    assert await read(client, user, pid, "a.txt") == b"edited by a person\n"
    assert_error(await client.post(f"{url}/discard", headers=user.headers), 409, "conflict")
    assert_error(await client.post(f"{url}/apply", headers=user.headers), 409, "conflict")


async def test_awaiting_review_survives_a_restart(start_server: StartServer) -> None:
    server = await start_server()
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await seeded(client)
        run = await review_run(client, user, pid)
    await server.stop()
    again = await start_server()
    async with httpx.AsyncClient(base_url=again.url) as client:
        response = await client.get(f"/api/workflow/runs/{run['id']}", headers=user.headers)
        assert response.json()["status"] == "awaiting_review"
        assert len(await changes(client, user, run["id"])) == 4
        applied = await client.post(f"/api/workflow/runs/{run['id']}/apply", headers=user.headers)
        assert applied.status_code == 200, applied.text
        assert applied.json()["run"]["status"] == "succeeded"
        assert await read(client, user, pid, "d.txt") == b"gamma\n"


async def test_options_direct_runs_and_other_users(client: httpx.AsyncClient) -> None:
    user, pid = await seeded(client)
    bad = await post_run(
        client, user, {"project_id": pid, "plan": REVIEW_PLAN, "options": {"changes": "later"}}
    )
    assert_error(bad, 400, "validation_failed")
    assert "options.changes" in bad.json()["error"]["details"]

    run = await review_run(client, user, pid)
    other = await register_user(client)
    for method, suffix in (("GET", "changes"), ("POST", "apply"), ("POST", "discard")):
        response = await client.request(
            method, f"/api/workflow/runs/{run['id']}/{suffix}", headers=other.headers
        )
        assert_error(response, 404, "not_found")
        response = await client.request(
            method, f"/api/workflow/runs/nope/{suffix}", headers=user.headers
        )
        assert_error(response, 404, "not_found")
    assert len(await changes(client, user, run["id"])) == 4  # untouched by the other user

    direct = await post_run(
        client, user, {"project_id": pid, "plan": {"steps": [REVIEW_PLAN["steps"][2]]}}
    )
    finished = await wait_settled(client, user, direct.json()["id"])
    assert finished["status"] == "succeeded"
    assert await changes(client, user, finished["id"]) == []
    response = await client.post(f"/api/workflow/runs/{finished['id']}/apply", headers=user.headers)
    assert_error(response, 409, "conflict")
    # a run awaiting review cannot be reverted yet
    response = await client.post(f"/api/workflow/runs/{run['id']}/revert", headers=user.headers)
    assert_error(response, 409, "conflict")


async def test_ai_edit_is_staged_and_the_changeset_is_bounded(start_server: StartServer) -> None:
    server = await start_server(max_project_bytes=64)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await seeded(client)
        plan = {
            "steps": [
                {"id": "w", "tool": "vfs.write", "args": {"path": "a.txt", "content": "colour\n"}},
                {
                    "id": "edit",
                    "tool": "ai.edit",
                    "args": {"path": "a.txt", "instruction": 'replace "colour" with "color"'},
                    "needs": ["w"],  # ai.edit reads the run's own staged write
                },
            ]
        }
        run = await review_run(client, user, pid, plan)
        assert await read(client, user, pid, "a.txt") == b"alpha\n"
        [change] = await changes(client, user, run["id"])
        assert (change["path"], change["kind"]) == ("a.txt", "modify")
        assert "-alpha\n+color\n" in change["diff"]

        # a changeset is bounded like the project it would land in (64 bytes here)
        write = {"path": "big.txt", "content": "x" * 70}
        big = {"steps": [{"id": "w", "tool": "vfs.write", "args": write}]}
        response = await post_run(
            client, user, {"project_id": pid, "plan": big, "options": {"changes": "review"}}
        )
        failed = await wait_settled(client, user, response.json()["id"])
        assert failed["status"] == "failed"
        assert failed["steps"][0]["error"]["code"] == "too_large"
        assert await changes(client, user, failed["id"]) == []


async def test_two_racing_discards_one_wins(client: httpx.AsyncClient) -> None:
    user, pid = await seeded(client)
    run = await review_run(client, user, pid)
    statuses: list[int] = []

    async def discard() -> None:
        response = await client.post(
            f"/api/workflow/runs/{run['id']}/discard", headers=user.headers
        )
        statuses.append(response.status_code)
        if response.status_code == 409:
            assert_error(response, 409, "conflict")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(discard)
        nursery.start_soon(discard)
    assert sorted(statuses) == [200, 409]
    response = await client.get(f"/api/workflow/runs/{run['id']}", headers=user.headers)
    assert response.json()["status"] == "cancelled"
