"""An asyncpg pool driven from Trio through trio-asyncio.

``PostgresDatabase`` owns the pool. A unit of work is an asyncio-flavored coroutine
function of one ``asyncpg.Connection``; ``run`` executes it on the trio-asyncio loop with
``aio_as_trio`` (one Trio/asyncio hop per unit), on one pooled connection, inside one
transaction unless told otherwise. The caller must be inside ``trio_asyncio.open_loop()``.

Deadlines: every ``run`` (pool acquire plus the unit) ends within ``timeout_s``; past it
the asyncio task is cancelled, the connection is terminated (never rolled back over a
dead or frozen socket) and ``StoreUnavailable`` is raised. Any other failure of the
connection also terminates it, so the pool hands out only healthy ones. Driver errors are
translated by ``faults.translate_postgres``; ``AppError`` raised by a unit passes through
after a rollback. Cancelling the Trio caller cancels the unit the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import trio
import trio_asyncio

from server.errors import AppError, StoreUnavailable
from server.store.faults import deadline_passed, log_driver_error, translate_postgres

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (untyped library)
Unit = Callable[[Conn], Awaitable[T]]

DEFAULT_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 10.0


class PostgresDatabase:
    """One asyncpg pool; ``aclose`` closes it."""

    def __init__(self, pool: Any, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> PostgresDatabase:
        """Create the pool (one connection at first). Raises ``StoreUnavailable`` with a
        one-line cause (for the start-up message; it names the host, never the password)."""

        async def create() -> Any:
            asyncio.get_running_loop().set_exception_handler(_log_loop_error)
            return await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                command_timeout=None,  # run's Trio deadline bounds every call
                timeout=OPEN_TIMEOUT_S,
            )

        where = _address(url)
        try:
            with trio.fail_after(OPEN_TIMEOUT_S + 1):
                pool = await trio_asyncio.aio_as_trio(create)()
        except trio.TooSlowError:
            raise StoreUnavailable(f"cannot reach PostgreSQL at {where}: timed out") from None
        except Exception as exc:
            translated = translate_postgres(exc)
            if translated is exc:
                raise
            cause = _cause(exc)
            raise StoreUnavailable(f"cannot reach PostgreSQL at {where}: {cause}") from exc
        return cls(pool, timeout_s=timeout_s)

    def pool_usage(self) -> tuple[int, int, int]:
        """(open connections, connections checked out, maximum) of the pool, right now."""
        size = int(self._pool.get_size())
        return size, size - int(self._pool.get_idle_size()), int(self._pool.get_max_size())

    async def run(
        self,
        unit: Unit[T],
        *,
        transaction: bool = True,
        readonly: bool = False,
        timeout_s: float | None = None,
    ) -> T:
        """Run ``unit`` on one pooled connection, in a transaction unless ``transaction=False``.

        ``readonly`` runs it in a read-only repeatable-read transaction (a consistent snapshot
        for multi-statement reads). ``timeout_s`` overrides the deadline (``inf``: none).
        Raises ``StoreUnavailable`` (down, too slow), ``StoreFailure`` or the unit's ``AppError``.
        """
        pool = self._pool

        async def in_asyncio() -> T:
            conn = await pool.acquire()
            healthy = False
            try:
                if not transaction:
                    try:
                        result = await unit(conn)
                    except AppError:
                        healthy = True
                        raise
                else:
                    if readonly:
                        tx = conn.transaction(isolation="repeatable_read", readonly=True)
                    else:
                        tx = conn.transaction()
                    await tx.start()
                    try:
                        result = await unit(conn)
                    except AppError:
                        await tx.rollback()
                        healthy = True
                        raise
                    await tx.commit()
                healthy = True
                return result
            finally:
                if not healthy:
                    conn.terminate()  # never talk again over a broken or frozen socket
                await pool.release(conn)

        limit = self._timeout_s if timeout_s is None else timeout_s
        with trio.move_on_after(limit) as scope:
            try:
                result: T = await trio_asyncio.aio_as_trio(in_asyncio)()
                return result
            except AppError:
                raise
            except asyncio.CancelledError as exc:  # asyncio's, not ours: the pool was closed
                log_driver_error("postgresql", exc)
                raise StoreUnavailable(details={"database": "unavailable"}) from exc
            except Exception as exc:
                translated = translate_postgres(exc)
                if translated is exc:
                    raise
                raise translated from exc
        assert scope.cancelled_caught
        raise deadline_passed("postgresql", limit)

    async def aclose(self) -> None:
        """Close the pool: wait (bounded) for connections in use, then terminate the rest."""

        async def close() -> None:
            await self._pool.close()

        with trio.move_on_after(self._timeout_s):
            try:
                await trio_asyncio.aio_as_trio(close)()
                return
            except Exception as exc:
                log_driver_error("postgresql", exc, what="close")
        self._pool.terminate()


def _log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's "exception never retrieved" reports (asyncpg leaves some when a connection
    dies mid-handshake) are logged, rate-limited. trio-asyncio's default handler would raise
    them into the loop's nursery and end the process."""
    exc = context.get("exception")
    if not isinstance(exc, BaseException):
        exc = RuntimeError(str(context.get("message") or "unhandled error in the asyncio loop"))
    log_driver_error("postgresql", exc, what="background error")


def _address(url: str) -> str:
    """``host:port`` of a database URL (never the user or password)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return "the configured address"


def _cause(exc: BaseException) -> str:
    """A short cause for the start-up line: 'connection refused', 'database "x" does not
    exist', ... (asyncpg's message is one line and holds no password)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


__all__ = ["Conn", "PostgresDatabase", "StoreUnavailable"]
