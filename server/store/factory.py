"""Open the store the settings select: PostgreSQL with ``database_url``, else SQLite.

``open_store`` does not migrate: the caller runs ``await store.migrate()`` (``stretto
serve`` and ``stretto migrate``) or checks ``pending_migrations()`` (readiness). With
PostgreSQL the caller must already be inside ``trio_asyncio.open_loop()``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio
import trio_asyncio  # noqa: F401  (before asyncpg: it patches asyncio's loop lookup)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from server.config import Settings
    from server.store.protocol import Store


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """Yield an open store; close it on exit. Raises ``StoreUnavailable`` (one-line message
    naming the cause) when it can't open, ``StoreCorrupt`` for a damaged SQLite file."""
    store: Store
    if settings.database_url:
        from server.store.postgres import PostgresStore

        store = await PostgresStore.open(
            settings.database_url,
            pool_size=settings.db_pool_size,
            timeout_s=settings.db_timeout_s,
        )
    else:
        from server.store.sqlite import SqliteStore

        await trio.Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        store = await SqliteStore.open(settings.sqlite_path, timeout_s=settings.db_timeout_s)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
