"""``/api/ready`` and reads through a real server socket while PostgreSQL is frozen (SIGSTOP).

They answer 503 ``not_ready`` with ``Retry-After`` once the database deadline passes (not
after the driver's own timeouts), the message names neither the database address nor
the driver, and readiness comes back after SIGCONT. A stream (re)connect meanwhile gets 200
with ``retry:`` and an ended stream (a 503 would make an EventSource give up for good).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from server.runtime.serve import Running, serve
from server.services import Lifecycle
from tests.fixtures import server as server_fixtures
from tests.fixtures.postgres import BackendConfig
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import LocalCluster

pytestmark = pytest.mark.postgres

TIMEOUT_S = 1.0
RUNS = "/api/workflow/runs"
WRITE_PLAN = {"steps": [{"id": "w", "tool": "vfs.write", "args": {"path": "a", "content": "a"}}]}


async def finished_run(client: httpx.AsyncClient, headers: dict[str, str], project_id: str) -> str:
    body = {"project_id": project_id, "plan": WRITE_PLAN}
    response = await client.post(RUNS, json=body, headers=headers)
    assert response.status_code == 202, response.text
    run_id = str(response.json()["id"])
    with trio.fail_after(30):  # hang guard
        while True:
            run = (await client.get(f"{RUNS}/{run_id}", headers=headers)).json()
            if run["status"] in ("succeeded", "failed"):
                return run_id
            await trio.sleep(0.05)


async def assert_streams_come_back_later(
    client: httpx.AsyncClient, headers: dict[str, str], project_id: str, ticket: str
) -> None:
    """Bearer and ticket (re)connects of a stream while the database cannot answer."""
    attempts = [
        ({"last_event_id": "0"}, headers),
        ({"ticket": ticket}, {"Last-Event-ID": "3"}),  # the ticket's session is checked
    ]
    for params, request_headers in attempts:
        with trio.fail_after(TIMEOUT_S + 4):
            response = await client.get(
                f"/api/sse/projects/{project_id}", params=params, headers=request_headers
            )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.text == "retry: 1000\n\n: database unavailable\n\n"


async def test_ready_answers_503_while_frozen(
    dedicated_cluster: tuple[LocalCluster, str], tmp_path: Path, nursery: trio.Nursery
) -> None:
    cluster, url = dedicated_cluster
    backend = BackendConfig(name="postgres", database_url=url, data_dir=tmp_path)
    settings = server_fixtures.test_settings(backend, db_timeout_s=TIMEOUT_S)
    lifecycle = Lifecycle()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[Running]) -> None:
        try:
            await serve(settings, lifecycle=lifecycle, task_status=task_status)
        finally:
            stopped.set()

    running: Running = await nursery.start(run)
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
            assert (await client.get("/api/ready")).status_code == 200
            user = await register_user(client)
            project_id = await create_project(client, user)
            run_id = await finished_run(client, user.headers, project_id)
            minted = await client.post(
                "/api/sse/tickets", json={"project_id": project_id}, headers=user.headers
            )
            assert minted.status_code == 201, minted.text
            cluster.signal(signal.SIGSTOP)
            try:
                paths = ("/api/ready", f"/api/projects/{project_id}", f"{RUNS}/{run_id}")
                for path in paths:
                    with trio.fail_after(TIMEOUT_S + 4):  # the deadline, plus slack
                        response = await client.get(path, headers=user.headers)
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "not_ready"
                    assert int(response.headers["Retry-After"]) >= 1
                    assert str(cluster.port) not in response.text
                    assert "asyncpg" not in response.text
                await assert_streams_come_back_later(
                    client, user.headers, project_id, minted.json()["ticket"]
                )
            finally:
                cluster.signal(signal.SIGCONT)
            with trio.fail_after(30):
                while (await client.get("/api/ready")).status_code != 200:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            response = await client.get(f"/api/projects/{project_id}", headers=user.headers)
            assert response.status_code == 200
    finally:
        lifecycle.request_shutdown()
        with trio.fail_after(30):
            await stopped.wait()
