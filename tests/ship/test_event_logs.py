"""What the server says at ``info`` level, read from the JSON logs of a real process.

One line per run outcome (failed included), per registration, per refresh-token reuse (the
session is revoked), and per 5xx; an outage that fails every request logs one line, not one
per request; and a 503 body does not name the database's address.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.fixtures.postgres import BackendConfig, _admin_execute
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import PostgresServer
    from tests.fixtures.server import AuthedUser

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

GOOD = {"steps": [{"id": "w", "tool": "vfs.write", "args": {"path": "a.txt", "content": "x"}}]}
BAD = {"steps": [{"id": "r", "tool": "vfs.read", "args": {"path": "missing.txt"}}]}


def json_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for text in server.log_path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


async def finish(client: httpx.AsyncClient, user: AuthedUser, project: str, plan: Any) -> str:
    response = await client.post(
        "/api/workflow/runs", json={"project_id": project, "plan": plan}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    with trio.fail_after(30):
        while True:
            run = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
            if run.json()["finished_at"] is not None:
                return run_id
            await trio.sleep(0.05)


async def test_info_log_has_one_line_per_outcome_and_security_event(
    postgres_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    nursery: trio.Nursery,
) -> None:
    admin: PostgresServer = request.getfixturevalue("_postgres_server")
    data = tmp_path / "data"
    data.mkdir()
    backend = BackendConfig("postgres", postgres_url, data)
    server = await ServerProcess.start(
        nursery, backend, tmp_path / "server.log", log_format="json", log_level="info"
    )
    database = urlsplit(postgres_url).path.lstrip("/")
    address = f"{urlsplit(postgres_url).hostname}:{urlsplit(postgres_url).port}"
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            user = await register_user(client)
            first = await client.post(
                "/api/auth/refresh", json={"refresh_token": user.refresh_token}
            )
            assert first.status_code == 200, first.text
            reuse = await client.post(
                "/api/auth/refresh", json={"refresh_token": user.refresh_token}
            )
            assert reuse.status_code == 401
            project = await create_project(client, user)
            succeeded = await finish(client, user, project, GOOD)
            failed = await finish(client, user, project, BAD)

            # The database refuses new connections and drops ours: every request fails alike.
            await trio.to_thread.run_sync(
                _admin_execute,
                admin.admin_url,
                f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false;'
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}'",
            )
            try:
                answers = [
                    await client.get(f"/api/workflow/runs/{succeeded}", headers=user.headers)
                    for _ in range(5)
                ]
            finally:
                await trio.to_thread.run_sync(
                    _admin_execute,
                    admin.admin_url,
                    f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true',
                )
        server.terminate()
        with trio.fail_after(30):
            await server.process.wait()
    finally:
        server.ensure_dead()

    assert [a.status_code for a in answers] == [503] * 5, [a.text for a in answers]
    for answer in answers:
        assert answer.json()["error"]["message"] == "The database is unavailable."
        assert address not in answer.text
    lines = json_lines(server)
    info = [line for line in lines if line["level"] == "info"]
    assert [line["user_id"] for line in info if line["msg"] == "user registered"] == [user.user_id]
    reused = [line for line in info if line["msg"] == "refresh token reused: session revoked"]
    assert [line["user_id"] for line in reused] == [user.user_id]
    outcomes = {
        line["run_id"]: line["outcome"] for line in info if line["logger"] == "stretto.runs"
    }
    assert outcomes == {succeeded: "succeeded", failed: "failed"}
    assert len([line for line in info if line["logger"] == "stretto.runs"]) == 2
    refusals = [line for line in lines if line["msg"].startswith("answering 503 not_ready")]
    assert len(refusals) == 1, refusals
    assert refusals[0]["path"] == f"/api/workflow/runs/{succeeded}"
