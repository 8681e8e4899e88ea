"""SQLite connections run in worker threads: one writer behind a lock, a few readers.

``SqliteDatabase`` owns the connections. Every unit of work is a plain function of a
``sqlite3.Connection`` run by ``trio.to_thread.run_sync`` (never on the event loop) inside
one transaction: ``BEGIN IMMEDIATE`` for writes (serialized by a ``trio.Lock``, so there is
one writer at a time in this process; ``busy_timeout`` covers other processes), a deferred
``BEGIN`` for reads (a consistent WAL snapshot). Driver errors become ``StoreUnavailable``;
``AppError`` raised by a unit passes through after the rollback. Cancellation waits for the
thread to finish its unit (the transaction is never left half-done), then propagates.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, TypeVar

import trio

from server.errors import AppError, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), rows by column name."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _in_transaction(
    conn: sqlite3.Connection, begin: str, fn: Callable[[sqlite3.Connection], T]
) -> T:
    try:
        conn.execute(begin)
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    except AppError:
        raise
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"SQLite error: {exc}") from exc


class SqliteDatabase:
    """The connections of one SQLite file; ``aclose`` closes them all."""

    def __init__(self, writer: sqlite3.Connection, readers: list[sqlite3.Connection]) -> None:
        self._writer = writer
        self._readers = readers
        self._write_lock = trio.Lock()
        self._reader_slots = trio.Semaphore(len(readers))
        self._threads = trio.CapacityLimiter(len(readers) + 1)
        self._closed = False

    @classmethod
    async def open(cls, path: Path, readers: int = 4) -> SqliteDatabase:
        """Open the writer (which switches the file to WAL) and ``readers`` reader connections."""

        def open_all() -> SqliteDatabase:
            opened: list[sqlite3.Connection] = []
            try:
                opened.append(connect(path))
                for _ in range(readers):
                    opened.append(connect(path))
            except sqlite3.Error as exc:
                for conn in opened:
                    conn.close()
                raise StoreUnavailable(f"cannot open SQLite database {path}: {exc}") from exc
            return cls(opened[0], opened[1:])

        return await trio.to_thread.run_sync(open_all)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction (one at a time)."""
        self._check_open()
        async with self._write_lock:
            return await trio.to_thread.run_sync(
                _in_transaction, self._writer, "BEGIN IMMEDIATE", fn, limiter=self._threads
            )

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a read transaction on a free reader connection."""
        self._check_open()
        async with self._reader_slots:
            conn = self._readers.pop()
            try:
                return await trio.to_thread.run_sync(
                    _in_transaction, conn, "BEGIN", fn, limiter=self._threads
                )
            finally:
                self._readers.append(conn)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("The store is closed.")

    async def aclose(self) -> None:
        """Close every connection once in-flight units finish."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            for _ in range(len(self._readers)):
                await self._reader_slots.acquire()
            conns = [self._writer, *self._readers]

            def close_all() -> None:
                for conn in conns:
                    conn.close()

            await trio.to_thread.run_sync(close_all)
