"""SSE streams answered below Quart (server.api.edge) on HTTP/1.1: a client that leaves ends
its stream (subscription and per-user place released), and the stream costs the
connection no task beyond hypercorn's two (the connection's reader, the request's task);
with direct writes an idle stream is parked and costs no task at all."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.fixtures.server import StartServer

GUARD_S = 10.0


async def wait_until(done: Callable[[], bool]) -> None:
    """Poll the server's state (it runs in this test's trio loop) until ``done``."""
    with trio.fail_after(GUARD_S):
        while not done():  # noqa: ASYNC110 - the server's state, not an event of ours
            await trio.sleep(0.01)


def task_count() -> int:
    """Tasks in this test's trio loop, the database driver's I/O tasks left out (asyncpg's
    pool opens connections as requests overlap)."""

    def count(task: trio.lowlevel.Task) -> int:
        own = 0 if task.name.startswith("trio_asyncio.") else 1
        return own + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "through-hypercorn"])
async def test_a_client_that_leaves_ends_its_stream(
    start_server: StartServer, direct: bool
) -> None:
    server = await start_server(sse_direct_writes=direct)
    hub, held = server.services.hub, server.services.user_streams.held
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        count = 5
        parked = server.services.parked
        assert parked is not None
        async with open_stream(client, pid, user.headers) as first, AsyncExitStack() as more:
            await wait_until(lambda: len(parked) == (1 if direct else 0))
            before = task_count()  # the project's first stream may start a bus listener
            for _ in range(count - 1):
                await more.enter_async_context(open_stream(client, pid, user.headers))
            assert hub.statistics().subscribers == count
            assert held(user.user_id) == count
            if direct:  # parked (server.events.parked): no task of its own at all
                await wait_until(lambda: len(parked) == count)
                assert task_count() - before == 0
            else:  # hypercorn's connection task and request task per stream, nothing more
                assert len(parked) == 0
                assert task_count() - before == 2 * (count - 1)
            assert first.status == 200
        await wait_until(lambda: hub.statistics().subscribers == 0)
        await wait_until(lambda: not held(user.user_id))
