"""A stream's beginning and end, on real sockets: the subscription exists before the
response headers leave, and a dropped or expired stream gives its connection back."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.lowlevel

from tests.events.sse_client import SSEStream, connect, read_head
from tests.events.test_sse_endpoint import put_file, setup

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer, StartServer

ROUNDS = 25


async def test_events_published_right_after_the_headers_are_delivered(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    """A new client (no Last-Event-ID) acts as soon as it sees the headers (EventSource
    ``open``). An event published then (a live-only one, in-process with no await after
    the head was read: as early as anything can happen) and a file changed over HTTP
    right after must both reach it. Failed before the fix (the stream subscribed after the
    headers had left)."""
    user, pid = await setup(client)
    hub = server.services.hub
    await put_file(client, user, pid, "warm-up")  # the PUT connection is open already
    for i in range(ROUNDS):
        stream = await connect(server.url, f"/api/sse/projects/{pid}", user.headers)
        try:
            status, headers, rest = await read_head(stream)
            assert status == 200
            hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "i": i})
            await put_file(client, user, pid, f"f{i}")
            sse = SSEStream(stream, status, headers)
            sse._wire = rest
            sse._dechunk()
            # Live-only and committed events are not ordered with each other (the stream
            # may replay the file change before the delta it held meanwhile).
            received = {(m.event, m.data) for m in await sse.take(2)}
            deltas = [json.loads(d)["i"] for e, d in received if e == "step.delta"]
            paths = [json.loads(d)["path"] for e, d in received if e == "file.changed"]
            assert (deltas, paths) == ([i], [f"f{i}"])
        finally:
            await stream.aclose()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def stalled_clients(
    server: RunningServer, pid: str, headers: dict[str, str], count: int
) -> list[trio.SocketStream]:
    """``count`` streams whose clients read the head and then never read again."""
    streams = []
    for _ in range(count):
        stream = await connect(server.url, f"/api/sse/projects/{pid}", headers, 4096)
        status, _, _ = await read_head(stream)
        assert status == 200
        streams.append(stream)
    return streams


async def wait_for(predicate: object, what: str) -> None:
    """Poll ``predicate``: what it watches (fds, the hub's counters) has no event to wait
    on. The deadline is a hang guard, not a timing assertion."""
    with trio.fail_after(15):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.05)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "through-hypercorn"])
async def test_clients_dropped_as_slow_give_their_sockets_back(
    start_server: StartServer, direct: bool
) -> None:
    server = await start_server(sse_buffer=4, sse_direct_writes=direct)
    hub = server.services.hub
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        baseline = open_fds()
        count = 40
        streams = await stalled_clients(server, pid, user.headers, count)
        await wait_for(lambda: hub.statistics().subscribers == count, "subscribed")
        assert open_fds() >= baseline + count  # the server's side of every connection
        payload = "x" * (64 * 1024)
        i = 0
        while hub.statistics().dropped < count:
            hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "t": payload})
            i += 1
            assert i < 10_000, "the stalled clients were never dropped"
            if i % 8 == 0:
                await trio.lowlevel.checkpoint()
        # The clients still hold their ends open and never read: the server must close its.
        await wait_for(lambda: open_fds() <= baseline + count + 5, "server sockets closed")
        for stream in streams:
            await stream.aclose()
        await wait_for(lambda: open_fds() <= baseline + 5, "fds back to the baseline")


async def test_stalled_clients_are_closed_at_the_max_lifetime(
    start_server: StartServer,
) -> None:
    """Never dropped as slow (little is published), but their streams end: their
    connections are closed too, even with a write pending."""
    server = await start_server(sse_max_lifetime_s=1.0, sse_heartbeat_s=0.2)
    hub = server.services.hub
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user, pid = await setup(client)
        baseline = open_fds()
        count = 20
        streams = await stalled_clients(server, pid, user.headers, count)
        # Enough to fill the sockets' buffers but not the subscribers' queues.
        payload = "x" * (256 * 1024)
        for _ in range(3):
            hub.publish_transient(pid, {"type": "step.delta", "project_id": pid, "t": payload})
        await wait_for(lambda: hub.statistics().subscribers == 0, "streams ended")
        await wait_for(lambda: open_fds() <= baseline + count + 5, "server sockets closed")
        for stream in streams:
            await stream.aclose()
