"""PostgresEventBus on a real PostgreSQL: NOTIFY -> hub, reconnect, polling fallback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import pytest
import trio
import trio_asyncio

from server.events.hub import EventHub, Frame, Subscription
from server.events.model import new_event
from server.events.pgbus import APPLICATION_NAME, PostgresEventBus
from server.events.pgchannel import Cancel, Committed, Deleted, encode, parse
from server.store.factory import open_store
from tests.fixtures.postgres import BackendConfig

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from server.store.protocol import Store

pytestmark = pytest.mark.postgres


def test_parse_payload() -> None:
    assert parse("p1:42") == Committed("p1", 42)
    assert parse("a:b:7") == Committed("a:b", 7)
    assert parse("p1:deleted") == Deleted("p1")
    assert parse("p1:cancel:r9") == Cancel("p1", "r9")
    for bad in ("", "p1", ":3", "p1:", "p1:-1", "p1:x", "p1:\u0663", ":cancel:r9"):
        assert parse(bad) is None


def test_payloads_round_trip() -> None:
    for note in (Committed("p1", 7), Deleted("p:2"), Cancel("p1", "r1")):
        assert parse(encode(note)) == note


async def receive(subscription: Subscription, count: int) -> list[Frame]:
    with trio.fail_after(10):  # a hang guard, not a timing assertion
        return [await subscription.receive() for _ in range(count)]


async def wait_until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - the bus exposes no event to wait on
            await trio.sleep(0.01)


async def append(store: Store, project_id: str, count: int) -> None:
    await store.append_events(
        [new_event("file.deleted", project_id, path=f"f{i}") for i in range(count)]
    )


async def terminate_listener(url: str) -> int:
    connection = await trio_asyncio.aio_as_trio(asyncpg.connect)(url)
    try:
        return int(
            await trio_asyncio.aio_as_trio(connection.fetchval)(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                APPLICATION_NAME,
            )
        )
    finally:
        await trio_asyncio.aio_as_trio(connection.close)()


async def test_commit_without_local_publish_reaches_subscriber_and_survives_reconnect(
    postgres_url: str, tmp_path: Path
) -> None:
    backend = BackendConfig("postgres", postgres_url, tmp_path)
    async with trio_asyncio.open_loop(), open_store(backend.settings()) as store:
        await store.migrate()
        owner = await store.create_user("a@example.com", None, None)
        project = await store.create_project(owner.id, "p", None)
        hub = EventHub(buffer=64, store=store)
        bus = PostgresEventBus(
            database_url=postgres_url,
            store=store,
            hub=hub,
            poll_interval_s=0.05,
            backoff_initial_s=0.2,
            backoff_max_s=0.2,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            await nursery.start(bus.run)
            assert bus.statistics().connected
            with hub.subscribe(project.id) as sub:
                hub.set_baseline(project.id, 0)
                await append(store, project.id, 3)  # another instance's commit: no publish
                assert [f.seq for f in await receive(sub, 3)] == [1, 2, 3]
                assert bus.statistics().notifications >= 1

                assert await terminate_listener(postgres_url) == 1
                await wait_until(lambda: not bus.statistics().connected)
                await append(store, project.id, 2)  # delivered by polling or after reconnect
                assert [f.seq for f in await receive(sub, 2)] == [4, 5]
                await wait_until(lambda: bus.statistics().connects == 2)
                await append(store, project.id, 1)
                assert [f.seq for f in await receive(sub, 1)] == [6]
            nursery.cancel_scope.cancel()


async def test_deleted_notification_ends_streams(postgres_url: str, tmp_path: Path) -> None:
    backend = BackendConfig("postgres", postgres_url, tmp_path)
    async with trio_asyncio.open_loop(), open_store(backend.settings()) as store:
        await store.migrate()
        hub = EventHub(buffer=8, store=store)
        bus = PostgresEventBus(database_url=postgres_url, store=store, hub=hub)
        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            with hub.subscribe("p1") as sub:
                connection = await trio_asyncio.aio_as_trio(asyncpg.connect)(postgres_url)
                await trio_asyncio.aio_as_trio(connection.execute)(
                    "SELECT pg_notify('stretto_events', 'p1:deleted')"
                )
                await trio_asyncio.aio_as_trio(connection.close)()
                frames = await receive(sub, 1)
                assert frames[0].data.startswith(b"event: project.deleted\n")
                with pytest.raises(trio.EndOfChannel):
                    await sub.receive()
                assert sub.closed_reason == "project_deleted"
            nursery.cancel_scope.cancel()


async def test_starts_and_polls_while_the_database_is_unreachable() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub = EventHub(buffer=8)
    bus = PostgresEventBus(
        database_url=f"postgresql://nobody@127.0.0.1:{port}/none",
        store=None,  # type: ignore[arg-type]  # never reached: the hub has no store either
        hub=hub,
        poll_interval_s=0.01,
        backoff_initial_s=0.05,
        backoff_max_s=0.05,
    )
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        assert not bus.statistics().connected
        await wait_until(lambda: bus.statistics().polls >= 3)
        assert bus.statistics().connects == 0
        nursery.cancel_scope.cancel()
