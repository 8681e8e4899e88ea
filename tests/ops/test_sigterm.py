"""Subprocess test (slow): SIGTERM with open SSE streams, one of them stalled, and a run going.

A client that stopped reading holds the server's write to it (its socket is full). SIGTERM
must still end the process within the shutdown deadline with exit code 0 (not through the
hard-exit watchdog), every reading client must see its stream end cleanly (complete frames,
then the chunked terminator), and the run cut short by the shutdown must complete at the
next start.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from server.runtime.http_server import HTTP_DRAIN_S
from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess

if TYPE_CHECKING:
    from pathlib import Path

    from tests.events.sse_client import SSEStream
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser

# hypercorn shields socket writes: without server.ops.connections.abort_connections a client that
# never reads holds the process until the hard-exit watchdog (exit code 1).
pytestmark = [pytest.mark.slow]

GRACE_S = 1.0
# What shutdown may take: the grace period, hypercorn's drain, serve's bounded wait for it,
# and a margin for a loaded 2-core machine. The hard-exit watchdog (exit code 1) fires later.
SHUTDOWN_DEADLINE_S = GRACE_S + 2 * HTTP_DRAIN_S + 2 + 4
READERS = 3
BIG = b"x" * 60_000  # each vfs.read output (and so each step.succeeded frame) is ~60 KB
READ_STEPS = 90
LOAD_RUNS = 3  # ~16 MB of frames: more than a stalled socket's buffers on both ends hold


def read_plan(count: int) -> dict[str, Any]:
    steps = [{"id": f"r{i}", "tool": "vfs.read", "args": {"path": "big.txt"}} for i in range(count)]
    return {"steps": steps}


SLOW_PLAN = {
    "steps": [
        {"id": "write", "tool": "vfs.write", "args": {"path": "a.txt", "content": "a"}},
        {"id": "think", "tool": "ai.generate", "args": {"prompt": "slow"}, "needs": ["write"]},
    ]
}


async def post_run(client: httpx.AsyncClient, user: AuthedUser, body: dict[str, Any]) -> str:
    response = await client.post("/api/workflow/runs", json=body, headers=user.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def get_run(client: httpx.AsyncClient, user: AuthedUser, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_run(
    client: httpx.AsyncClient, user: AuthedUser, run_id: str, done: Any
) -> dict[str, Any]:
    with trio.fail_after(30):  # hang guard
        while not done(run := await get_run(client, user, run_id)):  # noqa: ASYNC110 - polls HTTP
            await trio.sleep(0.05)
    return run


async def dropped_events(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("stretto_events_dropped"):
            return float(line.split()[-1])
    raise AssertionError("no stretto_events_dropped in /metrics")


def think_running(run: dict[str, Any]) -> bool:
    return any(s["id"] == "think" and s["status"] == "running" for s in run["steps"])


class Reader:
    """Reads one stream to its end, keeping the event types."""

    def __init__(self, stream: SSEStream) -> None:
        self.stream = stream
        self.kinds: list[str] = []

    async def run(self) -> None:
        while await self.stream._read():
            while self.stream._messages:
                self.kinds.append(self.stream._messages.popleft().event)

    @property
    def ended_cleanly(self) -> bool:
        """The chunked terminator came, after complete frames only."""
        decoder = self.stream.decoder
        return self.stream.ended and decoder._buffer == b"" and decoder._pending.data is None


async def test_sigterm_with_a_stalled_stream_exits_in_time_and_the_run_resumes(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery
) -> None:
    log = tmp_path / "server.log"
    settings = {"shutdown_grace_s": GRACE_S, "offline_latency_ms": 30_000}
    server = await ServerProcess.start(nursery, backend, log, **settings)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client)
            project_id = await create_project(client, user)
            put = await client.put(
                f"/api/projects/{project_id}/files/big.txt", content=BIG, headers=user.headers
            )
            assert put.status_code == 201, put.text
            async with AsyncExitStack() as streams, trio.open_nursery() as readers_nursery:
                await streams.enter_async_context(  # reads its first frame, then never again
                    open_stream(client, project_id, user.headers, receive_buffer=4096)
                )
                readers = []
                for _ in range(READERS):
                    stream = await streams.enter_async_context(
                        open_stream(client, project_id, user.headers)
                    )
                    readers.append(Reader(stream))
                    readers_nursery.start_soon(readers[-1].run)
                slow_id = await post_run(
                    client, user, {"project_id": project_id, "plan": SLOW_PLAN}
                )
                for _ in range(LOAD_RUNS):
                    load = {"project_id": project_id, "plan": read_plan(READ_STEPS)}
                    load_id = await post_run(client, user, load)
                    await wait_run(client, user, load_id, lambda r: r["finished_at"])
                # The stalled client's socket filled up: the hub dropped it, while the
                # server's write to it stays blocked.
                assert await dropped_events(client) >= 1
                await wait_run(client, user, slow_id, think_running)

                started = trio.current_time()
                server.terminate()
                with trio.fail_after(SHUTDOWN_DEADLINE_S):
                    code = await server.process.wait()
                elapsed = trio.current_time() - started
            assert code == 0, f"exit code {code} after {elapsed:.1f}s:\n{server.log()}"
            for reader in readers:
                assert reader.ended_cleanly
                assert reader.kinds.count("run.succeeded") == LOAD_RUNS
    finally:
        server.ensure_dead()

    # The run cut short by the shutdown was left resumable; the next start completes it.
    again = await ServerProcess.start(nursery, backend, log)
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as client:
            run = await wait_run(client, user, slow_id, lambda r: r["finished_at"])
            assert run["status"] == "succeeded", run
            steps = {s["id"]: s for s in run["steps"]}
            assert steps["write"]["attempts"] == 1
            assert steps["think"]["attempts"] == 2
            params = {"run_id": slow_id, "last_event_id": "0"}
            async with open_stream(client, project_id, user.headers, params=params) as stream:
                events: list[tuple[str, dict[str, Any]]] = []
                while not events or events[-1][0] != "run.succeeded":
                    message = await stream.next()
                    if message.event != "step.delta":
                        events.append((message.event, json.loads(message.data)))
        again.terminate()
        with trio.fail_after(SHUTDOWN_DEADLINE_S):
            assert await again.process.wait() == 0
    finally:
        again.ensure_dead()
    think = [
        (kind, d["attempt"], d.get("reason")) for kind, d in events if d.get("step_id") == "think"
    ]
    assert think == [
        ("step.started", 1, None),
        ("step.cancelled", 1, "shutdown"),  # exactly one terminal event for the cut attempt
        ("step.started", 2, None),
        ("step.succeeded", 2, None),
    ]
    assert [kind for kind, _ in events].count("run.succeeded") == 1
