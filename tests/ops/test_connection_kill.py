"""Subprocess test (slow): PostgreSQL connections killed mid-run (``pg_terminate_backend``).

Issue 11 item 2: one lost connection used to fail a whole run ("internal_error: The run
could not be recorded.") and leave ``step.cancelled`` events with no ``step.started``. Now a
transient store error in a state write is retried and does not decide the run: the run
ends ``succeeded`` and its log (replayed from 0) is well formed. Repeated within the test,
so a one-in-several failure cannot hide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.events.sse_client import open_stream
from tests.fixtures.postgres import BackendConfig, _admin_execute
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess
from tests.ops.test_durable_resume import read_until_run_ends, wait_for
from tests.workflow.invariants import check_run_log

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
]

LATENCY_MS = 400
RUNS = 3
KILLS = 60
KILL_EVERY_S = 0.03  # often enough that some kills land inside a write
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def plan() -> dict[str, Any]:
    wide = [{"id": f"w{i}", "tool": "ai.generate", "args": {"prompt": f"p{i}"}} for i in range(4)]
    join = {"id": "join", "tool": "ai.generate", "args": {"prompt": "j"}, "needs": ["w0", "w1"]}
    last = {"id": "last", "tool": "ai.generate", "args": {"prompt": "l"}, "needs": ["join"]}
    return {"steps": [*wide, join, last]}


async def test_killed_connections_do_not_decide_runs(
    postgres_url: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    backend = BackendConfig("postgres", postgres_url, data)
    log = tmp_path / "server.log"
    server = await ServerProcess.start(nursery, backend, log, offline_latency_ms=LATENCY_MS)
    outcomes: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client)
            project_id = await create_project(client, user)
            for _ in range(RUNS):
                response = await client.post(
                    "/api/workflow/runs",
                    json={"project_id": project_id, "plan": plan()},
                    headers=user.headers,
                )
                assert response.status_code == 202, response.text
                run_id = response.json()["id"]
                for _kill in range(KILLS):
                    await trio.sleep(KILL_EVERY_S)
                    await trio.to_thread.run_sync(_admin_execute, postgres_url, TERMINATE)
                with trio.fail_after(90):
                    while True:  # reads may fail while the pool reconnects: retry them
                        try:
                            run = await wait_for(
                                client, user, run_id, lambda r: r["finished_at"] is not None, 60
                            )
                            break
                        except AssertionError:
                            await trio.sleep(0.2)
                async with open_stream(
                    client, project_id, user.headers, params={"last_event_id": "0"}
                ) as stream:
                    events = await read_until_run_ends_of(stream, run_id)
                outcomes.append((run["status"], events))
        assert server.process.returncode is None, server.log()
    finally:
        server.ensure_dead()
    for status, events in outcomes:
        assert status == "succeeded", server.log()
        check_run_log(d for _, d in events)


async def read_until_run_ends_of(stream: Any, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The run's events from a replay of the whole project log (earlier runs come first)."""
    mine: list[tuple[str, dict[str, Any]]] = []
    while True:
        batch = await read_until_run_ends(stream)
        mine += [(t, d) for t, d in batch if d.get("run_id") == run_id]
        if any(
            t.startswith("run.")
            and t != "run.created"
            and d.get("run_id") == run_id
            and t in ("run.succeeded", "run.failed", "run.cancelled")
            for t, d in batch
        ):
            return mine
