"""Issue 12 item 7: per-user limits, through a real socket, on both databases.

Projects, bytes and unfinished runs per user are counted by the store in the writing
transaction (so concurrent requests cannot overshoot); SSE streams per user in process.
Past a limit: 429 ``rate_limited`` with ``Retry-After`` (bytes: 413 ``too_large``, like the
project quota); other users are never affected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.events.sse_client import connect, open_stream, read_head
from tests.fixtures.server import create_project, register_user
from tests.workflow.test_api import post_run, wait_run

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.fixtures.server import AuthedUser, RunningServer, StartServer

GUARD_S = 20  # fails a hung test; never a timing assertion


async def wait_until(done: Callable[[], bool]) -> None:
    """Poll the server's state (it runs in this test's trio loop) until ``done``."""
    with trio.fail_after(GUARD_S):
        while True:
            if done():
                return
            await trio.sleep(0.01)


def assert_rate_limited(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == limit
    assert error["message"]


async def test_projects_per_user(start_server: StartServer) -> None:
    server = await start_server(max_projects_per_user=3)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, other = await register_user(client), await register_user(client)
        ids = [await create_project(client, user, f"p{i}") for i in range(3)]
        refused = await client.post("/api/projects", json={"name": "p4"}, headers=user.headers)
        assert_rate_limited(refused, "max_projects_per_user")
        await create_project(client, other)  # another user is not affected
        listed = await client.get("/api/projects", headers=user.headers)
        assert len(listed.json()["items"]) == 3
        deleted = await client.delete(f"/api/projects/{ids[0]}", headers=user.headers)
        assert deleted.status_code == 204
        await create_project(client, user, "again")  # room again


async def test_concurrent_project_creation_cannot_overshoot(start_server: StartServer) -> None:
    server = await start_server(max_projects_per_user=3)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        statuses: list[int] = []

        async def create(i: int) -> None:
            response = await client.post(
                "/api/projects", json={"name": f"p{i}"}, headers=user.headers
            )
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(create, i)
        assert sorted(statuses) == [201] * 3 + [429] * 9
        listed = await client.get("/api/projects", headers=user.headers)
        assert len(listed.json()["items"]) == 3


async def _put(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, path: str, size: int
) -> httpx.Response:
    return await client.put(
        f"/api/projects/{project_id}/files/{path}", content=b"x" * size, headers=user.headers
    )


async def _stored_bytes(client: httpx.AsyncClient, user: AuthedUser, projects: list[str]) -> int:
    total = 0
    for project_id in projects:
        listed = await client.get(f"/api/projects/{project_id}/files", headers=user.headers)
        total += sum(item["size"] for item in listed.json()["items"])
    return total


async def test_bytes_per_user_across_projects(start_server: StartServer) -> None:
    server = await start_server(max_bytes_per_user=1000, max_project_bytes=10_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, other = await register_user(client), await register_user(client)
        first, second = await create_project(client, user, "a"), await create_project(client, user)
        assert (await _put(client, user, first, "a.bin", 600)).status_code == 201
        refused = await _put(client, user, second, "b.bin", 500)
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert error["code"] == "too_large"
        assert error["details"] == {"limit": "max_bytes_per_user", "max": 1000, "total": 1100}
        assert (await _put(client, user, second, "b.bin", 400)).status_code == 201  # exactly
        assert (await _put(client, user, first, "a.bin", 100)).status_code == 200  # shrinks
        assert (await _put(client, user, second, "c.bin", 500)).status_code == 201
        assert await _stored_bytes(client, user, [first, second]) == 1000
        mine = await create_project(client, other)
        assert (await _put(client, other, mine, "o.bin", 1000)).status_code == 201


async def test_concurrent_writes_cannot_overshoot_the_user_total(
    start_server: StartServer,
) -> None:
    server = await start_server(max_bytes_per_user=1000, max_project_bytes=10_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        projects = [await create_project(client, user, f"p{i}") for i in range(3)]
        statuses: list[int] = []

        async def put(i: int) -> None:
            response = await _put(client, user, projects[i % 3], f"f{i}.bin", 300)
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(put, i)
        assert sorted(statuses) == [201] * 3 + [413] * 9
        assert await _stored_bytes(client, user, projects) == 900


SLOW_PLAN = {"steps": [{"id": "gen", "tool": "ai.generate", "args": {"prompt": "hello"}}]}


async def test_runs_in_flight_per_user(start_server: StartServer) -> None:
    # Model calls take 60 s: the runs stay in flight until they are cancelled.
    server = await start_server(max_runs_per_user=2, offline_latency_ms=60_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, other = await register_user(client), await register_user(client)
        project_id = await create_project(client, user)
        body: dict[str, Any] = {"project_id": project_id, "plan": SLOW_PLAN}
        runs = []
        for _ in range(2):
            response = await post_run(client, user, body)
            assert response.status_code == 202, response.text
            runs.append(response.json()["id"])
        assert_rate_limited(await post_run(client, user, body), "max_runs_per_user")
        theirs = await post_run(
            client, other, {**body, "project_id": await create_project(client, other)}
        )
        assert theirs.status_code == 202, theirs.text  # another user is not affected
        cancelled = await client.post(f"/api/workflow/runs/{runs[0]}/cancel", headers=user.headers)
        assert cancelled.status_code == 202
        assert (await wait_run(client, user, runs[0]))["status"] == "cancelled"
        again = await post_run(client, user, body)
        assert again.status_code == 202, again.text  # an ended run frees its place
        for run_id in (runs[1], again.json()["id"]):
            await client.post(f"/api/workflow/runs/{run_id}/cancel", headers=user.headers)
        await client.post(f"/api/workflow/runs/{theirs.json()['id']}/cancel", headers=other.headers)


async def test_concurrent_submissions_cannot_overshoot_and_retries_get_their_run(
    start_server: StartServer,
) -> None:
    server = await start_server(max_runs_per_user=2, offline_latency_ms=60_000)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        project_id = await create_project(client, user)
        body: dict[str, Any] = {"project_id": project_id, "plan": SLOW_PLAN}
        accepted: list[str] = []
        refused = 0

        async def submit(i: int) -> None:
            nonlocal refused
            response = await post_run(client, user, body, **{"Idempotency-Key": f"k{i}"})
            if response.status_code == 202:
                accepted.append(response.json()["id"])
            else:
                assert_rate_limited(response, "max_runs_per_user")
                refused += 1

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(submit, i)
        assert (len(accepted), refused) == (2, 8)
        # At the limit, a retried submission (same Idempotency-Key) still gets its run.
        runs = await client.get("/api/workflow/runs", headers=user.headers)
        keyed = {run["id"] for run in runs.json()["items"]}
        assert keyed == set(accepted)
        for i in range(10):
            retry = await post_run(client, user, body, **{"Idempotency-Key": f"k{i}"})
            if retry.status_code == 202:
                assert retry.json()["id"] in accepted
            else:
                assert_rate_limited(retry, "max_runs_per_user")
        for run_id in accepted:
            await client.post(f"/api/workflow/runs/{run_id}/cancel", headers=user.headers)


async def _stream_status(server: RunningServer, user: AuthedUser, project_id: str) -> int:
    stream = await connect(server.url, f"/api/sse/projects/{project_id}", user.headers)
    try:
        status, _headers, _rest = await read_head(stream)
    finally:
        await stream.aclose()
    return status


async def test_streams_per_user(start_server: StartServer) -> None:
    server = await start_server(max_streams_per_user=2)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, other = await register_user(client), await register_user(client)
        project_id = await create_project(client, user)
        counter = server.services.user_streams
        async with open_stream(client, project_id, user.headers):
            async with open_stream(client, project_id, user.headers):
                assert counter.held(user.user_id) == 2
                response = await client.get(f"/api/sse/projects/{project_id}", headers=user.headers)
                assert_rate_limited(response, "max_streams_per_user")
                theirs = await create_project(client, other)
                async with open_stream(client, theirs, other.headers):
                    pass  # another user is not affected
            # The closed stream's place comes back once the server saw the client leave.
            await wait_until(lambda: counter.held(user.user_id) == 1)
            async with open_stream(client, project_id, user.headers):
                assert counter.held(user.user_id) == 2
        await wait_until(lambda: not counter.held(user.user_id) and not counter.held(other.user_id))


async def test_a_refused_or_failed_stream_holds_no_place(start_server: StartServer) -> None:
    server = await start_server(max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        project_id = await create_project(client, user)
        for _ in range(3):  # 404s (another user's or no project) take no place
            assert await _stream_status(server, user, "no-such-project") == 404
        async with open_stream(client, project_id, user.headers):
            for _ in range(3):
                assert await _stream_status(server, user, project_id) == 429
        await wait_until(lambda: not server.services.user_streams.held(user.user_id))
        async with open_stream(client, project_id, user.headers):
            pass
