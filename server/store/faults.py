"""Driver errors, translated: every exception a database driver raises becomes a ``server.errors``
class, and the driver's own text goes to the log (rate-limited), never to a client.

- ``StoreUnavailable`` (503 ``not_ready`` + ``Retry-After``, ``retryable``): the database is
  down, restarting, frozen, out of connections, or the call passed its deadline.
- ``StoreCorrupt`` (a ``StoreUnavailable``, not retryable): the SQLite file is damaged.
- ``StoreFailure`` (500): the database rejected a statement (a bug or bad data).

``translate_postgres`` and ``translate_sqlite`` are the only places that classify driver
errors; the connection owners (``postgres_db``, ``sqlite_db``) call them. An exception
that does not come from a driver (our own bug in a unit of work) is returned unchanged.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from server.errors import StoreCorrupt, StoreFailure, StoreUnavailable

log = logging.getLogger("stretto.store")

NO_DEADLINE = float("inf")  # migrations: they run before the server answers anything
MAINTENANCE_TIMEOUT_S = 60.0  # background trims of a long event log, never a request
LOG_EVERY_S = 10.0  # one line per (backend, error class) per this many seconds
_PG_PERMANENT_CLASSES = frozenset({"0A", "22", "23", "42", "44"})  # SQLSTATE classes: bugs
_SQLITE_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)
_DRIVER_MODULES = ("asyncpg", "asyncio", "trio_asyncio", "sqlite3", "_sqlite3")
_last_logged: dict[tuple[str, str], tuple[float, int]] = {}


def log_driver_error(
    backend: str, exc: BaseException, *, what: str = "database error", level: int = logging.WARNING
) -> None:
    """Log a driver error with its text, at most once per ``LOG_EVERY_S`` per class."""
    key = (backend, type(exc).__name__)
    now = time.monotonic()
    last, suppressed = _last_logged.get(key, (-LOG_EVERY_S, 0))
    if now - last < LOG_EVERY_S:
        _last_logged[key] = (last, suppressed + 1)
        return
    _last_logged[key] = (now, 0)
    more = f" ({suppressed} more since the last line)" if suppressed else ""
    log.log(level, "%s %s: %s: %s%s", backend, what, type(exc).__name__, exc, more)


def deadline_passed(backend: str, seconds: float) -> StoreUnavailable:
    """The error for a call that passed its deadline (acquire plus query)."""
    log_driver_error(backend, TimeoutError(f"no answer within {seconds:g} s"), what="deadline")
    return StoreUnavailable("The database did not answer in time.", {"database": "timeout"})


def _from_driver(exc: BaseException) -> bool:
    return isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith(
        _DRIVER_MODULES
    )


def translate_postgres(exc: Exception) -> Exception:
    """asyncpg/asyncio/OS errors -> ours; anything else is returned as it is."""
    import asyncpg

    if not _from_driver(exc):
        return exc
    log_driver_error("postgresql", exc)
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in _PG_PERMANENT_CLASSES:
            return StoreFailure()
    elif isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return StoreFailure()  # DataError, ClientConfigurationError: bad arguments
    return StoreUnavailable(details={"database": "unavailable"})


def sqlite_is_corrupt(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and (
        (isinstance(code, int) and code & 0xFF in _SQLITE_CORRUPT_CODES)
        or "malformed" in str(exc)
        or "not a database" in str(exc)
    )


def translate_sqlite(exc: Exception) -> Exception:
    """sqlite3/OS errors -> ours; anything else is returned as it is."""
    if not _from_driver(exc):
        return exc
    if sqlite_is_corrupt(exc):
        what = "database is DAMAGED (restore a backup taken with `stretto backup`)"
        log_driver_error("sqlite", exc, what=what, level=logging.ERROR)
        return StoreCorrupt(details={"database": "corrupt"})
    log_driver_error("sqlite", exc)
    if isinstance(
        exc,
        sqlite3.IntegrityError
        | sqlite3.ProgrammingError
        | sqlite3.DataError
        | sqlite3.NotSupportedError
        | sqlite3.InterfaceError,
    ):
        return StoreFailure()
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return StoreUnavailable("The database disk is full.", {"database": "disk_full"})
    return StoreUnavailable(details={"database": "unavailable"})
