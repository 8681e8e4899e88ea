"""The hub and the stream against a store that fails: a gap is never skipped because a
read failed (run-filtered subscribers cannot repair it themselves), and no error class
ends the hub. The store is the real one (SQLite and PostgreSQL) behind a wrapper that
makes ``events_after`` raise the next ``failures`` times."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from server.errors import AppError
from server.events.hub import EventHub, Frame, Subscription
from server.events.model import new_event
from server.events.sse import RETRY_FRAME, SSEDecoder
from server.events.stream import StreamOptions, open_event_stream
from tests.fixtures.postgres import open_migrated_store

if TYPE_CHECKING:
    import pytest

    from server.events.model import StoredEvent
    from server.store.protocol import Store
    from tests.fixtures.postgres import BackendConfig


class InternalClientError(Exception):
    """Stands in for asyncpg's ``InternalClientError``: not an ``AppError``, not
    translated by the store."""


class FlakyStore:
    """The real store; ``events_after`` raises ``error`` while ``failures`` > 0."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failures = 0
        self.error: Exception = AppError("database unavailable")
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def events_after(self, project_id: str, after: int, limit: int) -> list[StoredEvent]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return await self._store.events_after(project_id, after, limit)


async def receive(subscription: Subscription, count: int) -> list[Frame]:
    with trio.fail_after(10):  # a hang guard, not a timing assertion
        return [await subscription.receive() for _ in range(count)]


async def run_events(store: Store, project_id: str, run_id: str, count: int) -> list[StoredEvent]:
    return await store.append_events(
        [new_event("run.planning", project_id, run_id=run_id) for _ in range(count)]
    )


async def test_run_filtered_gap_survives_a_failed_read(backend: BackendConfig) -> None:
    """The bug: ``_fill`` swallowed the error and skipped the gap; a ``?run_id=``
    subscriber (excluded from the stream's own repair) silently lost event 2."""
    async with open_migrated_store(backend) as real, trio.open_nursery() as nursery:
        store = FlakyStore(real)
        owner = await real.create_user("a@example.com", None, None)
        project = await real.create_project(owner.id, "p", None)
        hub = EventHub(buffer=64, store=store)
        await nursery.start(hub.run)
        with hub.subscribe(project.id, "r1") as sub:
            hub.set_baseline(project.id, 0)
            events = await run_events(real, project.id, "r1", 3)
            store.failures = 1
            hub.publish([events[0]])
            hub.publish([events[2]])  # event 2 is read from the log: the first read fails
            frames = await receive(sub, 3)
            assert [f.seq for f in frames] == [1, 2, 3]
        assert store.calls >= 2
        nursery.cancel_scope.cancel()


async def test_hub_survives_any_error_class_and_recovers(
    backend: BackendConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_migrated_store(backend) as real, trio.open_nursery() as nursery:
        store = FlakyStore(real)
        owner = await real.create_user("a@example.com", None, None)
        project = await real.create_project(owner.id, "p", None)
        hub = EventHub(buffer=64, store=store)
        await nursery.start(hub.run)
        with hub.subscribe(project.id) as sub:
            hub.set_baseline(project.id, 0)
            events = await run_events(real, project.id, "r1", 4)
            store.error = InternalClientError("cannot switch to state 12")
            store.failures = 3  # the database is away for a while, then returns
            hub.publish([events[0]])
            hub.notify_committed(project.id, 4)  # 2..4 only in the log
            frames = await receive(sub, 4)
            assert [f.seq for f in frames] == [1, 2, 3, 4]
            assert store.failures == 0
            failures = [r for r in caplog.records if "event log read failed" in r.getMessage()]
            assert len(failures) == 1  # rate-limited: one line for the outage
            # Still serving afterwards.
            more = await run_events(real, project.id, "r1", 1)
            hub.publish(more)
            assert [f.seq for f in await receive(sub, 1)] == [5]
        nursery.cancel_scope.cancel()


async def test_stream_replay_survives_a_failing_store(backend: BackendConfig) -> None:
    """The stream retries its log reads (any error class) instead of ending or skipping."""
    async with open_migrated_store(backend) as real:
        store = FlakyStore(real)
        owner = await real.create_user("a@example.com", None, None)
        project = await real.create_project(owner.id, "p", None)
        await run_events(real, project.id, "r2", 1)
        await run_events(real, project.id, "r1", 2)
        hub = EventHub(buffer=64)
        options = StreamOptions(
            heartbeat_s=600,
            max_lifetime_s=600,
            run_id="r1",
            last_event_id_given=True,
            last_event_id=0,
        )
        body = await open_event_stream(hub, store, project.id, options)
        try:
            with trio.fail_after(10):  # a hang guard
                assert await body.__anext__() == RETRY_FRAME
                store.error = InternalClientError("cannot switch to state 12")
                store.failures = 2
                messages = SSEDecoder().feed(await body.__anext__())
            assert [m.id for m in messages] == ["2", "3"]
            assert store.failures == 0
            live = await run_events(real, project.id, "r1", 1)
            hub.publish(live)
            with trio.fail_after(10):
                assert [m.id for m in SSEDecoder().feed(await body.__anext__())] == ["4"]
        finally:
            await body.aclose()
        assert hub.statistics().subscribers == 0
