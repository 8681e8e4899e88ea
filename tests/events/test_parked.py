"""Parked streams (``server.events.parked``): an idle HTTP/1.1 stream on the fast path costs no
task; one task serves its heartbeats, lifetime and disconnect, and publish still writes its
frames. Real server, real sockets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import trio

from tests.events.sse_client import connect, open_stream, read_head
from tests.events.test_sse_endpoint import put_file, setup
from tests.events.test_stream_lifecycle import open_fds, stalled_clients, wait_for

if TYPE_CHECKING:
    from server.events.parked import ParkedStreams
    from tests.fixtures.server import RunningServer, StartServer


def parked_of(server: RunningServer) -> ParkedStreams:
    parked = server.services.parked
    assert parked is not None
    return parked


async def test_a_parked_stream_gets_heartbeats_and_every_event_once_in_order(
    start_server: StartServer,
) -> None:
    server = await start_server(sse_heartbeat_s=0.1)
    parked = parked_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, user.headers) as stream:
            await wait_for(lambda: len(parked) == 1, "parked")
            assert await stream.until_comment() == "ping"  # written by the parked streams' task
            assert len(parked) == 1
            for i in range(12):
                await put_file(client, user, pid, f"f{i}.txt")
                if i % 4 == 3:  # a transient between committed ones, and a wait in between
                    server.services.hub.publish_transient(
                        pid, {"type": "step.delta", "project_id": pid, "i": i}
                    )
                    await trio.sleep(0.15)
            messages = await stream.take(15)
            events = [m for m in messages if m.event == "file.changed"]
            async with open_stream(client, pid, user.headers, {"last_event_id": "0"}) as replay:
                log = await replay.take(12)  # the log, replayed (the store's own loop reads it)
            assert [m.id for m in events] == [m.id for m in log]  # each once, in order
            assert len({m.id for m in events}) == 12
            assert [json.loads(m.data)["path"] for m in events] == [f"f{i}.txt" for i in range(12)]
            deltas = [json.loads(m.data)["i"] for m in messages if m.event == "step.delta"]
            assert deltas == [3, 7, 11]
            await wait_for(lambda: len(parked) == 1, "parked again")
            # Heartbeats go on once the events are written (how many fell between them
            # depends on the machine's speed, so only "another one comes" is judged).
            pings = len(stream.decoder.comments)
            assert set(await stream.until_comments(pings + 1)) == {"ping"}


async def test_a_client_that_leaves_frees_its_subscription_and_slot(
    start_server: StartServer,
) -> None:
    server = await start_server()
    parked, hub = parked_of(server), server.services.hub
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        baseline = open_fds()
        async with open_stream(client, pid, user.headers):
            await wait_for(lambda: len(parked) == 1, "parked")
            assert server.services.user_streams.held(user.user_id) == 1
        await wait_for(lambda: len(parked) == 0, "unparked")
        assert hub.statistics().subscribers == 0
        assert server.services.user_streams.held(user.user_id) == 0
        await wait_for(lambda: open_fds() <= baseline, "the server's socket closed")


async def test_the_lifetime_ends_a_parked_stream_with_the_chunked_end(
    start_server: StartServer,
) -> None:
    server = await start_server(sse_max_lifetime_s=0.5, sse_heartbeat_s=10)
    parked = parked_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        async with open_stream(client, pid, user.headers) as stream:
            await wait_for(lambda: len(parked) == 1, "parked")
            assert await stream.until_end() == []
            assert stream.terminated  # ``0\r\n\r\n``, not only a closed socket
        assert len(parked) == 0
        assert server.services.user_streams.held(user.user_id) == 0


async def test_shutdown_ends_parked_streams(start_server: StartServer) -> None:
    server = await start_server(sse_heartbeat_s=10)
    parked = parked_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        async with (
            open_stream(client, pid, user.headers) as first,
            open_stream(client, pid, user.headers) as second,
        ):
            await wait_for(lambda: len(parked) == 2, "parked")
            server.lifecycle.request_shutdown()
            for stream in (first, second):
                assert await stream.until_end() == []
                assert stream.terminated
            with trio.fail_after(15):
                await server.stopped.wait()
        assert len(parked) == 0


async def test_a_client_that_stops_reading_is_dropped_and_closed(
    start_server: StartServer,
) -> None:
    server = await start_server(sse_buffer=4)
    parked, hub = parked_of(server), server.services.hub
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        streams = await stalled_clients(server, pid, user.headers, 3)
        await wait_for(lambda: len(parked) == 3, "parked")
        payload = "x" * (64 * 1024)
        i = 0
        while hub.statistics().dropped < 3:
            hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "t": payload})
            i += 1
            assert i < 10_000, "the stalled clients were never dropped"
            if i % 8 == 0:
                await trio.lowlevel.checkpoint()
        held = server.services.user_streams.held
        await wait_for(lambda: hub.statistics().subscribers == 0, "unsubscribed")
        await wait_for(lambda: held(user.user_id) == 0, "slots released")  # by the task ending
        assert len(parked) == 0
        for stream in streams:  # the server closed its end: reading gets to the end
            with trio.fail_after(15):
                try:
                    while await stream.receive_some(1 << 20):
                        pass
                except trio.BrokenResourceError:
                    pass  # reset: closed with unread data
            await stream.aclose()


async def test_a_parked_stream_keeps_its_place_under_the_connection_cap(
    start_server: StartServer,
) -> None:
    server = await start_server(max_connections=3)
    parked = parked_of(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
    async with (
        open_stream(server.url, pid, user.headers),
        open_stream(server.url, pid, user.headers),
        open_stream(server.url, pid, user.headers),
    ):
        await wait_for(lambda: len(parked) == 3, "parked")
        extra = await connect(server.url, "/api/health")
        async with extra:
            status, _, _ = await read_head(extra)
        assert status == 503  # the parked streams still count
    await wait_for(lambda: len(parked) == 0, "ended")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        with trio.fail_after(15):
            while (await client.get("/api/health")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.05)
