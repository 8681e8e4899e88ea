"""SQLite connections run in worker threads: one writer behind a lock, a few readers.

``SqliteDatabase`` owns the connections. Every unit of work is a plain function of a
``sqlite3.Connection`` run by ``trio.to_thread.run_sync`` (never on the event loop) inside
one transaction: ``BEGIN IMMEDIATE`` for writes (serialized by a ``trio.Lock``, so there is
one writer at a time in this process; ``busy_timeout`` covers other processes), a deferred
``BEGIN`` for reads (a consistent WAL snapshot). Driver errors are translated by
``faults.translate_sqlite``; ``AppError`` raised by a unit passes through after the rollback.
Cancellation waits for the thread to finish its unit (the transaction is never left
half-done), then propagates.

Deadlines: waiting for the writer lock or a reader slot is bounded by ``timeout_s``, and
so are SQLite's own wait for another process's lock (``busy_timeout``) and the unit's
statements (a progress handler interrupts them at the deadline, and the transaction rolls
back); past it: ``StoreUnavailable``. A blocked disk write cannot be interrupted.
``open`` refuses a damaged file (``PRAGMA quick_check``) with ``StoreCorrupt``; a
corruption found later makes every ``ping`` fail with it too.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import TYPE_CHECKING, TypeVar

import trio

from server.errors import AppError, StoreCorrupt, StoreUnavailable
from server.store.faults import deadline_passed, sqlite_is_corrupt, translate_sqlite

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0


def connect(path: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), rows by column name."""
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=timeout_s
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class _Deadline:
    """The deadline of the unit a connection runs; its progress handler interrupts past it."""

    PROGRESS_EVERY = 20_000  # SQLite VM instructions between checks

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.at = math.inf
        conn.set_progress_handler(self._passed, self.PROGRESS_EVERY)

    def _passed(self) -> bool:
        return time.monotonic() > self.at


def _in_transaction(
    conn: sqlite3.Connection,
    begin: str,
    fn: Callable[[sqlite3.Connection], T],
    deadline: _Deadline,
    seconds: float,
) -> T:
    deadline.at = time.monotonic() + seconds
    try:
        conn.execute(begin)
        try:
            result = fn(conn)
        except BaseException:
            deadline.at = math.inf  # the rollback must not be interrupted
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    except AppError:
        raise
    except Exception as exc:
        if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
            raise deadline_passed("sqlite", seconds) from exc
        translated = translate_sqlite(exc)
        if translated is exc:
            raise
        raise translated from exc
    finally:
        deadline.at = math.inf


def quick_check(conn: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` finds the file sound, else its first complaint."""
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    first = str(rows[0][0]) if rows else "no answer"
    if first == "ok":
        return None
    lines = [line for line in first.splitlines() if not line.startswith("***")]
    return " ".join(lines) or first.replace("\n", " ")


class SqliteDatabase:
    """The connections of one SQLite file; ``aclose`` closes them all."""

    def __init__(
        self,
        writer: sqlite3.Connection,
        readers: list[sqlite3.Connection],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._timeout_s = timeout_s
        self._corrupt = False
        self._writer = writer
        self._readers = readers
        self._write_lock = trio.Lock()
        self._deadlines = {conn: _Deadline(conn) for conn in (writer, *readers)}
        self._reader_count = len(readers)
        self._reader_slots = trio.Semaphore(len(readers))
        self._threads = trio.CapacityLimiter(len(readers) + 1)
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, readers: int = 4, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SqliteDatabase:
        """Open the writer (which switches the file to WAL) and ``readers`` reader connections.

        Raises ``StoreCorrupt`` when ``PRAGMA quick_check`` finds the file damaged, else
        ``StoreUnavailable`` when it cannot be opened; both with a one-line message.
        """

        def open_all() -> SqliteDatabase:
            opened: list[sqlite3.Connection] = []
            try:
                opened.append(connect(path, timeout_s))
                problem = quick_check(opened[0])
                if problem is not None:
                    raise StoreCorrupt(
                        f"the SQLite database {path} is damaged ({problem}); "
                        "restore it from a backup (stretto backup)"
                    )
                for _ in range(readers):
                    opened.append(connect(path, timeout_s))
            except (sqlite3.Error, OSError, StoreCorrupt) as exc:
                for conn in opened:
                    conn.close()
                if isinstance(exc, StoreCorrupt):
                    raise
                if sqlite_is_corrupt(exc):  # "file is not a database": a damaged header
                    raise StoreCorrupt(
                        f"the SQLite database {path} is damaged ({exc}); "
                        "restore it from a backup (stretto backup)"
                    ) from exc
                raise StoreUnavailable(f"cannot open the SQLite database {path}: {exc}") from exc
            return cls(opened[0], opened[1:], timeout_s=timeout_s)

        return await trio.to_thread.run_sync(open_all)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout_s: float | None = None
    ) -> T:
        """Run ``fn`` in a write transaction (one at a time); ``timeout_s`` overrides the
        deadline of its statements (``inf``: none)."""
        self._check_open()
        locked = False
        with trio.move_on_after(self._timeout_s):
            await self._write_lock.acquire()
            locked = True
        if not locked:
            raise deadline_passed("sqlite", self._timeout_s)
        try:
            return await self._in_thread(self._writer, "BEGIN IMMEDIATE", fn, timeout_s)
        finally:
            self._write_lock.release()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a read transaction on a free reader connection."""
        self._check_open()
        got_slot = False
        with trio.move_on_after(self._timeout_s):
            await self._reader_slots.acquire()
            got_slot = True
        if not got_slot:
            raise deadline_passed("sqlite", self._timeout_s)
        conn = self._readers.pop()
        try:
            return await self._in_thread(conn, "BEGIN", fn, None)
        finally:
            self._readers.append(conn)
            self._reader_slots.release()

    async def _in_thread(
        self,
        conn: sqlite3.Connection,
        begin: str,
        fn: Callable[[sqlite3.Connection], T],
        timeout_s: float | None,
    ) -> T:
        seconds = self._timeout_s if timeout_s is None else timeout_s
        try:
            return await trio.to_thread.run_sync(
                _in_transaction, conn, begin, fn, self._deadlines[conn], seconds,
                limiter=self._threads,
            )  # fmt: skip
        except StoreCorrupt:
            self._corrupt = True
            raise

    def pool_usage(self) -> tuple[int, int, int]:
        """(connections, connections in use, connections): the writer plus the readers."""
        total = self._reader_count + 1
        busy = self._reader_count - self._reader_slots.value + int(self._write_lock.locked())
        return total, busy, total

    async def backup(self, dest: Path) -> None:
        """A consistent copy of the database at ``dest`` (SQLite's online backup API), taken
        on a reader connection while writers go on."""

        def copy(conn: sqlite3.Connection) -> None:
            target = sqlite3.connect(str(dest))
            try:
                conn.backup(target)  # one step: one snapshot, never restarted by writers
            finally:
                target.close()

        self._check_open()
        async with self._reader_slots:
            conn = self._readers.pop()
            try:
                await trio.to_thread.run_sync(copy, conn, limiter=self._threads)
            except Exception as exc:
                translated = translate_sqlite(exc)
                if translated is exc:
                    raise
                raise translated from exc
            finally:
                self._readers.append(conn)

    def check_sound(self) -> None:
        """Raise ``StoreCorrupt`` once any unit found the file damaged (readiness)."""
        if self._corrupt:
            raise StoreCorrupt(details={"database": "corrupt"})

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
