"""Cross-instance cancel on PostgreSQL: two in-process servers on one database.

A run executes on instance A; ``POST .../cancel`` arrives at instance B. A cancels it (by the
notification B sends, or, when that is lost, by its lease maintenance reading the request):
the run ends ``cancelled``, every running step gets exactly one ``step.cancelled`` with
reason ``user``, and the run exactly one ``run.cancelled``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.events.sse_client import open_stream
from tests.fixtures.postgres import BackendConfig
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from pathlib import Path

    from tests.events.sse_client import SSEStream
    from tests.fixtures.server import AuthedUser, RunningServer, StartServer

pytestmark = pytest.mark.postgres

NEVER_MS = 600_000  # model calls that never finish within the test: only a cancel ends them
PLAN = {
    "steps": [
        {"id": "left", "tool": "ai.generate", "args": {"prompt": "left"}},
        {"id": "right", "tool": "ai.generate", "args": {"prompt": "right"}},
        {"id": "join", "tool": "ai.generate", "args": {"prompt": "j"}, "needs": ["left", "right"]},
    ]
}


@pytest.fixture
def backend(postgres_url: str, tmp_path: Path) -> BackendConfig:
    """PostgreSQL only: cancelling across instances needs a shared database."""
    return BackendConfig("postgres", postgres_url, tmp_path)


async def run_on_a_cancel_on_b(
    a: RunningServer, b: RunningServer
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Submit on A, wait until both first steps run, cancel through B.

    Returns (cancel response body, the run as B reads it after, the run's events)."""
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        user = await register_user(on_a)
        project_id = await create_project(on_a, user)
        async with open_stream(on_b, project_id, user.headers) as stream:
            response = await on_a.post(
                "/api/workflow/runs",
                json={"project_id": project_id, "plan": PLAN},
                headers=user.headers,
            )
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
            await wait_running(on_a, user, run_id, {"left", "right"})
            assert a.services.supervisor.active_runs == 1

            cancelled = await on_b.post(f"/api/workflow/runs/{run_id}/cancel", headers=user.headers)
            assert cancelled.status_code == 202, cancelled.text
            events = await read_until_run_ends(stream)
        await a.services.supervisor.wait_finished(run_id)
        after = await on_b.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
        assert after.status_code == 200
    return cancelled.json(), after.json(), events


async def wait_running(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, step_ids: set[str]
) -> None:
    with trio.fail_after(20):  # hang guard
        while True:
            response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
            running = {s["id"] for s in response.json()["steps"] if s["status"] == "running"}
            if step_ids <= running:
                return
            await trio.sleep(0.05)


async def read_until_run_ends(stream: SSEStream) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    while True:
        message = await stream.next()
        events.append((message.event, json.loads(message.data)))
        if message.event in ("run.succeeded", "run.failed", "run.cancelled"):
            return events


def assert_cancelled_once(
    cancelled: dict[str, Any], after: dict[str, Any], events: list[tuple[str, dict[str, Any]]]
) -> None:
    assert cancelled["status"] == "cancelled"  # B answered once A had recorded the end
    assert after["status"] == "cancelled"
    assert after["error"]["reason"] == "user"
    steps = {s["id"]: s for s in after["steps"]}
    assert steps["left"]["status"] == steps["right"]["status"] == "cancelled"
    assert steps["left"]["error"]["reason"] == steps["right"]["error"]["reason"] == "user"
    assert steps["join"]["status"] == "skipped"

    kinds = [kind for kind, _ in events]
    assert kinds.count("run.cancelled") == 1
    assert "run.succeeded" not in kinds
    assert "run.failed" not in kinds
    step_ends = sorted(
        (d["step_id"], kind, d.get("reason"))
        for kind, d in events
        if kind in ("step.succeeded", "step.failed", "step.cancelled", "step.skipped")
    )
    assert step_ends == [
        ("join", "step.skipped", "run_failed"),
        ("left", "step.cancelled", "user"),
        ("right", "step.cancelled", "user"),
    ]


async def test_cancel_on_another_instance_is_carried_by_notification(
    start_server: StartServer,
) -> None:
    # A 30 s lease: maintenance would not notice within the test: the notification does it.
    a = await start_server(instance_id="a", offline_latency_ms=NEVER_MS, run_lease_s=30)
    b = await start_server(instance_id="b", offline_latency_ms=NEVER_MS, run_lease_s=30)
    cancelled, after, events = await run_on_a_cancel_on_b(a, b)
    assert_cancelled_once(cancelled, after, events)
    assert a.services.supervisor.active_runs == 0


async def test_lost_cancel_notification_is_caught_by_lease_maintenance(
    start_server: StartServer,
) -> None:
    a = await start_server(instance_id="a", offline_latency_ms=NEVER_MS, run_lease_s=0.6)
    b = await start_server(instance_id="b", offline_latency_ms=NEVER_MS, run_lease_s=0.6)
    # As if A's listener connection were down when B asked: the notification reaches nobody.
    control = a.services.store.run_control()
    assert control is not None
    control.on_cancel_request(None)
    cancelled, after, events = await run_on_a_cancel_on_b(a, b)
    assert_cancelled_once(cancelled, after, events)
