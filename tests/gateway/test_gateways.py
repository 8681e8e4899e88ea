"""The hybrid stage of the migration through real gateways (nginx, Caddy) built from the
shipped files in build/gateway/: routing between stretto and a stand-in legacy server, the
headers SSE needs, and a run streamed through the gateway with no buffering and no gap."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user
from tests.gateway.gateways import running_gateway
from tests.gateway.legacy import serve_legacy

if TYPE_CHECKING:
    from pathlib import Path

    import trio

    from tests.fixtures.server import AuthedUser, RunningServer

pytestmark = pytest.mark.gateway

GATEWAYS = ("nginx", "caddy")
FIRST_EVENT_BOUND_S = 0.1  # the bound: a buffering gateway never meets it


def port_of(url: str) -> int:
    return int(httpx.URL(url).port or 80)


@pytest.mark.parametrize("kind", GATEWAYS)
async def test_routing_and_forwarded_headers(
    kind: str,
    server: RunningServer,
    client: httpx.AsyncClient,
    nursery: trio.Nursery,
    tmp_path: Path,
) -> None:
    legacy_port = await nursery.start(serve_legacy)
    user = await register_user(client)
    async with (
        running_gateway(kind, tmp_path, port_of(server.url), legacy_port) as gateway,
        httpx.AsyncClient(base_url=gateway, timeout=30) as via,
    ):
        # Everything but /api/workflow/* and /api/sse/* goes to the legacy server.
        for path in ("/api/projects", "/api/auth/me", "/api/health", "/"):
            response = await via.get(path, headers=user.headers)
            assert response.headers.get("x-served-by") == "legacy", path
            assert response.json()["path"] == path
        # /api/workflow/* goes to stretto, with the client's X-Request-ID passed through.
        response = await via.get(
            "/api/workflow/tools", headers={**user.headers, "X-Request-ID": "gw-check-1"}
        )
        assert response.status_code == 200, response.text
        assert "x-served-by" not in response.headers
        assert response.headers["x-request-id"] == "gw-check-1"
        assert {tool["name"] for tool in response.json()["items"]} >= {"vfs.read", "ai.edit"}
        # /api/sse/* goes to stretto (its own error shape for a missing ticket body).
        response = await via.post("/api/sse/tickets", json={}, headers=user.headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_failed"
        # A client-sent X-Forwarded-For is replaced by the address the gateway saw.
        response = await via.get("/api/projects", headers={"X-Forwarded-For": "6.6.6.6"})
        assert response.json()["x_forwarded_for"] == "127.0.0.1"
        # Keep-alive upstream: many requests through the gateway reuse its connections.
        for _ in range(20):
            assert (await via.get("/api/workflow/tools", headers=user.headers)).status_code == 200


async def _ticket(via: httpx.AsyncClient, user: AuthedUser, pid: str) -> str:
    response = await via.post("/api/sse/tickets", json={"project_id": pid}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


@pytest.mark.parametrize("kind", GATEWAYS)
async def test_stream_through_the_gateway_is_unbuffered_and_gap_free(
    kind: str,
    server: RunningServer,
    client: httpx.AsyncClient,
    nursery: trio.Nursery,
    tmp_path: Path,
) -> None:
    legacy_port = await nursery.start(serve_legacy)
    user = await register_user(client)
    pid = await create_project(client, user)
    async with (
        running_gateway(kind, tmp_path, port_of(server.url), legacy_port) as gateway,
        httpx.AsyncClient(base_url=gateway, timeout=30) as via,
    ):
        ticket = await _ticket(via, user, pid)
        # As a browser asks for it: a gateway that compresses the stream holds frames back.
        browser = {"Accept-Encoding": "gzip, deflate, br"}
        async with open_stream(gateway, pid, browser, params={"ticket": ticket}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            # Each event must arrive while the stream stays open, right after it was
            # committed: a gateway that buffers holds small frames until its buffer fills.
            delays = []
            file_ids = []
            for index in range(5):
                put = await client.put(
                    f"/api/projects/{pid}/files/notes/{index}.txt",
                    content=b"x",
                    headers=user.headers,
                )
                assert put.status_code == 201, put.text
                committed = time.monotonic()
                message = await stream.next()
                delays.append(time.monotonic() - committed)
                assert message.event == "file.changed"
                file_ids.append(int(message.id or -1))
            assert delays[0] < FIRST_EVENT_BOUND_S, delays
            assert statistics.median(delays) < FIRST_EVENT_BOUND_S, delays

            # A run started through the gateway, streamed through the gateway.
            writes = [
                {"id": f"w{i}", "tool": "vfs.write", "args": {"path": f"out/{i}", "content": "x"}}
                for i in range(6)
            ]
            listing = {"id": "list", "tool": "vfs.list", "args": {"prefix": "out/"}}
            plan = {"steps": [*writes, {**listing, "needs": [w["id"] for w in writes]}]}
            response = await via.post(
                "/api/workflow/runs", json={"project_id": pid, "plan": plan}, headers=user.headers
            )
            assert response.status_code == 202, response.text
            run_id = response.json()["id"]
            received = []
            while True:
                message = await stream.next()
                received.append(message)
                if message.event in ("run.succeeded", "run.failed", "run.cancelled"):
                    break
            assert received[-1].event == "run.succeeded"

        # Every id from the first file event to the run's end, once, in order, and the same
        # events as the log replays directly from stretto.
        ids = file_ids + [int(m.id or -1) for m in received]
        first = ids[0]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        async with open_stream(
            client, pid, headers={**user.headers, "Last-Event-ID": str(first - 1)}
        ) as direct:
            replay = [await direct.next() for _ in range(len(ids))]
        assert [int(m.id or -1) for m in replay] == ids
        assert [m.event for m in replay][5:] == [m.event for m in received]
        run = (await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)).json()
        assert run["status"] == "succeeded"
