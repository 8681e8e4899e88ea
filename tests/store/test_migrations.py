"""Schema migrations: versioned, idempotent, visible through pending_migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio_asyncio

from server.store.factory import open_store
from server.store.migrations import MIGRATIONS, latest_version

if TYPE_CHECKING:
    from tests.fixtures.postgres import BackendConfig


async def test_migrate_is_versioned_and_idempotent(backend: BackendConfig) -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert len(versions) >= 2
    async with trio_asyncio.open_loop(), open_store(backend.settings()) as store:
        assert store.backend == ("sqlite" if backend.name == "sqlite" else "postgresql")
        await store.ping()
        assert await store.pending_migrations() == versions
        assert await store.migrate() == versions
        assert await store.pending_migrations() == []
        assert await store.migrate() == []
    async with trio_asyncio.open_loop(), open_store(backend.settings()) as again:
        assert await again.pending_migrations() == []
        assert await again.migrate() == []
    assert latest_version() == versions[-1]


async def test_factory_creates_sqlite_data_dir(backend: BackendConfig) -> None:
    nested = backend.data_dir / "nested" / "deeper"
    async with trio_asyncio.open_loop(), open_store(backend.settings(data_dir=nested)) as store:
        await store.migrate()
        user = await store.create_user("x@example.com", None, None)
        assert await store.get_user(user.id) == user
    assert (nested / "stretto.sqlite3").exists() == (backend.name == "sqlite")
