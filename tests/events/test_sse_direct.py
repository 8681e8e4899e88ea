"""Direct socket writes of SSE frames (``server.api.sse_socket``): taken for HTTP/1.1 chunked
streams (HTTP/2 is checked in test_sse_endpoint.test_h2c_stream), falling back to the
stream's own task for a slow reader."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx

from tests.events.sse_client import open_stream
from tests.events.test_sse_endpoint import put_file, setup
from tests.events.test_stream_lifecycle import wait_for

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer


async def armed(server: RunningServer, streams: int = 1) -> None:
    """Wait until the streams wait for events with their subscriptions armed for direct
    writes: an idle HTTP/1.1 stream is parked right after arming. Before that (the head,
    the replay), an event is queued and written by the stream's task instead."""
    parked = server.services.parked
    assert parked is not None
    await wait_for(lambda: len(parked) == streams, "the stream armed and parked")


async def test_http11_stream_is_written_directly(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    hub = server.services.hub
    user, pid = await setup(client)
    await put_file(client, user, pid, "before.txt")
    async with open_stream(client, pid, user.headers, params={"last_event_id": "0"}) as stream:
        replayed = await stream.next()  # through the server's path, before direct mode
        assert replayed.event == "file.changed"
        await armed(server)
        before = hub.statistics().direct_writes
        for i in range(5):
            await put_file(client, user, pid, f"f{i}.txt")
        messages = await stream.take(5)
        for i in range(3):
            hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "i": i})
        deltas = await stream.take(3)
        assert hub.statistics().direct_writes - before == 8
        ids = [int(m.id or 0) for m in [replayed, *messages]]
        assert ids == list(range(ids[0], ids[0] + 6))  # gap-free, replay then live, no dup
        assert [json.loads(m.data)["path"] for m in messages] == [f"f{i}.txt" for i in range(5)]
        assert [json.loads(m.data)["i"] for m in deltas] == [0, 1, 2]
        hub.close_project(pid)
        assert await stream.until_end() == []
        assert stream.ended  # the terminating chunk came after the direct writes


async def test_heartbeat_in_direct_mode(start_server: StartServer) -> None:
    server = await start_server(sse_heartbeat_s=0.05)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, headers=user.headers) as stream:
            await armed(server)
            await put_file(client, user, pid, "a.txt")
            assert (await stream.next()).event == "file.changed"
            assert server.services.hub.statistics().direct_writes == 1
            assert await stream.until_comment() == "ping"


async def test_slow_reader_falls_back_and_receives_everything_in_order(
    start_server: StartServer,
) -> None:
    server = await start_server(sse_buffer=1024)
    hub = server.services.hub
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, user.headers, receive_buffer=4096) as stream:
            await armed(server)
            await put_file(client, user, pid, "first.txt")
            assert (await stream.next()).event == "file.changed"
            before = hub.statistics().direct_writes
            assert before == 1
            payload = "x" * (32 * 1024)
            count = 64  # 2 MB: more than the socket buffers hold
            for i in range(count):
                hub.publish_transient(
                    pid, {"type": "step.delta", "project_id": pid, "i": i, "text": payload}
                )
            await put_file(client, user, pid, "committed.txt")  # queued behind the backlog
            stats = hub.statistics()
            assert stats.dropped == 0
            assert stats.direct_writes - before < count  # the socket filled up: the rest queued
            messages = await stream.take(count + 1)
            assert [json.loads(m.data)["i"] for m in messages[:count]] == list(range(count))
            assert all(len(json.loads(m.data)["text"]) == len(payload) for m in messages[:-1])
            assert messages[-1].event == "file.changed"
            # Backlog written: the publisher writes directly again.
            await armed(server)
            before = hub.statistics().direct_writes
            await put_file(client, user, pid, "after.txt")
            assert json.loads((await stream.next()).data)["path"] == "after.txt"
            assert hub.statistics().direct_writes == before + 1


async def test_direct_writes_can_be_switched_off(start_server: StartServer) -> None:
    server = await start_server(sse_direct_writes=False)
    async with httpx.AsyncClient(base_url=server.url) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, user.headers) as stream:
            for i in range(3):
                await put_file(client, user, pid, f"f{i}.txt")
            messages = await stream.take(3)
        assert [json.loads(m.data)["path"] for m in messages] == ["f0.txt", "f1.txt", "f2.txt"]
    assert server.services.hub.statistics().direct_writes == 0
