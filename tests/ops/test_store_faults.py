"""The PostgreSQL store under faults, on a real cluster: connections killed, restarts (fast
and immediate), a stopped server, a frozen one (SIGSTOP).

What must hold each time: every failing call raises ``StoreUnavailable`` (no other class
escapes), its message names neither the address nor the driver, a frozen server is
given up on at the deadline, the store recovers once the database is back, and the event
log stays gap-free with every acknowledged append in it. Restarts run on a cluster of the
test's own (``dedicated_cluster``), with synchronous commits so that ``-m immediate``
keeps what was acknowledged.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import asyncpg
import pytest
import trio
import trio_asyncio

from server.config import Settings
from server.errors import StoreUnavailable
from server.events.model import new_event
from server.store.factory import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from server.store.protocol import Store
    from tests.fixtures.postgres import LocalCluster

pytestmark = pytest.mark.postgres

TIMEOUT_S = 1.0
RECOVERY_S = 30.0  # hang guards, not timing assertions


class Load:
    """Writers and readers hammering the store; any exception but ``StoreUnavailable``
    propagates (and fails the test)."""

    def __init__(self, store: Store, project_id: str, port: int) -> None:
        self.store = store
        self.project_id = project_id
        self.port = port
        self.acked: list[int] = []
        self.unavailable = 0

    def _check(self, exc: StoreUnavailable) -> None:
        self.unavailable += 1
        assert exc.status == 503
        assert exc.code == "not_ready"
        assert str(self.port) not in exc.message
        assert "asyncpg" not in exc.message

    async def writer(self) -> None:
        while True:
            try:
                stored = await self.store.append_events(
                    [new_event("file.deleted", self.project_id, path="x")]
                )
                self.acked.extend(e.seq for e in stored)
            except StoreUnavailable as exc:
                self._check(exc)
            await trio.sleep(0.01)

    async def reader(self) -> None:
        while True:
            try:
                await self.store.events_after(self.project_id, 0, 50)
                await self.store.get_project("nobody", self.project_id)
            except StoreUnavailable as exc:
                self._check(exc)
            await trio.sleep(0.01)


async def recovered(store: Store) -> int:
    """Call until a call succeeds (every failure must be ``StoreUnavailable``); failures."""
    failures = 0
    with trio.fail_after(RECOVERY_S):
        while True:
            try:
                await store.ping()
                return failures
            except StoreUnavailable:
                failures += 1
                await trio.sleep(0.1)


async def assert_log_whole(store: Store, project_id: str, acked: list[int]) -> None:
    events = await store.events_after(project_id, 0, 100_000)
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free, no duplicate
    assert set(acked) <= set(seqs)  # nothing acknowledged was lost


async def new_project(store: Store) -> str:
    user = await store.create_user(f"u{trio.current_time()}@example.com", None, None)
    return (await store.create_project(user.id, "p", None)).id


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=url, db_pool_size=4, db_timeout_s=TIMEOUT_S)


async def terminate_backends(url: str) -> int:
    """``pg_terminate_backend`` on every other connection to this database."""
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(url)
    try:
        return int(
            await trio_asyncio.aio_as_trio(conn.fetchval)(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def test_terminated_connections(postgres_url: str, tmp_path: Path) -> None:
    async with trio_asyncio.open_loop(), open_store(settings_for(postgres_url, tmp_path)) as store:
        await store.migrate()
        project_id = await new_project(store)
        load = Load(store, project_id, 0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.writer)
            nursery.start_soon(load.reader)
            for _ in range(5):
                await trio.sleep(0.2)
                assert await terminate_backends(postgres_url) >= 1
                await recovered(store)
            nursery.cancel_scope.cancel()
        await assert_log_whole(store, project_id, load.acked)
        assert load.acked


async def _restart(cluster: LocalCluster, action: str, mode: str) -> None:
    await trio.to_thread.run_sync(cluster.pg_ctl, action, mode)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_restarts_mid_load(
    dedicated_cluster: tuple[LocalCluster, str], tmp_path: Path, mode: str
) -> None:
    cluster, url = dedicated_cluster
    async with trio_asyncio.open_loop(), open_store(settings_for(url, tmp_path)) as store:
        await store.migrate()
        project_id = await new_project(store)
        load = Load(store, project_id, cluster.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.writer)
            nursery.start_soon(load.reader)
            for _ in range(3):  # a 1-in-several failure cannot hide
                await trio.sleep(0.3)
                await _restart(cluster, "restart", mode)
                await recovered(store)
            nursery.cancel_scope.cancel()
        await assert_log_whole(store, project_id, load.acked)
        assert load.unavailable > 0  # the restarts were seen, and all as StoreUnavailable


async def test_stopped_then_back(
    dedicated_cluster: tuple[LocalCluster, str], tmp_path: Path
) -> None:
    cluster, url = dedicated_cluster
    async with trio_asyncio.open_loop(), open_store(settings_for(url, tmp_path)) as store:
        await store.migrate()
        project_id = await new_project(store)
        await _restart(cluster, "stop", "fast")
        for _ in range(10):
            with pytest.raises(StoreUnavailable) as caught:
                await store.events_after(project_id, 0, 10)
            assert str(cluster.port) not in caught.value.message
            await trio.sleep(0.2)
        await _restart(cluster, "start", "fast")
        await recovered(store)
        assert await store.events_after(project_id, 0, 10) == []


async def test_frozen_hits_the_deadline_then_recovers(
    dedicated_cluster: tuple[LocalCluster, str], tmp_path: Path
) -> None:
    cluster, url = dedicated_cluster
    async with trio_asyncio.open_loop(), open_store(settings_for(url, tmp_path)) as store:
        await store.migrate()
        project_id = await new_project(store)
        cluster.signal(signal.SIGSTOP)
        try:
            for call in (store.ping, lambda: store.events_after(project_id, 0, 10), store.ping):
                with trio.fail_after(TIMEOUT_S + 4), pytest.raises(StoreUnavailable) as caught:
                    await call()
                assert caught.value.details == {"database": "timeout"}
                assert caught.value.headers()["Retry-After"]
        finally:
            cluster.signal(signal.SIGCONT)
        await recovered(store)
        stored = await store.append_events([new_event("file.deleted", project_id, path="a")])
        assert [e.seq for e in stored] == [1]
