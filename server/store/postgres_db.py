"""An asyncpg pool driven from Trio through trio-asyncio.

``PostgresDatabase`` owns the pool. A unit of work is an asyncio-flavored coroutine
function of one ``asyncpg.Connection``; ``run`` executes it on the trio-asyncio loop with
``aio_as_trio`` (one Trio/asyncio hop per unit), on one pooled connection, inside one
transaction unless told otherwise. The caller must be inside ``trio_asyncio.open_loop()``.
Cancelling the Trio caller cancels the asyncio task (asyncpg cancels the query and the
transaction rolls back). Connection and driver errors become ``StoreUnavailable``;
``AppError`` raised by a unit passes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import trio_asyncio

from server.errors import AppError, StoreUnavailable

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (untyped library)
Unit = Callable[[Conn], Awaitable[T]]

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class PostgresDatabase:
    """One asyncpg pool; ``aclose`` closes it."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresDatabase:
        """Create the pool (one connection at first). Raises ``StoreUnavailable``."""

        async def create() -> Any:
            return await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, command_timeout=60, timeout=10
            )

        try:
            pool = await trio_asyncio.aio_as_trio(create)()
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    def pool_usage(self) -> tuple[int, int, int]:
        """(open connections, connections checked out, maximum) of the pool, right now."""
        size = int(self._pool.get_size())
        return size, size - int(self._pool.get_idle_size()), int(self._pool.get_max_size())

    async def run(self, unit: Unit[T], *, transaction: bool = True, readonly: bool = False) -> T:
        """Run ``unit`` on one pooled connection, in a transaction unless ``transaction=False``.

        ``readonly`` runs it in a read-only repeatable-read transaction (a consistent snapshot
        for multi-statement reads).
        """

        async def in_asyncio() -> T:
            async with self._pool.acquire() as conn:
                if not transaction:
                    return await unit(conn)
                if readonly:
                    tx = conn.transaction(isolation="repeatable_read", readonly=True)
                else:
                    tx = conn.transaction()
                async with tx:
                    return await unit(conn)

        try:
            result: T = await trio_asyncio.aio_as_trio(in_asyncio)()
        except AppError:
            raise
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL error: {exc}") from exc
        return result

    async def aclose(self) -> None:
        """Close the pool (waits for connections in use to be released)."""

        async def close() -> None:
            await self._pool.close()

        try:
            await trio_asyncio.aio_as_trio(close)()
        except DRIVER_ERRORS:
            self._pool.terminate()
