"""Driver errors become ``server.errors`` classes; damaged files, newer schemas and lock
waits are refused clearly (PostgreSQL outages: tests/ops/test_store_faults.py)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import asyncpg
import pytest
import trio

from server.errors import SchemaTooNew, StoreCorrupt, StoreFailure, StoreUnavailable
from server.events.model import new_event
from server.store.faults import log_driver_error, translate_postgres, translate_sqlite
from server.store.sqlite import SqliteStore
from server.store.sqlite_db import SqliteDatabase
from tests.fixtures.postgres import open_migrated_store

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import BackendConfig

SECRET_TEXT = "host=10.1.2.3 port=5999 password=hunter2"


def _sqlite_error(cls: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    exc = cls(message)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (asyncpg.exceptions.InternalClientError(SECRET_TEXT), StoreUnavailable),
        (asyncpg.InterfaceError(SECRET_TEXT), StoreUnavailable),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), StoreUnavailable),
        (asyncpg.exceptions.AdminShutdownError("terminating"), StoreUnavailable),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), StoreUnavailable),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), StoreUnavailable),
        (asyncpg.exceptions.SerializationError("retry"), StoreUnavailable),
        (ConnectionRefusedError(111, SECRET_TEXT), StoreUnavailable),
        (OSError(113, "no route"), StoreUnavailable),
        (TimeoutError(), StoreUnavailable),
        (asyncpg.exceptions.UndefinedColumnError("no such column"), StoreFailure),
        (asyncpg.exceptions.DataError("invalid input for query argument"), StoreFailure),
    ],
)
def test_postgres_errors_are_translated(exc: Exception, expected: type[Exception]) -> None:
    translated = translate_postgres(exc)
    assert type(translated) is expected
    assert "10.1.2.3" not in str(translated)
    assert "hunter2" not in str(translated)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_sqlite_error(sqlite3.OperationalError, "database is locked", 5), StoreUnavailable),
        (_sqlite_error(sqlite3.OperationalError, "database or disk is full", 13), StoreUnavailable),
        (_sqlite_error(sqlite3.OperationalError, "disk I/O error", 10), StoreUnavailable),
        (
            _sqlite_error(sqlite3.DatabaseError, "database disk image is malformed", 11),
            StoreCorrupt,
        ),
        (_sqlite_error(sqlite3.DatabaseError, "file is not a database", 26), StoreCorrupt),
        (_sqlite_error(sqlite3.IntegrityError, "constraint failed", 19), StoreFailure),
        (_sqlite_error(sqlite3.ProgrammingError, "bad parameter", 21), StoreFailure),
        (OSError(5, "I/O"), StoreUnavailable),
    ],
)
def test_sqlite_errors_are_translated(exc: Exception, expected: type[Exception]) -> None:
    assert type(translate_sqlite(exc)) is expected


def test_our_own_bugs_are_not_disguised() -> None:
    bug = KeyError("a bug of ours")
    assert translate_postgres(bug) is bug
    assert translate_sqlite(bug) is bug


def test_unavailable_is_503_with_retry_after() -> None:
    exc = StoreUnavailable()
    assert (exc.status, exc.code) == (503, "not_ready")
    assert exc.headers()["Retry-After"] == "1"
    assert StoreFailure().status == 500


async def _filled_sqlite(path: Path) -> str:
    store = await SqliteStore.open(path)
    try:
        await store.migrate()
        user = await store.create_user("a@example.com", None, None)
        project = await store.create_project(user.id, "p", None)
        for _ in range(20):
            await store.append_events(
                [new_event("file.deleted", project.id, path="x" * 500) for _ in range(20)]
            )
        return project.id
    finally:
        await store.aclose()


def _overwrite_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(b"\xa5" * 8192)


async def test_damaged_sqlite_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "stretto.sqlite3"
    await _filled_sqlite(path)
    _overwrite_middle(path)
    with pytest.raises(StoreCorrupt) as caught:
        await SqliteStore.open(path)
    assert "damaged" in caught.value.message
    assert "\n" not in caught.value.message


async def test_damage_found_later_turns_ping_to_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "stretto.sqlite3"
    project_id = await _filled_sqlite(path)
    store = await SqliteStore.open(path)
    try:
        await store.ping()
        _overwrite_middle(path)
        with pytest.raises(StoreCorrupt):
            await store.events_after(project_id, 0, 10_000)
        with pytest.raises(StoreCorrupt):
            await store.ping()  # readiness stays 503 from now on
    finally:
        await store.aclose()


async def test_newer_schema_is_refused(backend: BackendConfig) -> None:
    async with open_migrated_store(backend) as store:
        await store.append_events([])  # the store works

        if backend.database_url is None:
            conn = sqlite3.connect(backend.data_dir / "stretto.sqlite3")
            conn.execute(
                "INSERT INTO schema_migrations VALUES (99, 'from the future', '2099-01-01')"
            )
            conn.commit()
            conn.close()
        else:
            await store._db.run(  # type: ignore[attr-defined]
                lambda conn: conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (99, 'future')"
                )
            )
        for call in (store.pending_migrations, store.migrate):
            with pytest.raises(SchemaTooNew) as caught:
                await call()
            assert "migration 99" in str(caught.value)  # the cause (logs, CLI), not the 503 body


async def test_sqlite_lock_wait_has_a_deadline(tmp_path: Path) -> None:
    path = tmp_path / "stretto.sqlite3"
    store = await SqliteStore.open(path, timeout_s=0.2)
    try:
        await store.migrate()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with trio.fail_after(10), pytest.raises(StoreUnavailable):
                await store.create_user("b@example.com", None, None)
        finally:
            other.execute("ROLLBACK")
            other.close()
        await store.create_user("b@example.com", None, None)  # and it recovers
    finally:
        await store.aclose()


async def test_sqlite_statement_has_a_deadline(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "db.sqlite3", 1, timeout_s=0.2)
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    try:
        for run in (db.read, db.write):
            with trio.fail_after(10), pytest.raises(StoreUnavailable) as caught:
                await run(lambda conn: conn.execute(endless).fetchall())
            assert caught.value.details == {"database": "timeout"}
        assert (await db.read(lambda conn: conn.execute("SELECT 7").fetchall()))[0][0] == 7
    finally:
        await db.aclose()


def test_repeated_driver_errors_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(50):
        log_driver_error("test-backend", ConnectionRefusedError(111, "refused"))
    lines = [r for r in caplog.records if "test-backend" in r.getMessage()]
    assert len(lines) == 1


async def test_unretrieved_asyncio_errors_are_logged_not_raised() -> None:
    """trio-asyncio 0.16 raises any "exception never retrieved" into its loop's nursery
    (ending the process); asyncpg leaves such futures when a connection dies mid-handshake.
    The first half fails when trio-asyncio stops doing that (drop the workaround then)."""
    import trio_asyncio

    from server.store.postgres_db import _log_loop_error

    raised = False
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.call_exception_handler({"message": "m", "exception": ValueError("lost")})
            await trio.sleep(0.05)
    except* ValueError:
        raised = True
    assert raised
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(_log_loop_error)
        loop.call_exception_handler({"message": "m", "exception": ValueError("lost")})
        await trio.sleep(0.05)
