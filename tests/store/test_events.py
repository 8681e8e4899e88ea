"""The event log: multi-project appends, replay, bounds, trimming; NOTIFY on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio_asyncio

from server.errors import NotFound
from server.events.model import NewEvent
from server.events.pgchannel import EVENTS_CHANNEL
from server.timeutil import new_id, utc_now
from tests.fixtures.postgres import BackendConfig, open_migrated_store
from tests.store.helpers import data, put

if TYPE_CHECKING:
    from pathlib import Path

    from server.store.models import Project, User
    from server.store.protocol import Store


def _event(project_id: str, n: int) -> NewEvent:
    return NewEvent(project_id, "step.started", {"type": "step.started", "project_id": project_id,
                                                 "n": n, "text": "é ✓"})  # fmt: skip


async def test_append_events_across_projects(store: Store, user: User, project: Project) -> None:
    second = await store.create_project(user.id, "second", None)
    stored = await store.append_events(
        [_event(project.id, 1), _event(second.id, 1), _event(project.id, 2)]
    )
    assert [(e.project_id, e.seq) for e in stored] == [
        (project.id, 1), (second.id, 1), (project.id, 2),
    ]  # fmt: skip
    assert data(stored[2]) == {"type": "step.started", "project_id": project.id, "n": 2,
                               "text": "é ✓"}  # fmt: skip
    replay = await store.events_after(project.id, 0, 10)
    assert replay == [stored[0], stored[2]]
    assert await store.events_after(project.id, 1, 10) == [stored[2]]
    assert await store.events_after(project.id, 0, 1) == [stored[0]]
    assert await store.append_events([]) == []


async def test_append_to_missing_project_commits_nothing(store: Store, project: Project) -> None:
    with pytest.raises(NotFound):
        await store.append_events([_event(project.id, 1), _event(new_id(), 1)])
    assert await store.event_bounds(project.id) == (1, 0)


async def test_event_bounds(store: Store, project: Project) -> None:
    assert await store.event_bounds(project.id) == (1, 0)
    await store.append_events([_event(project.id, i) for i in range(3)])
    assert await store.event_bounds(project.id) == (1, 3)
    assert await store.event_bounds(new_id()) == (1, 0)


async def test_trim_keeps_gap_free_suffix(store: Store, project: Project) -> None:
    await store.append_events([_event(project.id, i) for i in range(10)])
    future = utc_now() + timedelta(hours=1)
    past = utc_now() - timedelta(hours=1)
    assert await store.trim_events(project.id, keep_last=4, older_than=past) == 0  # all young
    assert await store.trim_events(project.id, keep_last=4, older_than=future) == 6
    assert [e.seq for e in await store.events_after(project.id, 0, 100)] == [7, 8, 9, 10]
    assert await store.event_bounds(project.id) == (7, 10)
    assert await store.trim_events(project.id, keep_last=0, older_than=future) == 4
    assert await store.event_bounds(project.id) == (11, 10)
    _, _, event = await put(store, project.id, "a")
    assert event.seq == 11  # trimming never rewinds the sequence


async def test_trim_stops_at_first_young_event(store: Store, project: Project) -> None:
    await store.append_events([_event(project.id, i) for i in range(3)])
    cut = utc_now()
    await trio.sleep(0.002)  # real time: the next events must be strictly younger than ``cut``
    await store.append_events([_event(project.id, i) for i in range(3)])
    assert await store.trim_events(project.id, keep_last=0, older_than=cut) == 3
    assert [e.seq for e in await store.events_after(project.id, 0, 100)] == [4, 5, 6]


@pytest.mark.postgres
async def test_postgres_notifies_once_per_project_per_transaction(
    postgres_url: str, tmp_path: Path
) -> None:
    import asyncpg

    payloads: list[str] = []
    backend = BackendConfig("postgres", postgres_url, tmp_path)
    async with open_migrated_store(backend) as store:
        listener = await trio_asyncio.aio_as_trio(asyncpg.connect)(postgres_url)
        send, receive = trio.open_memory_channel[str](100)

        def on_notify(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            assert channel == EVENTS_CHANNEL
            send.send_nowait(payload)

        try:
            await trio_asyncio.aio_as_trio(listener.add_listener)(EVENTS_CHANNEL, on_notify)
            user = await store.create_user("n@example.com", None, None)
            first = await store.create_project(user.id, "one", None)
            second = await store.create_project(user.id, "two", None)
            await store.append_events(
                [_event(first.id, 1), _event(second.id, 1), _event(first.id, 2)]
            )
            await put(store, first.id, "a.txt")
            with pytest.raises(NotFound):  # rolled back: no notification
                await store.delete_file(first.id, "missing")
            await store.update_project(user.id, second.id, name="2", description=None,
                                       set_description=False)  # fmt: skip
            with trio.fail_after(5):
                for _ in range(4):
                    payloads.append(await receive.receive())
        finally:
            await trio_asyncio.aio_as_trio(listener.close)()
    assert sorted(payloads[:2]) == sorted([f"{first.id}:2", f"{second.id}:1"])
    assert payloads[2:] == [f"{first.id}:3", f"{second.id}:2"]
