"""The SSE endpoint end to end: the real server on loopback, real SSE clients."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio_asyncio
from httpx_sse import aconnect_sse

from server.auth.tickets import TicketService
from server.events.model import new_event
from server.events.sse import SSEDecoder
from server.store.factory import open_store
from server.timeutil import utc_now
from tests.events.sse_client import open_stream
from tests.fixtures.server import TEST_JWT_SECRET, create_project, register_user

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.events.hub import EventHub
    from server.store.protocol import Store
    from tests.fixtures.server import AuthedUser, RunningServer, StartServer


async def put_file(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str) -> None:
    response = await client.put(
        f"/api/projects/{pid}/files/{path}", content=b"hello", headers=user.headers
    )
    assert response.status_code in (200, 201), response.text


async def setup(client: httpx.AsyncClient) -> tuple[AuthedUser, str]:
    user = await register_user(client)
    return user, await create_project(client, user)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_event_format_from_a_file_put(client: httpx.AsyncClient) -> None:
    """Checked with an independent parser (httpx-sse); the stream is read to its end (the
    project is deleted) so that httpx's generators are exhausted (encode/httpx#3686)."""
    user, pid = await setup(client)
    # Last-Event-ID 0: the PUT below is replayed even if it commits before the subscription.
    headers = {**user.headers, "Last-Event-ID": "0"}
    async with aconnect_sse(client, "GET", f"/api/sse/projects/{pid}", headers=headers) as source:
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        await put_file(client, user, pid, "src/a.txt")
        received = []
        with trio.fail_after(10):
            async for event in source.aiter_sse():
                received.append(event)
                if event.event == "file.changed":
                    deleted = await client.delete(f"/api/projects/{pid}", headers=user.headers)
                    assert deleted.status_code == 204
    assert received[0].retry == 3000
    assert not received[0].data
    event = received[1]
    assert event.event == "file.changed"
    assert event.id == "1"
    data = json.loads(event.data)
    assert data["type"] == "file.changed"
    assert data["project_id"] == pid
    assert data["path"] == "src/a.txt"
    assert "at" in data
    assert [e.event for e in received[2:]] == ["project.deleted"]


async def test_first_frame_is_retry_and_ids_are_gap_free(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        assert stream.raw.startswith(b"retry: 3000\n\n")
        for i in range(3):
            await put_file(client, user, pid, f"f{i}.txt")
        messages = await stream.take(3)
    assert stream.decoder.retry == 3000
    ids = [int(m.id or 0) for m in messages]
    assert ids == list(range(ids[0], ids[0] + 3))
    assert [json.loads(m.data)["path"] for m in messages] == ["f0.txt", "f1.txt", "f2.txt"]


async def test_heartbeat_when_idle(start_server: StartServer) -> None:
    server = await start_server(sse_heartbeat_s=0.05)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, headers=user.headers) as stream:
            assert await stream.until_comment() == "ping"
            assert b": ping\n\n" in stream.raw


async def test_stream_ends_after_its_maximum_lifetime(start_server: StartServer) -> None:
    server = await start_server(sse_max_lifetime_s=0.2)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, headers=user.headers) as stream:
            assert await stream.until_end() == []
            assert stream.ended


async def test_ticket_auth_and_its_failures(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    user, pid = await setup(client)
    _, other_pid = await setup(client)
    url = f"/api/sse/projects/{pid}"

    response = await client.post("/api/sse/tickets", json={"project_id": pid}, headers=user.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert body["expires_in"] == server.settings.sse_ticket_ttl_s
    ticket = body["ticket"]

    async with open_stream(client, pid, params={"ticket": ticket}) as stream:
        await put_file(client, user, pid, "a.txt")
        assert (await stream.next()).event == "file.changed"
    # Reusable until it expires (EventSource reconnects with the same URL).
    async with open_stream(client, pid, params={"ticket": ticket}):
        pass

    expired = TicketService(
        secret=TEST_JWT_SECRET.encode(),
        issuer=server.settings.jwt_issuer,
        max_age_s=600,
        clock=lambda: time.time() - 3600,
    ).issue(user.user_id, pid, None)[0]
    failures = {
        "garbage": "not-a-ticket",
        "expired": expired,
        "access token": user.access_token,
    }
    for name, value in failures.items():
        response = await client.get(url, params={"ticket": value})
        assert response.status_code == 401, name
        assert error_code(response) == "unauthorized", name
    wrong_project = await client.get(f"/api/sse/projects/{other_pid}", params={"ticket": ticket})
    assert wrong_project.status_code == 401
    assert error_code(wrong_project) == "unauthorized"
    assert (await client.get(url)).status_code == 401

    # Minting: Bearer only, own project only, strict body.
    assert (await client.post("/api/sse/tickets", json={"project_id": pid})).status_code == 401
    response = await client.post(
        "/api/sse/tickets", json={"project_id": other_pid}, headers=user.headers
    )
    assert response.status_code == 404
    response = await client.post(
        "/api/sse/tickets", json={"project_id": pid, "x": 1}, headers=user.headers
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_failed"


async def test_other_users_project_is_404(client: httpx.AsyncClient) -> None:
    _owner, pid = await setup(client)
    stranger = await register_user(client)
    response = await client.get(f"/api/sse/projects/{pid}", headers=stranger.headers)
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    response = await client.get("/api/sse/projects/no-such-project", headers=stranger.headers)
    assert response.status_code == 404


@asynccontextmanager
async def own_store(server: RunningServer) -> AsyncIterator[Store]:
    """A second store on the server's database, in this task's own trio-asyncio loop (the
    server's PostgreSQL pool belongs to the loop of the server's task)."""
    async with trio_asyncio.open_loop(), open_store(server.settings) as store:
        yield store


async def test_run_filter(server: RunningServer, client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    hub = server.services.hub
    async with own_store(server) as store:
        await run_filter_checks(client, user, pid, store, hub)


async def run_filter_checks(
    client: httpx.AsyncClient, user: AuthedUser, pid: str, store: Store, hub: EventHub
) -> None:

    async def commit(*events: tuple[str, str | None]) -> None:
        new = [
            new_event(kind, pid, **({"run_id": run_id} if run_id else {}))
            for kind, run_id in events
        ]
        hub.publish(await store.append_events(new))

    await commit(("run.created", "r1"), ("run.created", "r2"))
    async with open_stream(
        client, pid, headers={**user.headers, "Last-Event-ID": "0"}, params={"run_id": "r1"}
    ) as stream:
        await commit(("run.started", "r2"), ("step.started", "r1"), ("file.changed", None))
        await put_file(client, user, pid, "a.txt")
        hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "run_id": "r2"})
        hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "run_id": "r1"})
        await commit(("run.succeeded", "r1"))
        messages = await stream.take(4)
    assert [(m.event, m.id) for m in messages] == [
        ("run.created", "1"),
        ("step.started", "4"),
        ("step.delta", None),
        ("run.succeeded", "7"),
    ]
    assert all(json.loads(m.data)["run_id"] == "r1" for m in messages)


async def test_reconnect_with_last_event_id_while_publishing(
    client: httpx.AsyncClient,
) -> None:
    user, pid = await setup(client)
    total = 40
    seen: list[int] = []

    async with trio.open_nursery() as nursery:

        async def writer() -> None:
            for i in range(total):
                await put_file(client, user, pid, f"f{i}.txt")

        nursery.start_soon(writer)
        last: str | None = None
        rounds = 0
        while len(seen) < total:
            rounds += 1
            headers = dict(user.headers)
            params = {}
            if last is not None:
                # Alternate the two ways of resuming.
                if rounds % 2:
                    headers["Last-Event-ID"] = last
                else:
                    params["last_event_id"] = last
            else:
                headers["Last-Event-ID"] = "0"
            async with open_stream(client, pid, headers=headers, params=params) as stream:
                for message in await stream.take(min(7, total - len(seen))):
                    assert message.event == "file.changed"
                    seen.append(int(message.id or -1))
                    last = message.id
    assert seen == list(range(1, total + 1))
    assert rounds >= 5


async def test_reset_when_older_than_retention(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    user, pid = await setup(client)
    for i in range(5):
        await put_file(client, user, pid, f"f{i}.txt")
    async with own_store(server) as store:
        deleted = await store.trim_events(pid, 2, utc_now())
    assert deleted == 3  # 4 and 5 remain

    async def first_messages(last_event_id: str, count: int) -> list[tuple[str, str | None]]:
        headers = {**user.headers, "Last-Event-ID": last_event_id}
        async with open_stream(client, pid, headers=headers) as stream:
            out = [(m.event, m.id) for m in await stream.take(count)]
            await put_file(client, user, pid, "live.txt")
            live = await stream.next()
            out.append((live.event, live.id))
            return out

    assert await first_messages("3", 2) == [
        ("file.changed", "4"),
        ("file.changed", "5"),
        ("file.changed", "6"),
    ]
    assert await first_messages("1", 1) == [("reset", "6"), ("file.changed", "7")]
    assert await first_messages("999", 1) == [("reset", "7"), ("file.changed", "8")]
    assert await first_messages("garbage", 1) == [("reset", "8"), ("file.changed", "9")]


async def test_stream_ends_when_the_project_is_deleted(client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    async with open_stream(client, pid, headers=user.headers) as stream:
        response = await client.delete(f"/api/projects/{pid}", headers=user.headers)
        assert response.status_code == 204
        messages = await stream.until_end()
    assert [m.event for m in messages] == ["project.deleted"]
    assert stream.ended


async def test_streams_end_on_shutdown(server: RunningServer, client: httpx.AsyncClient) -> None:
    user, pid = await setup(client)
    async with open_stream(client, pid, headers=user.headers) as stream:
        await stream.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.stop)
            assert await stream.until_end() == []
    assert server.services.hub.statistics().subscribers == 0


async def test_h2c_stream(server: RunningServer) -> None:
    """HTTP/2 over cleartext (prior knowledge), as Fly.io's h2_backend speaks it. Its frames
    go through hypercorn's HTTP/2 path: the direct socket writes are for HTTP/1.1 only."""
    pytest.importorskip("h2")
    hub = server.services.hub
    async with httpx.AsyncClient(base_url=server.url, http1=False, http2=True) as client:
        user, pid = await setup(client)
        url = f"/api/sse/projects/{pid}"
        async with client.stream("GET", url, headers=user.headers) as response:
            assert response.http_version == "HTTP/2"
            decoder = SSEDecoder()
            messages = []
            with trio.fail_after(10):
                async for chunk in response.aiter_raw():
                    if not decoder.retry:
                        await put_file(client, user, pid, "a.txt")
                        await put_file(client, user, pid, "b.txt")
                    messages += decoder.feed(chunk)
                    if len(messages) == 2:
                        hub.close_project(pid)  # ends the stream
    assert decoder.retry == 3000
    assert [m.event for m in messages] == ["file.changed", "file.changed"]
    assert [json.loads(m.data)["path"] for m in messages] == ["a.txt", "b.txt"]
    stats = hub.statistics()
    assert stats.delivered >= 2
    assert stats.direct_writes == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_write_on_one_instance_reaches_a_subscriber_on_another(
    start_server: StartServer,
) -> None:
    a = await start_server()
    b = await start_server()
    async with httpx.AsyncClient(base_url=a.url) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        user, pid = await setup(on_a)
        async with open_stream(on_b, pid, headers=user.headers) as stream:
            await put_file(on_a, user, pid, "from-a.txt")
            message = await stream.next()
    assert message.event == "file.changed"
    assert json.loads(message.data)["path"] == "from-a.txt"


async def test_stalled_subscriber_is_disconnected_others_keep_receiving(
    start_server: StartServer,
) -> None:
    server = await start_server(sse_buffer=4)
    hub = server.services.hub
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, user.headers, receive_buffer=4096) as stalled:
            await stalled.started()
            async with open_stream(client, pid, user.headers) as healthy:
                await healthy.started()
                assert hub.statistics().subscribers == 2
                payload = "x" * (256 * 1024)
                for i in range(400):  # until the stalled reader's socket and buffer are full
                    hub.publish_transient(
                        pid, {"type": "step.delta", "project_id": pid, "i": i, "text": payload}
                    )
                    assert json.loads((await healthy.next()).data)["i"] == i
                    if hub.statistics().dropped:
                        break
                stats = hub.statistics()
                assert stats.dropped == 1
                assert stats.subscribers == 1  # the stalled one holds no buffer any more
                await put_file(client, user, pid, "after.txt")
                assert (await healthy.next()).event == "file.changed"
            # Reading again, the stalled client finds its connection closed by the server
            # (what was still in flight may be cut), and never sees the event published
            # after it was dropped.
            messages = await stalled.until_end()
            assert stalled.ended
            assert all(m.event == "step.delta" for m in messages)
