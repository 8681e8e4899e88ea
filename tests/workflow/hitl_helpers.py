"""Shared by the approval and retry tests: HTTP and SSE helpers over a real server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio

from tests.events.sse_client import open_stream

if TYPE_CHECKING:
    from collections.abc import Container

    import httpx

    from tests.fixtures.server import AuthedUser

FINISHED = {"succeeded", "failed", "cancelled"}
HANG_GUARD_S = 20  # fails a hung test; never a timing assertion


async def get_run(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_status(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, statuses: Container[str]
) -> dict[str, Any]:
    with trio.fail_after(HANG_GUARD_S):
        while True:
            run = await get_run(client, user, run_id)
            if run["status"] in statuses:
                return run
            await trio.sleep(0.02)


async def submit(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/workflow/runs", json={"project_id": project_id, **body}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def run_events(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, run_id: str, last: str
) -> list[tuple[str, dict[str, Any]]]:
    """The run's retained events from the start of the log (replayed), up to the first
    ``last`` event."""
    params = {"run_id": run_id, "last_event_id": "0"}
    events: list[tuple[str, dict[str, Any]]] = []
    async with open_stream(client, project_id, user.headers, params) as stream:
        while True:
            message = await stream.next()
            events.append((message.event, json.loads(message.data)))
            if message.event == last:
                return events


def kinds(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in events]


async def put_file(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, path: str, text: str
) -> None:
    response = await client.put(
        f"/api/projects/{project_id}/files/{path}", content=text.encode(), headers=user.headers
    )
    assert response.status_code in (200, 201), response.text


async def read_file(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, path: str
) -> httpx.Response:
    return await client.get(f"/api/projects/{project_id}/files/{path}", headers=user.headers)


async def whole_log(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """Every retained event of the project so far: a marker file is written, and the log is
    replayed up to its ``file.changed``."""
    await put_file(client, user, project_id, "zz-marker.txt", "end")
    events: list[tuple[str, dict[str, Any]]] = []
    params = {"last_event_id": "0"}
    async with open_stream(client, project_id, user.headers, params) as stream:
        while True:
            message = await stream.next()
            data = json.loads(message.data)
            if message.event == "file.changed" and data["path"] == "zz-marker.txt":
                return events
            events.append((message.event, data))
