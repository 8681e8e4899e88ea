"""EventHub and EventRetention against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from server.events.hub import EventHub, Frame, Subscription
from server.events.model import new_event
from server.events.retention import EventRetention
from tests.fixtures.postgres import open_migrated_store

if TYPE_CHECKING:
    from server.events.model import StoredEvent
    from server.store.protocol import Store
    from tests.fixtures.postgres import BackendConfig


async def append(store: Store, project_id: str, count: int) -> list[StoredEvent]:
    return await store.append_events(
        [new_event("file.deleted", project_id, path=f"f{i}") for i in range(count)]
    )


async def receive(subscription: Subscription, count: int) -> list[Frame]:
    with trio.fail_after(10):  # a hang guard, not a timing assertion
        return [await subscription.receive() for _ in range(count)]


async def test_gap_is_filled_from_the_log(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store, trio.open_nursery() as nursery:
        owner = await store.create_user("a@example.com", None, None)
        project = await store.create_project(owner.id, "p", None)
        hub = EventHub(buffer=64, store=store)
        await nursery.start(hub.run)
        with hub.subscribe(project.id) as sub:
            hub.set_baseline(project.id, 0)
            events = await append(store, project.id, 5)
            hub.publish([events[0]])
            hub.publish([events[3]])  # 2 and 3 never published here: read from the log
            frames = await receive(sub, 4)
            assert [f.seq for f in frames] == [1, 2, 3, 4]
            assert frames[1].data.startswith(b"id: 2\nevent: file.deleted\n")
            # A notification of a commit made elsewhere (PostgreSQL NOTIFY) catches up.
            hub.notify_committed(project.id, 5)
            assert [f.seq for f in await receive(sub, 1)] == [5]
            hub.publish(events)  # all duplicates now
            more = await append(store, project.id, 1)
            hub.publish(more)
            assert [f.seq for f in await receive(sub, 1)] == [6]
        stats = hub.statistics()
        assert stats.duplicates >= 5
        assert stats.gap_fills >= 2
        nursery.cancel_scope.cancel()


async def test_notification_before_the_baseline_is_not_lost(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store, trio.open_nursery() as nursery:
        owner = await store.create_user("a@example.com", None, None)
        project = await store.create_project(owner.id, "p", None)
        hub = EventHub(buffer=64, store=store)
        await nursery.start(hub.run)
        with hub.subscribe(project.id) as sub:
            await append(store, project.id, 2)
            hub.notify_committed(project.id, 2)  # arrives before the endpoint's baseline
            await trio.testing.wait_all_tasks_blocked()
            hub.set_baseline(project.id, 1)  # the endpoint had read the log up to 1
            assert [f.seq for f in await receive(sub, 1)] == [2]
        nursery.cancel_scope.cancel()


async def test_retention_trims_active_projects(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store:
        owner = await store.create_user("a@example.com", None, None)
        project = await store.create_project(owner.id, "p", None)
        idle = await store.create_project(owner.id, "idle", None)
        hub = EventHub(buffer=8, store=store)
        hub.publish(await append(store, project.id, 5))
        await append(store, idle.id, 5)  # committed but not published: not active here
        young = EventRetention(store=store, hub=hub, keep_last=2, max_age_s=3600)
        assert await young.trim_once() == 0  # beyond the count but not old enough
        hub.publish(await append(store, project.id, 1))
        # A negative age: every event counts as old.
        old = EventRetention(store=store, hub=hub, keep_last=2, max_age_s=-60)
        assert await old.trim_once() == 4
        assert await store.event_bounds(project.id) == (5, 6)
        assert [e.seq for e in await store.events_after(project.id, 0, 10)] == [5, 6]
        assert await store.event_bounds(idle.id) == (1, 5)
        assert await old.trim_once() == 0  # nothing active since
