"""Subprocess test (slow): `kill -9` during a run, restart, the run completes (both databases).

The first server dies with a step succeeded and another running: no final write, its lease
left held. The next server (another instance id) resumes it: at startup on SQLite (one
process per data directory), once the dead instance's lease expired on PostgreSQL (periodic
adoption). Succeeded steps keep their outputs and do not run again; the others run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.events.sse_client import SSEStream
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser

pytestmark = pytest.mark.slow

LATENCY_MS = 1500  # each offline model call: long enough to kill the process during one
LEASE_S = 2.0  # short, so the dead instance's PostgreSQL lease expires within the test
PLAN = {
    "steps": [
        {"id": "write", "tool": "vfs.write", "args": {"path": "notes.txt", "content": "hello"}},
        {"id": "draft", "tool": "ai.generate", "args": {"prompt": "a haiku"}, "needs": ["write"]},
        {"id": "polish", "tool": "ai.generate", "args": {"prompt": "polish"}, "needs": ["draft"]},
    ]
}


async def get_run(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def steps_by_id(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in run["steps"]}


async def wait_for(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, done: Any, deadline_s: float
) -> dict[str, Any]:
    """Poll the run until ``done(run)`` (a hang guard, not a timing assertion)."""
    with trio.fail_after(deadline_s):
        while True:
            run = await get_run(client, user, run_id)
            if done(run):
                return run
            await trio.sleep(0.05)


async def read_until_run_ends(stream: SSEStream) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    while True:
        message = await stream.next()
        if message.event != "step.delta":
            events.append((message.event, json.loads(message.data)))
        if message.event in ("run.succeeded", "run.failed", "run.cancelled"):
            return events


async def test_kill_9_mid_run_then_restart_completes_the_run(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery
) -> None:
    log = tmp_path / "server.log"
    settings: dict[str, Any] = {"offline_latency_ms": LATENCY_MS}
    if backend.database_url is not None:  # SQLite resumes at startup, whatever the lease
        settings["run_lease_s"] = LEASE_S
    first = await ServerProcess.start(nursery, backend, log, instance_id="first", **settings)
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
            user = await register_user(client)
            project_id = await create_project(client, user)
            response = await client.post(
                "/api/workflow/runs",
                json={"project_id": project_id, "plan": PLAN},
                headers=user.headers,
            )
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]

            def midway(run: dict[str, Any]) -> bool:
                steps = steps_by_id(run)
                return bool(
                    steps["write"]["status"] == "succeeded"
                    and steps["draft"]["status"] == "running"
                )

            before = steps_by_id(await wait_for(client, user, run_id, midway, 20))
        await first.kill()
        assert first.process.returncode == -9

        second = await ServerProcess.start(nursery, backend, log, instance_id="second", **settings)
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
                finished = await wait_for(
                    client, user, run_id, lambda r: r["finished_at"] is not None, 20
                )
                async with open_stream(
                    client, project_id, user.headers, params={"last_event_id": "0"}
                ) as stream:
                    events = await read_until_run_ends(stream)
            second.terminate()
            with trio.fail_after(30):
                assert await second.process.wait() == 0, second.log()
        finally:
            second.ensure_dead()
    finally:
        first.ensure_dead()

    assert finished["status"] == "succeeded", (finished, second.log())
    after = steps_by_id(finished)
    # The step that had succeeded kept its output and did not run again.
    assert after["write"]["status"] == "succeeded"
    assert after["write"]["attempts"] == 1
    assert after["write"]["started_at"] == before["write"]["started_at"]
    assert after["write"]["output"] == before["write"]["output"]
    # The one killed mid-attempt ran again; the one that never started ran once.
    assert after["draft"]["status"] == "succeeded"
    assert after["draft"]["attempts"] == 2
    assert after["draft"]["output"]["text"]
    assert after["polish"]["status"] == "succeeded"
    assert after["polish"]["attempts"] == 1

    def of(kind: str, step_id: str | None = None) -> list[dict[str, Any]]:
        return [d for t, d in events if t == kind and (step_id is None or d["step_id"] == step_id)]

    assert len(of("run.started")) == 1
    assert len(of("run.succeeded")) == 1
    assert [e for e, _ in events if e.startswith("run.")][-1] == "run.succeeded"
    assert [d["attempt"] for d in of("step.started", "write")] == [1]
    assert [d["attempt"] for d in of("step.started", "draft")] == [1, 2]
    # The attempt that died with the first process ends with exactly one terminal event.
    assert [(d["attempt"], d["reason"]) for d in of("step.cancelled", "draft")] == [(1, "shutdown")]
    assert [d["attempt"] for d in of("step.succeeded", "draft")] == [2]
    assert len(of("step.succeeded", "polish")) == 1


TAKEOVER_LEASE_S = 6.0
TAKEOVER_SLACK_S = 3.0  # the scan interval (1 s) plus scheduling on a shared, slow machine


@pytest.mark.postgres
async def test_a_live_instance_takes_over_within_the_lease_plus_a_small_bound(
    postgres_url: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Two instances on one database; the one running a run is killed. The other adopts the
    run within the lease plus a small bound (issue 11 item 8: it used to scan leases once
    per lease, taking up to two leases), and the run completes with a well-formed log."""
    from tests.fixtures.postgres import BackendConfig
    from tests.workflow.invariants import check_run_log

    data = tmp_path / "data"
    data.mkdir()
    backend = BackendConfig("postgres", postgres_url, data)
    log = tmp_path / "server.log"
    settings: dict[str, Any] = {"offline_latency_ms": LATENCY_MS, "run_lease_s": TAKEOVER_LEASE_S}
    first = await ServerProcess.start(nursery, backend, log, instance_id="first", **settings)
    second = await ServerProcess.start(nursery, backend, log, instance_id="second", **settings)
    try:
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as on_first,
            httpx.AsyncClient(base_url=second.url, timeout=30) as on_second,
        ):
            user = await register_user(on_first)
            project_id = await create_project(on_first, user)
            response = await on_first.post(
                "/api/workflow/runs",
                json={"project_id": project_id, "plan": PLAN},
                headers=user.headers,
            )
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]

            def drafting(run: dict[str, Any]) -> bool:
                return bool(steps_by_id(run)["draft"]["status"] == "running")

            await wait_for(on_first, user, run_id, drafting, 20)
            killed_wall = datetime.now(UTC)
            await first.kill()
            finished = await wait_for(
                on_second, user, run_id, lambda r: r["finished_at"] is not None, 60
            )
            async with open_stream(
                on_second, project_id, user.headers, params={"last_event_id": "0"}
            ) as stream:
                events = await read_until_run_ends(stream)
        second.terminate()
        with trio.fail_after(30):
            assert await second.process.wait() == 0, second.log()
    finally:
        first.ensure_dead()
        second.ensure_dead()
    assert finished["status"] == "succeeded", (finished, second.log())
    check_run_log(d for _, d in events)
    (killed,) = [d for t, d in events if t == "step.cancelled"]
    assert (killed["step_id"], killed["attempt"], killed["reason"]) == ("draft", 1, "shutdown")
    # The second attempt's start (the adopting instance's clock) against the kill (this
    # machine's wall clock): the dead lease expired at most one lease after the kill.
    draft = steps_by_id(finished)["draft"]
    assert draft["attempts"] == 2
    started = datetime.fromisoformat(draft["started_at"].replace("Z", "+00:00"))
    took = (started - killed_wall).total_seconds()
    assert took <= TAKEOVER_LEASE_S + TAKEOVER_SLACK_S, took
